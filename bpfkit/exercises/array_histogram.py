"""Lesson 02 (the array): a child process that reads known sizes, and the exercise's check.

A histogram lesson is only checkable if the reads it counts are exactly the ones we made. A
fresh Python process reads plenty while it starts (its own modules, shared libraries), so the
child here first blocks in sigwait(), which reads nothing; meanwhile user space writes the
child's pid into the program's `config` array; then a signal lets the child make exactly the
reads asked for, and it leaves without cleaning up (os._exit), which reads nothing either.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

from ..errors import BpfkitError
from ..maps.array import linear_labels, log2_bucket
from . import Checker, exercise

_CHILD = r"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
ready, mode, target, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
fd = os.open(target, os.O_RDONLY) if mode == "read" else -1
os.write(ready, b"ready\n")
os.close(ready)
signal.sigwait({signal.SIGUSR1})
if mode == "exec":
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    os.execv(target, [target] + rest)
for n in map(int, rest):
    if len(os.read(fd, n)) != n:
        os._exit(3)
os._exit(0)
"""


def _traced_child(config, mode: str, target: str, args: list[str], timeout: float) -> int:
    """Run the child, watched: config[0] holds its pid from the signal until it has exited."""
    ready_r, ready_w = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ready_w), mode, target, *args],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 pass_fds=(ready_w,), cwd="/")
    finally:
        os.close(ready_w)
    try:
        with os.fdopen(ready_r, "rb") as ready:
            ready_r = -1
            if ready.readline() != b"ready\n":
                child.wait(timeout)
                raise BpfkitError("The helper process ended before it could be watched.",
                                  "run the cell again; if it keeps failing, run "
                                  "`python -m bpfkit doctor`.")
        config[0] = child.pid
        child.send_signal(signal.SIGUSR1)
        code = child.wait(timeout)
    finally:
        config[0] = 0
        if ready_r >= 0:
            os.close(ready_r)
        if child.poll() is None:
            child.kill()
            child.wait()
    if mode == "read" and code != 0:
        raise BpfkitError(f"The helper process failed (exit code {code}) while reading.",
                          "the file was shorter than the reads asked for; this is a bpfkit bug.")
    return child.pid


def reads_in_child(config, sizes: list[int], timeout: float = 30.0) -> int:
    """Make exactly one read() per entry of `sizes`, each returning that many bytes, in a
    child process whose pid is in `config[0]` while it reads. Returns the child's pid."""
    sizes = [int(s) for s in sizes]
    if any(s <= 0 for s in sizes):
        raise ValueError("each read size must be at least 1 byte")
    with tempfile.NamedTemporaryFile(prefix="bpfkit-reads-") as f:
        f.truncate(sum(sizes))  # a sparse file reads as zeros, as fast as any
        f.flush()
        return _traced_child(config, "read", f.name, [str(s) for s in sizes], timeout)


def trace_command(config, argv: list[str], timeout: float = 60.0) -> int:
    """Run command `argv` with its pid in `config[0]` from its very first instruction, so the
    program sees every read it makes (its loader's included). Returns its pid."""
    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if path is None:
        raise BpfkitError(f"No command {argv[0]!r} on this machine.", "pass a program that exists.")
    return _traced_child(config, "exec", path, list(argv[1:]), timeout)


# The exercise: reads of known sizes, and where each must land in 1 KiB steps.
EXERCISE_READS = [100] * 3 + [1500] * 4 + [5000] * 2 + [20000]


@exercise("A linear histogram in 1 KiB steps",
          "Slot = bytes / 1024, clamped into the last slot: the array has one slot per "
          "bucket and the index is computed in the kernel.")
def check_linear_histogram(c: Checker, program, map_name: str = "read_kib", step: int = 1024,
                           config: str = "config") -> None:
    """Lesson 02's exercise: slot i of `map_name` counts reads of i*step .. (i+1)*step-1 bytes,
    and the last slot counts every bigger read too. The check makes its own reads."""
    m = program[map_name]
    watch = program[config]
    c.require(m.type == "array", f"{map_name!r} is a {m.type}; declare it with "
              f"BPF_ARRAY({map_name}, u64, 16).")
    n = m.max_entries
    m.clear()
    reads_in_child(watch, EXERCISE_READS)
    got = [int(x) for x in m.counts()]
    want = [0] * n
    for size in EXERCISE_READS:
        want[min(size // step, n - 1)] += 1
    if got == want:
        return
    labels = linear_labels(n, step, open_end=True)
    shown = {labels[i]: v for i, v in enumerate(want) if v}
    log2 = [0] * n
    for size in EXERCISE_READS:
        if log2_bucket(size) < n:
            log2[log2_bucket(size)] += 1
    if got == log2:
        c.expect(False, "The slots still follow bpf_log2l(): 100-byte reads land in slot 7. Compute "
                 "the slot as bytes / 1024 instead (bytes: the u64 copy of args->ret).")
    elif sum(got) < len(EXERCISE_READS) and got[:n - 1] == want[:n - 1]:
        c.expect(False, f"The {sum(want) - sum(got)} read(s) of {EXERCISE_READS[-1]} bytes were not "
                 f"counted: {EXERCISE_READS[-1]} / {step} is past the last slot ({n - 1}), and "
                 "increment() on an index past the end does nothing. Clamp it: "
                 f"if (slot > {n - 1}) slot = {n - 1};")
    else:
        c.expect(False, f"After {len(EXERCISE_READS)} reads the non-empty buckets should be {shown}; "
                 f"the map has {({labels[i]: v for i, v in enumerate(got) if v})}.")
