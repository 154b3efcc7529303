// Lesson 01's counter (bpf/counter.c) as libbpf C: what BCC wrote for us, written out.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

// BPF_HASH(counter_table): BCC's defaults (u64 key, u64 value, 10240 entries) are spelled out.
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u64);
    __type(value, u64);
} counter_table SEC(".maps");

// TRACEPOINT_PROBE(syscalls, sys_enter_execve): the section names the tracepoint (libbpf
// attaches by it) and the context's type comes from vmlinux.h, where BCC made `args` for us.
SEC("tp/syscalls/sys_enter_execve")
int sys_enter_execve(struct trace_event_raw_sys_enter *ctx) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;  // the low 32 bits are the uid
    u64 counter = 0;
    u64 *p;

    p = bpf_map_lookup_elem(&counter_table, &uid);   // BCC: counter_table.lookup(&uid)
    if (p != 0) {
        counter = *p;
    }
    counter++;
    bpf_map_update_elem(&counter_table, &uid, &counter, BPF_ANY);   // BCC: .update(), BPF_ANY
    return 0;
}

char LICENSE[] SEC("license") = "GPL";   // BCC passed "GPL" to the kernel itself
