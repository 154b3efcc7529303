// Lesson 07: what one map operation costs inside the kernel.
//
// Each function below is an XDP program that does OPS lookups (or updates) on one map type;
// `empty` does nothing. bpfkit.observe.testrun runs them on a made-up packet with BPF_PROG_TEST_RUN
// and the kernel times them: (time of a function - time of empty) / OPS is one operation.
// `#pragma unroll` writes the OPS operations out one after another, so no loop is timed.

#define OPS 32

BPF_HASH(hash_map, u32, u64, 1024);
BPF_PERCPU_HASH(percpu_hash_map, u32, u64, 1024);
BPF_TABLE("lru_hash", u32, u64, lru_hash_map, 1024);
BPF_ARRAY(array_map, u64, 1024);

int empty(struct xdp_md *ctx) {
    return XDP_PASS;
}

// Lookups: keys 0..OPS-1, which user space fills first, so every lookup finds its entry.
int lookup_hash(struct xdp_md *ctx) {
    u64 sum = 0;
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 *v = hash_map.lookup(&key);
        if (v) sum += *v;
    }
    return sum == 1 ? XDP_DROP : XDP_PASS;   // use the values, so nothing is optimized away
}

int lookup_percpu_hash(struct xdp_md *ctx) {
    u64 sum = 0;
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 *v = percpu_hash_map.lookup(&key);
        if (v) sum += *v;
    }
    return sum == 1 ? XDP_DROP : XDP_PASS;
}

int lookup_lru_hash(struct xdp_md *ctx) {
    u64 sum = 0;
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 *v = lru_hash_map.lookup(&key);
        if (v) sum += *v;
    }
    return sum == 1 ? XDP_DROP : XDP_PASS;
}

int lookup_array(struct xdp_md *ctx) {
    u64 sum = 0;
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 *v = array_map.lookup(&key);
        if (v) sum += *v;
    }
    return sum == 1 ? XDP_DROP : XDP_PASS;
}

// Updates: overwrite the same keys with new values (BPF_ANY).
int update_hash(struct xdp_md *ctx) {
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 value = i + 100;
        hash_map.update(&key, &value);
    }
    return XDP_PASS;
}

int update_percpu_hash(struct xdp_md *ctx) {
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 value = i + 100;
        percpu_hash_map.update(&key, &value);
    }
    return XDP_PASS;
}

int update_lru_hash(struct xdp_md *ctx) {
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 value = i + 100;
        lru_hash_map.update(&key, &value);
    }
    return XDP_PASS;
}

int update_array(struct xdp_md *ctx) {
#pragma unroll
    for (u32 i = 0; i < OPS; i++) {
        u32 key = i;
        u64 value = i + 100;
        array_map.update(&key, &value);
    }
    return XDP_PASS;
}

// One count per run with an atomic add on a shared hash entry: what the exercise compares to.
int count_hash(struct xdp_md *ctx) {
    u32 key = 0;
    hash_map.atomic_increment(key);
    return XDP_PASS;
}
