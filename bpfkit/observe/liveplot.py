"""The plot `bpfkit.live()` redraws as its samples come in: one line per key, the `top` keys by
their latest value, legend names a learner knows.

Kept apart from the sampling (`sampling.py`), which takes snapshots on schedule in a thread of its
own: this module only draws what it is given, so a slow redraw delays the next redraw, never a
snapshot. matplotlib and IPython are imported on the first plot, not with the kit.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

class LivePlot:
    """The figure `live()` redraws: a line per key, its artists updated in place.

    A redraw only moves data into the lines that exist and renders once: no clearing and
    replotting, no tight bounding box each time. In a notebook with the inline backend the
    figure is rendered to a PNG shown through one display handle; with an interactive
    backend (ipympl's `%matplotlib widget`) the canvas redraws itself."""

    def __init__(self, ax, y: str | None, top: int, title: str, ylabel: str | None, names=None):
        import matplotlib.pyplot as plt
        if ax is None:
            fig, ax = plt.subplots(figsize=(7, 3.5))
        self.ax, self.fig = ax, ax.figure
        self.y, self.top, self.ylabel, self.names = y, top, ylabel, names
        self.key_cols: list[str] | None = None
        self.series: dict[str, list] = {}      # label -> [times chunks, values chunks]
        self.latest: dict[str, float] = {}     # label -> its value at the newest tick
        self.lines: dict = {}                  # label -> Line2D
        self.shown: list[str] = []
        self.tick_width = 1                    # digits of the y axis's top, laid out for
        ax.set_title(title)
        ax.set_xlabel("seconds")
        ax.set_ylabel(ylabel or y or "")  # before the layout, or a long label is cut off
        ax.grid(axis="y", alpha=0.3)
        self.fig.tight_layout()
        self.handle = None
        backend = plt.get_backend().lower()
        self.display = _display_handle()
        self.inline = "inline" in backend and self.display is not None
        self.widget = ("ipympl" in backend or "widget" in backend) and self.display is not None

    def add(self, rows: pd.DataFrame | None) -> None:
        if rows is None or not len(rows):
            return
        if self.key_cols is None:
            self.key_cols = list(rows.attrs.get("key_columns", []))
            values = [c for c in rows.columns if c not in self.key_cols and c not in ("time", "cpu")]
            numeric = [c for c in values if pd.api.types.is_numeric_dtype(rows[c])]
            if self.y is None:
                self.y = numeric[0] if numeric else None
                if not self.ylabel:  # the label was not known for the layout: lay out again
                    self.ax.set_ylabel(self.y or "")
                    self.fig.tight_layout()
        if self.y is None:
            return
        labels = _labels(rows, self.key_cols, self.names).to_numpy()
        times, values = rows["time"].to_numpy(), rows[self.y].to_numpy()
        order = np.argsort(labels, kind="stable")
        cut = np.flatnonzero(labels[order][1:] != labels[order][:-1]) + 1
        for part in np.split(order, cut):
            if len(part):
                chunks = self.series.setdefault(labels[part[0]], [[], []])
                chunks[0].append(times[part])
                chunks[1].append(values[part])
        last = times == times[-1]  # the top keys are those of the newest tick alone
        self.latest = dict(zip(labels[last].tolist(), values[last].tolist()))

    def draw(self) -> None:
        best = sorted(self.latest, key=lambda k: self.latest[k], reverse=True)[: self.top]
        for label in best:
            chunks = self.series[label]
            if len(chunks[0]) > 1:  # join the chunks once; later ticks add new ones
                chunks[0], chunks[1] = [np.concatenate(chunks[0])], [np.concatenate(chunks[1])]
            if label not in self.lines:
                self.lines[label], = self.ax.plot([], [], marker=".", label=label)
            self.lines[label].set_data(chunks[0][0], chunks[1][0])
        for label, line in self.lines.items():
            line.set_visible(label in best)
        if best != self.shown:  # the legend only changes when the top keys do
            self.shown = best
            self.ax.legend([self.lines[b] for b in best], best, fontsize="small", loc="upper left",
                           title=", ".join(self.key_cols or []) or "key")
        self.ax.relim(visible_only=True)
        self.ax.autoscale_view()
        width = len(f"{self.ax.get_ylim()[1]:.0f}")
        if width != self.tick_width:  # wider tick labels (10 to 1000 frames): make room for them
            self.tick_width = width
            self.fig.tight_layout()
        self._render()

    def _render(self) -> None:
        if not self.inline:  # ipympl, a desktop window, or no display at all
            self.fig.canvas.draw_idle()
            if self.widget and self.handle is None:
                self.handle = self.display(self.fig.canvas)
            return
        from IPython.display import Image
        image = Image(data=_png(self.fig), format="png")
        if self.handle is None:
            self.handle = self.display(image)
        else:
            self.handle.update(image)

    def close(self) -> None:
        if self.inline:
            import matplotlib.pyplot as plt
            plt.close(self.fig)  # shown through the handle: don't let the inline backend show it again


def _png(fig) -> bytes:
    """The figure as a PNG: drawn once on its Agg canvas (savefig draws it twice, and the
    inline backend adds a pass for a tight bounding box), encoded fast rather than small."""
    import io
    png = io.BytesIO()
    canvas = fig.canvas
    if not hasattr(canvas, "buffer_rgba"):
        fig.savefig(png, format="png")
        return png.getvalue()
    from PIL import Image as Picture
    canvas.draw()
    width, height = canvas.get_width_height(physical=True)
    Picture.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1).save(
        png, format="png", compress_level=1)
    return png.getvalue()


def _display_handle():
    """IPython's display (returning a handle to update), in a notebook or IPython shell, else None."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return None
    if get_ipython() is None:
        return None
    return lambda obj: display(obj, display_id=True)


def _labels(frame: pd.DataFrame, key_cols: list[str], names=None) -> pd.Series:
    if not key_cols:
        return pd.Series(["all"] * len(frame), index=frame.index)
    if names is not None:
        keys = frame[key_cols[0]] if len(key_cols) == 1 else \
            pd.Series(list(zip(*(frame[c] for c in key_cols))), index=frame.index)
        name = (lambda k: names.get(k, k)) if isinstance(names, Mapping) else names
        return keys.map({k: str(name(k)) for k in pd.unique(keys)})
    label = frame[key_cols[0]].astype(str)
    for c in key_cols[1:]:
        label = label + " " + frame[c].astype(str)
    return label
