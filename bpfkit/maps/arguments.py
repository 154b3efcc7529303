"""The whole-number arguments of map calls, checked before ctypes sees them.

ctypes turns a Python int into a C one by cutting off the high bits, without a word:
`max_entries=2**32` reaches the kernel as 0 and `flags=-1` as every flag at once, and the
kernel's answer (EINVAL, or worse, a map unlike the one asked for) then names a number the
learner never wrote. So each argument is checked against its C type here, and a wrong one is
refused naming the argument, the number and the range the kernel takes.
"""
from __future__ import annotations

import numpy as np

from ..core.errors import UsageError

U32 = (0, (1 << 32) - 1)
U64 = (0, (1 << 64) - 1)

# The update flags of one entry (BPF_ANY, BPF_NOEXIST, BPF_EXIST), and BPF_F_LOCK beside them.
BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK = 0, 1, 2, 4
_UPDATE_NAMES = {BPF_ANY: "BPF_ANY", BPF_NOEXIST: "BPF_NOEXIST", BPF_EXIST: "BPF_EXIST"}


def whole(value, name: str, call: str, bounds: tuple = U32, hint: str = "") -> int:
    """`value` as a Python int if it is a whole number within `bounds` (a C type's range),
    else the learner's error naming `name=` of `call`."""
    lo, hi = bounds
    c_type = f"{'u32' if hi == U32[1] else 'u64' if hi == U64[1] else 'number'}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"{call} takes a whole number as {name}=, not {type(value).__name__} "
                         f"{value!r}.", hint or f"pass {name}= as an int from {lo} to {hi}.")
    if not lo <= int(value) <= hi:
        raise UsageError(f"{name}={value} is out of range for {call}: the kernel takes it as a "
                         f"{c_type}, {lo} to {hi}, and a larger number would reach it cut to "
                         f"{int(value) & hi} without a word.",
                         hint or f"pass {name}= from {lo} to {hi}.")
    return int(value)


def update_flags(flags, call: str = "update()") -> int:
    """An update's flags: BPF_ANY (0), BPF_NOEXIST (1) or BPF_EXIST (2), with BPF_F_LOCK (4)
    for a value holding a bpf_spin_lock. Any other bit the kernel refuses with a bare EINVAL,
    which reads as a key or value that does not fit."""
    flags = whole(flags, "flags", call, U64,
                  "pass flags=0 (BPF_ANY: add or replace), 1 (BPF_NOEXIST: add only) or 2 "
                  "(BPF_EXIST: replace only).")
    if (flags & ~BPF_F_LOCK) not in _UPDATE_NAMES:
        raise UsageError(f"flags={flags} is not an update flag of {call}: the kernel takes "
                         "BPF_ANY (0), BPF_NOEXIST (1) or BPF_EXIST (2), plus BPF_F_LOCK (4) for a "
                         "value with a bpf_spin_lock.",
                         "pass flags=0 (add or replace), 1 (add only) or 2 (replace only).")
    return flags
