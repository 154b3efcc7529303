// xskmap: an XDP program that hands the frames of one UDP port to an AF_XDP socket.
//
// It runs on the interface where frames arrive. A frame to UDP port 7000 goes to the AF_XDP
// socket user space stored in xsks[rx queue]; every other frame passes on to the network stack.

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

#define TO_SOCKET 7000                 // the UDP port whose frames user space wants

BPF_XSKMAP(xsks, 4);                   // rx queue -> AF_XDP socket (user space fills it)
struct verdict_t { u32 port; u32 action; };
BPF_HASH(verdicts, struct verdict_t, u64);   // (UDP port, XDP action) -> frames

int xdp_to_socket(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    struct ethhdr *eth = data;         // bounds-checked reads, or the verifier says no
    if ((void *)(eth + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
        return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > data_end)
        return XDP_PASS;

    struct verdict_t v = {.port = ntohs(udp->dest), .action = XDP_PASS};
    if (v.port == TO_SOCKET)           // XDP_REDIRECT, or XDP_PASS if the queue's slot is empty
        v.action = xsks.redirect_map(ctx->rx_queue_index, XDP_PASS);
    verdicts.atomic_increment(v);      // atomic: frames on several CPUs share an entry
    return v.action;
}
