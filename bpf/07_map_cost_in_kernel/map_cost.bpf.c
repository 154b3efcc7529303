// Lesson 07's cost programs (map_cost.c) as libbpf C: empty, two lookups and the count.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define OPS 32

struct {                               // BPF_HASH(hash_map, u32, u64, 1024)
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, u32);
    __type(value, u64);
} hash_map SEC(".maps");

struct {                               // BPF_ARRAY(array_map, u64, 1024)
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1024);
    __type(key, u32);
    __type(value, u64);
} array_map SEC(".maps");

// BCC compiled plain functions and user space chose their type (XDP) when it loaded them.
SEC("xdp")
int empty(struct xdp_md *ctx) {
    return XDP_PASS;
}

SEC("xdp")
int lookup_hash(struct xdp_md *ctx) {
    u64 sum = 0;
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 *v = bpf_map_lookup_elem(&hash_map, &key);   // BCC: hash_map.lookup(&key)
        if (v) sum += *v;
    }
    return sum == 1 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int lookup_array(struct xdp_md *ctx) {
    u64 sum = 0;
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 *v = bpf_map_lookup_elem(&array_map, &key);
        if (v) sum += *v;
    }
    return sum == 1 ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int count_hash(struct xdp_md *ctx) {
    // BCC: hash_map.atomic_increment(key): one atomic add, or an insert of 1 if missing
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&hash_map, &key), one = 1;
    if (v)
        __sync_fetch_and_add(v, 1);
    else
        bpf_map_update_elem(&hash_map, &key, &one, BPF_NOEXIST);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
