// Lesson 20: what one operation costs, map type by map type, timed inside the kernel.
//
// The maps come from the notebook (bpfkit.create_map, one per type) and are handed in with
// maps=: `hash_map` here is that map. Each macro below writes one XDP program that does OPS
// operations on one map; bpfkit.observe.testrun runs it and `empty` with BPF_PROG_TEST_RUN, and
// (time of the function - time of empty) / OPS is one operation, as in lesson 07.
#define OPS 16

struct lpm_key { u32 prefixlen; u32 addr; };         // an LPM trie key: /32, one address
#define INDEX u32 key = i                            // the key of every other map: 0..OPS-1
#define PREFIX struct lpm_key key = {.prefixlen = 32, .addr = i}

#define LOOKUP(t, KEY) int lookup_##t(struct xdp_md *ctx) { u64 sum = 0;         \
    _Pragma("unroll") for (u32 i = 0; i < OPS; i++) { KEY;                       \
        u64 *v = bpf_map_lookup_elem(t##_map, &key); if (v) sum += *v; }         \
    return sum == 1 ? XDP_DROP : XDP_PASS; }   /* use the values: nothing optimized away */
#define UPDATE(t, KEY) int update_##t(struct xdp_md *ctx) {                      \
    _Pragma("unroll") for (u32 i = 0; i < OPS; i++) { KEY; u64 v = i + 100;      \
        bpf_map_update_elem(t##_map, &key, &v, BPF_ANY); }                       \
    return XDP_PASS; }
// Maps without keys: one write then one read, as a pair (push+pop, or add+test).
#define PAIR(t, READ) int pair_##t(struct xdp_md *ctx) { u64 sum = 0;            \
    _Pragma("unroll") for (u32 i = 0; i < OPS; i++) { u64 v = i;                 \
        bpf_map_push_elem(t##_map, &v, BPF_ANY); sum += READ(t##_map, &v) == 0; } \
    return sum == 1 ? XDP_DROP : XDP_PASS; }

int empty(struct xdp_md *ctx) { return XDP_PASS; }

LOOKUP(hash, INDEX)          UPDATE(hash, INDEX)
LOOKUP(array, INDEX)         UPDATE(array, INDEX)
LOOKUP(percpu_hash, INDEX)   UPDATE(percpu_hash, INDEX)
LOOKUP(percpu_array, INDEX)  UPDATE(percpu_array, INDEX)
LOOKUP(lru_hash, INDEX)      UPDATE(lru_hash, INDEX)
LOOKUP(lru_percpu_hash, INDEX) UPDATE(lru_percpu_hash, INDEX)
LOOKUP(lpm_trie, PREFIX)     UPDATE(lpm_trie, PREFIX)
PAIR(queue, bpf_map_pop_elem)
PAIR(stack, bpf_map_pop_elem)
PAIR(bloom_filter, bpf_map_peek_elem)
