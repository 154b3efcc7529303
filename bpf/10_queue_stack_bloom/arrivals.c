// Lesson 10: who came first? Each process that starts a program as the watched
// user leaves its pid in a queue and on a stack. Neither map has keys: values
// go in, and come out in an order (the queue: oldest first; the stack: newest).
BPF_ARRAY(watch, u32, 1);     // watch[0]: the uid to watch, set from Python (0: nobody)
BPF_QUEUE(fifo, u32, 8);      // first in, first out; room for 8 pids
BPF_STACK(lifo, u32, 8);      // last in, first out; room for 8 pids
BPF_ARRAY(refused, u64, 1);   // pushes the full queue refused

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 zero = 0;
    u32 *uid = watch.lookup(&zero);
    if (uid == NULL || *uid == 0 || *uid != (u32)bpf_get_current_uid_gid())
        return 0;
    u32 pid = bpf_get_current_pid_tgid() >> 32;

    if (fifo.push(&pid, 0) != 0)      // flags 0: a full queue refuses (-E2BIG)
        refused.atomic_increment(zero);
    lifo.push(&pid, BPF_EXIST);       // BPF_EXIST: a full stack drops its oldest pid
    return 0;
}
