// Lesson 03: the program array and tail calls.
//
// BPF_PROG_ARRAY(name, n) declares n slots that hold BPF programs. `handlers.call(ctx, i)` is a
// tail call: it jumps into the program in slot i, which runs in place of the caller and
// returns to the kernel itself; the caller's later code never runs. If slot i is empty the call
// does nothing and the caller carries on: it "falls through".
//
// The dispatcher runs on every execve(). User space fills `route` (uid -> slot) for the users it
// cares about; each handler counts the events it got in `hits` (one slot per handler). Programs
// on two CPUs can add to one slot at once, so every add is atomic_increment(): one step.

BPF_PROG_ARRAY(handlers, 4);
BPF_HASH(route, u32, u32, 64);          // uid -> slot of `handlers`
BPF_ARRAY(hits, u64, 4);                // hits[k]: events handled by handler k
BPF_ARRAY(fell_through, u64, 1);        // events whose slot was empty

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 uid = bpf_get_current_uid_gid();   // the low 32 bits are the uid
    u32 *slot = route.lookup(&uid);
    if (slot == NULL)
        return 0;                          // not a user the notebook routes

    handlers.call(args, *slot);            // on success, never comes back here
    fell_through.atomic_increment(0);      // reached only when the slot is empty
    return 0;
}

// The handlers: plain functions, loaded by user space as programs of the dispatcher's type
// (tracepoint) and put into slots. They receive the dispatcher's context.
int count_a(void *ctx) {
    hits.atomic_increment(0);
    return 0;
}

int count_b(void *ctx) {
    hits.atomic_increment(1);
    return 0;
}
