"""bpfkit.sample and bpfkit.observe.sampling.live: snapshots over time as one long frame."""
from __future__ import annotations

import os
import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

import bpfkit  # noqa: E402
from bpfkit.observe import liveplot, sampling  # noqa: E402

SOURCE = r"""
BPF_HASH(counts, u64, u64, 1024);
BPF_PERCPU_HASH(per_cpu, u32, u64, 64);
BPF_ARRAY(slots, u64, 8);
BPF_STACK_TRACE(stacks, 16);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    stacks.get_stackid(args, 0);
    return 0;
}
"""


@pytest.fixture(scope="module")
def prog():
    program = bpfkit.load(SOURCE, name="test_sampling")
    yield program
    program.close()


@pytest.fixture
def counts(prog):
    m = prog["counts"]
    m.clear()
    keys = np.arange(100, dtype=np.uint64)
    m.update_batch(keys, keys * 2)
    return m


def ticking(m, key=1000, stop_after=None):
    """An action that writes how many times it ran into `key`; with `stop_after`, it raises
    KeyboardInterrupt on that call, as the notebook's stop button would."""
    calls = [0]

    def action():
        calls[0] += 1
        if stop_after is not None and calls[0] == stop_after:
            raise KeyboardInterrupt
        m[key] = calls[0]
    return action, calls


def test_ticks_takes_that_many_snapshots_however_slow_the_action(counts):
    """ticks=N is a count a lesson can assert on: an action slower than `every` (as everything is
    in an emulated VM) makes the snapshots late, never fewer; live() counts the same way."""
    import time
    action, calls = ticking(counts)

    def slow():
        time.sleep(0.03)
        action()
    frame = bpfkit.sample(counts, every=0.01, ticks=5, action=slow)
    assert frame["time"].nunique() == 5 and calls[0] == 4
    assert frame[frame["key"] == 1000]["value"].tolist() == [1, 2, 3, 4]
    shown = sampling.live(counts, every=0.01, ticks=3, action=action, redraw=0.1)
    assert shown["time"].nunique() == 3 and calls[0] == 6
    with pytest.raises(bpfkit.BpfkitError, match="ticks"):
        bpfkit.sample(counts, every=0.01, ticks=0)


def test_sample_shape_columns_and_time(counts):
    action, calls = ticking(counts)
    frame = bpfkit.sample(counts, every=0.05, duration=0.3, action=action)
    assert list(frame.columns) == ["time", "key", "value"]
    times = frame["time"].unique()
    ticks = len(times)
    assert ticks == calls[0] + 1  # a snapshot first, then the action after each but the last
    assert times[0] == 0.0 and np.all(np.diff(times) > 0) and times[-1] >= 0.29
    assert frame["time"].is_monotonic_increasing
    # Each tick holds the 100 entries, plus key 1000 once the action has run.
    sizes = frame.groupby("time").size().tolist()
    assert sizes == [100] + [101] * (ticks - 1)
    per_tick = frame[frame["key"] == 1000]["value"].tolist()
    assert per_tick == list(range(1, ticks))  # snapshot i sees the action's i-th write
    first = frame[frame["time"] == 0.0].sort_values("key")
    assert first["value"].tolist() == list(range(0, 200, 2))


def test_sample_renames_and_per_cpu(prog, counts):
    frame = bpfkit.sample(counts, every=0.05, duration=0.1, columns={"key": "id", "value": "n"})
    assert list(frame.columns) == ["time", "id", "n"]
    m = prog["per_cpu"]
    cpus = m.cpus
    m.update_batch(np.array([1, 2], dtype=np.uint32), np.array([[10 + c for c in range(cpus)]] * 2))
    long = bpfkit.sample(m, every=0.05, duration=0.1)
    assert list(long.columns) == ["time", "key", "cpu", "value"]
    assert len(long) == long["time"].nunique() * 2 * cpus
    assert long[long["time"] == 0.0].sort_values(["key", "cpu"])["value"].tolist() == \
        [10 + c for c in range(cpus)] * 2
    total = bpfkit.sample(m, every=0.05, duration=0.1, per_cpu="sum")
    assert set(total["value"]) == {sum(10 + c for c in range(cpus))}


def test_sample_keeps_a_family_s_columns(prog):
    slots = prog["slots"]
    slots[3] = 7
    frame = bpfkit.sample(slots, every=0.05, duration=0.1)
    assert list(frame.columns) == ["time"] + list(slots.frame().columns)
    assert frame[frame["time"] == 0.0].iloc[:, -1].tolist() == [0, 0, 0, 7, 0, 0, 0, 0]
    os.getppid()
    stacks = bpfkit.sample(prog["stacks"], every=0.05, duration=0.1)  # frame() per tick
    assert len(stacks) >= 1 and list(stacks.columns)[0] == "time"


