// Lesson 14: cgrp_storage (kernel 6.2+), a value that hangs off any cgroup, made on first use.
//
// BCC cannot declare this map: the notebook makes it (bpfkit.create_map("cgrp_storage", ...))
// and passes it in as per_cgroup. bpf_cgrp_storage_get() takes the cgroup as a kernel
// pointer: here the current task's, task->cgroups->dfl_cgrp. BCC compiles against kernel
// headers that may be older than the running kernel, so the two field offsets come from the
// running kernel's own BTF, given on the %%bpf line (-DTASK_CGROUPS=... -DCSS_SET_DFL_CGRP=...).

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    void *task = bpf_get_current_task_btf();                    // struct task_struct *
    void *css_set = *(void **)(task + TASK_CGROUPS);            // task->cgroups
    struct cgroup *cgrp = *(struct cgroup **)(css_set + CSS_SET_DFL_CGRP);   // ->dfl_cgrp

    // The value of that cgroup; F_CREATE makes it (zeroed) the first time.
    u64 *n = bpf_cgrp_storage_get(per_cgroup, cgrp, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
