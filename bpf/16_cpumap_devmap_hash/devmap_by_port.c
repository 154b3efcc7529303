// devmap_hash: an XDP program sends each frame out of the interface stored under a key it picks.
//
// It runs on the port where host p's frames arrive. The key is the UDP destination port: user space
// stores ports[9053] = an interface, ports[9080] = another. A port with no entry passes.
// `ports` is a devmap_hash made in Python (BCC cannot declare one) and passed in with maps=ports.

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

BPF_HASH(sent_to, u32, u64, 8);   // egress ifindex -> frames sent out of it

int xdp_by_port(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
        return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > data_end)
        return XDP_PASS;

    u32 key = ntohs(udp->dest);                    // any number: the map holds only used keys
    int *ifindex = bpf_map_lookup_elem(ports, &key);
    if (!ifindex)
        return XDP_PASS;                           // no entry for this port
    u32 egress = *ifindex;
    sent_to.atomic_increment(egress);             // frames from several CPUs may count at once
    return bpf_redirect_map(ports, key, 0);        // out of that interface
}
