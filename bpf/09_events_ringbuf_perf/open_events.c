// Every openat() of one process, sent to user space twice: through one ring buffer
// shared by all CPUs, and through a perf buffer per CPU.
struct event {
    u64 ts;            // when: ns since boot, bpf_ktime_get_ns()
    u32 pid;           // who
    u32 cpu;           // which CPU ran the call
    char file[64];     // the path the process passed, copied from its memory
};

BPF_ARRAY(config, u32, 1);          // config[0]: the pid to watch, written from Python
BPF_RINGBUF_OUTPUT(ring_buf, 1);    // one ring buffer for all CPUs: 1 page, 4096 bytes
BPF_PERF_OUTPUT(perf_buf);          // a perf buffer per CPU; the reader picks their size
BPF_ARRAY(ring_dropped, u64, 1);    // events the ring buffer had no room for

TRACEPOINT_PROBE(syscalls, sys_enter_openat) {
    u32 zero = 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u32 *watched = config.lookup(&zero);
    if (watched == NULL || *watched != pid)
        return 0;

    struct event e = {};
    e.ts = bpf_ktime_get_ns();
    e.pid = pid;
    e.cpu = bpf_get_smp_processor_id();
    bpf_probe_read_user_str(e.file, sizeof(e.file), args->filename);

    perf_buf.perf_submit(args, &e, sizeof(e));            // a copy into this CPU's perf buffer
    if (ring_buf.ringbuf_output(&e, sizeof(e), 0) != 0) {  // a copy into the ring buffer;
        u64 *dropped = ring_dropped.lookup(&zero);        // when it is full the kernel does
        if (dropped)                                      // not count the loss: we do
            __sync_fetch_and_add(dropped, 1);
    }
    return 0;
}
