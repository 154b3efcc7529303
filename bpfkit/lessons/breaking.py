"""Break it: a lesson changes one line of its program, the learner predicts what the toolchain and
the kernel will say, and then sees the kernel's log beside the kit's explanation.

The verifier is what makes BPF safe, and a learner who only ever loads programs that pass never
sees it work. A `Break` is one such change, defined in its lesson's module (so its prediction
is one of that lesson's exercises in the progress table):

    NO_NULL_CHECK = Break(__name__, "Use the lookup's pointer without checking it",
                          program="read_histogram", old="watched == NULL || ", new="")

and a notebook cell runs `attempt(NO_NULL_CHECK, prediction)`. What happens is found by trying on
this machine, never assumed: the same change loads on one kernel and is refused on another (a
newer verifier knows more), and the lesson says which, by what it saw. A prediction not yet
written shows nothing of the outcome: the learner thinks before the kit tells.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field

from ..core.errors import BpfkitError, CompileError, NotAllowedHere, UsageError, VerifierError
from ..loader import program as _program
from .checker import Checker, Result, exercise

# What a learner can predict, and how the reveal words each outcome.
OUTCOMES = {
    "loads": "it compiles and the verifier accepts it",
    "compiler": "the compiler refuses it, before the kernel sees anything",
    "verifier": "it compiles, and the kernel's verifier refuses to load it",
}


@dataclass(frozen=True)
class Break:
    """One line of a lesson's program changed (`old` becomes `new`, once) and what to ask.

    `function` and `prog_type` load one function by hand (an XDP function, which BCC does not
    load on its own); tracepoint functions load with the program. `why` gives, per outcome, the
    sentence that explains it (shown once the learner has predicted); `question` is what a
    wrong prediction asks first, `hint` what it adds on the next try."""
    module: str
    title: str
    program: str
    old: str
    new: str
    function: str | None = None
    prog_type: str | None = None
    question: str = "What does the verifier know about the changed line's values when it reaches it?"
    hint: str = ""
    why: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "check", _prediction_check(self))

    def changed(self) -> str:
        """The program's C with the one change made; a change that does not apply is the
        lesson's mistake, said as one."""
        text, _, shown = _program.resolve(self.program)
        if text.count(self.old) != 1:
            raise UsageError(f"The break {self.title!r} changes {self.old!r}, which {shown} has "
                             f"{text.count(self.old)} times, not once.",
                             "name a piece of one line that occurs exactly once.")
        return text.replace(self.old, self.new)


@dataclass
class Attempt:
    """What the changed program did here, and the learner's prediction's check."""
    brk: Break
    prediction: str | None
    outcome: str | None        # a key of OUTCOMES, or None where the kernel refused the program type
    error: BpfkitError | None  # what the kit said (a CompileError, a VerifierError, ...)
    result: Result | None      # the prediction's check; None until the learner predicts

    @property
    def revealed(self) -> bool:
        return self.prediction is not None

    def __str__(self) -> str:
        lines = [f"Break it: {self.brk.title}", f"  - {self.brk.old.strip()}",
                 f"  + {self.brk.new.strip() or '(nothing)'}"]
        if not self.revealed:
            lines.append("Predict first: set `prediction` to " + _choices() + ", then run the cell again.")
            return "\n".join(lines)
        lines.append(f"On this machine: {self.said()}")
        if self.error is not None:
            lines += ["The kernel's and the toolchain's words:", self.log() or "  (none)",
                      f"What the kit says: {self.error.what} {self.error.hint}".rstrip()]
        if self.result is not None:
            lines.append(str(self.result))
        return "\n".join(lines)

    __repr__ = __str__

    def said(self) -> str:
        if self.outcome is None:
            return f"the kernel refused the program itself: {self.error.what if self.error else ''}"
        why = self.brk.why.get(self.outcome, "")
        return f"{OUTCOMES[self.outcome]}." + (f" {why}" if why else "")

    def log(self) -> str:
        return (self.error.detail or "").strip() if self.error is not None else ""

    def _repr_html_(self) -> str:
        e = html.escape
        diff = (f'<pre style="margin:0.3em 0"><span style="color:#b31d28">- {e(self.brk.old.strip())}</span>\n'
                f'<span style="color:#22863a">+ {e(self.brk.new.strip() or "(nothing)")}</span></pre>')
        head = f"<strong>Break it: {e(self.brk.title)}</strong>{diff}"
        if not self.revealed:
            return (f"<div>{head}<div>Predict first: set <code>prediction</code> to "
                    f"{e(_choices())}, then run the cell again.</div></div>")
        body = f"<div><strong>On this machine:</strong> {e(self.said())}</div>"
        if self.error is not None:
            cell = "vertical-align:top; padding:0.3em; text-align:left; white-space:normal"
            body += ('<table style="width:100%; table-layout:fixed"><tr>'
                     f'<th style="{cell}">What the kernel and the toolchain said</th>'
                     f'<th style="{cell}">What the kit says</th></tr><tr>'
                     f'<td style="{cell}"><pre style="white-space:pre-wrap; margin:0">{e(self.log() or "(none)")}</pre></td>'
                     f'<td style="{cell}">{e(self.error.what)}<br><em>What to do:</em> {e(self.error.hint)}</td>'
                     "</tr></table>")
        if self.result is not None:
            body += self.result._repr_html_()
        return f"<div>{head}{body}</div>"


def _choices() -> str:
    return ", ".join(f'"{k}"' for k in OUTCOMES)


def _prediction_check(brk: Break):
    @exercise(f"Break it: {brk.title}", module=brk.module,
              praise="You predicted what the kernel did.")
    def check(c: Checker, prediction: str, outcome: str) -> None:
        c.expect(prediction == outcome,
                 f"You predicted {prediction!r}; on this machine {OUTCOMES[outcome]}. "
                 f"{brk.question}",
                 hint=brk.hint or None, fix=brk.why.get(outcome) or None)
    return check


def _normal(prediction) -> str | None:
    """A prediction as a key of OUTCOMES, or None while it is not one (not yet written)."""
    if not isinstance(prediction, str):
        return None
    word = prediction.strip().strip(".").lower()
    return next((k for k in OUTCOMES if word == k or word.startswith(k)), None)


def outcome_of(brk: Break) -> tuple[str | None, BpfkitError | None]:
    """Compile and load the changed program here, close it at once, and say what happened."""
    loaded = None
    try:
        loaded = _program.load(brk.changed(), name=f"break_{brk.module.rpartition('.')[2]}",
                               where=f"the changed program ({brk.title})")
        if brk.function:
            loaded.load_func(brk.function, brk.prog_type or "xdp")
        return "loads", None
    except CompileError as e:
        return "compiler", e
    except VerifierError as e:
        return "verifier", e
    except NotAllowedHere as e:
        return None, e
    finally:
        if loaded is not None:
            loaded.close()


def attempt(brk: Break, prediction=None) -> Attempt:
    """Make the change, load it, and (once `prediction` is one of OUTCOMES) show what happened
    beside the prediction, recording it as the break's exercise."""
    outcome, error = outcome_of(brk)
    said = _normal(prediction)
    result = brk.check(said, outcome) if said is not None and outcome is not None else None
    return Attempt(brk, said, outcome, error, result)
