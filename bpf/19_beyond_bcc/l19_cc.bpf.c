// A TCP congestion control written in BPF: a tiny Reno, "bpfkit_l19". The kernel
// calls these functions for each socket that chose it; cong_avoid runs once per
// ACK and records the window it leaves (in packets) into `samples`.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct cwnd_sample { __u64 ns; __u32 cwnd; __u32 acked; };
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4096);
    __type(key, __u32);
    __type(value, struct cwnd_sample);
} samples SEC(".maps");
__u32 taken;                                      // samples written so far

SEC("struct_ops/l19_init")
void BPF_PROG(l19_init, struct sock *sk) {
    ((struct tcp_sock *)sk)->snd_ssthresh = 32;   // slow start ends at 32 packets
}

SEC("struct_ops/l19_cong_avoid")
void BPF_PROG(l19_cong_avoid, struct sock *sk, __u32 ack, __u32 acked) {
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    if (tp->snd_cwnd < tp->snd_ssthresh)
        tp->snd_cwnd += acked;                    // slow start: +1 per packet acked
    else if (++tp->snd_cwnd_cnt >= tp->snd_cwnd) {
        tp->snd_cwnd_cnt = 0;                     // congestion avoidance:
        tp->snd_cwnd += 1;                        //   +1 after cwnd ACKs
    }
    __u32 i = __sync_fetch_and_add(&taken, 1);
    struct cwnd_sample s = { bpf_ktime_get_ns(), tp->snd_cwnd, acked };
    bpf_map_update_elem(&samples, &i, &s, BPF_ANY);   // past the end: not stored
}

SEC("struct_ops/l19_ssthresh")                    // after a loss: half the window
__u32 BPF_PROG(l19_ssthresh, struct sock *sk) { return ((struct tcp_sock *)sk)->snd_cwnd / 2 + 1; }
SEC("struct_ops/l19_undo_cwnd")                   // a false alarm: keep the window
__u32 BPF_PROG(l19_undo_cwnd, struct sock *sk) { return ((struct tcp_sock *)sk)->snd_cwnd; }

SEC(".struct_ops")                                // the ops table the kernel registers
struct tcp_congestion_ops l19 = {
    .init = (void *)l19_init, .cong_avoid = (void *)l19_cong_avoid,
    .ssthresh = (void *)l19_ssthresh, .undo_cwnd = (void *)l19_undo_cwnd,
    .name = "bpfkit_l19",
};
char LICENSE[] SEC("license") = "GPL";
