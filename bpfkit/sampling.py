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

from .errors import not_a_map
from .maps import Map, Snapshot


class Sampler:
    """Takes snapshots of one map and builds the long frame of all of them on demand.

    Each tick only keeps the snapshot's arrays; the frame is built from all ticks at once by
    the map itself (`Map.frame(snapshot=...)`), with a `time` column in front, so every map
    type that can be read samples the same way and keeps its own columns."""

    def __init__(self, m, *, method: str = "auto", keys=None, **frame_args):
        if not isinstance(m, Map):
            raise not_a_map(m, "sample() and live()", 'bpfkit.create_map("hash", key="u32", value="u64")')
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
        self.ticks.append(self.m.snapshot(method=self.method, keys=self.keys))
        self.times.append(round(now - self.start, 4))

    def frame(self) -> pd.DataFrame:
        """Every snapshot so far, stacked, with `time` as the first column."""
        if self._done < len(self.ticks):
            self._built.append(self._build(self._done, len(self.ticks)))
            self._done = len(self.ticks)
            if len(self._built) > 1:
                keys = self._built[0].attrs.get("key_columns", [])
                self._built = [pd.concat(self._built, ignore_index=True)]
                self._built[0].attrs["key_columns"] = keys
        if not self._built:
            return self._empty()
        return self._built[0]

    def _build(self, lo: int, hi: int) -> pd.DataFrame:
        ticks, times = self.ticks[lo:hi], self.times[lo:hi]
        snap = Snapshot.concat(ticks)
        when = np.repeat(np.array(times, dtype=float), [len(t) for t in ticks])
        frame = self.m.frame(snapshot=snap, extra={"time": when}, **self.frame_args)
        for i in range(lo, hi):  # the arrays live on in the frame; drop our references
            self.ticks[i] = None
        return frame


def _run(sampler: Sampler, every: float, duration: float, action, on_tick=None) -> bool:
    """Take snapshots on a fixed schedule until `duration`; False if interrupted."""
    if every <= 0 or duration < 0:
        raise ValueError("every must be > 0 and duration >= 0 (both in seconds)")
    start = sampler.start = time.monotonic()
    deadline = start + duration
    tick = 0
    try:
        while True:
            now = time.monotonic()
            sampler.take(now)
            if on_tick is not None:
                on_tick()
            if now >= deadline:
                return True
            if action is not None:
                action()
            # The next slot on the schedule (start + k*every), skipping any already missed.
            tick = max(tick + 1, int((time.monotonic() - start) / every) + 1)
            wake = min(start + tick * every, deadline)
            time.sleep(max(0.0, wake - time.monotonic()))
    except KeyboardInterrupt:
        warnings.warn(f"sampling interrupted after {len(sampler.times)} snapshots; returning those",
                      stacklevel=3)
        return False


def sample(m, every: float = 0.5, duration: float = 5.0, *, action=None, method: str = "auto",
           keys=None, **frame_args) -> pd.DataFrame:
    """Snapshots of map `m` every `every` seconds for `duration` seconds, as one long frame:
    `time` (seconds since the first snapshot), then the columns of `m.frame()`.

    `action`, if given, is called after each snapshot (e.g. to make the kernel do something).
    Every other argument is as in `Map.frame()`: options (`per_cpu=`, `keys=`, ...) and
    renames (`value="count"`). Interrupting (KeyboardInterrupt, the notebook's stop button)
    returns what was sampled.
    """
    sampler = Sampler(m, method=method, keys=keys, **frame_args)
    _run(sampler, every, duration, action)
    return sampler.frame()


def live(m, every: float = 0.5, duration: float = 10.0, *, y: str | None = None, top: int = 8,
         action=None, title: str | None = None, ylabel: str | None = None, redraw: float | None = None,
         method: str = "auto", keys=None, ax=None, **frame_args) -> pd.DataFrame:
    """Like `sample()`, while a line plot of the `top` keys (by their latest value of `y`)
    redraws in the notebook every `redraw` seconds (at least every 0.25 s). Returns the long
    frame of every key; interrupting stops cleanly and returns what was sampled.

    Per-CPU maps are summed over CPUs by default (`per_cpu="sum"`).
    """
    import matplotlib.pyplot as plt

    if m.per_cpu:
        frame_args.setdefault("per_cpu", "sum")
    display = _display_handle()
    sampler = Sampler(m, method=method, keys=keys, **frame_args)
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.5))
    else:
        fig = ax.figure
    handle = display(fig) if display else None
    redraw = max(redraw if redraw is not None else every, 0.25)
    last = [0.0]

    def draw(force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - last[0] < redraw:
            return
        last[0] = now
        _draw(ax, sampler.frame(), y, top, title or f"map {m.name!r} over time", ylabel)
        if handle is not None:
            handle.update(fig)
        else:
            fig.canvas.draw_idle()

    try:
        _run(sampler, every, duration, action, on_tick=draw)
    finally:
        try:
            draw(force=True)
        finally:
            if handle is not None:
                plt.close(fig)  # shown through the handle: don't let the inline backend show it again
    return sampler.frame()


def _display_handle():
    """IPython's display, when running in a notebook or IPython shell, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    if get_ipython() is None:
        return None
    return lambda fig: display(fig, display_id=True)


def _draw(ax, frame: pd.DataFrame, y, top: int, title: str, ylabel) -> None:
    ax.clear()
    ax.set_title(title)
    ax.set_xlabel("seconds")
    if len(frame):
        key_cols = list(frame.attrs.get("key_columns", []))
        value_cols = [c for c in frame.columns if c not in key_cols and c not in ("time", "cpu")]
        numeric = [c for c in value_cols if pd.api.types.is_numeric_dtype(frame[c])]
        y = y or (numeric[0] if numeric else None)
        if y is not None:
            ax.set_ylabel(ylabel or y)
            latest = frame[frame["time"] == frame["time"].iloc[-1]]
            label = _labels(latest, key_cols)
            best = latest.assign(_label=label).nlargest(top, y)["_label"].tolist()
            shown = frame.assign(_label=_labels(frame, key_cols))
            shown = shown[shown["_label"].isin(set(best))]
            groups = dict(tuple(shown.groupby("_label", sort=False)))
            for name in best:  # biggest first, so the legend reads top-down
                ax.plot(groups[name]["time"], groups[name][y], marker=".", label=name)
            if len(best):
                ax.legend(title=", ".join(key_cols) or "key", fontsize="small", loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()


def _labels(frame: pd.DataFrame, key_cols: list[str]) -> pd.Series:
    if not key_cols:
        return pd.Series(["all"] * len(frame), index=frame.index)
    label = frame[key_cols[0]].astype(str)
    for c in key_cols[1:]:
        label = label + " " + frame[c].astype(str)
    return label
