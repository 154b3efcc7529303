"""Exercise checks: each lesson's check looks at the learner's real program and map, and says
what is right and what is still wrong, in words. A check never raises on a wrong answer, so
a lesson notebook with an unfinished exercise still runs top to bottom; it returns a `Result`
that prints as feedback and is truthy only when the exercise is solved.

A check is written as `@exercise(title, praise) def check_x(c, program, ...)`: the decorator
makes the `Checker` `c`, and callers call `check_x(program, ...)` without it. Inside, `c.expect`
records a problem and goes on; `c.require` records one and ends the check, for a problem so
basic that nothing after it can be checked; a `BpfkitError` escaping the check (a missing map,
a program that could not run) is recorded as a problem in its own words, never raised.

A learner thinks before the kit tells, so a problem comes in tiers, chosen by how many times the
learner has run this check (the progress record counts tries): the first failed try says what the
check saw against what it expected and asks a question that points at the lesson's cell that
explains it (`problem`); the second adds a `hint`; the third and later add the code-level `fix`.
A problem's words never hold the solution's code: that is what `fix` is for.
"""
from __future__ import annotations

import functools
import html
import importlib
import inspect
import re
from dataclasses import dataclass, field

from . import progress as _progress
from ..core import catalogue
from ..core.errors import BpfkitError

CATALOG: dict[str, str] = {}  # exercise title -> the module of its check


HINT_FROM, FIX_FROM = 2, 3   # the try on which a problem's hint, then its fix, is first shown


@dataclass
class Problem:
    """One thing a check found wrong, in tiers: what it saw against what it expected, with a
    question (every try); a hint (from try HINT_FROM); the code-level fix (from try FIX_FROM)."""
    saw: str
    hint: str | None = None
    fix: str | None = None

    def told(self, tries: int) -> list[tuple[str, str]]:
        """(label, words) shown on try `tries`: the tiers reached so far."""
        shown = [("", self.saw)]
        if self.hint and tries >= HINT_FROM:
            shown.append(("Hint", self.hint))
        if self.fix and tries >= FIX_FROM:
            shown.append(("Fix", self.fix))
        return shown


@dataclass
class Result:
    exercise: str
    found: list[Problem] = field(default_factory=list)
    praise: str = "Well done."
    tries: int = 1   # this check's tries so far, this one included (the progress record's count)

    @property
    def problems(self) -> list[str]:
        """What each problem saw (the first tier): what tests and callers compare."""
        return [p.saw for p in self.found]

    @property
    def passed(self) -> bool:
        return not self.found

    def __bool__(self) -> bool:
        return self.passed

    def _more(self) -> str | None:
        """What the next try will add, so a learner knows help is there when they want it."""
        if any(p.hint for p in self.found) and self.tries < HINT_FROM:
            return "Change something and check again: the next try adds a hint."
        if any(p.fix for p in self.found) and self.tries < FIX_FROM:
            return "Check again after another change and the try after this one shows the code."
        return None

    def __str__(self) -> str:
        if self.passed:
            return f"✅ {self.exercise}: solved. {self.praise}"
        lines = [f"❌ {self.exercise}: not yet (try {self.tries})."]
        for problem in self.found:
            for n, (label, words) in enumerate(problem.told(self.tries)):
                lines.append(f"   • {words}" if n == 0 else f"     {label}: {words}")
        more = self._more()
        if more:
            lines.append(f"   ({more})")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        """In JupyterLab: a heading, then bullets that wrap at words, `code` set as code."""
        style = "white-space: normal; overflow-wrap: anywhere; word-break: normal; font-family: inherit"
        if self.passed:
            return (f'<div style="{style}"><strong>✅ {_html(self.exercise)}: solved.</strong> '
                    f"{_html(self.praise)}</div>")
        items = []
        for problem in self.found:
            told = problem.told(self.tries)
            inner = "".join(f"<div><em>{label}:</em> {_html(words)}</div>" for label, words in told[1:])
            items.append(f"<li>{_html(told[0][1])}{inner}</li>")
        more = self._more()
        more = f"<div><small>{_html(more)}</small></div>" if more else ""
        return (f'<div style="{style}"><strong>❌ {_html(self.exercise)}: not yet</strong> '
                f"<small>(try {self.tries})</small><ul>{''.join(items)}</ul>{more}</div>")


