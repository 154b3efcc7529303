"""bpfkit.observe.testrun (BPF_PROG_TEST_RUN), kernel.bpf_stats(), and lesson 07's exercise check."""
from __future__ import annotations


import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.access import kernel
from bpfkit.observe import testrun
from bpfkit.lessons.l07_map_cost_in_kernel import check_percpu_counter

COUNTER = r"""
BPF_PERCPU_ARRAY(packets, u64, 1);
BPF_HASH(seen, u32, u64, 16);

int empty(struct xdp_md *ctx) {
    return XDP_PASS;
}

int drop(struct xdp_md *ctx) {
    return XDP_DROP;
}

int count_percpu(struct xdp_md *ctx) {
    u32 key = 0;
    u64 *v = packets.lookup(&key);
    if (v) {
        (*v)++;
    }
    return XDP_PASS;
}

int remember_length(struct xdp_md *ctx) {
    u32 key = 1;
    u64 len = ctx->data_end - ctx->data;
    seen.update(&key, &len);
    return XDP_PASS;
}
"""

STARTER = r"""
BPF_PERCPU_ARRAY(packets, u64, 1);
int empty(struct xdp_md *ctx) { return XDP_PASS; }
int count_percpu(struct xdp_md *ctx) { return XDP_PASS; }
"""


@pytest.fixture(scope="module")
def prog():
    program = bpfkit.load(COUNTER, name="test_testrun")
    yield program
    program.close()


def test_run_returns_the_programs_verdict_and_runs_it_repeat_times(prog):
    assert testrun.run(prog, "empty").retval == testrun.XDP_PASS
    assert testrun.run(prog, "drop").retval == testrun.XDP_DROP
    prog["packets"].clear()
    run = testrun.run(prog, "count_percpu", repeat=777)
    assert run.repeat == 777 and run.ns >= 0
    assert prog["packets"].frame(per_cpu="sum")["value"].tolist() == [777]


def test_run_hands_the_program_our_packet(prog):
    testrun.run(prog, "remember_length", data=bytes(100))
    assert prog["seen"][1] == 100


def test_cost_is_a_difference_per_operation(prog):
    ns = testrun.cost(prog, "count_percpu", repeat=10_000, trials=3)
    # A difference of two medians of three trials: below zero on noise (-6 seen on a busy 2-core
    # CI machine); a total instead of a per-run figure would be tens of thousands.
    assert -30 < ns < 1000


def test_bpf_stats_counts_and_restores_the_setting(uid):
    with open(kernel.BPF_STATS_SYSCTL) as f:
        before = f.read().strip()
    with pytest.raises(RuntimeError):
        with kernel.bpf_stats(), bpfkit.load("counter", name="test_stats_counter") as counter:
            # (through BPF_ENABLE_STATS the sysctl is not written: the counts below are the proof)
            children.run_as(uid, 20)
            info = kernel.prog_info(counter.program_ids()[0])
            assert info["run_cnt"] >= 20 and info["run_time_ns"] > 0
            raise RuntimeError("a failing cell")
    with open(kernel.BPF_STATS_SYSCTL) as f:
        assert f.read().strip() == before
    assert counter.closed


def test_exercise_check(prog):
    starter = bpfkit.load(STARTER, name="test_map_cost_starter")
    try:
        result = check_percpu_counter(starter, "count_percpu", None)
        assert not result.passed and "add up to 0" in str(result)
        assert "lookup" not in str(result) and "(*v)++" not in str(result)   # asks first
        assert "Hint" in str(check_percpu_counter(starter, "count_percpu", None))
        assert "Fix: u32 key = 0;" in str(check_percpu_counter(starter, "count_percpu", None))
    finally:
        starter.close()
    assert not check_percpu_counter(prog, "count_percpu", None).passed  # not measured yet
    assert not check_percpu_counter(prog, "count_percpu", 500.0).passed  # far off
    measured = testrun.cost(prog, "count_percpu")
    result = check_percpu_counter(prog, "count_percpu", measured)
    assert result.passed, result
    missing = check_percpu_counter(prog, "no_such_function", measured)
    assert not missing.passed and "no function" in str(missing)


@pytest.mark.unit
def test_an_order_is_false_only_when_the_measurement_clearly_contradicts_it():
    clear_yes = testrun.Order("a", "b", 1.0, 20.0, 2.0, 5)
    busy = testrun.Order("a", "b", 9.0, 8.0, 4.0, 15)
    clear_no = testrun.Order("a", "b", 30.0, 8.0, 4.0, 15)
    assert clear_yes and busy and not clear_no
    assert str(clear_yes).startswith("a is cheaper than b: a 1.0 ns, b 20.0 ns")
    assert "too busy to tell a from b" in str(busy)
    assert "a measured dearer than b, beyond the noise" in str(clear_no)


def test_order_measures_what_the_kernel_runs(prog):
    """Returning at once against a hash update: the order holds; the reverse order is clearly
    false (the measurement can contradict a claim, it does not only excuse itself)."""
    right = testrun.order((prog, "drop"), (prog, "remember_length"), repeat=20_000)
    assert right and right.holds, right
    wrong = testrun.order((prog, "remember_length"), (prog, "drop"), repeat=20_000)
    assert not wrong, wrong
