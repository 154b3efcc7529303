"""Snapshots of a map taken over time, as one long DataFrame (time, key columns, value).

A map shows the present; a lesson often wants the story. `sample()` takes a snapshot every
`every` seconds and stacks them with a `time` column (seconds since the start), which is what
`plot.lines` draws; `live()` does the same while redrawing a plot in the notebook as the
numbers come in. Interrupting either (the stop button, Ctrl-C) keeps what was sampled so far.

Each tick only copies the map into numpy arrays (one batch read, see `maps.snapshot`); the
DataFrame is built once, from all the ticks together, so sampling a 10,000-entry map ten
times a second costs a few percent of one core.
"""
from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from ..core.errors import UsageError, not_a_map
from ..maps import Map, Snapshot
from ..maps.frames import keywords_refused
from ..maps.map import FRAME_OPTIONS
from .liveplot import LivePlot


class Sampler:
    """Takes snapshots of one map and builds the long frame of all of them on demand.

    Each tick only keeps the snapshot's arrays; the frame is built from all ticks at once by
    the map itself (`Map.frame(snapshot=...)`), with a `time` column in front, so every map
    type that can be read samples the same way and keeps its own columns."""

    def __init__(self, m, *, method: str = "auto", keys=None, call: str = "sample", **frame_args):
        if not isinstance(m, Map):
            raise not_a_map(m, "sample() and live()", 'bpfkit.create_map("hash", key="u32", value="u64")')
        misplaced = {k: v for k, v in frame_args.items() if k not in FRAME_OPTIONS[:-2]}
        if misplaced:
            raise keywords_refused(call, misplaced, [*FRAME_OPTIONS[:-2], "every", "duration", "action"],
                                   f"{call}(m, ..., columns={{...}})")
        self.m = m
        self.method = method
        self.keys = keys
        self.frame_args = frame_args
        self.start = time.monotonic()
        self.times: list[float] = []
        self.ticks: list[Snapshot | None] = []
        self._built: list[pd.DataFrame] = []  # frames of the ticks turned into rows so far
        self._done = 0
        self._empty()  # a misspelled column or option fails now, not after the sampling

    def _empty(self) -> pd.DataFrame:
        nothing = Snapshot(np.zeros(0, self.m.key_dtype), np.zeros(0, self.m.value_dtype))
        return self.m.frame(snapshot=nothing, extra={"time": np.zeros(0)}, **self.frame_args)

    def take(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        snap = self.m.snapshot(method=self.method, keys=self.keys)
        # times first: a reader in another thread never sees a tick without its time
        self.times.append(round(now - self.start, 4))
        self.ticks.append(snap)

    def new_rows(self) -> pd.DataFrame | None:
        """The rows of the snapshots taken since the last call (None if there are none)."""
        hi = len(self.ticks)
        if self._done >= hi:
            return None
        piece = self._build(self._done, hi)
        self._built.append(piece)
        self._done = hi
        return piece

    def frame(self) -> pd.DataFrame:
        """Every snapshot so far, stacked, with `time` as the first column."""
        self.new_rows()
        if not self._built:
            return self._empty()
        if len(self._built) > 1:
            keys = self._built[0].attrs.get("key_columns", [])
            self._built = [pd.concat(self._built, ignore_index=True)]
            self._built[0].attrs["key_columns"] = keys
        return self._built[0]

    def _build(self, lo: int, hi: int) -> pd.DataFrame:
        ticks, times = self.ticks[lo:hi], self.times[lo:hi]
        snap = Snapshot.concat(ticks)
        when = np.repeat(np.array(times, dtype=float), [len(t) for t in ticks])
        frame = self.m.frame(snapshot=snap, extra={"time": when}, **self.frame_args)
        for i in range(lo, hi):  # the arrays live on in the frame; drop our references
            self.ticks[i] = None
        return frame


def _run(sampler: Sampler, every: float, duration: float, action, stop=None,
         ticks: int | None = None) -> bool:
    """Take snapshots on a fixed schedule until `duration` (or `ticks` snapshots, whatever the
    time, or until `stop` is set); False if interrupted (KeyboardInterrupt, also raised by
    `action`)."""
    if every <= 0 or duration < 0 or (ticks is not None and ticks < 1):
        raise UsageError(f"Sampling needs every > 0 and duration >= 0 (both in seconds), and ticks "
                         f"(if given) at least 1, not every={every}, duration={duration}, "
                         f"ticks={ticks}.", "for example every=0.5, duration=5, or every=0.5, ticks=8.")
    start = sampler.start = time.monotonic()
    deadline = start + duration if ticks is None else float("inf")
    tick = taken = 0
    try:
        while True:
            now = time.monotonic()
            sampler.take(now)
            taken += 1
            if now >= deadline or taken == ticks or (stop is not None and stop.is_set()):
                return True
            if action is not None:
                action()
            # The next slot on the schedule (start + k*every), skipping any already missed.
            tick = max(tick + 1, int((time.monotonic() - start) / every) + 1)
            wake = min(start + tick * every, deadline)
            pause = max(0.0, wake - time.monotonic())
            if stop is not None:
                stop.wait(pause)
            else:
                time.sleep(pause)
    except KeyboardInterrupt:
        return False


def _interrupted(sampler: Sampler) -> None:
    warnings.warn(f"sampling interrupted after {len(sampler.times)} snapshots; returning those",
                  stacklevel=3)


def sample(m, every: float = 0.5, duration: float = 5.0, *, ticks: int | None = None, action=None,
           method: str = "auto", keys=None, **frame_args) -> pd.DataFrame:
    """Snapshots of map `m` every `every` seconds for `duration` seconds, as one long frame:
    `time` (seconds since the first snapshot), then the columns of `m.frame()`.

    `ticks=N` takes exactly N snapshots instead, however long they take: a lesson that asserts
    what its `action` did counts on N, which a slow machine (an emulated VM) cannot change,
    while how many snapshots fit in a duration depends on the machine.
    `action`, if given, is called after each snapshot but the last (e.g. to make the kernel do something).
    Every other argument is as in `Map.frame()`: options (`per_cpu=`, `keys=`, ...) and
    `columns=` for renames (`columns={"value": "count"}`). Interrupting (KeyboardInterrupt, the notebook's stop button)
    returns what was sampled.
    """
    sampler = Sampler(m, method=method, keys=keys, **frame_args)
    if not _run(sampler, every, duration, action, ticks=ticks):
        _interrupted(sampler)
    return sampler.frame()


def live(m, every: float = 0.5, duration: float = 10.0, *, ticks: int | None = None,
         y: str | None = None, top: int = 8,
         action=None, title: str | None = None, ylabel: str | None = None, redraw: float | None = None,
         method: str = "auto", keys=None, ax=None, names=None, **frame_args) -> pd.DataFrame:
    """Like `sample()` (`ticks=N`: exactly N snapshots), while a line plot of the `top` keys (by their latest value of `y`)
    redraws in the notebook every `redraw` seconds (by default `every`, but not more often
    than twice a second). Returns the long frame of every key; interrupting stops cleanly and
    returns what was sampled.

    `names` gives the legend words a learner knows for keys that are only numbers (an ifindex,
    a cgroup id): a dict from key to name (keys it lacks keep their number), or a function of
    the key. A key of several columns is passed as a tuple.

    The snapshots are taken in a thread of their own, on schedule, and `action` runs there
    after each one; a redraw that takes long delays the next redraw, never a snapshot.
    Per-CPU maps are summed over CPUs by default (`per_cpu="sum"`).
    """
    import threading

    if m.per_cpu:
        frame_args.setdefault("per_cpu", "sum")
    sampler = Sampler(m, method=method, keys=keys, call="live", **frame_args)
    figure = LivePlot(ax, y, top, title or f"map {m.name!r} over time", ylabel, names)
    redraw = max(every, 0.5) if redraw is None else max(redraw, 0.1)
    stop = threading.Event()
    outcome: list = []

    def on_schedule() -> None:
        try:
            outcome.append(_run(sampler, every, duration, action, stop, ticks=ticks))
        except BaseException as e:  # shown in the caller's thread
            outcome.append(e)

    thread = threading.Thread(target=on_schedule, name="bpfkit-live", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(timeout=redraw)
            figure.add(sampler.new_rows())
            figure.draw()
    except KeyboardInterrupt:
        outcome.append(False)
    finally:
        stop.set()
        thread.join()
        try:
            figure.add(sampler.new_rows())
            figure.draw()
        finally:
            figure.close()
    failure = next((o for o in outcome if isinstance(o, BaseException)), None)
    if failure is not None:
        raise failure
    if False in outcome:
        _interrupted(sampler)
    return sampler.frame()
