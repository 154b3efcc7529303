// Lesson 14: a cgroup array answers "is the current task in that cgroup?" inside the kernel.
//
// groups: BPF_CGROUP_ARRAY with 2 slots. User space puts a cgroup in each slot (by the fd of its
// directory: groups[0] = web). A program cannot read which cgroup a slot holds; it can only ask
// whether the task running now is in it, or in a cgroup below it.
// calls: slot i counts the getppid() calls made by tasks under the cgroup in groups[i].

BPF_CGROUP_ARRAY(groups, 2);
BPF_ARRAY(calls, u64, 2);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 web = 0, batch = 1;    // the two slots
    u64 *n;
    // check_current_task(i) is bpf_current_task_under_cgroup(&groups, i):
    // 1 if under that cgroup, 0 if not, negative for an empty slot.
    if (groups.check_current_task(web) == 1 && (n = calls.lookup(&web)))
        __sync_fetch_and_add(n, 1);   // two CPUs may count at once
    if (groups.check_current_task(batch) == 1 && (n = calls.lookup(&batch)))
        __sync_fetch_and_add(n, 1);
    return 0;
}
