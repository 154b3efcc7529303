"""Lesson 15's exercise (a pid-keyed hash that cleans up after exited processes) and its check.

The check runs children of its own that make a known number of getppid() calls: one
(`children.Child`) makes some in a thread that exits while its process goes on; another
(`leader_first_run`) is a process whose main thread, the thread group leader, exits first while
another thread goes on calling. Every count it expects is exact, and it looks at the hash while
the children live and after they have exited and been reaped.
"""
from __future__ import annotations

import platform
import subprocess

from ..core import waiting
from ..core.errors import BpfkitError
from ..lab.children import Child, _PYTHON
from ..maps.btf import vmlinux_field_offset
from .checker import Checker, exercise

LEADER_CALLS, THREAD_CALLS = 4, 3     # the leader-first process: calls before and after its leader exits

# A process whose main thread makes LEADER_CALLS getppid() calls and then ends alone, with the
# raw exit(2) system call (not exit_group(2)): its other thread runs on, makes THREAD_CALLS calls
# when told, and ends the process when told again. It says "ready" once its thread has started.
# Python has no call for exit(2), so this child (not bpfkit's process) reaches libc's syscall().
_LEADER_FIRST = r"""
import ctypes, os, sys, threading
SYS_EXIT = {"x86_64": 60, "aarch64": 93}[sys.argv[1]]
started = threading.Event()

def thread():
    started.set()
    os.read(0, 1)                      # the leader has exited
    for _ in range(%d):
        os.getppid()
    os.write(1, b"called\n")
    os.read(0, 1)
    os._exit(0)                        # the process ends with this, its last thread

threading.Thread(target=thread).start()
started.wait()
for _ in range(%d):
    os.getppid()
os.write(1, b"ready\n")
ctypes.CDLL(None).syscall(SYS_EXIT, 0)  # the leader alone (the GIL let go first)
""" % (THREAD_CALLS, LEADER_CALLS)


def exit_field_offsets() -> str:
    """The clang flags the exercise's exit program needs: where task_struct.signal and
    signal_struct.live are in the running kernel, e.g. "-DTASK_SIGNAL=1848 -DSIGNAL_LIVE=4"."""
    return (f"-DTASK_SIGNAL={vmlinux_field_offset('task_struct', 'signal')} "
            f"-DSIGNAL_LIVE={vmlinux_field_offset('signal_struct', 'live')}")


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except OSError:
        return "gone"


