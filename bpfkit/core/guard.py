"""`Guard` and `Fd`: an object that several threads use and any of them may close.

The kernel names a map, a program or a link by a file descriptor number, and it hands a closed
number to the very next object anyone opens. A call that read the number just before another
thread closed it would reach that new object: a write meant for the learner's map lands in an
unrelated one, silently. Memory the kit maps (a user ring buffer, an AF_XDP ring) has the same
race, with a crash instead of a wrong write.

So nothing is freed under a call that uses it. A public method enters the object's guard for
its whole run (`@held`); `close()` marks the object closed at once (every later call is refused
with the object's own "closed" error) but the release (os.close, libbpf's free) runs when the
last call in flight leaves, in whichever thread that is: Go's os.File works the same way. A close
never waits, and the number is not free for reuse while anyone still uses it.

Stop (KeyboardInterrupt) arrives between any two bytecodes of the main thread, so a call may be
cut off between entering and leaving. The closing thread's own entries are therefore not counted
as calls in flight (a thread that closes an object is not inside a call on it any more), nor are
those of threads that have ended: an interrupted call cannot keep an object alive forever.

`BPFKIT_TRACK_FDS=1` (set by the test suite) records where each Fd was opened and closed, so a
leak or a use after close names its origin.
"""
from __future__ import annotations

import functools
import os
import threading
import traceback

OPEN, CLOSING, RELEASED = "open", "closing", "released"
_tracked: dict[int, "Fd"] = {}   # id -> Fd not yet released (only when TRACK)
_tracked_lock = threading.Lock()


def tracking() -> bool:
    return os.environ.get("BPFKIT_TRACK_FDS", "") not in ("", "0")


def _origin() -> str:
    """Where an Fd was opened or closed: the kit's line that did it and the first line outside
    the kit that led there (a test's, a notebook's)."""
    kit = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    inside = outside = None
    for frame in reversed(traceback.extract_stack()[:-2]):
        if frame.filename == __file__:
            continue
        if os.path.abspath(frame.filename).startswith(kit + os.sep):
            inside = inside or f"{os.path.relpath(frame.filename, os.path.dirname(kit))}:{frame.lineno}"
        else:
            outside = f"{frame.filename}:{frame.lineno} in {frame.name}"
            break
    return " from ".join(p for p in (inside, outside) if p) or "?"


class Guard:
    """Calls in flight on one object, and the release that waits for them."""

    def __init__(self, release, refuse):
        """`release()` frees the object (exactly once); `refuse()` makes the error a call on
        the closed object raises (the object's own words)."""
        self._lock = threading.Lock()
        self._users: dict[int, int] = {}   # thread id -> calls of that thread in flight
        self._state = OPEN
        self._release = release
        self._refuse = refuse
        self.closed_at = ""

    @property
    def closed(self) -> bool:
        return self._state != OPEN

    def enter(self, refuse=None) -> None:
        me = threading.get_ident()
        with self._lock:
            if self._state != OPEN:
                raise (refuse or self._refuse)()
            self._users[me] = self._users.get(me, 0) + 1

    def leave(self) -> None:
        me = threading.get_ident()
        with self._lock:
            left = self._users.get(me, 0) - 1
            if left > 0:
                self._users[me] = left
            else:
                self._users.pop(me, None)
            now = self._state == CLOSING and not self._users
            if now:
                self._state = RELEASED
        if now:
            self._release()

    def close(self) -> bool:
        """Refuse every later call; release now, or when the last call in flight leaves.
        False if it was closed already."""
        me = threading.get_ident()
        running = {t.ident for t in threading.enumerate()}
        with self._lock:
            if self._state != OPEN:
                return False
            self._users = {t: n for t, n in self._users.items() if t != me and t in running}
            self._state = CLOSING if self._users else RELEASED
            now = self._state == RELEASED
            if tracking():
                self.closed_at = _origin()
        if now:
            self._release()
        return True

    def __enter__(self):
        self.enter()
        return self

    def __exit__(self, *exc) -> None:
        self.leave()


class Shared:
    """Another object's guard, refusing in this object's words: a program's map is used
    inside its program's guard (the program's close frees the map) but, closed, it says
    which map is gone."""

    def __init__(self, guard: Guard, refuse):
        self._guard = guard
        self._refuse = refuse

    @property
    def closed(self) -> bool:
        return self._guard.closed

    def enter(self) -> None:
        self._guard.enter(self._refuse)

    def leave(self) -> None:
        self._guard.leave()

    def close(self) -> bool:
        return False   # the owner closes

    __enter__, __exit__ = Guard.__enter__, Guard.__exit__


class Guarded:
    """What every object with a guard answers the same way: `closed`, and `_check_open()`
    raising the object's own `_closed_error()`."""

    @property
    def closed(self) -> bool:
        return self._guard.closed

    def _check_open(self) -> None:
        if self._guard.closed:
            raise self._closed_error()


def held(method):
    """Decorator: the method runs inside its object's guard (`self._guard`)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        guard = self._guard
        guard.enter()
        try:
            return method(self, *args, **kwargs)
        finally:
            guard.leave()
    return run


class Fd(Guard):
    """The one owner of a file descriptor: closed exactly once, never while a call uses it."""

    def __init__(self, number: int, refuse, what: str = "fd"):
        super().__init__(self._close_number, refuse)
        self._number = number
        self.what = what
        self.origin = _origin() if tracking() else ""
        if self.origin:
            with _tracked_lock:
                _tracked[id(self)] = self

    @property
    def number(self) -> int:
        """The fd, for a call made inside the guard (`with fd:` or a `@held` method)."""
        if self._state != OPEN:
            raise self._refuse()
        return self._number

    def _close_number(self) -> None:
        with _tracked_lock:
            _tracked.pop(id(self), None)
        os.close(self._number)

    def __repr__(self) -> str:
        where = f" opened at {self.origin}" if self.origin else ""
        return f"<Fd {self._number} {self.what} {self._state}{where}>"


def unreleased() -> list[Fd]:
    """Fds opened and not yet released (recorded only with BPFKIT_TRACK_FDS=1): a test's leak
    check, each with where it was opened."""
    with _tracked_lock:
        return list(_tracked.values())
