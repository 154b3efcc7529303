"""Entering a network namespace for a moment: `with inside("bpfkit-a"): ...`.

Names and ifindexes of interfaces mean something only within one network namespace, and a
socket belongs to the namespace it was made in. Lessons build hosts in namespaces of their own
(see net.py) and look inside them, for one thread, for the length of a `with` block.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ..core import atomic
from ..access._libc import libc
from ..core.errors import NotFound

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc.setns(fd, CLONE_NEWNET)   # OSError(errno) on failure, as os.setns


@contextmanager
def inside(netns: str):
    """Run the `with` body in network namespace `netns` (this thread only), then come back.

    Sockets made inside stay in `netns`; names and ifindexes looked up inside are `netns`'s."""
    path = NETNS_DIR / netns
    if not path.exists():
        raise NotFound(f"There is no network namespace {netns!r}.",
                       "list them with `ip netns list`; a Lab makes its hosts' namespaces.")
    home = target = None
    entered = False
    try:
        with atomic.step():  # Stop cannot fall between entering and the `finally` that leaves
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            target = os.open(path, os.O_RDONLY)
            _setns(target)
            entered = True
        yield
    finally:
        with atomic.step():
            if entered:
                _setns(home)
            for fd in (target, home):
                if fd is not None:
                    os.close(fd)
