// Lesson 05's sockhash redirect (sockmap_redirect.c) as libbpf C: what BCC wrote for us.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2   // vmlinux.h has the kernel's types and enums, not its #defines

struct sock_key {
    u32 local_ip4;     // network byte order
    u32 remote_ip4;    // network byte order
    u32 local_port;    // host byte order
    u32 remote_port;   // host byte order
};

struct msg_stats_t {
    u64 messages;
    u64 bytes;
    u64 redirected;
};

// BPF_SOCKHASH with a u64 value (the lesson's macro): here the value's size is just a type.
struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, 64);
    __type(key, struct sock_key);
    __type(value, u64);
} sock_hash SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, struct sock_key);
    __type(value, struct msg_stats_t);
} msg_stats SEC(".maps");

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

// BCC loaded each function with the type user space named; the section names the type here.
// Neither attaches by its section: a sock_ops program needs a cgroup, an sk_msg one a map.
SEC("sockops")
int sockops_record(struct bpf_sock_ops *skops) {
    u32 op = skops->op;
    if (op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
        op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
        return 0;
    if (skops->family != AF_INET)
        return 0;

    struct sock_key key = {};
    key.local_ip4 = skops->local_ip4;
    key.remote_ip4 = skops->remote_ip4;
    key.local_port = skops->local_port;
    key.remote_port = bpf_ntohl(skops->remote_port);
    // BCC: sock_hash.sock_hash_update(skops, &key, BPF_NOEXIST)
    bpf_sock_hash_update(skops, &sock_hash, &key, BPF_NOEXIST);
    return 0;
}

SEC("sk_msg")
int msg_redirect(struct sk_msg_md *msg) {
    if (msg->family != AF_INET)
        return SK_PASS;

    struct sock_key me = {}, peer = {};
    me.local_ip4 = msg->local_ip4;
    me.remote_ip4 = msg->remote_ip4;
    me.local_port = msg->local_port;
    me.remote_port = bpf_ntohl(msg->remote_port);
    peer.local_ip4 = me.remote_ip4;
    peer.remote_ip4 = me.local_ip4;
    peer.local_port = me.remote_port;
    peer.remote_port = me.local_port;

    // BCC: sock_hash.msg_redirect_hash(msg, &peer, BPF_F_INGRESS)
    long redirected = bpf_msg_redirect_hash(msg, &sock_hash, &peer, BPF_F_INGRESS) == SK_PASS;

    struct msg_stats_t zero = {};
    struct msg_stats_t *stats = lookup_or_try_init(&msg_stats, &me, &zero);
    if (stats) {
        __sync_fetch_and_add(&stats->messages, 1);
        __sync_fetch_and_add(&stats->bytes, msg->size);
        __sync_fetch_and_add(&stats->redirected, redirected);
    }
    return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
