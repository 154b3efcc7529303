"""The errors a learner sees.

Every failure bpfkit can explain becomes one of these, carrying a plain-words account of what
happened and a hint for what to do next, so a notebook shows two short paragraphs instead of a
traceback from deep inside BCC. In IPython the traceback is hidden too (see `magic.py`).

Every raise in the kit names its family, so code (and tests) can tell failures apart by class or
by `errno` (kept wherever the kernel's answer caused it), never by the words: the machine
(SetupError), the C code (CompileError, VerifierError), the kernel saying no (LoadError,
AttachError, KernelError, MapError), the learner's call (UsageError, NotFound), something gone
(Closed) or taken (InUse). A family that stands for one of Python's own errors subclasses it too
(UsageError is a ValueError and a TypeError, MapNotFound a KeyError), so `except ValueError` in a
learner's code still works.
"""
from __future__ import annotations

import difflib


class BpfkitError(Exception):
    """Base of all bpfkit errors: `what` happened, `hint` says what to do."""

    def __init__(self, what: str, hint: str = "", *, detail: str = "", errno: int | None = None,
                 short: str = ""):
        self.what = what
        self.hint = hint
        self.detail = detail
        self.errno = errno    # the kernel's number, where the kernel said no: tests match it, not words
        self.short = short    # a few words for a row of a table (map_types(), program_types())
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what]
        if self.detail:
            parts.append(self.detail.rstrip())
        if self.hint:
            parts.append(f"What to do: {self.hint}")
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.message


class SetupError(BpfkitError):
    """The machine is missing a piece (BCC, headers, tracefs, privilege)."""


class BccMissing(SetupError):
    pass


class HeadersMissing(SetupError):
    pass


class TracefsMissing(SetupError):
    pass


class PrivilegeError(SetupError):
    pass


class CompileError(BpfkitError):
    """The C source did not compile."""


class VerifierError(BpfkitError):
    """The kernel's verifier refused a program."""


class LoadError(BpfkitError):
    """The kernel refused a program or map for a reason other than the verifier."""


class NotAllowedHere(LoadError):
    """The kernel refused a feature itself: its policy forbids it to a process holding every
    capability (lockdown, a security module), or it lacks the feature. No privilege and no
    change to the learner's code helps; a lesson skips the part that needs it."""


class AttachError(BpfkitError):
    """A program compiled and loaded but could not be attached to its hook."""


class TracepointNotFound(AttachError):
    pass


class UsageError(BpfkitError, ValueError, TypeError):
    """An argument the kit cannot use (a wrong kind, a number out of range, an unknown name):
    the learner's call is what to change. A ValueError and a TypeError, so that code written
    for Python's own errors still catches it."""


class NotFound(BpfkitError, LookupError):
    """A name the learner gave (a program, a C function, a network interface or namespace, a
    command) that does not exist where the kit looked."""


class Closed(BpfkitError):
    """The object was closed (or replaced) and cannot be used any more: make a new one."""


class KernelError(BpfkitError):
    """The kernel refused an operation on something already made (run a program, bind a
    socket, move a process into a cgroup); `errno` says why."""


class InUse(BpfkitError):
    """A name the kit would take (a cgroup, a lab's host) belongs to another running process, or
    to leftovers the kit may not remove."""


class WorkloadError(BpfkitError):
    """A process the kit started to give the kernel work (a child, a compiled helper) failed."""


class CleanupError(BpfkitError):
    """`close_all(check=True)` found something the kit made still open after freeing it all."""


class MapNotFound(NotFound, KeyError):
    """A map name that the program does not define."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class MapError(BpfkitError):
    """A map operation from user space failed."""


class MapFull(MapError):
    pass


class KeyMissing(MapError, KeyError):
    """`m[key]` for a key the map does not hold (a KeyError, as for a dict)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class MapEmpty(MapError, IndexError):
    """pop() or peek() on an empty queue or stack (IndexError, as for a Python list)."""


class KeyTypeError(MapError, TypeError):
    """A Python key or value that does not fit the map's C type."""


class ProgramClosed(Closed):
    """The program was closed (or replaced by a re-run cell) and its maps are gone."""


class NoSuchAttribute(BpfkitError, AttributeError):
    """A misspelled method or attribute of a Program or Map (`.fram()`, `.itmes()`)."""


class ColumnError(BpfkitError, KeyError, ValueError):
    """`frame(columns=...)` names a column the frame does not have, or the wrong number of them."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


def no_attribute(obj, name: str, choices, extra: str = "") -> NoSuchAttribute:
    """The error for `obj.name` when `obj` has no such attribute, suggesting the nearest."""
    kind = type(obj).__name__
    public = sorted(c for c in set(choices) if not c.startswith("_"))
    close = nearest(name, public, n=2, cutoff=0.6)
    what = f"A bpfkit {kind} has no attribute {name!r}."
    if close:
        hint = f"Did you mean {' or '.join('.' + c for c in close)}?"
    elif public:
        hint = f"its methods and attributes are {', '.join(c for c in public if not c.isupper())}."
    else:
        hint = ""
    if extra:
        hint = f"{hint} {extra}".strip()
    err = NoSuchAttribute(what, hint)
    err.name, err.obj = name, obj  # what Python's own AttributeError carries
    return err


def not_a_map(obj, place: str, example: str) -> MapError:
    """The error for something else (most often a whole program) where a map goes."""
    names = getattr(obj, "map_names", None)
    if callable(names):  # a Program: say which of its maps to take
        try:
            maps = names()
        except BpfkitError:  # a closed program
            maps = []
        first = maps[0] if maps else "counter_table"
        return MapError(f"{place} takes one map, and this is the whole program "
                        f"{getattr(obj, 'name', '')!r}.",
                        f"pass one of its maps: prog[{first!r}]"
                        + (f"; its maps are {', '.join(maps)}." if maps else "."))
    return MapError(f"{place} takes a bpfkit Map, not {type(obj).__name__}.",
                    f"get one from a program (prog[\"counter_table\"]) or make one: {example}.")


def nearest(word: str, choices, n: int = 3, cutoff: float = 0.5) -> list[str]:
    """The choices that look most like `word`, best first (for 'did you mean')."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=n, cutoff=cutoff)
    if not close:
        low = word.lower()
        close = [c for c in choices if low in c.lower() or c.lower() in low][:n]
    return close


def did_you_mean(word: str, choices) -> str:
    close = nearest(word, choices)
    return f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
