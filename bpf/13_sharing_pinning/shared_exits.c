// Counts the exits of one user's processes into the same map as shared_execs.c.
// A different hook (a scheduler tracepoint, not a syscall), the same two maps:
// `watch` (the uid to count) and `counts` (key 2 = exits), both made in user space.

TRACEPOINT_PROBE(sched, sched_process_exit) {
    u32 zero = 0;
    u32 *uid = bpf_map_lookup_elem(watch, &zero);
    if (uid == NULL || *uid != (u32)bpf_get_current_uid_gid())
        return 0;

    u32 key = 2;                        // this program's entry in the shared map
    u64 start = 0;
    bpf_map_update_elem(counts, &key, &start, BPF_NOEXIST);
    u64 *count = bpf_map_lookup_elem(counts, &key);
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}
