// Why lookup-then-update loses counts: the same events counted three ways, side by side.
//
// racy_table: lookup() the count, add one, update() it back, as bpf/counter.c does. Two CPUs
// doing this for one uid at the same moment both read the same count and both write count + 1.
// increment_table: BCC's increment(), a plain `*value += 1` (BCC 0.18 to 0.31): a shorter window.
// atomic_table: lookup_or_try_init() makes the entry (two CPUs racing to create it both get
// the one that won), and __sync_fetch_and_add() is one atomic add: exact.
// The tracepoint is getppid(), a syscall cheap enough to call millions of times a second.

BPF_HASH(racy_table);
BPF_HASH(increment_table);
BPF_HASH(atomic_table);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 counter = 0, zero = 0;
    u64 *p;

    p = racy_table.lookup(&uid);        // read ...
    if (p != 0) {
        counter = *p;
    }
    counter++;
    racy_table.update(&uid, &counter);  // ... and write back: two steps, not atomic

    increment_table.increment(uid);     // *value += 1: not atomic either

    p = atomic_table.lookup_or_try_init(&uid, &zero);
    if (p) {
        __sync_fetch_and_add(p, 1);     // one atomic add: exact
    }
    return 0;
}
