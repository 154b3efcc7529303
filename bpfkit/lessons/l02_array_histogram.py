"""Lesson 02's exercise (a linear histogram of read sizes) and its check.

The check makes its own reads, of known sizes, in a child process the program watches
(`reads_in_child`), so the counts it expects are exact. The lesson uses the same helpers.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from ..lab.children import Child
from ..core.errors import NotFound, UsageError
from ..maps.buckets import linear_labels, log2_bucket
from .checker import Checker, exercise


def reads_in_child(config, sizes: list[int], timeout: float = 30.0) -> int:
    """Make exactly one read() per entry of `sizes`, each returning that many bytes, in a
    child process whose pid is in `config[0]` while it reads. Returns the child's pid."""
    sizes = [int(s) for s in sizes]
    if any(s <= 0 for s in sizes):
        raise UsageError(f"Each read size is at least 1 byte; the sizes were {sizes}.",
                         "give sizes like [100, 4096].")
    with tempfile.NamedTemporaryFile(prefix="bpfkit-reads-") as f, \
            Child(watch=config, timeout=timeout) as child:
        f.truncate(sum(sizes))  # a sparse file reads as zeros, as fast as any
        f.flush()
        child.read(f.name, sizes)
        return child.pid


def trace_command(config, argv: list[str], timeout: float = 60.0) -> int:
    """Run command `argv` with its pid in `config[0]` from its very first instruction, so the
    program sees every read it makes (its loader's included). Returns its pid."""
    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if path is None:
        raise NotFound(f"No command {argv[0]!r} on this machine.", "pass a program that exists.")
    with Child(watch=config, timeout=timeout) as child:
        child.exec([path, *argv[1:]])
        return child.pid


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
