// Lesson 14: cgroup storage, a value per cgroup, for the program attached to that cgroup.
//
// count_egress is a cgroup_skb program. Attached to a cgroup at "egress", it runs for every
// packet sent by a socket of that cgroup, and returns 1 to let the packet go (0 would drop it).
//
// BPF_CGROUP_STORAGE(bytes_out, u64): one u64 per (cgroup, attach type) the program is
// attached to, made by the kernel when it is attached, freed when it is detached. There is
// no key to build: get_local_storage(0) (the helper bpf_get_local_storage) returns the value of
// the cgroup the program is running for, and never NULL.
// BPF_PERCPU_CGROUP_STORAGE(packets_out, u64): the same, with one u64 per CPU.

BPF_CGROUP_STORAGE(bytes_out, u64);
BPF_PERCPU_CGROUP_STORAGE(packets_out, u64);

int count_egress(struct __sk_buff *skb) {
    u64 *bytes = (u64 *)bytes_out.get_local_storage(0);   // BCC types it int: cast
    __sync_fetch_and_add(bytes, skb->len);    // shared by all CPUs: add atomically

    u64 *packets = (u64 *)packets_out.get_local_storage(0);
    // This CPU's own copy, yet two senders on this CPU can interleave: the program runs
    // with migration off, not preemption, so a plain += could lose a count. Add atomically.
    __sync_fetch_and_add(packets, 1);
    return 1;
}
