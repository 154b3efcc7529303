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
from .breaking import Break
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
          "bucket, the index is computed in the kernel, and atomic_increment() adds in one step.")
def check_linear_histogram(c: Checker, program, map_name: str = "read_kib", step: int = 1024,
                           config: str = "config") -> None:
    """Lesson 02's exercise: slot i of `map_name` counts reads of i*step .. (i+1)*step-1 bytes,
    and the last slot counts every bigger read too. The check makes its own reads."""
    m = program[map_name]
    watch = program[config]
    c.require(m.type == "array",
              f"`{map_name}` is {m.map_type.a}, not an array. "
              "Which map type has every slot from the moment it is created? The cell 'A hash and an "
              "array, side by side' shows the difference.",
              hint="A histogram of 16 buckets is an array of 16 counters.",
              fix=f"Declare it `BPF_ARRAY({map_name}, u64, 16);`.")
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
    small = EXERCISE_READS[0]
    big = EXERCISE_READS[-1]
    if got == log2:
        c.expect(False, f"The slots still follow log2 buckets: the {small}-byte reads are in slot "
                 f"{log2_bucket(small)}, where 1 KiB steps put them in slot {small // step}. Which slot "
                 f"does a {small}-byte read fall in, and one of 1500 bytes? The exercise's first paragraph "
                 "gives the slots of 1-1023 and 1024-2047 bytes.",
                 hint="In 1 KiB steps the slot is how many whole KiB a read returned: a division of "
                      "`bytes`, not `bpf_log2l()`.",
                 fix=f"`u32 slot = bytes / {step};` (`bytes` is the u64 copy of `args->ret`), then keep the "
                     f"slot inside the array: `if (slot > {n - 1}) slot = {n - 1};`")
    elif sum(got) < len(EXERCISE_READS) and got[:n - 1] == want[:n - 1]:
        lost = sum(want) - sum(got)
        c.expect(False, f"Slots 0 to {n - 2} are right, but the {lost} read(s) of {big} bytes were not "
                 f"counted: slot {n - 1} holds {got[n - 1]}, not {want[n - 1]}. Which index does a "
                 f"{big}-byte read give, and what does 'What to notice' say happens to an index past the "
                 "end?",
                 hint=f"{big} / {step} is {big // step}, past the last slot ({n - 1}); the add finds no "
                      f"slot and counts nothing. Every read of {n - 1} KiB or more belongs in slot {n - 1}.",
                 fix=f"Clamp the slot before the add: `if (slot > {n - 1}) slot = {n - 1};`")
    else:
        c.expect(False, f"After {len(EXERCISE_READS)} reads the non-empty buckets should be {shown}; "
                 f"the map has {({labels[i]: v for i, v in enumerate(got) if v})}. Which slot should a "
                 f"read of 1500 bytes land in, and one of {big}? The exercise's first paragraph gives "
                 "the rule.",
                 hint=f"Slot = whole KiB in the read (a division of `bytes`), and every read of "
                      f"{n - 1} KiB or more in the last slot, {n - 1}.",
                 fix=f"`u32 slot = bytes / {step}; if (slot > {n - 1}) slot = {n - 1};` then "
                     f"`{map_name}.atomic_increment(slot);`")


# Break it: the NULL check of a lookup whose key is a constant. Newer verifiers know that an array
# lookup with a constant key inside the array always finds its slot; older ones refuse any use of
# the pointer before a check. The outcome is this machine's, found by trying.
NO_NULL_CHECK = Break(
    __name__, "Use config's slot without checking the pointer", program="read_histogram",
    old="watched == NULL || ", new="",
    question="What can lookup() return, and what does the verifier know about the key `zero` "
             "and the array's size at that line?",
    hint="An array's slots all exist from the start; a lookup returns NULL only for an index "
         "past the end. Can the verifier tell that `zero` is in bounds?",
    why={"verifier": "This verifier treats every lookup's result as 'a map value or NULL' "
                     "(`map_value_or_null`) and refuses a read through it until a check rules "
                     "NULL out. Newer kernels (Linux 6.14 and later) drop that need for an array "
                     "lookup whose key is a constant inside the array.",
         "loads": "This kernel's verifier sees that the key is the constant 0 and the array has "
                  "a slot 0, so the lookup cannot return NULL and needs no check (Linux 6.14 and "
                  "later). Older kernels refuse the same program: keep the check in code meant "
                  "to load everywhere, and always for hash maps and computed keys."})

# Break it: a signed division. The BPF instruction set had unsigned division only until its v4
# (Linux 6.6, LLVM 18); BCC compiles for an older one, so its compiler refuses.
SIGNED_DIVIDE = Break(
    __name__, "Keep the size signed and divide it", program="read_histogram",
    old="u64 bytes = args->ret;", new="s64 bytes = args->ret / 3;",
    question="Which division instructions does BPF have, and which one does `s64 / 3` need?",
    hint="Lesson 02's program keeps the size in a `u64` for a reason its comment gives.",
    why={"compiler": "BPF had only unsigned division before the instruction set's v4 (Linux 6.6, "
                     "LLVM 18); BCC compiles for an older version, so LLVM refuses a signed divide "
                     "before the kernel sees the program.",
         "loads": "This toolchain compiles for BPF's v4 instruction set (LLVM 18 and later), which "
                  "has a signed division, and the kernel (6.6 or later) runs it.",
         "verifier": "The compiler emitted an instruction this kernel does not know (BPF's v4 "
                     "signed division needs Linux 6.6 or later)."})
