// Devmap: an XDP program that sends frames out of another interface, chosen through a map.
//
// It runs on the interface where host a's frames arrive. An IPv4/UDP frame to port 9000 + slot
// (slot 0 to 3) is counted in redirected[slot] and handed to tx_port.redirect_map(slot, 0): the
// kernel transmits the frame, unchanged, out of the interface whose ifindex user space stored
// in tx_port[slot]. Everything else (ARP, other ports) passes on to the network stack as usual.
// Writing another ifindex into one slot moves that whole flow to another interface at once.

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

#define BASE_PORT 9000
#define SLOTS 4

BPF_DEVMAP(tx_port, SLOTS);          // slot -> egress interface (ifindex), set from user space
BPF_ARRAY(redirected, u64, SLOTS);   // frames handed to each slot

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

    u32 slot = ntohs(udp->dest) - BASE_PORT;   // port 9000 -> slot 0, 9001 -> slot 1, ...
    if (slot >= SLOTS)
        return XDP_PASS;
    redirected.increment(slot);
    return tx_port.redirect_map(slot, 0);      // XDP_REDIRECT (XDP_ABORTED if the slot is empty)
}

// A program that lets every frame through. Native-mode XDP on veth delivers redirected frames
// only when the receiving end has an XDP program; this one is enough.
int xdp_pass(struct xdp_md *ctx) {
    return XDP_PASS;
}
