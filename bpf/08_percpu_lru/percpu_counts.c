// Count getppid() calls per user, with one counter per CPU.
//
// In a per-CPU map every entry holds one value for each CPU, and a program only ever touches
// the copy of the CPU it runs on. Only this CPU writes its copy, and a tracepoint program never
// nests on its CPU, so a plain (*n)++ counts exactly here, with no atomic instruction (the
// lesson says where that does not hold). User space reads every CPU's copy and adds them up.

BPF_PERCPU_HASH(calls, u32, u64, 1024);          // uid -> calls, one u64 per CPU
BPF_PERCPU_HASH(by_increment, u32, u64, 1024);   // the same, counted with BCC's increment()
BPF_PERCPU_ARRAY(total, u64, 2);                 // slot 0: the watched uid; slot 1: all others
BPF_ARRAY(watched, u32, 1);                      // watched[0]: a uid, set from Python

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 uid = bpf_get_current_uid_gid();         // the low 32 bits are the uid
    u64 zero = 0;

    u64 *n = calls.lookup_or_try_init(&uid, &zero);   // this CPU's copy; a new key starts at 0
    if (n)
        (*n)++;                                  // only this CPU writes this copy: exact

    by_increment.increment(uid);                 // += 1 on this CPU's copy: see the lesson

    u32 first = 0, slot = 1;
    u32 *w = watched.lookup(&first);
    if (w && *w == uid && uid != 0)              // watched[0] is 0 until set: never root
        slot = 0;
    u64 *t = total.lookup(&slot);                // an array's slots always exist
    if (t)
        (*t)++;
    return 0;
}
