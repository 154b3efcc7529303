// cpumap: an XDP program hands each UDP flow to a CPU, whose own kernel thread takes it from there.
//
// It runs on the port where host p's frames arrive. A UDP frame to port 9000 + flow goes to the
// CPU user space wrote in flow_cpu[flow]; the cpumap queues it for that CPU. All else passes.

#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>

BPF_CPUMAP(cpus, 2);           // cpu -> size of the queue that feeds that CPU's thread
BPF_ARRAY(flow_cpu, u32, 2);   // flow -> the CPU it goes to (user space steers here)
BPF_ARRAY(landed, u64, 2);     // cpu -> frames its cpumap thread took in

int xdp_to_cpu(struct xdp_md *ctx) {
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
    u32 flow = ntohs(udp->dest) - 9000;        // port 9000 -> flow 0, 9001 -> flow 1
    u32 *cpu = flow_cpu.lookup(&flow);         // NULL for any other port
    if (!cpu)
        return XDP_PASS;
    return cpus.redirect_map(*cpu, 0);         // XDP_REDIRECT (XDP_ABORTED: no such CPU entry)
}

// The kernel's cpumap thread of each CPU reports every batch of frames it takes in.
TRACEPOINT_PROBE(xdp, xdp_cpumap_kthread) {
    u32 cpu = bpf_get_smp_processor_id();      // where this runs is where the frames landed
    u64 *n = landed.lookup(&cpu);
    if (n)
        __sync_fetch_and_add(n, args->processed);
    return 0;
}
