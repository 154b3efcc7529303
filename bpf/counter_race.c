// Why the seed's counter loses counts: the same events counted three ways, side by side.
//
// racy_table counts the seed's way: lookup() the count, add one, update() it back. When two
// CPUs do this for the same uid at the same moment, both read the same count and both write
// count + 1: one event is lost. increment_table uses BCC's increment(), which looks atomic
// but (in BCC 0.26) is a plain `*value += 1`: a shorter window, still lost counts.
// atomic_table never loses one: lookup_or_try_init() makes the entry (if two CPUs race to
// create it, both get the one that won), and __sync_fetch_and_add() is one atomic add.
// (BCC's atomic_increment() is atomic too, except that two CPUs creating the entry at the
// same moment can lose one count.) The tracepoint is getppid(), a syscall cheap enough to
// call millions of times a second from each CPU (see bpfkit.workload.hammer).

BPF_HASH(racy_table);
BPF_HASH(increment_table);
BPF_HASH(atomic_table);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 counter = 0, zero = 0;
    u64 *p;

    p = racy_table.lookup(&uid);        // the seed's way: read ...
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
