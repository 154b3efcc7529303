// Lesson 05: a sockhash holds sockets, and an sk_msg program sends a message straight from one
// local socket to another, past the TCP/IP stack.
//
// sockops_record (a sock_ops program, attached to a cgroup) runs when a TCP connection of a
// process in that cgroup is established, at both ends (the server's end when the handshake's
// last ACK arrives, before any accept()), and stores the socket in sock_hash
// under its 4-tuple. msg_redirect (an sk_msg program, attached to sock_hash) then runs on every
// send() of a socket in sock_hash: it looks up the peer (the same 4-tuple seen from the other
// end) and, when the peer is in the map too, puts the message straight into the peer's receive
// queue. msg_stats counts, per sending socket, messages, bytes, and how many were redirected.
//
// Byte order in struct sock_key: the addresses stay in network byte order, as the kernel gives
// them (the four bytes in wire order); the ports are host byte order, so they read as numbers.
// The kernel gives local_port in host order, but remote_port in network order in the upper
// half of a u32: bpf_ntohl() turns it into the plain number.

struct sock_key {
    u32 local_ip4;     // network byte order
    u32 remote_ip4;    // network byte order
    u32 local_port;    // host byte order
    u32 remote_port;   // host byte order
};

struct msg_stats_t {
    u64 messages;      // send() calls seen
    u64 bytes;
    u64 redirected;    // of those, sent straight to the peer socket
};

// BPF_SOCKHASH(sock_hash, struct sock_key, 64) would do, except that BCC gives the map a 4-byte
// value, and the kernel shows user space each socket as its 8-byte cookie only if the value is
// 8 bytes wide. This macro declares the same map as BCC does, with a u64 value.
#define BPF_SOCKHASH_U64(_name, _key_type, _max_entries) \
struct _name##_table_t { \
  _key_type key; \
  u64 leaf; \
  int (*sock_hash_update) (void *, void *, u64); \
  int (*msg_redirect_hash) (void *, void *, u64); \
  u32 max_entries; \
}; \
__attribute__((section("maps/sockhash"))) \
struct _name##_table_t _name = { .max_entries = (_max_entries) }; \
BPF_ANNOTATE_KV_PAIR(_name, _key_type, u64)

BPF_SOCKHASH_U64(sock_hash, struct sock_key, 64);
BPF_HASH(msg_stats, struct sock_key, struct msg_stats_t, 64);

int sockops_record(struct bpf_sock_ops *skops) {
    u32 op = skops->op;
    if (op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&   // the server's end: handshake done
        op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)      // the client's end: handshake done
        return 0;
    if (skops->family != 2)                            // AF_INET: IPv4 only, for brevity
        return 0;

    struct sock_key key = {};
    key.local_ip4 = skops->local_ip4;
    key.remote_ip4 = skops->remote_ip4;
    key.local_port = skops->local_port;
    key.remote_port = bpf_ntohl(skops->remote_port);
    sock_hash.sock_hash_update(skops, &key, BPF_NOEXIST);
    return 0;
}

int msg_redirect(struct sk_msg_md *msg) {
    if (msg->family != 2)
        return SK_PASS;

    struct sock_key me = {}, peer = {};
    me.local_ip4 = msg->local_ip4;
    me.remote_ip4 = msg->remote_ip4;
    me.local_port = msg->local_port;
    me.remote_port = bpf_ntohl(msg->remote_port);
    peer.local_ip4 = me.remote_ip4;                   // the other end's key: swap the sides
    peer.remote_ip4 = me.local_ip4;
    peer.local_port = me.remote_port;
    peer.remote_port = me.local_port;

    // SK_PASS when the peer is in sock_hash: the message then skips TCP/IP and lands in the
    // peer's receive queue (BPF_F_INGRESS). Otherwise nothing changes.
    long redirected = sock_hash.msg_redirect_hash(msg, &peer, BPF_F_INGRESS) == SK_PASS;

    struct msg_stats_t zero = {};
    struct msg_stats_t *stats = msg_stats.lookup_or_try_init(&me, &zero);
    if (stats) {
        __sync_fetch_and_add(&stats->messages, 1);
        __sync_fetch_and_add(&stats->bytes, msg->size);
        __sync_fetch_and_add(&stats->redirected, redirected);
    }
    return SK_PASS;   // deliver: to the peer if the redirect was set, else the normal way
}
