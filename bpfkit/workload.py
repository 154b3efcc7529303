"""Ways to make the kernel run a lesson's program a known number of times.

A lesson is only convincing when the map's numbers can be checked against what we did, so
these helpers do exactly what they say: `run_as(uid, n)` makes exactly n execve() calls as
that uid (an absolute path, so no PATH search adds failed attempts).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import warnings

TRUE = shutil.which("true") or "/bin/true"


def unused_uid(after: int | None = None) -> int:
    """A uid no account on this machine has, so nothing else runs as it; `after` asks for the
    next such uid above one already in use (for a second and third user)."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    uid = after + 1 if after is not None else 61000 + os.getpid() % 3000
    while uid in taken:
        uid += 1
    return uid


def run_as(uid: int, n: int = 1, argv: list[str] | None = None) -> None:
    """Exactly `n` execve() calls by processes running as `uid` (needs root)."""
    argv = argv or [TRUE]
    for _ in range(n):
        subprocess.run(argv, user=uid, group=uid if uid else None, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/")


def user_name(uid: int) -> str:
    """The account name of `uid`, or the number itself when no account has it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def hammer(uid: int, calls_per_worker: int, workers: int = 2) -> int:
    """Exactly `workers * calls_per_worker` getppid() calls as `uid`, as fast as possible,
    from `workers` processes started together, each pinned to its own CPU (needs root).

    getppid() is the cheapest syscall with a tracepoint (a few million calls a second per
    CPU), so two workers hit the same map entry from two CPUs at once: the load under which
    a lookup-then-update counter loses counts. Returns the number of calls made."""
    cpus = sorted(os.sched_getaffinity(0))
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pids = []
    try:
        for i in range(workers):
            with warnings.catch_warnings():  # fork in a process with threads (a Jupyter kernel)
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the worker: only plain syscalls from here to os._exit
                code = 1
                try:
                    os.close(go_write)
                    os.close(ready_read)
                    os.sched_setaffinity(0, {cpus[i % len(cpus)]})
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                    os.write(ready_write, b"r")
                    os.read(go_read, 1)
                    getppid = os.getppid
                    for _ in range(calls_per_worker):
                        getppid()
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(ready_write)
        ready_write = -1
        for _ in range(workers):  # every worker is pinned and waiting: start them together
            if not os.read(ready_read, 1):
                raise RuntimeError("a hammer worker died before it started")
        os.write(go_write, b"g" * workers)
    finally:
        for fd in (go_read, go_write, ready_read, ready_write):
            if fd >= 0:
                os.close(fd)
        failed = 0
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            failed += os.waitstatus_to_exitcode(status) != 0
    if failed:
        raise RuntimeError(f"{failed} of {workers} hammer workers failed")
    return workers * calls_per_worker


def lost_updates(calls_per_worker: int = 500_000, workers: int = 2) -> dict:
    """How many counts the seed's lookup-then-update loses under load, next to exact counting.

    Loads bpf/counter_race.c (three counters of the same getppid() calls), hammers it from
    `workers` CPUs as a fresh uid, and returns {"generated", "atomic", "increment", "racy",
    "lost"}: "atomic" equals "generated"; "racy" (the seed's way) and "increment" (BCC's
    increment()) fall short, and "lost" is how many the seed's way lost."""
    from .program import load
    uid = unused_uid()
    with load("counter_race") as prog:
        generated = hammer(uid, calls_per_worker, workers)
        counts = {t: prog[f"{t}_table"].get(uid, 0) for t in ("atomic", "increment", "racy")}
    return {"generated": generated, **counts, "lost": generated - counts["racy"]}
