/* The harness lesson 11's profiled C programs are linked with (profiled_c_program in
 * bpfkit/lessons/l11_stack_traces_profiler.py). Before main() runs it reports "ready" and waits for the go, so the
 * parent can write the child's pid into the profiler's config first; after BPFKIT_CPU_SECONDS of CPU
 * time (ITIMER_PROF), or when main() returns, it reports "done" and waits again, so the parent reads
 * the child's symbols while its memory map is still there. Run by hand (no BPFKIT_CONTROL), it does
 * nothing. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
static int control_in = -1, control_out = -1;
static void bpfkit_finished(int sig) {      /* report "done", then wait for the parent */
    char c;
    (void)sig;
    if (control_out < 0)
        return;
    if (write(control_out, "done\n", 5) != 5) _exit(2);
    control_out = -1;
    while (read(control_in, &c, 1) > 0) {}
    _exit(0);
}
__attribute__((constructor)) static void bpfkit_start(void) {
    const char *fds = getenv("BPFKIT_CONTROL"), *seconds = getenv("BPFKIT_CPU_SECONDS");
    char c;
    if (!fds || !seconds || !strchr(fds, ','))
        return;                               /* run by hand: no harness */
    control_in = atoi(fds);
    control_out = atoi(strchr(fds, ',') + 1);
    signal(SIGPROF, bpfkit_finished);
    if (write(control_out, "ready\n", 6) != 6 || read(control_in, &c, 1) != 1) _exit(2);
    double s = atof(seconds);
    struct itimerval t = {{0, 0}, {(long)s, (long)((s - (long)s) * 1e6)}};
    setitimer(ITIMER_PROF, &t, 0);
}
__attribute__((destructor)) static void bpfkit_end(void) { bpfkit_finished(0); }
