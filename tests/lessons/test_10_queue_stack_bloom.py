"""Lesson 10, maps without keys: a queue and a stack give pids back in arrival order (first in,
first out; last in, first out), full ones refuse or drop the oldest, a bloom filter reports each
user once, the kernel's bloom filter sizing and false-positive rate, and the exercise's check."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.core.errors import BpfkitError
from bpfkit.lessons.l10_queue_stack_bloom import (BUDGET_BITS, N_VALUES, TESTS, check_bloom_budget,
                                                  kernel_bits, measure, plausible, spread, theory)
from bpfkit.core.maptypes import BPF_F_ZERO_SEED
from notebook_runs import solution_only_lines

ROOT = Path(__file__).resolve().parents[2]


def memlock(m) -> int:
    with open(f"/proc/self/fdinfo/{m.fd}") as f:
        return int(re.search(r"memlock:\s*(\d+)", f.read()).group(1))


def kernel_reports_map_memory() -> bool:
    """Since Linux 6.4 fdinfo's memlock is the map's own memory (map_mem_usage)."""
    return tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2]) >= (6, 4)


def test_queue_gives_pids_back_oldest_first_and_stack_newest_first(no_leaks):
    watched, other = children.private_uids(2)
    with bpfkit.load("arrivals") as prog:
        fifo, lifo, watch, refused = prog["fifo"], prog["lifo"], prog["watch"], prog["refused"]
        assert (fifo.type, lifo.type, fifo.key_size, fifo.max_entries) == ("queue", "stack", 0, 8)
        children.run_as(watched, 2)            # nobody watched yet: watch[0] is 0
        assert fifo.peek(default=None) is None and lifo.peek(default=None) is None
        watch[0] = watched
        children.run_as(other, 2)              # another user: not counted
        pids = children.run_as(watched, 5)
        assert len(set(pids)) == 5
        assert fifo.peek() == pids[0] and lifo.peek() == pids[-1]
        assert fifo.frame({"value": "next pid"}).to_dict("list") == {"next pid": [pids[0]]}
        out_q, out_s = fifo.drain(), lifo.drain()
        assert out_q.to_dict("list") == {"order": list(range(5)), "value": pids}
        assert out_s.to_dict("list") == {"order": list(range(5)), "value": pids[::-1]}
        assert fifo.peek(default=None) is None and refused[0] == 0


def test_a_full_queue_refuses_and_a_full_stack_drops_its_oldest(no_leaks):
    watched, = children.private_uids(1)
    with bpfkit.load("arrivals") as prog:
        fifo, lifo, refused = prog["fifo"], prog["lifo"], prog["refused"]
        prog["watch"][0] = watched
        pids = children.run_as(watched, 12)
        assert fifo.drain()["value"].tolist() == pids[:8]            # the first 8; 4 refused
        assert lifo.drain()["value"].tolist() == pids[4:][::-1]      # the last 8, newest first
        assert refused[0] == 4
        pids = children.run_as(watched, 3)                   # room again
        assert fifo.drain()["value"].tolist() == pids and refused[0] == 4


def test_seen_before_reports_each_user_once_in_order(no_leaks):
    alice, bob, carol, dave = children.private_uids(4)
    seen = bpfkit.create_map("bloom_filter", value="u32", max_entries=64, hashes=3, name="l10_seen")
    with bpfkit.load("seen_before", maps={"seen": seen}) as prog:
        assert prog["seen"] is seen and seen.type == "bloom_filter"
        for user in (alice, bob, alice, carol, bob, alice):
            children.run_as(user, 1)
        arrived = prog["newcomers"].drain()["value"].tolist()
        assert [u for u in arrived if u in (alice, bob, carol, dave)] == [alice, bob, carol]
        children.run_as(bob, 2)
        assert bob not in prog["newcomers"].drain()["value"].tolist()
    assert alice in seen and bob in seen and carol in seen and dave not in seen
    seen.close()


@pytest.mark.unit
def test_kernel_bits_follow_bloom_map_alloc():
    assert [kernel_bits(1000, k) for k in range(1, 11)] == \
        [2048, 4096, 8192, 8192, 8192, 16384, 16384, 16384, 16384, 16384]
    assert kernel_bits(1, 1) == 64 and kernel_bits(10, 2) == 64     # at least 64 bits
    assert kernel_bits(2000, 3) == 16384 and kernel_bits(2000, 6) == 32768
    assert kernel_bits(2000, 0) == kernel_bits(2000, 5)             # 0: the kernel's default, 5
    assert kernel_bits(2**30, 15) == 2**32                          # overflow: 2^32 bits
    assert math.isclose(theory(1000, 8192, 3), 0.028834, rel_tol=1e-3)


@pytest.mark.unit
def test_plausible_counts_accept_the_theory_and_refuse_a_rate_twice_off():
    """The lesson's collapsed check (80000 tests per K, n = 1000) accepts what theory expects and
    refuses twice that at every K, and half of it wherever the expected count is large."""
    n, tests = 1000, 80_000
    for k in range(1, 11):
        bits = kernel_bits(n, k)
        expected, sd = spread(n, bits, k, tests)
        assert plausible(round(expected), n, bits, k, tests)
        assert plausible(round(expected + 4.9 * sd), n, bits, k, tests)
        assert not plausible(round(expected + 5.2 * sd) + 1, n, bits, k, tests)
        assert not plausible(round(2 * expected), n, bits, k, tests), k
        if k <= 5:
            assert not plausible(round(expected / 2), n, bits, k, tests), k
    # The filter's fill is one draw: for K = 1 it, not the tests, sets the spread.
    assert spread(n, 2048, 1, 200_000)[1] > 3 * math.sqrt(spread(n, 2048, 1, 200_000)[0])


def test_bloom_filter_memory_and_false_positives_match_the_theory(no_leaks):
    n, tests = 1000, 12000
    headers = set()
    for hashes in (1, 3, 5, 6, 10):
        made = []
        for _ in range(2):
            with bpfkit.create_map("bloom_filter", value="u32", max_entries=n, hashes=hashes,
                                   flags=BPF_F_ZERO_SEED, name="l10_rate") as f:
                assert f.flags == BPF_F_ZERO_SEED
                missed, false = measure(f, n, tests)
                made.append((false, memlock(f)))
            assert missed == 0                                      # never a false negative
        assert made[0] == made[1]                                   # seed 0: the same answers
        bits = kernel_bits(n, hashes)
        headers.add(made[0][1] - bits // 8)
        assert plausible(false, n, bits, hashes, tests), (hashes, false, spread(n, bits, hashes, tests))
    if kernel_reports_map_memory():                                 # memlock = header + the bits
        with bpfkit.create_map("bloom_filter", value="u32", max_entries=1, hashes=1,
                               name="l10_size") as tiny:
            headers.add(memlock(tiny) - kernel_bits(1, 1) // 8)
        assert len(headers) == 1 and 0 < headers.pop() < 1024, headers


def _choice(max_entries: int, hashes: int):
    return bpfkit.create_map("bloom_filter", value="u32", max_entries=max_entries, hashes=hashes,
                             flags=BPF_F_ZERO_SEED, name="l10_choice")




def test_exercise_check_fails_on_the_starter_and_says_why(no_leaks):
    with _choice(2000, 3) as starter:
        result = check_bloom_budget(starter)
    text = str(result)
    assert not result.passed and len(result.problems) == 2 and result.tries == 1
    assert "The kernel gave it 16384 bits, 8.2 per value" in text and "No prediction yet" in text
    assert "how many bits per value does the formula need for 1%?" in text
    assert "'How often is \"maybe\" wrong?'" in text
    assert "Hint" not in text and "Fix" not in text and "HASHES = 6" not in text
    shown = [line for line in solution_only_lines(ROOT / "notebooks" / "10_queue_stack_bloom.ipynb") if line in text]
    assert not shown, shown                                 # the first try asks, it does not tell
    with _choice(2000, 3) as starter:                       # a right prediction is not enough
        result = check_bloom_budget(starter, predicted=theory(N_VALUES, 16384, 3))
    assert not result.passed and len(result.problems) == 1 and "16384 bits" in str(result)
    assert "Hint: The kernel gave 2000 × 3 hashes / 5 × 7 = 8400 bits" in str(result)


def test_the_third_try_of_the_exercise_check_shows_the_code(no_leaks):
    with _choice(2000, 3) as starter:
        first, second, third = (check_bloom_budget(starter, predicted=0.029) for _ in range(3))
    assert [r.tries for r in (first, second, third)] == [1, 2, 3]
    assert "Hint" not in str(first) and "Hint" in str(second) and "Fix" not in str(second)
    assert "Fix: `HASHES = 6` with `MAX_ENTRIES = 2000`" in str(third)
    assert third.problems == first.problems             # the question stays; help is added


def test_exercise_check_passes_on_solutions(no_leaks):
    for max_entries, hashes in ((2000, 6), (2000, 11), (4000, 3)):
        bits = kernel_bits(max_entries, hashes)
        assert bits == BUDGET_BITS
        with _choice(max_entries, hashes) as choice:
            result = check_bloom_budget(choice, predicted=theory(N_VALUES, bits, hashes))
            assert result.passed, str(result)
            again = check_bloom_budget(choice, predicted=theory(N_VALUES, bits, hashes))
            assert again.passed, str(again)                         # the same values, added again


def test_exercise_check_catches_budget_predictions_and_wrong_maps(no_leaks):
    with _choice(2000, 12) as big:                                   # 65536 bits: under 1%, too big
        result = check_bloom_budget(big, predicted=0.0)
        assert not result.passed and "2 times the budget" in str(result)
    with _choice(2000, 6) as choice:
        wrong = check_bloom_budget(choice, predicted=0.0156)         # m = n*K/ln 2, unrounded
        assert not wrong.passed and "Which m did your formula use?" in str(wrong)
        assert "Use the 32768 bits" in str(wrong)                   # the second try: the hint
        percent = check_bloom_budget(choice, predicted=0.083)       # 0.083 %, written as a percent
        assert not percent.passed and "written as a percentage" in str(percent)
        silly = check_bloom_budget(choice, predicted="1%")
        assert not silly.passed and "as a fraction" in str(silly)
    with bpfkit.create_map("queue", value="u32", name="l10_q") as q:
        result = check_bloom_budget(q)
        assert not result.passed and "is a queue" in str(result)
    with bpfkit.create_map("bloom_filter", value="u64", name="l10_u64") as wide:
        result = check_bloom_budget(wide)
        assert not result.passed and "4-byte values (u32)" in str(result)
    assert "The check got NoneType" in str(check_bloom_budget(None))
    assert TESTS == 20000 and N_VALUES == 2000


def test_run_as_starts_processes_in_order_and_reports_failure():
    uid, = children.private_uids(1)
    pids = children.run_as(uid, 3)
    assert len(pids) == 3 and len(set(pids)) == 3
    assert children.run_as(uid, 0) == []
    with pytest.raises(BpfkitError, match="failed"):
        children.run_as(uid, 1, argv=["/bin/false"])
