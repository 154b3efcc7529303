"""Exercise checks: each lesson's check looks at the learner's real program and map, and says
what is right and what is still wrong, in words. A check never raises on a wrong answer, so
a lesson notebook with an unfinished exercise still runs top to bottom; it returns a `Result`
that prints as feedback and is truthy only when the exercise is solved.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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


class Checker:
    """Collects the problems a check finds: `expect(condition, 'what is wrong and what to do')`."""

    def __init__(self, exercise: str, praise: str = "Well done."):
        self.result = Result(exercise, praise=praise)

    def expect(self, condition, problem: str) -> bool:
        if not condition:
            self.result.problems.append(problem)
        return bool(condition)

    def done(self) -> Result:
        return self.result
