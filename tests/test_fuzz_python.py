"""The Python-side fuzzer (tests/fuzz_python.py): its generator without the kernel, its four
detectors against faults made on purpose, and a fixed-seed slice on the real kernel that must
find 0 crashes, 0 raw errors, 0 leaks and 0 writes to the wrong map."""
from __future__ import annotations

import io

import pytest

import fuzz_python as fz

TYPES = ["hash", "array", "queue", "bloom_filter", "sockmap", "ringbuf"]
CI_SEED, CI_OPS, CI_WORKERS = 2300, 3000, 4   # ~30 s here; the long run: make fuzz-python


@pytest.mark.unit
def test_a_sequence_depends_only_on_its_seed_and_covers_every_kind_of_step():
    first = fz.sequence(5, 400, TYPES)
    assert first == fz.sequence(5, 400, TYPES)
    assert first != fz.sequence(6, 400, TYPES)
    assert fz.sequence(5, 30, TYPES) == first[:30]     # a prefix is the same steps: minimising keeps it
    kinds = {s["do"] for s in first}
    assert kinds == set(fz.WEIGHTS)
    ops = {s.get("during", s).get("op") for s in first if s["do"] in ("map", "close_thread", "stop")}
    assert set(fz.MAP_OPS) <= ops
    assert [s["do"] for s in first[:fz.SLOTS]] == ["make"] * fz.SLOTS   # every slot holds a map


@pytest.mark.unit
def test_only_a_bpfkit_error_with_a_hint_and_words_counts_as_explained():
    from bpfkit.core.errors import BpfkitError, MapError
    assert fz.judge(MapError("The map is full.", "delete a key first.")) is None
    assert fz.judge(KeyboardInterrupt()) is None
    assert "OSError" in fz.judge(OSError(22, "Invalid argument"))
    assert "without a hint" in fz.judge(BpfkitError("The map is full."))
    assert "errno" in fz.judge(MapError("Invalid argument", "try again."))
    assert "errno" in fz.judge(MapError("[Errno 22] Invalid argument", "try again."))


@pytest.mark.unit
def test_findings_of_one_fault_share_a_signature_and_different_faults_do_not():
    a = fz._finding("raw", 3, {"do": "map", "op": "get"}, "builtins.TypeError: 'abc' is not 12")
    b = fz._finding("raw", 9, {"do": "map", "op": "get"}, "builtins.TypeError: 'xyz' is not 7")
    c = fz._finding("raw", 9, {"do": "map", "op": "set"}, "builtins.TypeError: 'xyz' is not 7")
    assert fz.signature(a) == fz.signature(b) != fz.signature(c)


def test_a_step_the_worker_does_not_know_is_the_fuzzers_fault_not_the_kits():
    found = fz.run_one(1, [{"do": "nosuch"}, {"do": "map", "op": "nosuch", "slot": 0}])["findings"]
    assert [f["at"] for f in found] == [0, 1] and all("the fuzzer's own error" in f["text"] for f in found), found


@pytest.mark.parametrize("fault, kind", [("crash", "crash"), ("raw", "raw"), ("leak", "leak"), ("wrong", "wrong")])
def test_each_detector_finds_a_fault_made_on_purpose_and_the_minimiser_keeps_only_it(fault, kind):
    steps = fz.sequence(1, 8, ["hash", "array"])
    steps = [s for s in steps if s["do"] in ("make", "map", "renew")][:6]
    steps.insert(3, {"do": "selftest", "fault": fault})
    before = set(fz.PIN_ROOT.iterdir()) if fz.PIN_ROOT.is_dir() else set()
    found = fz.run_one(1, steps)["findings"]
    assert kind in {f["kind"] for f in found}, found
    assert set(fz.PIN_ROOT.iterdir()) <= before, "the driver removes the pins folder of each worker"
    finding = next(f for f in found if f["kind"] == kind)
    if kind != "leak":
        assert finding["at"] == 3 and finding["step"]["fault"] == fault
        small = fz.minimise(1, steps, finding, budget=30)
        assert small == [{"do": "selftest", "fault": fault}], small
    else:
        assert any("pins left" in f["text"] for f in found) and any("fds left" in f["text"] for f in found)
        assert any("maps still in the kernel" in f["text"] for f in found), found
        assert not list(fz.PIN_ROOT.glob("*/fz_selftest")), "the driver removes the pins it found"


def test_a_fixed_seed_slice_finds_no_crash_raw_error_leak_or_wrong_write():
    out = io.StringIO()
    report = fz.run(CI_SEED, CI_OPS, CI_WORKERS, minimise_budget=0, out=out)
    assert report["ops"] >= CI_OPS * 0.9 or report["counts"]["crash"], report
    assert "the fuzzer's own error" not in out.getvalue(), out.getvalue()[-12000:]
    summary = "\n".join(f"[{f['kind']}] seed {f['seed']} ({f['times']}x) at step {f['at']}: {f['text'][:200]}"
                        for f in report["findings"])
    assert report["counts"] == {"crash": 0, "raw": 0, "leak": 0, "wrong": 0}, (
        f"{summary}\n{report['counts']}\nreproduce one (its first steps up to 'at'): "
        "python -m tests.fuzz_python --seed SEED --ops 40 --workers 1")
