"""Break it (bpfkit/lessons/breaking.py): one line of a program changed, the learner's prediction,
then what this machine's compiler and verifier said. The outcomes here are found by trying on the
real kernel, with programs whose fate no kernel version changes."""
from __future__ import annotations

import pytest

import bpfkit
from bpfkit.core.errors import UsageError
from bpfkit.lessons import breaking, progress
from bpfkit.lessons.breaking import Break, attempt

PROGRAM = r"""
BPF_HASH(seen, u32, u64, 16);

int xdp_seen(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    unsigned char *first = data;
    if ((void *)(first + 1) > data_end)
        return XDP_PASS;
    u32 key = *first;
    u64 *n = seen.lookup(&key);
    if (n)
        __sync_fetch_and_add(n, 1);
    return XDP_PASS;
}
"""
MODULE = __name__   # not a lesson's: the course's progress table leaves these out

NO_BOUND = Break(MODULE, "A test's packet read without its bound", PROGRAM,
                 old="if ((void *)(first + 1) > data_end)", new="if (0)",
                 function="xdp_seen", prog_type="xdp",
                 why={"verifier": "Every packet read needs a bound first."})
NO_NULL = Break(MODULE, "A test's hash lookup without its NULL check", PROGRAM,
                old="    if (n)\n", new="", function="xdp_seen", prog_type="xdp")
NOT_C = Break(MODULE, "A test's line that is not C", PROGRAM, old="u32 key = *first;",
              new="u32 key = *first", function="xdp_seen", prog_type="xdp")
HARMLESS = Break(MODULE, "A test's comment", PROGRAM, old="return XDP_PASS;\n}",
                 new="return XDP_PASS; // fine\n}", function="xdp_seen", prog_type="xdp")


def test_nothing_is_revealed_before_a_prediction_and_nothing_is_recorded():
    shown = attempt(NO_BOUND, None)
    assert not shown.revealed and shown.result is None
    assert "Predict first" in str(shown) and "verifier" not in str(shown).split("Predict first")[0]
    assert "refuse" not in shown._repr_html_()
    assert "Break it: " + NO_BOUND.title not in progress.read()
    assert attempt(NO_BOUND, "maybe?").result is None     # not one of the choices: not yet predicted


def test_each_outcome_is_what_this_machine_did():
    assert breaking.outcome_of(NO_BOUND)[0] == "verifier"
    assert breaking.outcome_of(NO_NULL)[0] == "verifier"     # a hash lookup can always miss
    assert breaking.outcome_of(NOT_C)[0] == "compiler"
    assert breaking.outcome_of(HARMLESS) == ("loads", None)
    assert not [name for name in bpfkit.loaded() if name.startswith("break_")]


def test_a_prediction_is_checked_and_the_kernels_log_is_shown_beside_the_kits_words():
    wrong = attempt(NO_BOUND, "loads")
    assert not wrong.result.passed and "You predicted 'loads'" in str(wrong.result)
    assert "Every packet read" not in str(wrong.result)           # the explanation comes later
    right = attempt(NO_BOUND, "Verifier.")
    assert right.result.passed and right.outcome == "verifier"
    page = right._repr_html_()
    assert "invalid access to packet" in page and "What the kit says" in page
    assert "Every packet read needs a bound first." in str(right)
    assert progress.read()["Break it: " + NO_BOUND.title]["tries"] == 2


def test_the_explanation_is_the_fix_tier_of_a_wrong_prediction():
    for _ in range(2):
        attempt(NO_BOUND, "compiler")
    assert "Fix: Every packet read needs a bound first." in str(attempt(NO_BOUND, "compiler").result)


def test_a_change_that_does_not_apply_once_is_the_lessons_mistake():
    with pytest.raises(UsageError, match="not once"):
        attempt(Break(MODULE, "A test's missing line", PROGRAM, old="no such text", new=""), "loads")
    with pytest.raises(UsageError, match="2 times"):
        Break(MODULE, "A test's twice", PROGRAM, old="return XDP_PASS;", new="").changed()


def test_a_refused_program_type_is_said_and_no_prediction_is_judged(monkeypatch):
    monkeypatch.setenv("BPFKIT_PRETEND_REFUSED", "program:xdp")
    shown = attempt(NO_BOUND, "verifier")
    assert shown.outcome is None and shown.result is None
    assert "refused the program itself" in str(shown)
