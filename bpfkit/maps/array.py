"""Arrays (`BPF_ARRAY`, `BPF_PERCPU_ARRAY`): a fixed row of slots indexed 0..max_entries-1.

An array has no keys to store: the kernel allocates every slot, zeroed, when the map is made,
and a slot can be changed but never removed. So its frame is indexed by position (`index`,
not `key`), and it is the natural shape for a histogram: the BPF program computes a bucket
number and adds one to that slot. `histogram()` turns such an array into a frame with bucket
ranges a learner can read, in the two layouts lessons use: log2 buckets (BCC's `bpf_log2l`) and
linear steps.
"""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd

from ..errors import MapError
from . import family, layout
from .map import Map


def log2_bucket(size: int) -> int:
    """The slot `bpf_log2l(size)` picks: the number of bits `size` needs (0 for 0, 7 for 100).

    Python's own spelling of BCC's helper, so a lesson can predict the kernel's bucket."""
    return max(int(size), 0).bit_length()


def log2_range(bucket: int) -> tuple[int, int]:
    """(lowest, highest) size that lands in log2 `bucket`: bucket 7 holds 64..127."""
    if bucket <= 0:
        return 0, 0
    return 1 << (bucket - 1), (1 << bucket) - 1


def log2_labels(n: int) -> list[str]:
    """Labels of log2 buckets 0..n-1: "0", "1", "2-3", "4-7", ... "64-127"."""
    labels = []
    for bucket in range(n):
        low, high = log2_range(bucket)
        labels.append(str(low) if low == high else f"{low}-{high}")
    return labels


def linear_labels(n: int, step: int, open_end: bool = False) -> list[str]:
    """Labels of n linear buckets of width `step`: "0-1023", "1024-2047", ...; with
    `open_end` the last one reads "15360+" because the program clamps big values into it."""
    labels = [f"{i * step}-{(i + 1) * step - 1}" for i in range(n)]
    if open_end and n:
        labels[-1] = f"{(n - 1) * step}+"
    return labels


def _frame_options() -> set[str]:
    """The keyword-only options of Map.frame (layouts, read method): passed through, while
    every other keyword renames a column."""
    return {p.name for p in inspect.signature(Map.frame).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


@family.register("array", "percpu_array")
class Array(Map):
    """A BPF array: every index from 0 to max_entries-1 always exists."""

    def frame(self, columns=None, *, per_cpu: str = "long", method: str = "auto",
              **names) -> pd.DataFrame:
        """Every slot now, one row each (per CPU for a per-CPU array), in index order.

        The key column is called `index`: an array's key is a position, not a stored key.
        Renaming works as for any map: `frame(index="bucket", value="count")`.
        """
        frame = super().frame(per_cpu=per_cpu, method=method)  # see Map.frame
        if "key" in frame.columns and "index" not in frame.columns:
            frame = frame.rename(columns={"key": "index"})
        return layout.rename(frame, columns, **names) if (columns is not None or names) else frame

    def _fail(self, op: str, err: int, key=None):
        if err == 7:  # E2BIG: the kernel's answer for an index past the end
            raise MapError(f"Map {self.name!r} has slots 0..{self.max_entries - 1}; index {key!r} "
                           "is past the end.",
                           "an array's size is fixed when it is made: use an index below "
                           f"{self.max_entries}, or declare more slots in C and load again.")
        super()._fail(op, err, key)

    def counts(self, value: str | None = None) -> np.ndarray:
        """One number per slot, in index order (a per-CPU array's CPUs added up).

        `value` names the field to use when the value is a struct."""
        frame = self.frame()
        columns = [c for c in frame.columns if c not in ("index", "cpu")]
        if value is None:
            if len(columns) != 1:
                raise MapError(f"Map {self.name!r} holds a struct ({', '.join(columns)}), so it is "
                               "not clear which field to count.",
                               f"name it: histogram(value={columns[0]!r}).")
            value = columns[0]
        elif value not in columns:
            raise MapError(f"Map {self.name!r} has no value field {value!r}.",
                           f"its fields are {columns}.")
        out = np.zeros(self.max_entries, dtype=np.int64)
        np.add.at(out, frame["index"].to_numpy(dtype=np.int64), frame[value].to_numpy(dtype=np.int64))
        return out

    def histogram(self, step: int | None = None, *, open_end: bool = False, trim: bool = False,
                  value: str | None = None) -> pd.DataFrame:
        """The array read as a histogram: columns bucket, low, high, range, count.

        By default slot i is a log2 bucket as `bpf_log2l()` fills it (slot 7: 64-127).
        With `step=1024` slot i holds i*step .. (i+1)*step-1 instead; `open_end=True` says the
        program clamps every bigger value into the last slot. `trim=True` drops the empty
        buckets before the first and after the last non-empty one (handy for plotting).
        """
        counts = self.counts(value)
        n = len(counts)
        buckets = np.arange(n)
        if step is None:
            bounds = [log2_range(b) for b in buckets]
            low = [lo for lo, _ in bounds]
            high = [hi for _, hi in bounds]
            labels = log2_labels(n)
        else:
            if step <= 0:
                raise ValueError("step must be a positive number of units per bucket")
            low = [int(b) * step for b in buckets]
            high = [(int(b) + 1) * step - 1 for b in buckets]
            labels = linear_labels(n, step, open_end)
        frame = pd.DataFrame({
            "bucket": buckets.astype(np.uint32),
            "low": pd.array(low, dtype="Int64"),
            "high": pd.array(high, dtype="Int64"),
            "range": labels,
            "count": counts,
        })
        if step is not None and open_end and n:
            frame.loc[n - 1, "high"] = pd.NA
        if trim:
            used = np.flatnonzero(counts)
            frame = frame.iloc[used[0]:used[-1] + 1] if len(used) else frame.iloc[0:0]
            frame = frame.reset_index(drop=True)
        return frame
