// An arena: pages shared by a program and user space. Pointers into it are
// marked __arena (address space 1); the compiler must turn each use into an
// arena access, and libbpf must map the arena before the program loads.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#define __arena __attribute__((address_space(1)))
void __arena *bpf_arena_alloc_pages(void *map, void __arena *addr, __u32 page_cnt,
                                    int node_id, __u64 flags) __ksym;
struct {
    __uint(type, BPF_MAP_TYPE_ARENA);
    __uint(map_flags, BPF_F_MMAPABLE);
    __uint(max_entries, 1);                   // pages (libbpf maps them before the load)
} arena SEC(".maps");

__u64 __arena *counter;                       // a pointer into the arena

SEC("syscall")
int bump(void *ctx) {
    if (!counter)                             // first run: take a page
        counter = bpf_arena_alloc_pages(&arena, NULL, 1, -1, 0);
    if (!counter)
        return -1;
    *counter += 1;                            // in the arena; a plain add, as only this
                                              // notebook runs bump, one run at a time
    return *counter;
}
char LICENSE[] SEC("license") = "GPL";
