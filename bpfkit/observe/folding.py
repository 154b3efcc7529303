"""From sampled stacks to folded text and the tables read off it: `fold(counts, stacks, symbols)`
resolves and merges equal stacks (`main;hot_function;asm_exc_page_fault_[k]`, the text Brendan
Gregg's flamegraph.pl reads), `top_functions` and `callers` answer "where does the time go?".
Pure but for `fold`, which asks `Symbols` (profile.py) for names.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from .profile import KERNEL_MARK, Symbols, addresses, stack_error

def fold(counts: pd.DataFrame, stacks, symbols: Symbols, *, value: str | None = None) -> pd.DataFrame:
    """Every sampled stack with its names, equal stacks merged: columns `stack` (frames root
    first, joined by ";", user frames then kernel frames marked `_[k]`) and `samples`.

    `counts` is the frame of the (pid, user_stack_id, kernel_stack_id) -> count hash; its
    count column is `value` (by default the one column that is not a key field)."""
    keys = ("pid", "user_stack_id", "kernel_stack_id")
    if value is None:
        others = [c for c in counts.columns if c not in keys]
        value = others[0] if len(others) == 1 else "value"
    rows = []
    for user_id, kernel_id, n in zip(counts["user_stack_id"], counts["kernel_stack_id"], counts[value]):
        rows.append((resolve(int(user_id), int(kernel_id), stacks, symbols), int(n)))
    return fold_stacks(rows)


def resolve(user_id: int, kernel_id: int, stacks, symbols: Symbols) -> list[str]:
    """One sample's frames, root first: the user stack (outermost caller first), then the
    kernel stack with each frame marked `_[k]`."""
    frames = []
    if user_id >= 0:
        frames += [symbols.user(a) for a in reversed(addresses(stacks, user_id))]
    elif stack_error(user_id, True):
        frames.append(stack_error(user_id, True))
    if kernel_id >= 0:
        frames += [symbols.kernel(a) + KERNEL_MARK for a in reversed(addresses(stacks, kernel_id))]
    elif stack_error(kernel_id, False):
        frames.append(stack_error(kernel_id, False) + KERNEL_MARK)
    return frames


def fold_stacks(rows: Iterable[tuple[list[str], int]]) -> pd.DataFrame:
    """(frames root first, samples) pairs -> one row per distinct stack, most samples first
    (then by name): columns `stack` and `samples`."""
    merged: dict[str, int] = {}
    for frames, n in rows:
        if not frames or n <= 0:
            continue
        text = ";".join(frames)
        merged[text] = merged.get(text, 0) + int(n)
    frame = pd.DataFrame({"stack": list(merged), "samples": np.array(list(merged.values()), dtype=np.int64)})
    return frame.sort_values(["samples", "stack"], ascending=[False, True], ignore_index=True)


def frames_of(stack: str) -> list[str]:
    return stack.split(";") if stack else []


def is_kernel(frame: str) -> bool:
    return frame.endswith(KERNEL_MARK)


def name_of(frame: str) -> str:
    """A frame's function name, without the kernel mark."""
    return frame[:-len(KERNEL_MARK)] if is_kernel(frame) else frame


def top_functions(folded: pd.DataFrame) -> pd.DataFrame:
    """Samples per function: `self` (it was the innermost frame: the CPU was running its code)
    and `total` (it was anywhere on the stack, counted once per sample); `kernel` says which
    side it is on. Most self samples first."""
    self_n: dict[str, int] = {}
    total_n: dict[str, int] = {}
    for stack, n in zip(folded["stack"], folded["samples"]):
        frames = frames_of(stack)
        if not frames:
            continue
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + int(n)
        for f in set(frames):
            total_n[f] = total_n.get(f, 0) + int(n)
    names = list(total_n)
    frame = pd.DataFrame({
        "function": [name_of(f) for f in names],
        "kernel": [is_kernel(f) for f in names],
        "self": np.array([self_n.get(f, 0) for f in names], dtype=np.int64),
        "total": np.array([total_n[f] for f in names], dtype=np.int64),
    })
    return frame.sort_values(["self", "total", "function"], ascending=[False, False, True],
                             ignore_index=True)


def callers(folded: pd.DataFrame, function: str) -> pd.DataFrame:
    """Who called `function`: for each sample with it on the stack, the frame just below its
    outermost appearance. Columns `caller` and `samples`, most first; a sample in which it is
    the root has the caller "(none)"."""
    found: dict[str, int] = {}
    for stack, n in zip(folded["stack"], folded["samples"]):
        frames = [name_of(f) for f in frames_of(stack)]
        if function in frames:
            i = frames.index(function)
            caller = frames[i - 1] if i > 0 else "(none)"
            found[caller] = found.get(caller, 0) + int(n)
    frame = pd.DataFrame({"caller": list(found), "samples": np.array(list(found.values()), dtype=np.int64)})
    return frame.sort_values(["samples", "caller"], ascending=[False, True], ignore_index=True)
