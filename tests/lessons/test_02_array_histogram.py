"""Lesson 02, the array: index frames, exact log2 histograms of read() sizes, bpftool agrees."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bpfkit
from bpfkit.core.errors import KeyTypeError, MapError
from bpfkit.lessons.l02_array_histogram import EXERCISE_READS, check_linear_histogram
from bpfkit.maps.buckets import linear_labels, log2_bucket, log2_labels, log2_range
from bpfkit.lessons.l02_array_histogram import reads_in_child, trace_command
from conftest import BPFTOOL, needs_bpftool
from notebook_runs import solution_only_lines

ROOT = Path(__file__).resolve().parents[2]

MAPS_ONLY = """
BPF_HASH(a_hash, u32, u64, 8);
BPF_ARRAY(an_array, u64, 8);
struct pair_t { u32 hits; u32 bytes; };
BPF_ARRAY(pairs, struct pair_t, 3);
BPF_PERCPU_ARRAY(per_cpu, u64, 4);
"""

# The lesson's program with the histogram renamed, for the exercise's starter and solutions.
_LESSON = (ROOT / "bpf" / "read_histogram.c").read_text()
STARTER = _LESSON.replace("read_sizes, u64, 32", "read_kib, u64, 16").replace("read_sizes.", "read_kib.")
assert "read_kib.atomic_increment(bpf_log2l(bytes));" in STARTER
UNCLAMPED = STARTER.replace("read_kib.atomic_increment(bpf_log2l(bytes));",
                            "u32 slot = bytes / 1024; read_kib.atomic_increment(slot);")
SOLVED = STARTER.replace("read_kib.atomic_increment(bpf_log2l(bytes));",
                         "u32 slot = bytes / 1024; if (slot > 15) slot = 15; read_kib.atomic_increment(slot);")


def bpftool_dump(map_id: int) -> dict[int, bytes]:
    """bpftool's own reading of a map: key (little-endian u32) -> value bytes."""
    out = subprocess.run([BPFTOOL, "map", "dump", "id", str(map_id), "-j"], capture_output=True,
                         text=True, check=True).stdout
    return {int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"):
            bytes(int(b, 16) for b in e["value"]) for e in json.loads(out)}


def test_every_slot_exists_zeroed_and_cannot_be_deleted(no_leaks):
    with bpfkit.load(MAPS_ONLY, name="array_maps") as prog:
        a, h = prog["an_array"], prog["a_hash"]
        assert a.map_type.slots and not h.map_type.slots
        frame = a.frame()
        assert list(frame.columns) == ["index", "value"]
        assert frame["index"].tolist() == list(range(8)) and frame["value"].tolist() == [0] * 8
        assert len(h.frame()) == 0 and h.get(3) is None
        assert a[3] == 0 and len(a) == 8 and 7 in a and 8 not in a
        a[3] = 42
        h[3] = 42
        del h[3]
        assert 3 not in h
        with pytest.raises(MapError, match="cannot be deleted"):
            del a[3]
        assert a[3] == 42
        with pytest.raises(KeyError):
            a[8]
        with pytest.raises(MapError, match="past the end"):
            a[8] = 1
        with pytest.raises(KeyTypeError):
            a[1] = -1
        a.clear()
        assert a.frame()["value"].tolist() == [0] * 8 and len(a) == 8
        assert list(a.frame({"index": "bucket", "value": "count"}).columns) == ["bucket", "count"]


