// Lesson 15: socket storage. Packets and bytes each socket sends, kept on the socket itself.
//
// count_sent is a cgroup_skb program: attached at "egress" to a cgroup, it sees every packet
// a socket of a process in that cgroup sends. BPF_SK_STORAGE(sent, type) gives each socket one
// value of `type`; sk_storage_get(sk, 0, F_CREATE) finds this socket's, zeroed on first use.
// There is no key to build (no addresses, no ports) and nothing to delete: the kernel frees
// the value when the socket is closed.

struct sent_t {
    u64 packets;
    u64 bytes;         // whole IP packets: payload + IP and UDP headers
};

BPF_SK_STORAGE(sent, struct sent_t);

int count_sent(struct __sk_buff *skb) {
    struct bpf_sock *sk = skb->sk;
    if (sk)
        sk = bpf_sk_fullsock(sk);        // a full socket, not a request or time-wait one
    if (!sk)
        return 1;                        // 1: let the packet go; 0 would drop it

    struct sent_t *s = sent.sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (s) {
        __sync_fetch_and_add(&s->packets, 1);
        __sync_fetch_and_add(&s->bytes, skb->len);
    }
    return 1;
}