def _html(text: str) -> str:
    """Escaped text with `backticked` spans set as code."""
    parts = re.split(r"`([^`]+)`", text)
    return "".join(f"<code>{html.escape(part)}</code>" if odd else html.escape(part)
                   for odd, part in ((i % 2, p) for i, p in enumerate(parts)))


class Stop(Exception):
    """Internal: a problem so basic that the rest of the check cannot run (see `Checker.require`)."""


class Checker:
    """Collects the problems a check finds: `expect(condition, 'what is wrong and what to do')`."""

    def __init__(self, exercise: str, praise: str = "Well done."):
        self.result = Result(exercise, praise=praise)

    def expect(self, condition, problem: str, *, hint: str | None = None,
               fix: str | None = None) -> bool:
        """Record `problem` (what was seen against what was expected, and a question) when
        `condition` is false; `hint` and `fix` are shown from later tries on."""
        if not condition:
            self.result.found.append(Problem(problem, hint, fix))
        return bool(condition)

    def require(self, condition, problem: str, *, hint: str | None = None,
                fix: str | None = None) -> None:
        """Like `expect`, but a false condition also ends the check (raises `Stop`)."""
        if not self.expect(condition, problem, hint=hint, fix=fix):
            raise Stop(problem)

    def done(self) -> Result:
        return self.result


def learners(fn, *args):
    """Call a function the learner wrote: (what it returned, None), or (None, what it raised in
    one line). A check that runs the learner's own user-space code reports its mistake as a
    problem, never as a traceback from inside the check."""
    try:
        return fn(*args), None
    except Exception as e:   # the learner's code: whatever it raises is theirs to see
        return None, f"{type(e).__name__}: {e}"


def exercise(title: str, praise: str = "Well done.", module: str | None = None):
    """Make `check(c, program, ...)` into `check(program, ...) -> Result`: a fresh `Checker` per
    call, `Stop` ends the check early, and a `BpfkitError` escaping it becomes a problem (its
    `what`), so a check never raises on a wrong or unfinished answer. `module` names the lesson
    module the exercise belongs to, where the check is made elsewhere (a break's prediction)."""

    def decorate(check):
        signature = inspect.signature(check)
        c_param, *params = signature.parameters.values()  # callers never pass `c`
        CATALOG[title] = module or check.__module__

        @functools.wraps(check)
        def run(*args, **kwargs) -> Result:
            c = Checker(title, praise)
            try:
                check(c, *args, **kwargs)
            except Stop:
                pass
            except BpfkitError as e:
                c.expect(False, e.what)
            result = c.done()
            result.tries = _progress.record(title, result.passed)
            return result

        run.__signature__ = signature.replace(parameters=params, return_annotation=Result)
        run.__annotations__ = {k: v for k, v in check.__annotations__.items()
                               if k not in (c_param.name, "return")}
        run.__annotations__["return"] = Result
        return run

    return decorate


def progress():
    """Every exercise of the course with its lesson and what the learner's checks said so far:
    a DataFrame with columns lesson, exercise, status ("solved", "not yet", "not tried"), tries,
    and minutes (from the first try to the first solved one; empty until solved)."""
    import pandas as pd
    lessons = {}
    for lesson in catalogue.LESSONS:
        if lesson.module:
            importlib.import_module(lesson.module)   # its checks enter CATALOG as they are defined
            lessons[lesson.module] = lesson.stem
    done = _progress.read()
    rows = []
    for title, module in CATALOG.items():
        if module not in lessons:
            continue                 # a check defined outside the course (a test's)
        entry = done.get(title, {})
        status = "solved" if entry.get("solved") else entry.get("last", "not tried")
        rows.append({"lesson": lessons[module], "exercise": title,
                     "status": status, "tries": int(entry.get("tries", 0)),
                     "minutes": round(entry["solved_after_s"] / 60, 1) if "solved_after_s" in entry else None})
    frame = pd.DataFrame(rows, columns=["lesson", "exercise", "status", "tries", "minutes"])
    return frame.sort_values(["lesson", "exercise"], ignore_index=True)
