// Lesson 06's devmap redirect (devmap_redirect.c) as libbpf C: what BCC wrote for us.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define SLOTS 4
#define ETH_P_IP 0x0800   // a #define of the uapi headers: vmlinux.h has none

// BPF_DEVMAP(tx_port, SLOTS) with lookup(): a devmap is an ordinary map to libbpf.
struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP);
    __uint(max_entries, SLOTS);
    __type(key, u32);
    __type(value, int);
} tx_port SEC(".maps");

struct {                               // BPF_ARRAY(redirected, u64, SLOTS)
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, SLOTS);
    __type(key, u32);
    __type(value, u64);
} redirected SEC(".maps");

struct {                               // BPF_HASH(sent_to, u32, u64, SLOTS)
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, SLOTS);
    __type(key, u32);
    __type(value, u64);
} sent_to SEC(".maps");

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

// An XDP program needs an interface: libbpf loads it, user space attaches it.
SEC("xdp")
int xdp_redirect(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
        return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > data_end)
        return XDP_PASS;

    u32 slot = bpf_ntohs(udp->dest) - 9000;   // BCC rewrote ntohs(); libbpf's is bpf_ntohs()
    if (slot >= SLOTS)
        return XDP_PASS;
    u64 *frames = bpf_map_lookup_elem(&redirected, &slot);   // BCC: redirected.atomic_increment(slot)
    if (frames)
        __sync_fetch_and_add(frames, 1);
    int *ifindex = bpf_map_lookup_elem(&tx_port, &slot);
    if (ifindex) {
        u32 egress = *ifindex;
        u64 zero = 0, *n = lookup_or_try_init(&sent_to, &egress, &zero);
        if (n)
            __sync_fetch_and_add(n, 1);
    }
    return bpf_redirect_map(&tx_port, slot, 0);   // BCC: tx_port.redirect_map(slot, 0)
}

SEC("xdp")
int xdp_pass(struct xdp_md *ctx) {
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
