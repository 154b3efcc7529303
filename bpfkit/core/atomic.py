"""`step()`: a change to the kernel that happens whole or not at all, one thread at a time.

Loading a program creates maps, then programs, then links, and registers them; closing frees
them in turn. A Stop pressed in the middle (a KeyboardInterrupt, raised between any two Python
bytecodes) would leave objects nobody can reach: created in the kernel but not yet registered,
or detached but never freed. Inside a step the interrupt waits for the step's end and is raised
there, so the kernel is left as if the cell had not run or had run to completion. Steps nest;
the outermost one delivers the interrupt.

BCC and LLVM are not safe to use from two threads at once (a widget callback and a background
thread may load at the same time), and bpfkit briefly points the process's stderr at a file to
collect what the compiler or the verifier says: a step also holds the kit's one lock, so those
never overlap.
"""
from __future__ import annotations

import contextlib
import functools
import signal
import threading

_lock = threading.RLock()
_depth = threading.local()


class Step:
    """What the caller of `step()` may ask: was Stop pressed while it ran?"""

    def __init__(self) -> None:
        self.interrupts: list = []

    @property
    def interrupted(self) -> bool:
        return bool(self.interrupts)


@contextlib.contextmanager
def step():
    """Hold the kit's lock and, in the main thread, hold back SIGINT until the block ends.

    Only the main thread receives KeyboardInterrupt, so other threads just take the lock."""
    with _lock:
        depth = getattr(_depth, "n", 0)
        outer = depth == 0 and threading.current_thread() is threading.main_thread()
        current = Step()
        previous = None
        if outer:
            try:
                previous = signal.signal(signal.SIGINT, lambda sig, frame: current.interrupts.append(frame))
            except ValueError:  # the interpreter is shutting down, or signals are not ours
                outer = False
        _depth.n = depth + 1
        try:
            yield current
        finally:
            _depth.n = depth
            if outer:
                signal.signal(signal.SIGINT, previous)
                if current.interrupted:
                    _deliver(previous, current.interrupts[0])


def _deliver(handler, frame) -> None:
    """Raise the held-back interrupt the way the handler in place would have."""
    if callable(handler):
        handler(signal.SIGINT, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signal.SIGINT)
    # SIG_IGN: the process ignores Stop; so do we


def whole(fn):
    """Decorator: `fn` runs as one step (it makes or frees kernel or system objects)."""
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with step():
            return fn(*args, **kwargs)
    return run
