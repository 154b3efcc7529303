// Devmap: an XDP program that sends frames out of another interface, chosen through a map.
//
// It runs on the port where host a's frames arrive. An IPv4/UDP frame to port 9000 + slot goes
// out of the interface whose ifindex user space stored in tx_port[slot]; all else passes.

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

#define SLOTS 4

// BPF_DEVMAP(tx_port, SLOTS) offers only redirect_map(); this is the same map with lookup() too.
struct tx_port_table_t {
    u32 key; int leaf; int *(*lookup)(u32 *); u64 (*redirect_map)(int, int); u32 max_entries;
};
__attribute__((section("maps/devmap"))) struct tx_port_table_t tx_port = {.max_entries = SLOTS};
BPF_ARRAY(redirected, u64, SLOTS);    // slot -> frames handed to it
BPF_HASH(sent_to, u32, u64, SLOTS);   // egress ifindex -> frames sent out of it

int xdp_redirect(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    struct ethhdr *eth = data;   // every access is bounds-checked, or the verifier says no
    if ((void *)(eth + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
        return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > data_end)
        return XDP_PASS;

    u32 slot = ntohs(udp->dest) - 9000;        // port 9000 -> slot 0, 9001 -> slot 1, ...
    if (slot >= SLOTS)
        return XDP_PASS;
    redirected.atomic_increment(slot);         // atomic: XDP runs on several CPUs at once
    int *ifindex = tx_port.lookup(&slot);      // the interface in the slot, NULL if empty
    if (ifindex) {
        u32 egress = *ifindex;
        u64 zero = 0, *n = sent_to.lookup_or_try_init(&egress, &zero);
        if (n)
            __sync_fetch_and_add(n, 1);        // one entry per interface, added to atomically
    }
    return tx_port.redirect_map(slot, 0);      // XDP_REDIRECT (XDP_ABORTED if the slot is empty)
}

// Lets every frame through. Native-mode XDP on veth delivers redirected frames only when the
// receiving end has an XDP program; this one is enough.
int xdp_pass(struct xdp_md *ctx) {
    return XDP_PASS;
}
