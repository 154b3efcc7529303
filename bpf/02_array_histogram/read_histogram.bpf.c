// Lesson 02's histogram (bpf/read_histogram.c) as libbpf C: what BCC wrote for us, written out.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

// BPF_ARRAY(config, u32, 1) and BPF_ARRAY(read_sizes, u64, 32): an array's key is a u32 index.
// A map's name is its variable's, and vmlinux.h has a type named config: this one is read_config.
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u32);
} read_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 32);
    __type(key, u32);
    __type(value, u64);
} read_sizes SEC(".maps");

// bpf_log2l() is BCC's (its helpers.h): the number of bits n needs, copied here.
static __always_inline u32 log2_32(u32 v) {
    u32 r, shift;
    r = (v > 0xFFFF) << 4; v >>= r;
    shift = (v > 0xFF) << 3; v >>= shift; r |= shift;
    shift = (v > 0xF) << 2; v >>= shift; r |= shift;
    shift = (v > 0x3) << 1; v >>= shift; r |= shift;
    return r | (v >> 1);
}

static __always_inline u32 log2l(u64 v) {
    u32 hi = v >> 32;
    return hi ? log2_32(hi) + 32 + 1 : log2_32(v) + 1;
}

// TRACEPOINT_PROBE(syscalls, sys_exit_read): `args` is the context, typed from vmlinux.h.
SEC("tp/syscalls/sys_exit_read")
int sys_exit_read(struct trace_event_raw_sys_exit *ctx) {
    if (ctx->ret <= 0)                  // an error or end of file: no bytes to count
        return 0;

    u32 zero = 0;
    u32 *watched = bpf_map_lookup_elem(&read_config, &zero);   // BCC: config.lookup(&zero)
    if (watched == NULL || *watched != bpf_get_current_pid_tgid() >> 32)
        return 0;                          // not the process user space asked about

    u64 bytes = ctx->ret;
    // BCC: read_sizes.atomic_increment(bpf_log2l(bytes)), a lookup and an atomic add
    u32 slot = log2l(bytes);
    u64 *count = bpf_map_lookup_elem(&read_sizes, &slot);  // NULL past the last slot
    if (count)
        __sync_fetch_and_add(count, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
