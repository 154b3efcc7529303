// Lesson 03's tail calls (tail_calls.c) as libbpf C: what BCC wrote for us, written out.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

// BPF_PROG_ARRAY(handlers, 4): key and value are u32 (a program's fd in, its id out).
struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u32);
} handlers SEC(".maps");

struct {                                   // BPF_HASH(route, u32, u32, 64): uid -> slot
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, u32);
    __type(value, u32);
} route SEC(".maps");

struct {                                   // BPF_ARRAY(hits, u64, 4)
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} hits SEC(".maps");

struct {                                   // BPF_ARRAY(fell_through, u64, 1)
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} fell_through SEC(".maps");

static __always_inline void add_one(void *map, u32 i) {   // BCC's atomic_increment(i)
    u64 *n = bpf_map_lookup_elem(map, &i);
    if (n)
        __sync_fetch_and_add(n, 1);
}

SEC("tp/syscalls/sys_enter_execve")
int sys_enter_execve(struct trace_event_raw_sys_enter *ctx) {
    u32 uid = bpf_get_current_uid_gid();   // the low 32 bits are the uid
    u32 *slot = bpf_map_lookup_elem(&route, &uid);
    if (slot == NULL)
        return 0;

    bpf_tail_call(ctx, &handlers, *slot);    // BCC: handlers.call(args, *slot)
    add_one(&fell_through, 0);               // reached only when the slot is empty
    return 0;
}

// BCC compiled every function and user space loaded the handlers by name (load_func). Here
// each is a program of its own section: "tp" with no tracepoint named is a tracepoint program
// that libbpf loads with the object but attaches nowhere.
SEC("tp")
int count_a(void *ctx) {
    add_one(&hits, 0);
    return 0;
}

SEC("tp")
int count_b(void *ctx) {
    add_one(&hits, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
