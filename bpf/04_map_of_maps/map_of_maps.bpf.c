// Lesson 04's map of maps (map_of_maps.c) as libbpf C: what BCC wrote for us, written out.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

// One struct type for both configurations: the outer map's template is a type here, where
// BCC named a map ("config_a") as the template.
struct config_map {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u64);
};
struct config_map config_a SEC(".maps"), config_b SEC(".maps");

// BPF_ARRAY_OF_MAPS(active, "config_a", 1): an int key, inner maps shaped like config_map.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 1);
    __type(key, int);
    __array(values, struct config_map);
} active SEC(".maps");

struct {                               // BPF_HASH(counts, u32, u64): 10240 entries, BCC's default
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

// BCC's lookup_or_try_init(): a lookup; if it missed, an insert (another CPU may win that
// race: fine, the entry is there either way) and a second lookup.
static __always_inline void *lookup_or_try_init(void *map, const void *key, const void *init) {
    void *value = bpf_map_lookup_elem(map, key);
    if (!value) {
        bpf_map_update_elem(map, key, init, BPF_NOEXIST);
        value = bpf_map_lookup_elem(map, key);
    }
    return value;
}

SEC("tp/syscalls/sys_enter_execve")
int sys_enter_execve(struct trace_event_raw_sys_enter *ctx) {
    int slot = 0;
    void *config = bpf_map_lookup_elem(&active, &slot);   // the inner map, or NULL
    if (config == 0) {
        return 0;
    }
    u32 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 *weight = bpf_map_lookup_elem(config, &uid);
    if (weight == 0) {
        return 0;
    }
    u64 zero = 0;
    u64 *count = lookup_or_try_init(&counts, &uid, &zero);   // BCC: counts.lookup_or_try_init()
    if (count != 0) {
        __sync_fetch_and_add(count, *weight);   // atomic: no count lost (lesson 01)
    }
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
