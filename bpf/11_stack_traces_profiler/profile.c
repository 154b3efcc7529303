// Lesson 11: a sampling profiler. The CPU clock interrupts each CPU 99 times a second and runs
// do_sample(); if the process on that CPU is the one we watch, it asks the kernel for the
// call stack, user and kernel side, and counts the pair.
//
// BPF_STACK_TRACE(stacks, n) is a stack trace map: stack id -> up to 127 return addresses.
// stacks.get_stackid(ctx, flags) walks the stack at the interrupted instruction, stores it
// (once: the id is a hash of the addresses, so equal stacks share one id) and returns the id,
// or a negative error: -EFAULT when there is no such stack (a sample in user code has no
// kernel stack), -EEXIST when another stack already holds that id (a collision).

struct bpf_perf_event_data;   // the sample's registers; we only hand them to get_stackid

struct key_t {
    u32 pid;
    int user_stack_id;     // flags BPF_F_USER_STACK: the process's own stack
    int kernel_stack_id;   // flags 0: the kernel's stack
};

BPF_ARRAY(config, u32, 1);                  // config[0]: the pid to profile, 0 for nobody
BPF_STACK_TRACE(stacks, 4096);              // stack id -> addresses
BPF_HASH(counts, struct key_t, u64, 4096);  // (pid, user stack, kernel stack) -> samples

int do_sample(struct bpf_perf_event_data *ctx) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u32 zero = 0;
    u32 *watched = config.lookup(&zero);
    if (watched == NULL || pid == 0 || *watched != pid)
        return 0;                           // pid 0: the idle task, not a process

    struct key_t key = {.pid = pid};
    key.user_stack_id = stacks.get_stackid(ctx, BPF_F_USER_STACK);
    key.kernel_stack_id = stacks.get_stackid(ctx, 0);
    counts.atomic_increment(key);           // one atomic add, as in lesson 01
    return 0;
}
