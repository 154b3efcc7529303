// Lesson 18: several UDP sockets share one port (SO_REUSEPORT); a BPF program picks which
// socket of the group gets each datagram.
//
// `slots` is a reuseport_sockarray made in Python (bpfkit.create_map): slot i holds one socket
// of the group. pick_socket (an sk_reuseport program, attached to the group with
// setsockopt(SO_ATTACH_REUSEPORT_EBPF)) runs for every datagram that reaches the port: it reads
// the payload's first byte as a slot number and hands the datagram to that slot's socket.
// count_received (a cgroup_skb program, on the lesson's cgroup) runs as each socket receives a
// datagram, and counts it under the socket's cookie: the kernel's record of who got what.

BPF_ARRAY(picked, u64, 4);          // datagrams handed to each slot's socket
BPF_ARRAY(dropped, u64, 4);         // datagrams for an empty slot: dropped
BPF_HASH(received, u64, u64, 16);   // socket cookie -> datagrams that socket received

int pick_socket(struct sk_reuseport_md *reuse) {
    u8 first;                       // the payload starts after the 8-byte UDP header
    if (bpf_skb_load_bytes(reuse, 8, &first, 1) < 0)
        return SK_PASS;             // no payload: let the kernel choose
    u32 slot = first % 4;
    if (bpf_sk_select_reuseport(reuse, slots, &slot, 0) == 0) {
        picked.atomic_increment(slot);   // atomic: datagrams on several CPUs share a slot
        return SK_PASS;             // deliver to the socket selected
    }
    dropped.atomic_increment(slot); // nothing in that slot
    return SK_DROP;
}

int count_received(struct __sk_buff *skb) {
    u64 cookie = bpf_get_socket_cookie(skb);   // the socket receiving this packet
    received.atomic_increment(cookie);
    return 1;                       // 1: let the packet in
}
