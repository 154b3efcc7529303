"""A flame graph of folded stacks: `flame_layout` (pure: one rectangle per function in a stack, as
wide as its samples) and `flame_graph`, which draws it with matplotlib, callers below callees.
"""
from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from . import plot
from .folding import frames_of, is_kernel, name_of
from .profile import ROOT

def flame_layout(folded: pd.DataFrame, *, root: str = ROOT) -> pd.DataFrame:
    """The rectangles of a flame graph: one per function per distinct call path.

    Columns `name`, `kernel`, `depth` (0 for the root, which spans every sample; a frame's
    callees sit one above it), `start` and `width` in samples. Equal prefixes merge, as in
    flamegraph.pl: siblings are ordered by name, so x means nothing but width does."""
    tree: dict = {}
    for stack, n in zip(folded["stack"], folded["samples"]):
        node = tree
        for f in frames_of(stack):
            child = node.setdefault(f, [0, {}])
            child[0] += int(n)
            node = child[1]
    total = int(folded["samples"].sum()) if len(folded) else 0
    rows = [(root, False, 0, 0, total)] if total else []

    def walk(node: dict, depth: int, start: int) -> None:
        x = start
        for f in sorted(node):
            n, children = node[f]
            rows.append((name_of(f), is_kernel(f), depth, x, n))
            walk(children, depth + 1, x)
            x += n

    walk(tree, 1, 0)
    return pd.DataFrame(rows, columns=["name", "kernel", "depth", "start", "width"]).astype(
        {"depth": np.int64, "start": np.int64, "width": np.int64})


def _color(name: str, kernel: bool) -> tuple:
    """A stable shade per function: warm colours for user space, blues for the kernel."""
    h = (zlib.crc32(name.encode()) % 1000) / 1000
    if kernel:
        return (0.35 + 0.25 * h, 0.6 + 0.2 * h, 0.95, 1.0)
    return (0.95, 0.45 + 0.4 * h, 0.2 + 0.15 * h, 1.0)


def flame_graph(folded: pd.DataFrame, *, title: str, ax=None, icicle: bool = False,
                figsize=None):
    """Draw folded stacks as a flame graph (root at the bottom) or, with `icicle=True`, an
    icicle chart (root at the top). Width is samples; labels are written where they fit; the
    figure is as tall as the deepest stack needs. Returns the matplotlib Axes."""
    layout = flame_layout(folded)
    total = int(layout["width"].max()) if len(layout) else 0
    depth = int(layout["depth"].max()) + 1 if len(layout) else 1
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    ax = ax or plot.new_axes(figsize or (10, max(2.6, min(7.0, 1.3 + 0.3 * depth))))
    colors = [(0.8, 0.8, 0.8, 1.0) if d == 0 else _color(n, k)
              for n, k, d in zip(layout["name"], layout["kernel"], layout["depth"])]
    ax.barh(layout["depth"], layout["width"], left=layout["start"], height=0.95, color=colors,
            edgecolor="white", linewidth=0.5, align="edge")
    fig = ax.figure
    axes_px = fig.get_size_inches()[0] * fig.dpi * ax.get_position().width
    char_px = 7.0 * fig.dpi / 72 * 0.62
    for name, d, start, width in zip(layout["name"], layout["depth"], layout["start"], layout["width"]):
        label = f"{name} ({width})" if d == 0 else name
        room = int(width / max(total, 1) * axes_px / char_px) - 1
        if room < 3:
            continue
        if len(label) > room:
            label = label[:room - 2] + ".."
        ax.text(start + width * 0.01 + total * 0.002, d + 0.47, label, va="center", ha="left",
                fontsize=7, clip_on=True)
    ax.set_xlim(0, max(total, 1))
    if icicle:
        ax.set_ylim(depth, 0)
    else:
        ax.set_ylim(0, depth)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, loc="left")
    ax.set_xlabel("samples (width: how often the CPU was in this stack)")
    ax.set_ylabel("stack depth\n(callees " + ("below" if icicle else "above") + " callers)")
    ax.legend(handles=[Patch(color=_color("user", False), label="user space"),
                       Patch(color=_color("kernel", True), label="kernel")],
              loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, fontsize="small")
    fig.tight_layout()
    return ax
