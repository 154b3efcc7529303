// The counter, made exact: one atomic add in the kernel.
//
// The lookup-then-update of bpf/counter.c reads the count, adds one and writes it back.
// When two CPUs do that for the same uid at once, both read the same count and one +1 is
// lost. BCC's increment() looks like the fix but (BCC 0.18 to 0.31) is a plain `*value += 1` with
// the same race (bpf/counter_race.c measures both). Here lookup_or_try_init() creates the
// entry if it is missing (two CPUs racing to create it both get the one that won), and
// __sync_fetch_and_add() adds with one atomic instruction.

BPF_HASH(counter_table);

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 zero = 0;
    u64 *p = counter_table.lookup_or_try_init(&uid, &zero);
    if (p) {
        __sync_fetch_and_add(p, 1);
    }
    return 0;
}
