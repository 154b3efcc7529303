// User space writes messages into `inbox`, a user ring buffer; this program,
// run on demand (a BPF_PROG_TYPE_SYSCALL program), drains them one by one with
// a callback and adds each message's value to `totals`: [0] messages, [1] sum.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct message { __u32 kind; __u32 value; };
struct {
    __uint(type, BPF_MAP_TYPE_USER_RINGBUF);
    __uint(max_entries, 4096);                // bytes, a power of 2 pages
} inbox SEC(".maps");
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} totals SEC(".maps");

static long on_message(struct bpf_dynptr *dynptr, void *ctx) {
    struct message m;
    if (bpf_dynptr_read(&m, sizeof(m), dynptr, 0, 0))
        return 1;                             // too short: stop draining
    __u32 count = 0, sum = 1;
    __u64 *n = bpf_map_lookup_elem(&totals, &count);
    __u64 *s = bpf_map_lookup_elem(&totals, &sum);
    // Plain adds are safe here: the kernel lets one drain at a time run on a
    // user ring buffer (a second gets -EBUSY), and nothing else writes totals.
    if (n && s) { *n += 1; *s += m.value; }
    return 0;                                 // 0: go on with the next message
}

SEC("syscall")
int drain(void *ctx) {
    // calls on_message once per message waiting; returns how many it drained
    return bpf_user_ringbuf_drain(&inbox, on_message, NULL, 0);
}
char LICENSE[] SEC("license") = "GPL";
