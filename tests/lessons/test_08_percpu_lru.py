"""Lesson 08, per-CPU and LRU maps: exact counts per CPU without atomics, BCC's increment() that
never inserts into a per-CPU hash, an LRU that keeps the hot keys where a plain hash refuses them,
the exercise's check, and `calls_on_cpus`."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.lessons.l08_percpu_lru import (HOT, WARM_UP, calls_on_cpus, check_flow_table,
                                           exercise_stream)
from notebook_runs import bpf_cell, solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
CPUS = sorted(os.sched_getaffinity(0))


STARTER = bpf_cell("notebooks/08_percpu_lru.ipynb", "flow_table")
SOLVED = bpf_cell("notebooks/solutions/08_percpu_lru.ipynb", "flow_table")
LRU_WITH_INCREMENT = STARTER.replace("BPF_HASH(flows, u32, u64, 8);",
                                     'BPF_TABLE("lru_percpu_hash", u32, u64, flows, 8);')
SHARED_LRU = SOLVED.replace('"lru_percpu_hash"', '"lru_hash"')
assert LRU_WITH_INCREMENT != STARTER and SHARED_LRU != SOLVED and "increment" not in SOLVED.split("//")[0]


def per_cpu(made: dict, cpus: int) -> list[int]:
    return [made.get(c, 0) for c in range(cpus)]


def test_calls_land_on_the_cpus_asked_for_counted_exactly_per_cpu(no_leaks, uid):
    with bpfkit.load("percpu_counts") as prog:
        calls, total, by_increment = prog["calls"], prog["total"], prog["by_increment"]
        assert (calls.type, total.type, by_increment.type) == ("percpu_hash", "percpu_array", "percpu_hash")
        other = children.unused_uid(uid + 1)
        # before watched[0] is set, slot 0 watches nobody (root's calls go to slot 1)
        os.getppid()
        assert total[0] == [0] * total.cpus
        prog["watched"][0] = uid
        made = calls_on_cpus(uid, [(0, 300), (1, 200)])
        assert made == ({CPUS[0]: 300, CPUS[1]: 200} if len(CPUS) > 1 else {CPUS[0]: 500})
        other_made = calls_on_cpus(other, [(1, 120)])

        assert calls[uid] == per_cpu(made, calls.cpus)
        assert calls[other] == per_cpu(other_made, calls.cpus)
        long = calls.frame({"key": "uid", "value": "calls"})
        mine = long[long["uid"] == uid]
        assert list(long.columns) == ["uid", "cpu", "calls"]
        assert mine["cpu"].tolist() == list(range(calls.cpus))
        assert mine["calls"].tolist() == per_cpu(made, calls.cpus)
        wide = calls.frame({"key": "uid", "value": "calls"}, per_cpu="wide").set_index("uid")
        assert [wide.loc[uid, f"calls_cpu{c}"] for c in range(calls.cpus)] == per_cpu(made, calls.cpus)
        summed = calls.frame({"key": "uid", "value": "calls"}, per_cpu="sum").set_index("uid")["calls"]
        assert summed[uid] == 500 and summed[other] == 120
        assert total[0] == per_cpu(made, total.cpus)          # slot 0: the watched uid only

        # BCC 0.26's increment() never inserts into a per-CPU hash: the map stays empty ...
        assert len(by_increment.frame()) == 0
        # ... but it adds to an entry that user space made.
        by_increment[uid] = 0
        more = calls_on_cpus(uid, [(0, 40), (1, 60)])
        assert by_increment.keys() == [uid]
        assert by_increment[uid] == per_cpu(more, by_increment.cpus)


def test_calls_on_cpus_folds_onto_the_cpus_this_process_may_use(no_leaks, uid):
    with pytest.raises(bpfkit.core.errors.UsageError):
        calls_on_cpus(uid, [(0, -1)])
    with pytest.raises(bpfkit.core.errors.UsageError):
        calls_on_cpus(uid, [(0, 1, 2, 3)])
    only = CPUS[-1]
    with bpfkit.load("percpu_counts") as prog:
        prog["watched"][0] = uid
        os.sched_setaffinity(0, {only})
        try:
            made = calls_on_cpus(uid, [(0, 3), (1, 2), (5, 4)])
        finally:
            os.sched_setaffinity(0, CPUS)
        assert made == {only: 9}
        assert prog["calls"][uid] == per_cpu(made, prog["calls"].cpus)


def test_per_cpu_counts_are_exact_where_a_shared_hash_loses_counts(no_leaks, uid):
    with bpfkit.load("percpu_counts") as prog, bpfkit.load("counter_race") as race:
        generated = children.hammer(uid, 100_000, workers=2)
        assert sum(prog["calls"][uid]) == generated == race["atomic_table"][uid]
        assert race["racy_table"][uid] <= generated and race["increment_table"][uid] <= generated
        if len(CPUS) > 1:   # a worker pinned to each CPU: each copy holds one worker's calls
            assert sorted(prog["calls"][uid], reverse=True)[:2] == [100_000, 100_000]


def test_lru_keeps_the_hot_keys_where_a_plain_hash_keeps_the_first(no_leaks, uid):
    hot, cold = [1, 2, 3], list(range(101, 121))
    with bpfkit.load("lru_flows") as prog:
        plain, lru, lru_percpu = prog["plain"], prog["lru"], prog["lru_percpu"]
        assert (plain.type, lru.type, lru_percpu.type) == ("hash", "lru_hash", "lru_percpu_hash")
        prog["watched"][0] = uid
        calls_on_cpus(uid, [(0, 1, k) for k in cold[:8]])
        assert sorted(plain.keys()) == sorted(lru.keys()) == cold[:8]
        uses = {}
        for r in range(12):
            (cpu,) = calls_on_cpus(uid, [(r % 2, 1, k) for k in hot + [cold[8 + r]]])
            uses[cpu] = uses.get(cpu, 0) + 1
            for m in (lru, lru_percpu):   # the hot keys stay from their first use on
                assert set(hot) <= set(m.keys()) and len(m.keys()) <= 8
        assert sorted(plain.keys()) == cold[:8] and set(plain.values()) == {1}
        assert sum(prog["refused"][0]) == 12 * 4                 # every call after the first 8
        assert cold[-1] in lru.keys()                            # the newest key always gets in
        assert all(lru[k] == 12 for k in hot)
        assert all(lru_percpu[k] == per_cpu(uses, lru_percpu.cpus) for k in hot)
        assert set(lru.keys()) <= set(hot + cold[8:])            # the first cold keys went first


def solution_lines() -> set[str]:
    """The solution's code lines the starter lacks (the harness's rule): what a first try must
    never print."""
    return solution_only_lines(ROOT / "notebooks" / "08_percpu_lru.ipynb")


def test_flow_table_check_says_what_is_wrong_then_passes(no_leaks):
    with bpfkit.load(STARTER, name="l08_starter") as prog:
        result = check_flow_table(prog)
    assert not result.passed and result.tries == 1
    said = str(result)
    assert "hot flows 7, 8, 9" in said and "refused every new key" in said
    assert f"({', '.join(map(str, WARM_UP))})" in said and "Which map type" in said
    assert "Hint" not in said and "Fix" not in said
    leaked = [line for line in solution_lines() if line in said]
    assert not leaked, leaked          # the first try asks; it never shows the solution's code

    with bpfkit.load(LRU_WITH_INCREMENT, name="l08_increment") as prog:
        result = check_flow_table(prog)
    assert not result.passed and "empty" in result.problems[0] and "increment()" in result.problems[0]
    assert "lookup_or_try_init" not in result.problems[0]          # the question, not the answer
    assert "Hint:" in str(result) and "Fix" not in str(result)     # the second try adds a hint

    with bpfkit.load(SHARED_LRU, name="l08_shared") as prog:
        result = check_flow_table(prog)
    assert not result.passed and "per CPU" in str(result) and "lru_hash" in str(result)

    with bpfkit.load(SOLVED, name="l08_solved") as prog:
        result = check_flow_table(prog)
        assert result.passed, result
        flows = prog["flows"]
        assert set(HOT) <= set(flows.keys()) and len(flows.keys()) <= 8
        assert prog["watched"][0] == 0          # the check stops watching when it is done


def test_flow_table_check_shows_the_fix_on_the_third_try(no_leaks):
    with bpfkit.load(STARTER, name="l08_starter") as prog:
        first, second, third = (check_flow_table(prog) for _ in range(3))
    assert [r.tries for r in (first, second, third)] == [1, 2, 3]
    assert first.problems == second.problems == third.problems
    assert "Hint:" in str(second) and "Fix:" not in str(second)
    assert "Fix:" in str(third) and 'BPF_TABLE("lru_percpu_hash", u32, u64, flows, 8);' in str(third)
    assert "lookup_or_try_init(&flow, &zero)" in str(third)


def test_flow_table_check_never_raises_on_a_program_without_its_maps(no_leaks):
    source = "BPF_HASH(other, u32, u64, 8);\nTRACEPOINT_PROBE(syscalls, sys_enter_getpgid) { return 0; }"
    with bpfkit.load(source, name="l08_no_flows") as prog:
        result = check_flow_table(prog)
    assert not result.passed and "flows" in str(result)


@pytest.mark.unit
def test_the_exercise_stream_is_what_the_lesson_says():
    steps = exercise_stream()
    assert steps[:8] == [(0, 1, f) for f in WARM_UP]
    assert len(steps) == 8 + 20 * 4
    assert steps[8:12] == [(0, 1, 7), (0, 1, 8), (0, 1, 9), (0, 1, 209)]
    assert steps[12:16] == [(1, 1, 7), (1, 1, 8), (1, 1, 9), (1, 1, 210)]


def test_the_per_cpu_total_check_tells_a_right_sum_from_the_usual_mistakes():
    """Lesson 08's user-space exercise: `total(raw)` adds the copies Map.raw hands over. The
    check passes numpy's sum and refuses a 4-byte reading, one that stops at the first CPU, and
    a function that raises; its first try shows none of the solution's code."""
    import numpy as np
    from bpfkit.lessons.l08_percpu_lru import check_per_cpu_total
    cpus = bpfkit.possible_cpus()
    with bpfkit.create_map("percpu_hash", key="u32", value="u64", max_entries=8, name="t08_total") as m:
        m[5] = [7 * (c + 1) for c in range(cpus)]
        right = check_per_cpu_total(lambda raw: int(np.frombuffer(raw, dtype=np.uint64).sum()), m)
        assert right.passed, right
        narrow = check_per_cpu_total(lambda raw: int(np.frombuffer(raw, dtype=np.uint32).sum()), m)
        assert not narrow.passed and "copies add up to" in str(narrow)
        assert "frombuffer" not in str(narrow)
        first_only = check_per_cpu_total(lambda raw: int.from_bytes(raw[:8], "little"), m)
        assert not first_only.passed and "Hint" in str(first_only)      # the second try
        raising = check_per_cpu_total(lambda raw: raw.nope, m)
        assert "AttributeError" in str(raising) and "Fix: return int(np.frombuffer" in str(raising)
