"""Lesson 15's exercise (a pid-keyed hash that cleans up after exited processes) and its check.

The check runs children of its own (`children.Child`) that make a known number of
getppid() calls, one of them in a thread that exits while its process goes on, so every count
it expects is exact, and it looks at the hash while the children live and after they exit.
"""
from __future__ import annotations

from ..lab.children import Child
from ..core.errors import BpfkitError
from .checker import Checker, exercise

HINT_EXIT = ("Add a second program, TRACEPOINT_PROBE(sched, sched_process_exit), which runs in the "
             "task that is exiting, and delete that process's key there: by_pid.delete(&pid).")


@exercise("No stale entries in a pid-keyed hash",
          "The hash now forgets a process when it exits, as task storage does by itself; and "
          "because sched_process_exit runs for every thread, only the last one, the thread "
          "group leader, removes the process's entry.")
def check_exit_cleanup(c: Checker, program, map_name: str = "by_pid") -> None:
    """Lesson 15's exercise: `map_name` (pid -> getppid() calls) counts exactly while a
    process runs, keeps its entry when one of its threads exits, and has no entry for it once
    it has exited."""
    try:
        m = program[map_name]
    except BpfkitError:
        c.require(False, f"The program has no map {map_name!r}: keep BPF_HASH({map_name}, u32, u64, "
                  "1024) from the starter.")
    c.require(m.type == "hash", f"{map_name!r} is {m.type}; keep it a BPF_HASH keyed by pid, as in "
              "the starter: this exercise is about cleaning up a hash.")
    first, second = Child(), Child()
    try:
        first.calls(5)
        second.calls(2)
        got = m.get(first.pid)
        c.require(got == 5, f"After 5 getppid() calls, {map_name}[{first.pid}] is {got}, not 5: keep "
                  "the counting part of the starter as it was (by_pid.atomic_increment(pid)).")
        first.calls(3, in_thread=True)        # a thread makes 3 calls, then exits
        got = m.get(first.pid)
        if got is None:
            c.expect(False, "The child's entry vanished when one of its threads exited, although the "
                     "child still runs: sched_process_exit fires for every thread. Delete only when "
                     "the exiting thread is the whole process's leader: the low 32 bits of "
                     "bpf_get_current_pid_tgid() (the thread id) equal the high 32 (the pid).")
        else:
            c.expect(got == 8, f"After 5 calls and 3 more in a thread, {map_name}[{first.pid}] is "
                     f"{got}, not 8: the hash counts per process, whichever thread calls.")
        pid = first.pid
        first.close()
        left = m.get(pid)
        c.expect(left is None, f"The child (pid {pid}) has exited and been reaped, yet {map_name} "
                 f"still holds {pid}: {left}, a stale entry; a new process given pid {pid} would "
                 f"start from {left}. " + HINT_EXIT)
        still = m.get(second.pid)
        c.expect(still == 2, f"Another child (pid {second.pid}) still runs, but {map_name}[{second.pid}] "
                 f"is {still}, not 2: delete only the exiting process's own key.")
    finally:
        first.close()
        second.close()
