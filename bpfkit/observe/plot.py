"""The few plots lessons share: a bar per map entry, and lines over time.

Each returns the matplotlib Axes so a lesson can add to it, and always labels both axes and
gives a title: a plot a learner cannot read teaches nothing. matplotlib is imported when a
plot is drawn, not with bpfkit (pyplot alone is half of `import bpfkit`'s time).
"""
from __future__ import annotations

import pandas as pd


def new_axes(figsize):
    """A fresh figure's Axes (pyplot imported now, on the first plot)."""
    import matplotlib.pyplot as plt
    return plt.figure(figsize=figsize).gca()


def bar(frame: pd.DataFrame, x: str, y: str, *, title: str, xlabel: str | None = None,
        ylabel: str | None = None, ax=None, sort: bool = False, **kw):
    """One bar per row: `x` names the bar, `y` is its height."""
    ax = ax or new_axes(kw.pop("figsize", (7, 3.5)))
    data = frame.sort_values(y, ascending=False) if sort else frame
    ax.bar(data[x].astype(str), data[y], **kw)
    _label(ax, title, xlabel or x, ylabel or y)
    _whole_ticks(ax, data[y])
    if len(data) > 8:
        ax.tick_params(axis="x", labelrotation=45)
    return ax


def lines(frame: pd.DataFrame, *, x: str = "time", y: str = "value", by: str | None = "key",
          title: str, xlabel: str | None = None, ylabel: str | None = None, ax=None, **kw):
    """One line per `by` group (e.g. per key of a sampled map), `y` against `x`."""
    ax = ax or new_axes(kw.pop("figsize", (7, 3.5)))
    if by is None or by not in frame.columns:
        ax.plot(frame[x], frame[y], **kw)
    else:
        for name, group in frame.groupby(by, sort=True):
            ax.plot(group[x], group[y], label=str(name), marker=".", **kw)
        ax.legend(title=by, fontsize="small")
    _label(ax, title, xlabel or x, ylabel or y)
    _whole_ticks(ax, frame[y])
    return ax


def _label(ax, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.figure.tight_layout()


def _whole_ticks(ax, values) -> None:
    """Counts get whole-number ticks: 2.5 events means nothing."""
    if pd.api.types.is_integer_dtype(values):
        from matplotlib.ticker import MaxNLocator
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