def leader_first_run(m) -> dict:
    """Run the leader-first process once; what `m` (pid -> calls) held for it after its leader
    exited, while its other thread had made its calls, and after it was reaped."""
    seen = {}
    proc = subprocess.Popen([_PYTHON, "-I", "-S", "-c", _LEADER_FIRST, platform.machine()], cwd="/",
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        if proc.stdout.readline() != b"ready\n":
            raise BpfkitError("The check's leader-first process ended before it was ready.")
        # the leader is a zombie while its thread runs on: state Z
        waiting.until(lambda: _state(proc.pid) == "Z", 5.0)
        seen["after the leader exited"] = m.get(proc.pid)
        proc.stdin.write(b"g")
        proc.stdin.flush()
        proc.stdout.readline()
        seen["after the other thread's calls"] = m.get(proc.pid)
        proc.stdin.write(b"g")
        proc.stdin.flush()
        proc.wait(10)
        seen["after it was reaped"] = m.get(proc.pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdin.close()
        proc.stdout.close()
    seen["pid"] = proc.pid
    return seen


FIX_EXIT = ("Add to the `%%bpf exit_cleanup {offsets}` cell: `TRACEPOINT_PROBE(sched, sched_process_exit) { "
            "void *task = bpf_get_current_task_btf(); void *signal = *(void **)(task + TASK_SIGNAL); "
            "if (*(int *)(signal + SIGNAL_LIVE) != 0) return 0; u32 pid = bpf_get_current_pid_tgid() >> 32; "
            "by_pid.delete(&pid); return 0; }`")


@exercise("No stale entries in a pid-keyed hash",
          "The hash now forgets a process when it exits, as task storage does by itself; and "
          "because sched_process_exit runs for every thread, in any order, only the task that "
          "finds no thread of its process still live removes the entry.")
def check_exit_cleanup(c: Checker, program, map_name: str = "by_pid") -> None:
    """Lesson 15's exercise: `map_name` (pid -> getppid() calls) counts exactly while a
    process runs, keeps its entry when one of its threads exits (the leader included, when it
    is not the last), and has no entry for it once it has exited."""
    m = _the_hash(c, program, map_name)
    _check_children(c, m, map_name)
    if not c.result.found:
        _check_leader_first(c, m, map_name)


def _the_hash(c: Checker, program, map_name: str):
    try:
        m = program[map_name]
    except BpfkitError:
        c.require(False, f"The program has no map `{map_name}`; the starter declares one. Did the "
                  "`%%bpf exit_cleanup` cell lose or rename it?",
                  hint=f"Keep the starter's `BPF_HASH` named `{map_name}`: the check reads it.",
                  fix=f"BPF_HASH({map_name}, u32, u64, 1024); as in the starter.")
    c.require(m.type == "hash",
              f"`{map_name}` is a {m.type} map, not a hash; this exercise is about cleaning up a hash "
              "keyed by pid. Which line of the starter declared it?",
              hint=f"Keep `{map_name}` the `BPF_HASH` the starter declares.",
              fix=f"BPF_HASH({map_name}, u32, u64, 1024);")
    return m


def _check_children(c: Checker, m, map_name: str) -> None:
    """A child whose thread exits while it runs on, then exits; another that lives on."""
    first, second = Child(), Child()
    try:
        first.calls(5)
        second.calls(2)
        got = m.get(first.pid)
        c.require(got == 5,
                  f"After 5 getppid() calls of child {first.pid}, `{map_name}` holds {got}, not 5; "
                  "the starter's getppid() program counted them right. What changed in it?",
                  hint="Keep the starter's `TRACEPOINT_PROBE(syscalls, sys_enter_getppid)` as it was.",
                  fix="In the getppid() program: `u32 pid = bpf_get_current_pid_tgid() >> 32; "
                      "by_pid.atomic_increment(pid);`")
        first.calls(3, in_thread=True)        # a thread makes 3 calls, then exits
        got = m.get(first.pid)
        if got is None:
            c.expect(False,
                     f"A thread of child {first.pid} exited while the child ran on, and its entry "
                     "vanished (expected: 8 calls). For which tasks does `sched_process_exit` run? "
                     "Step 2 of the exercise asks how to tell the last one.",
                     hint="Delete only when no thread of the process is still live: the exiting "
                          "task's `signal->live` is then 0.",
                     fix=FIX_EXIT)
        else:
            c.expect(got == 8,
                     f"After 5 calls and 3 more in a thread, `{map_name}` holds {got} for child "
                     f"{first.pid}, not 8; whose calls does a hash keyed by pid add up?",
                     hint="Every thread of a process has the same pid (its thread group id).",
                     fix="Keep the starter's counting: `by_pid.atomic_increment(pid)` with the pid "
                         "from `bpf_get_current_pid_tgid() >> 32`.")
        pid = first.pid
        first.close()
        left = m.get(pid)
        c.expect(left is None,
                 f"Child {pid} has exited and been reaped, yet `{map_name}` still holds it: {left} "
                 f"calls, a stale entry (a new process given pid {pid} would start from {left}). "
                 "What runs in the kernel as a task exits? Step 2 of the exercise names it.",
                 hint="A second program at the tracepoint `sched:sched_process_exit` runs in each "
                      "exiting task: delete the process's key there, once no thread of it is live.",
                 fix=FIX_EXIT)
        still = m.get(second.pid)
        c.expect(still == 2,
                 f"Child {second.pid} still runs, but `{map_name}` holds {still} for it, not 2; "
                 "whose key should an exiting task delete?",
                 hint="The exiting task's own pid: the high 32 bits of `bpf_get_current_pid_tgid()`.",
                 fix="`u32 pid = bpf_get_current_pid_tgid() >> 32; by_pid.delete(&pid);`")
    finally:
        first.close()
        second.close()


def _check_leader_first(c: Checker, m, map_name: str) -> None:
    """A process whose thread group leader exits before its other thread."""
    seen = leader_first_run(m)
    want = LEADER_CALLS + THREAD_CALLS
    during = seen["after the other thread's calls"]
    c.expect(during == want,
             f"A process (pid {seen['pid']}) whose main thread exited first, its other thread calling "
             f"on: `{map_name}` held {seen['after the leader exited']} after the leader's exit and "
             f"{during} after the thread's {THREAD_CALLS} calls, not {want}. Is the thread group "
             "leader always the last task of its process to exit? Step 2 of the exercise says.",
             hint="Threads can outlive the leader. Test whether the whole process is gone: the "
                  "exiting task's `signal->live` (threads not yet exiting) is 0.",
             fix=FIX_EXIT)
    c.expect(seen["after it was reaped"] is None,
             f"The process whose main thread exited first (pid {seen['pid']}) has been reaped, yet "
             f"`{map_name}` still holds it: {seen['after it was reaped']} calls. Which of its tasks "
             "exited last, and did your program delete the entry then?",
             hint="The last task to exit was not the leader. Delete when `signal->live` is 0, "
                  "whichever thread it is.",
             fix=FIX_EXIT)
