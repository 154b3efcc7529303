"""Snapshots of a map taken over time, as one long DataFrame (time, key columns, value).

A map shows the present; a lesson often wants the story. `sample()` takes a snapshot every
`every` seconds and stacks them with a `time` column (seconds since the start), which is what
`plot.lines` draws. Interrupting it (the stop button, Ctrl-C) keeps what was sampled so far.
"""
from __future__ import annotations

import time
import warnings

import pandas as pd


def sample(m, every: float = 0.5, duration: float = 5.0, *, action=None, **frame_names) -> pd.DataFrame:
    """Snapshots of map `m` every `every` seconds for `duration` seconds.

    `action`, if given, is called after each snapshot (e.g. to make the kernel do something).
    Keyword arguments rename columns as in `Map.frame()`.
    """
    if every <= 0 or duration < 0:
        raise ValueError("every must be > 0 and duration >= 0 (both in seconds)")
    frames = []
    start = time.monotonic()
    deadline = start + duration
    try:
        while True:
            now = time.monotonic()
            frame = m.frame(**frame_names)
            frame.insert(0, "time", round(now - start, 4))
            frames.append(frame)
            if now >= deadline:
                break
            if action is not None:
                action()
            time.sleep(max(0.0, min(every - (time.monotonic() - now), deadline - time.monotonic())))
    except KeyboardInterrupt:
        warnings.warn(f"sampling interrupted after {len(frames)} snapshots; returning those",
                      stacklevel=2)
    if not frames:
        return m.frame(**frame_names).assign(time=0.0).iloc[0:0]
    return pd.concat(frames, ignore_index=True)
