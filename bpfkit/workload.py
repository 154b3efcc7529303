"""Ways to make the kernel run a lesson's program a known number of times.

A lesson is only convincing when the map's numbers can be checked against what we did, so
these helpers do exactly what they say: `run_as(uid, n)` makes exactly n execve() calls as
that uid (an absolute path, so no PATH search adds failed attempts).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess

TRUE = shutil.which("true") or "/bin/true"


def unused_uid(after: int | None = None) -> int:
    """A uid no account on this machine has, so nothing else runs as it; `after` asks for the
    next such uid above one already in use (for a second and third user)."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    uid = after + 1 if after is not None else 61000 + os.getpid() % 3000
    while uid in taken:
        uid += 1
    return uid


def run_as(uid: int, n: int = 1, argv: list[str] | None = None) -> None:
    """Exactly `n` execve() calls by processes running as `uid` (needs root)."""
    argv = argv or [TRUE]
    for _ in range(n):
        subprocess.run(argv, user=uid, group=uid if uid else None, check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd="/")


def user_name(uid: int) -> str:
    """The account name of `uid`, or the number itself when no account has it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
