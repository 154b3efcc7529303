// Lesson 01: count execve() calls per user id in a hash map.
//
// BPF_HASH(counter_table) declares a hash map with BCC's defaults: a u64 key, a u64 value and
// room for 10240 entries. The program runs in the kernel each time any process calls execve();
// user space reads the same map by name.

BPF_HASH(counter_table);

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;  // the low 32 bits are the uid
    u64 counter = 0;
    u64 *p;

    p = counter_table.lookup(&uid);   // NULL when this uid has no entry yet
    if (p != 0) {
        counter = *p;
    }
    counter++;
    counter_table.update(&uid, &counter);
    return 0;
}
