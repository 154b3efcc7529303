"""The one deadline-and-poll loop, without a kernel: it returns the condition's own answer,
asks again until the answer is true, and gives up at its deadline with the last answer."""
from __future__ import annotations

import time

from bpfkit.core import waiting


def test_until_returns_the_first_true_answer_itself():
    answers = iter([[], [], ["10.1.2.0/24"], ["never asked"]])
    assert waiting.until(lambda: next(answers), 1.0, every=0) == ["10.1.2.0/24"]
    assert next(answers) == ["never asked"]


def test_until_gives_up_at_its_deadline_with_the_last_answer():
    calls = []
    start = time.monotonic()
    assert waiting.until(lambda: calls.append(1) or 0, 0.05, every=0.01) == 0
    took = time.monotonic() - start
    assert 0.05 <= took < 1.0 and 2 <= len(calls) <= 10


def test_until_asks_at_least_once_even_without_time():
    assert waiting.until(lambda: "done", 0) == "done"
    assert waiting.until(lambda: None, 0) is None
