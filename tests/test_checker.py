"""Exercise checks tell in tiers (bpfkit/lessons/checker.py): the first failed try says what the
check saw and asks a question; the hint comes on the second try, the code on the third. Pure code:
a made-up check, the progress record in a test's own file."""
from __future__ import annotations

import pytest

from bpfkit.lessons import progress
from bpfkit.lessons.checker import exercise

pytestmark = pytest.mark.unit


@exercise("A made-up exercise for the checker's tests", "Right.")
def check_number(c, n: int) -> None:
    c.expect(n == 4, f"The program counted {n}, 4 were made: which of them did it miss?",
             hint="Look at the cell that counts in the kernel.", fix="counts.atomic_increment(key);")
    c.expect(n >= 0, "A count below zero: where does it go down?")


def test_first_try_asks_second_hints_third_shows_the_code():
    first, second, third = check_number(3), check_number(3), check_number(3)
    assert [r.tries for r in (first, second, third)] == [1, 2, 3]
    assert "which of them did it miss?" in str(first)
    assert "Hint" not in str(first) and "atomic_increment" not in str(first)
    assert "next try adds a hint" in str(first)
    assert "Hint: Look at the cell" in str(second) and "atomic_increment" not in str(second)
    assert "Fix: counts.atomic_increment(key);" in str(third)
    assert "atomic_increment" in third._repr_html_() and "<code>" not in first._repr_html_()
    assert progress.read()["A made-up exercise for the checker's tests"]["tries"] == 3


def test_html_escapes_and_sets_backticks_as_code():
    @exercise("Escaping", "Ok.")
    def check(c):
        c.expect(False, "Saw <b> in `a < b && c`.")
    shown = check()._repr_html_()
    assert "&lt;b&gt;" in shown and "<code>a &lt; b &amp;&amp; c</code>" in shown
    assert "not yet" in shown and "<li>" in shown


def test_a_solved_check_says_so_and_problems_are_the_first_tier():
    assert check_number(4).passed and "solved" in str(check_number(4))
    wrong = check_number(-1)
    assert wrong.problems == ["The program counted -1, 4 were made: which of them did it miss?",
                              "A count below zero: where does it go down?"]


def test_an_unwritable_record_counts_as_a_first_try(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv("BPFKIT_PROGRESS", str(blocked / "progress.json"))
    assert check_number(3).tries == 1 and check_number(3).tries == 1
