// Lesson 18, part 2: a plain sockmap holds sockets by slot number, and an sk_msg program
// sends each message to the socket in the slot the message names.
//
// `socks` is a sockmap made in Python (bpfkit.create_map, with a u64 value so that reads show
// cookies): slot i holds one connected TCP socket. steer_msg (an sk_msg program, attached to
// `socks`) runs on every send() of a socket in the map: it reads the message's first byte as
// a slot number and puts the message straight into that slot's socket's receive queue.

BPF_ARRAY(sent_to, u64, 4);         // messages redirected to each slot

int steer_msg(struct sk_msg_md *msg) {
    void *data = (void *)(long)msg->data;
    void *end = (void *)(long)msg->data_end;
    if (data + 1 > end)             // the verifier wants the first byte inside the message
        return SK_PASS;
    u32 slot = *(u8 *)data;
    // SK_PASS when that slot holds a socket: the message goes to its receive queue
    // (BPF_F_INGRESS). For an empty slot nothing changes: TCP carries it to the peer.
    if (bpf_msg_redirect_map(msg, socks, slot, BPF_F_INGRESS) == SK_PASS)
        sent_to.atomic_increment(slot);   // atomic, as in lesson 01
    return SK_PASS;
}