def test_interrupt_keeps_what_was_sampled(counts):
    action, calls = ticking(counts, stop_after=3)
    with pytest.warns(UserWarning, match="interrupted after 3 snapshots"):
        frame = bpfkit.sample(counts, every=0.02, duration=30, action=action)
    assert frame["time"].nunique() == 3
    assert len(frame) == 100 + 101 + 101
    assert frame[frame["key"] == 1000]["value"].tolist() == [1, 2]


def test_interrupt_before_the_first_action_returns_one_snapshot(counts):
    action, _ = ticking(counts, stop_after=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = bpfkit.sample(counts, every=0.02, duration=30, action=action)
    assert frame["time"].tolist() == [0.0] * 100


def test_live_draws_and_returns_the_long_frame(counts):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    action, calls = ticking(counts)
    frame = sampling.live(counts, every=0.05, duration=0.3, action=action, top=3, ax=ax,
                          columns={"key": "id", "value": "n"}, title="test")
    assert list(frame.columns) == ["time", "id", "n"]
    assert frame["time"].nunique() == calls[0] + 1
    labels = sorted(line.get_label() for line in ax.get_lines())
    assert labels == ["97", "98", "99"]  # the three biggest values (2 * key) at the last tick
    assert ax.get_title() == "test" and ax.get_ylabel() == "n"
    plt.close(fig)


def test_live_lays_its_label_out_inside_the_figure(counts):
    """A y label given to live() is there before the layout: a long one is not cut off."""
    import matplotlib.pyplot as plt

    action, _ = ticking(counts)
    sampling.live(counts, every=0.05, duration=0.1, action=action, columns={"key": "id", "value": "n"},
                  ylabel="frames that landed on each CPU (total)")
    fig = plt.gcf()
    fig.canvas.draw()
    label = fig.axes[0].yaxis.label
    assert label.get_text() == "frames that landed on each CPU (total)"
    assert label.get_window_extent().x0 >= 0  # inside the figure's left edge
    plt.close("all")

    def grow():  # values that need six digits by the end (below a million: no 1e6 offset)
        for key in range(100):
            counts[key] = 100_000 + 5_000 * key
    sampling.live(counts, every=0.05, duration=0.1, action=grow, columns={"key": "id", "value": "n"})
    fig = plt.gcf()
    fig.canvas.draw()
    ticks = [t for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert max(len(t.get_text()) for t in ticks) >= 6
    assert min(t.get_window_extent().x0 for t in ticks) >= 0 and fig.axes[0].yaxis.label.get_window_extent().x0 >= 0
    plt.close("all")


@pytest.mark.parametrize("names, shown", [
    ({99: "ninety-nine", 98: "ninety-eight"}, ["97", "ninety-eight", "ninety-nine"]),  # 97 unnamed
    (lambda key: f"id {key}", ["id 97", "id 98", "id 99"]),
])
def test_live_names_keys_in_its_legend(counts, names, shown):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    action, _ = ticking(counts)
    frame = sampling.live(counts, every=0.05, duration=0.2, action=action, top=3, ax=ax,
                          columns={"key": "id", "value": "n"}, names=names)
    assert sorted(line.get_label() for line in ax.get_lines()) == shown
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == shown
    assert frame["id"].dtype.kind in "iu"  # the frame keeps the keys themselves
    plt.close(fig)


@pytest.mark.unit
def test_names_of_a_key_of_several_columns_get_a_tuple():
    frame = pd.DataFrame({"uid": [0, 0, 7], "cpu": [0, 1, 1]})
    shown = liveplot._labels(frame, ["uid", "cpu"], lambda k: f"uid {k[0]} on cpu {k[1]}")
    assert shown.tolist() == ["uid 0 on cpu 0", "uid 0 on cpu 1", "uid 7 on cpu 1"]
    assert liveplot._labels(frame, ["uid", "cpu"]).tolist() == ["0 0", "0 1", "7 1"]


def test_live_stops_cleanly_on_interrupt(counts):
    import matplotlib.pyplot as plt

    action, _ = ticking(counts, stop_after=2)
    with pytest.warns(UserWarning, match="interrupted after 2 snapshots"):
        frame = sampling.live(counts, every=0.02, duration=30, action=action)
    assert frame["time"].nunique() == 2
    plt.close("all")


def test_bad_arguments(counts):
    with pytest.raises(bpfkit.core.errors.UsageError):
        bpfkit.sample(counts, every=0, duration=1)
    with pytest.raises(bpfkit.core.errors.UsageError):
        bpfkit.sample(counts, every=0.1, duration=-1)


def test_a_misspelled_column_fails_before_sampling_starts(counts):
    import time
    from bpfkit.core.errors import ColumnError
    start = time.monotonic()
    with pytest.raises(ColumnError, match="Did you mean 'value'"):
        bpfkit.sample(counts, every=0.5, duration=30, columns={"valeu": "n"})
    assert time.monotonic() - start < 5  # not after the 30 s of sampling
