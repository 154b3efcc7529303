// LPM trie: an XDP program that classifies every IPv4 frame by its source address.
//
// It runs on the port where host s12's frames arrive. User space fills `prefixes` with IPv4
// prefixes (10.0.0.0/8, 10.1.0.0/16, ...). Looking up a whole address (all 32 bits) returns the
// entry of the LONGEST stored prefix that contains it, or NULL when none does. The entry's value
// is that prefix's hit count: the program adds one. Every frame passes on, unchanged.

#include <uapi/linux/if_ether.h>
#include <uapi/linux/ip.h>

struct key4 {
    u32 prefixlen;   // how many leading bits of addr count: 24 for 10.1.2.0/24
    u8 addr[4];      // the address, byte by byte as on the wire: 10, 1, 2, 0
};

BPF_LPM_TRIE(prefixes, struct key4, u64, 64);   // prefix -> frames whose source it matched

int xdp_classify(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    struct ethhdr *eth = data;   // every read of the frame is bounds-checked, or the verifier says no
    if ((void *)(eth + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_PASS;

    struct key4 key = {.prefixlen = 32};          // the whole source address: all 32 bits
    __builtin_memcpy(key.addr, &ip->saddr, 4);
    u64 *hits = prefixes.lookup(&key);            // the longest stored prefix that contains it
    if (hits)                                     // NULL: no stored prefix contains it
        __sync_fetch_and_add(hits, 1);
    return XDP_PASS;
}
