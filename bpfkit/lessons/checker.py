"""Exercise checks: each lesson's check looks at the learner's real program and map, and says
what is right and what is still wrong, in words. A check never raises on a wrong answer, so
a lesson notebook with an unfinished exercise still runs top to bottom; it returns a `Result`
that prints as feedback and is truthy only when the exercise is solved.

A check is written as `@exercise(title, praise) def check_x(c, program, ...)`: the decorator
makes the `Checker` `c`, and callers call `check_x(program, ...)` without it. Inside, `c.expect`
records a problem and goes on; `c.require` records one and ends the check, for a problem so
basic that nothing after it can be checked; a `BpfkitError` escaping the check (a missing map,
a program that could not run) is recorded as a problem in its own words, never raised.
"""
from __future__ import annotations

import functools
import importlib
import inspect
from dataclasses import dataclass, field

from . import progress as _progress
from ..core import catalogue
from ..core.errors import BpfkitError

CATALOG: dict[str, str] = {}  # exercise title -> the module of its check


@dataclass
class Result:
    exercise: str
    problems: list[str] = field(default_factory=list)
    praise: str = "Well done."

    @property
    def passed(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"✅ {self.exercise}: solved. {self.praise}"
        lines = [f"❌ {self.exercise}: not yet."] + [f"   • {p}" for p in self.problems]
        return "\n".join(lines)

    __repr__ = __str__


class Stop(Exception):
    """Internal: a problem so basic that the rest of the check cannot run (see `Checker.require`)."""


class Checker:
    """Collects the problems a check finds: `expect(condition, 'what is wrong and what to do')`."""

    def __init__(self, exercise: str, praise: str = "Well done."):
        self.result = Result(exercise, praise=praise)

    def expect(self, condition, problem: str) -> bool:
        if not condition:
            self.result.problems.append(problem)
        return bool(condition)

    def require(self, condition, problem: str) -> None:
        """Like `expect`, but a false condition also ends the check (raises `Stop`)."""
        if not self.expect(condition, problem):
            raise Stop(problem)

    def done(self) -> Result:
        return self.result


def exercise(title: str, praise: str = "Well done."):
    """Make `check(c, program, ...)` into `check(program, ...) -> Result`: a fresh `Checker` per
    call, `Stop` ends the check early, and a `BpfkitError` escaping it becomes a problem (its
    `what`), so a check never raises on a wrong or unfinished answer."""

    def decorate(check):
        signature = inspect.signature(check)
        c_param, *params = signature.parameters.values()  # callers never pass `c`
        CATALOG[title] = check.__module__

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
            _progress.record(title, result.passed)
            return result

        run.__signature__ = signature.replace(parameters=params, return_annotation=Result)
        run.__annotations__ = {k: v for k, v in check.__annotations__.items()
                               if k not in (c_param.name, "return")}
        run.__annotations__["return"] = Result
        return run

    return decorate


def progress():
    """Every exercise of the course with its lesson and what the learner's checks said so far:
    a DataFrame with columns lesson, exercise, status ("solved", "not yet", "not tried"), tries."""
    import pandas as pd
    lessons = {}
    for lesson in catalogue.LESSONS:
        if lesson.module:
            importlib.import_module(lesson.module)   # its checks enter CATALOG as they are defined
            lessons[lesson.module] = lesson.stem
    done = _progress.read()
    rows = []
    for title, module in CATALOG.items():
        entry = done.get(title, {})
        status = "solved" if entry.get("solved") else entry.get("last", "not tried")
        rows.append({"lesson": lessons.get(module, module.rpartition(".")[2]), "exercise": title,
                     "status": status, "tries": int(entry.get("tries", 0))})
    frame = pd.DataFrame(rows, columns=["lesson", "exercise", "status", "tries"])
    return frame.sort_values(["lesson", "exercise"], ignore_index=True)
