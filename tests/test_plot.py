"""The shared plots, without a kernel: labelled, and counts on whole-number ticks."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402

from bpfkit.observe import plot  # noqa: E402


def test_counts_get_whole_number_ticks_and_measures_keep_theirs():
    counts = plot.bar(pd.DataFrame({"k": ["a", "b"], "n": [1, 2]}), "k", "n", title="counts")
    assert all(float(t).is_integer() for t in counts.get_yticks())
    assert (counts.get_title(), counts.get_xlabel(), counts.get_ylabel()) == ("counts", "k", "n")
    lines = plot.lines(pd.DataFrame({"time": [0, 1, 2], "value": [1, 2, 3], "key": [7, 7, 7]}),
                       title="over time")
    assert all(float(t).is_integer() for t in lines.get_yticks())
    measures = plot.bar(pd.DataFrame({"k": ["a", "b"], "ns": [0.2, 0.7]}), "k", "ns", title="t")
    assert not all(float(t).is_integer() for t in measures.get_yticks())
