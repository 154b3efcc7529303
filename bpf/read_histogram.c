// Lesson 02: the array map. A log2 histogram of how many bytes read() returns.
//
// BPF_ARRAY(name, value_type, n) declares n slots, indexed 0..n-1 by a u32. The kernel makes all
// n slots when it creates the map, each zeroed, so there is nothing to insert and nothing to
// delete: a program just adds to slot i. That is what a histogram needs.
//
// Two arrays here:
//   config      1 slot, written by user space: the process (tgid) to watch, 0 for none.
//   read_sizes  32 slots: slot i counts the reads that returned i-bit sizes (64-127 bytes: slot 7).

BPF_ARRAY(config, u32, 1);
BPF_ARRAY(read_sizes, u64, 32);

TRACEPOINT_PROBE(syscalls, sys_exit_read) {
    if (args->ret <= 0)                 // an error or end of file: no bytes to count
        return 0;

    u32 zero = 0;
    u32 *watched = config.lookup(&zero);   // a pointer, or NULL for an index past the end
    if (watched == NULL || *watched != bpf_get_current_pid_tgid() >> 32)
        return 0;                          // not the process user space asked about

    u64 bytes = args->ret;      // unsigned from here on: divide unsigned values only

    // bpf_log2l(n) is the number of bits n needs: 100 -> 7, 5000 -> 13. Slot i therefore
    // holds sizes 2^(i-1) .. 2^i - 1, BCC's usual log2 buckets. Two threads of the process can
    // read on two CPUs at once: atomic_increment() adds one in a single step, losing none.
    read_sizes.atomic_increment(bpf_log2l(bytes));
    return 0;
}
