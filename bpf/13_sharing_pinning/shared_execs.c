// Counts the execve() calls of one user into a map this program does not own.
// `counts` and `watch` are not declared here: user space made them and hands
// them to the program (maps=counts,watch), so they live on after it.
//   watch:  an array of 1 slot, written by user space: the uid to count
//   counts: a hash, u32 key -> u64 count, shared with shared_exits.c:
//           key 1 = execve() calls (this program), key 2 = exits (the other)

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 zero = 0;
    u32 *uid = bpf_map_lookup_elem(watch, &zero);
    if (uid == NULL || *uid != (u32)bpf_get_current_uid_gid())
        return 0;                       // not the user we were told to watch

    u32 key = 1;                        // this program's entry in the shared map
    u64 start = 0;
    bpf_map_update_elem(counts, &key, &start, BPF_NOEXIST);   // make it, once
    u64 *count = bpf_map_lookup_elem(counts, &key);
    if (count)
        __sync_fetch_and_add(count, 1); // atomic: another CPU may add at once
    return 0;
}
