// The counter, made exact: increment() is an atomic add in the kernel.
//
// The seed's lookup-then-update (bpf/counter.c) reads the count, adds one and writes it back.
// When two CPUs do that for the same uid at once, both read the same count and one +1 is
// lost. increment() creates the entry if it is missing and adds with one atomic instruction.

BPF_HASH(counter_table);

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    counter_table.increment(uid);
    return 0;
}
