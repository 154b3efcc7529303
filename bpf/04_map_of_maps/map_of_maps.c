// Map of maps: a program reads its configuration through one slot of an outer map.
//
// config_a and config_b are two ordinary hash maps, uid -> weight: "count this user's
// execve() calls, each one as `weight`". The program never names them. It looks up slot 0 of
// `active` (an array of maps) and reads whichever inner map user space has put there. Putting
// the other map in the slot is a single update, so the program switches from one whole
// configuration to the other at once: no event ever sees half of the old and half of the new.
//
// BPF_ARRAY_OF_MAPS(active, "config_a", 1) names config_a as the template: every inner map
// must have its type, its key and value sizes and its map flags (inner arrays: its
// max_entries too, unless the template has BPF_F_INNER_MAP, kernel 5.10 and later).

BPF_HASH(config_a, u32, u64, 16);
BPF_HASH(config_b, u32, u64, 16);
BPF_ARRAY_OF_MAPS(active, "config_a", 1);

BPF_HASH(counts, u32, u64);   // uid -> sum of weights: two CPUs may add to one uid at once

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    int slot = 0;
    void *config = active.lookup(&slot);   // the inner map itself, or NULL for an empty slot
    if (config == 0) {
        return 0;
    }
    u32 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 *weight = bpf_map_lookup_elem(config, &uid);   // is this uid in the active config?
    if (weight == 0) {
        return 0;
    }
    u64 zero = 0;
    u64 *count = counts.lookup_or_try_init(&uid, &zero);   // one entry, whoever makes it
    if (count != 0) {
        __sync_fetch_and_add(count, *weight);   // atomic: no count lost (lesson 01)
    }
    return 0;
}
