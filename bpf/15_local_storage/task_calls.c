// Lesson 15: task storage. getppid() calls counted twice: on the calling task, and per pid.
//
// BPF_TASK_STORAGE(name, type) declares a map with no keys of its own: each task (a thread of a
// process) can carry one value of `type` in it. task_storage_get(task, 0, F_CREATE) finds the
// current task's value, making a zeroed one on first use. The kernel frees it with the task.
//
// BPF_HASH(by_pid, ...) is lesson 01's way: a table keyed by process id. Nothing removes an
// entry when its process exits: someone has to delete it.

BPF_TASK_STORAGE(on_task, u64);
BPF_HASH(by_pid, u32, u64, 1024);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    // The task that made the call, as a pointer the verifier trusts (from the kernel's BTF).
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    u64 *calls = on_task.task_storage_get(task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (calls)                           // NULL only if the kernel could not allocate it
        __sync_fetch_and_add(calls, 1);

    u32 pid = bpf_get_current_pid_tgid() >> 32;    // the process id (its thread group id)
    by_pid.atomic_increment(pid);
    return 0;
}