def test_struct_and_per_cpu_arrays(no_leaks):
    with bpfkit.load(MAPS_ONLY, name="array_maps") as prog:
        pairs = prog["pairs"]
        pairs[1] = {"hits": 3, "bytes": 300}
        frame = pairs.frame()
        assert list(frame.columns) == ["index", "hits", "bytes"]
        assert frame["hits"].tolist() == [0, 3, 0] and frame["bytes"].tolist() == [0, 300, 0]
        assert pairs.counts(value="bytes").tolist() == [0, 300, 0]
        with pytest.raises(MapError, match="struct"):
            pairs.histogram()
        with pytest.raises(MapError, match="no value field"):
            pairs.counts(value="nope")

        per_cpu = prog["per_cpu"]
        cpus = per_cpu.cpus
        per_cpu[2] = list(range(1, cpus + 1))
        frame = per_cpu.frame()
        assert list(frame.columns) == ["index", "cpu", "value"] and len(frame) == 4 * cpus
        assert frame.loc[frame["index"] == 2, "value"].tolist() == list(range(1, cpus + 1))
        assert per_cpu.counts().tolist() == [0, 0, cpus * (cpus + 1) // 2, 0]


@pytest.mark.unit
def test_bucket_helpers():
    assert [log2_bucket(n) for n in (0, 1, 2, 3, 4, 100, 127, 128, 5000)] == [0, 1, 2, 2, 3, 7, 7, 8, 13]
    assert log2_labels(5) == ["0", "1", "2-3", "4-7", "8-15"]
    assert log2_labels(14)[7] == "64-127" and log2_labels(14)[13] == "4096-8191"
    assert all(log2_bucket(lo) == b == log2_bucket(hi)
               for b in range(1, 40) for lo, hi in [log2_range(b)])
    assert linear_labels(3, 1024) == ["0-1023", "1024-2047", "2048-3071"]
    assert linear_labels(3, 1024, open_end=True)[-1] == "2048+"


def test_log2_histogram_of_reads_is_exact(no_leaks):
    sizes = [100] * 10 + [5000] * 5 + [1, 2, 3, 4, 127, 128, 4095, 4096, 65536]
    with bpfkit.load("read_histogram") as prog:
        config, hist = prog["config"], prog["read_sizes"]
        assert config.frame().to_dict("list") == {"index": [0], "value": [0]}
        pid = reads_in_child(config, sizes)
        assert pid > 0 and config[0] == 0
        want = np.zeros(32, dtype=np.int64)
        for s in sizes:
            want[log2_bucket(s)] += 1
        assert hist.counts().tolist() == want.tolist()
        frame = hist.histogram()
        assert list(frame.columns) == ["bucket", "low", "high", "range", "count"]
        assert len(frame) == 32 and frame["count"].sum() == len(sizes)
        by_range = dict(zip(frame["range"], frame["count"]))
        assert by_range["64-127"] == 10 + 1 and by_range["4096-8191"] == 5 + 1
        assert by_range["1"] == 1 and by_range["2-3"] == 2 and by_range["65536-131071"] == 1

        # Nobody is watched now: our own reads are not counted.
        Path(__file__).read_bytes()
        assert hist.counts().sum() == len(sizes)

        trimmed = hist.histogram(trim=True)
        assert trimmed["bucket"].tolist() == list(range(1, 18))
        assert trimmed["count"].sum() == len(sizes)

        hist.clear()
        assert hist.counts().sum() == 0
        trace_command(config, ["true"])
        assert hist.counts().sum() > 0   # the loader reads the C library, at least


def test_linear_histogram_frame_has_open_end(no_leaks):
    with bpfkit.load(SOLVED, name="linear") as prog:
        reads_in_child(prog["config"], [100, 1500, 20000])
        frame = prog["read_kib"].histogram(step=1024, open_end=True)
        assert frame["count"].tolist()[:2] == [1, 1] and frame["count"].tolist()[15] == 1
        assert frame["range"].tolist()[15] == "15360+" and pd.isna(frame["high"][15])
        assert frame["low"].tolist()[:3] == [0, 1024, 2048]


@needs_bpftool
def test_bpftool_reads_the_same_array(no_leaks):
    with bpfkit.load("read_histogram") as prog:
        hist = prog["read_sizes"]
        reads_in_child(prog["config"], [100] * 10 + [5000] * 5)
        hist[31] = 2**40 + 7                           # one written from user space too
        dump = bpftool_dump(hist.id)
        frame = hist.frame()
        assert sorted(dump) == frame["index"].tolist() == list(range(32))
        from_bpftool = [int.from_bytes(dump[i], "little") for i in range(32)]
        assert from_bpftool == frame["value"].tolist()
        assert from_bpftool[7] == 10 and from_bpftool[13] == 5 and from_bpftool[31] == 2**40 + 7


def test_exercise_check_tells_starter_unclamped_and_solution_apart(no_leaks):
    assert sum(EXERCISE_READS) > 0
    with bpfkit.load(STARTER, name="linear") as prog:
        result = check_linear_histogram(prog)
        assert not result.passed and "still follow log2 buckets" in str(result) and "?" in str(result)
    with bpfkit.load(UNCLAMPED, name="linear") as prog:
        result = check_linear_histogram(prog)
        assert not result.passed and "were not counted" in str(result)
    with bpfkit.load(SOLVED, name="linear") as prog:
        result = check_linear_histogram(prog)
        assert result.passed, str(result)
        counts = prog["read_kib"].counts().tolist()
        assert counts[0] == 3 and counts[1] == 4 and counts[4] == 2 and counts[15] == 1
        assert check_linear_histogram(prog).passed          # the check starts from zero each time
    with bpfkit.load(SOLVED, name="linear") as prog:
        result = check_linear_histogram(prog, map_name="read_sizes")
        assert not result.passed and "read_kib" in str(result)


def test_exercise_check_asks_first_hints_second_and_shows_the_code_third(no_leaks):
    with bpfkit.load(UNCLAMPED, name="linear") as prog:
        first, second, third = (str(check_linear_histogram(prog)) for _ in range(3))
    assert "past the end" in first and "Hint:" not in first and "if (slot > 15)" not in first
    assert "Hint:" in second and "Fix:" not in second
    assert "Fix:" in third and "`if (slot > 15) slot = 15;`" in third




def test_the_first_try_on_the_starter_shows_no_line_of_the_solution(no_leaks):
    solution = solution_only_lines(ROOT / "notebooks" / "02_array_histogram.ipynb")
    assert any("bytes / 1024" in line for line in solution)
    for source in (STARTER, UNCLAMPED):
        with bpfkit.load(source, name="linear") as prog:
            first = str(check_linear_histogram(prog))
        assert not [line for line in solution if line in first], first
