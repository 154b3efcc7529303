// One stream of keys into three tables of 8 entries: which keys does each one keep?
//
// The workload calls getpgid(key) with keys it picks, as a user nobody else is (watched[0]);
// think of each key as a network flow. Each table counts how often it saw each key.
// plain: a hash map. Once it holds 8 keys it refuses every new one (counted in refused).
// lru: an LRU hash. A new key gets in: a key not used recently makes room.
// lru_percpu: an LRU hash whose values are per CPU: a count per key and CPU.
// Only one process's calls count, one call at a time: the plain (*n)++ below cannot race.

BPF_ARRAY(watched, u32, 1);
BPF_HASH(plain, u32, u64, 8);
BPF_TABLE("lru_hash", u32, u64, lru, 8);
BPF_TABLE("lru_percpu_hash", u32, u64, lru_percpu, 8);
BPF_PERCPU_ARRAY(refused, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getpgid) {
    u32 zero = 0;
    u32 *w = watched.lookup(&zero);
    if (!w || *w == 0 || *w != (u32)bpf_get_current_uid_gid())
        return 0;                             // 0: not set yet, watch nobody
    u32 key = args->pid;                      // the key: getpgid()'s argument
    u64 start = 0, *n;

    n = plain.lookup_or_try_init(&key, &start);   // NULL once the map is full
    if (n)
        (*n)++;
    else if ((n = refused.lookup(&zero)))
        (*n)++;

    n = lru.lookup_or_try_init(&key, &start);     // evicts to make room; NULL on ENOMEM
    if (n)
        (*n)++;
    n = lru_percpu.lookup_or_try_init(&key, &start);
    if (n)
        (*n)++;                               // this CPU's copy
    return 0;
}
