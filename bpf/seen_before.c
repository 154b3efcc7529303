// Lesson 10: report each user once, the first time it starts a program.
// `seen` is a bloom filter made in Python (BCC cannot declare one) and handed in
// with `%%bpf seen_before maps=seen`: here it is a map pointer for the helpers.
// A bloom filter keeps no values, only bits, and answers "no" or "maybe":
//   bpf_map_peek_elem(seen, &v)     0: maybe added before; -ENOENT: never added
//   bpf_map_push_elem(seen, &v, 0)  adds v (sets its bits)
BPF_QUEUE(newcomers, u32, 64);   // uids starting a program for the first time, in order

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 uid = bpf_get_current_uid_gid();
    if (bpf_map_peek_elem(seen, &uid) == 0)   // maybe seen before: nothing to report
        return 0;
    bpf_map_push_elem(seen, &uid, 0);         // surely new: remember it from now on
    newcomers.push(&uid, 0);                  // and tell user space, once
    return 0;
}
