"""Pins: a map kept alive under a path in the BPF filesystem, for other programs and later runs.

A map lives while something holds it: a program, a file descriptor, or a pin, a file in bpffs
(/sys/fs/bpf) that names it. A pin outlives the process that made it, which is the point, and
also the danger: a pin nobody removes keeps its map in the kernel until reboot. So every pin
bpfkit makes is registered (closed by `close_all()`, and at exit) and recorded under
/run/bpfkit, and a later run removes the pins of processes that died without cleaning up.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from ..core import atomic
from ..host import lifetime
from ..access import refusal
from ..access._libbpf import lib
from ..core.errors import MapError
from ..access.system import BPFFS


def path_of(name) -> Path:
    """A pin's full path: a bare name goes under /sys/fs/bpf."""
    path = Path(name)
    return path if path.is_absolute() else BPFFS / path


def cleanup_stale() -> list[str]:
    """Remove the pins bpfkit processes made and left behind when they died."""
    stale = sorted(lifetime.orphans("pin"))
    removed = []
    for path in stale:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
        except OSError:
            continue  # not ours to remove after all: leave it on record
    lifetime.forget_orphans("pin", stale)
    return removed


class Pin:
    """A map pinned at `path`; `close()` removes the pin (the map goes when nothing else holds it)."""

    @atomic.whole
    def __init__(self, fd: int, name, map_name: str):
        path = path_of(name)
        cleanup_stale()
        lifetime.claim("pin", str(path))   # before: a kill right after the pin leaves a record
        try:
            lib.bpf_obj_pin(fd, str(path).encode())
        except OSError as e:
            if lifetime.get("pin", str(path)) is None:   # not a pin of ours made again
                lifetime.release("pin", str(path))
            raise _pin_error(e.errno, path, map_name) from None
        lifetime.made("pin")
        self.path = path
        self.closed = False
        previous = lifetime.add("pin", str(path), self)
        if previous is not None:
            previous.closed = True  # the same path again: the file is the new pin now

    @atomic.whole
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        lifetime.discard("pin", str(self.path), self)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        lifetime.release("pin", str(self.path))

    def __repr__(self) -> str:
        return f"<bpfkit pin {self.path}{' (removed)' if self.closed else ''}>"


def _pin_error(err: int, path: Path, map_name: str) -> MapError:
    if err == errno.EEXIST:
        return MapError(f"Could not pin {map_name!r} at {path}: something is pinned there already.",
                        f"pick another name, or remove the old pin (rm {path}) if nothing uses it.",
                        errno=err)
    if err in (errno.ENOENT, errno.EPERM, errno.EINVAL):
        return MapError(f"Could not pin {map_name!r} at {path}: {os.strerror(err)}.",
                        f"a pin must be inside a mounted BPF filesystem ({BPFFS}, in a folder "
                        "that exists); `python -m bpfkit doctor` checks the mount.", errno=err)
    return MapError(f"Could not pin {map_name!r} at {path}: {os.strerror(err)}.",
                    "pinning needs root (CAP_BPF) and a mounted BPF filesystem.", errno=err)


def open_fd(name) -> int:
    """A new fd of the map pinned at `name` (a path, or a name under /sys/fs/bpf)."""
    path = path_of(name)
    try:
        fd = lib.bpf_obj_get(str(path).encode())
    except OSError as e:
        if e.errno == errno.EPERM:   # a missing privilege, or the kernel's own policy
            raise refusal.explain(e.errno, f"opening the map pinned at {path}") from None
        if e.errno in (errno.EMFILE, errno.ENFILE):
            from .failures import too_many_files
            raise too_many_files(e.errno, f"open the map pinned at {path}") from None
        if e.errno == errno.EACCES and (path.is_dir() or not _in_bpffs(path)):
            what = "a folder" if path.is_dir() else "a file outside the BPF filesystem"
            raise MapError(f"{path} is {what}, not a pin, so there is no map to open there "
                           f"({e.strerror}).",
                           f"pass the path of a map's pin: a file in the BPF filesystem ({BPFFS}), "
                           "such as the one m.pin(name) made; `ls /sys/fs/bpf` lists them.",
                           errno=e.errno) from None
        hint = ("list what is pinned with `ls /sys/fs/bpf`." if e.errno == errno.ENOENT else
                "check the pin's file permissions (ls -l): the kernel checks them as for a file.")
        raise MapError(f"Could not open the map pinned at {path}: {e.strerror}.", hint,
                       errno=e.errno) from None
    kind = _kind_of(fd)
    if kind != "map":
        os.close(fd)
        raise MapError(f"What is pinned at {path} is a BPF {_KIND_WORDS.get(kind, kind)}, not a "
                       "map, so it cannot be opened as one.",
                       "open_pinned() takes the pin of a map (`bpftool map show pinned PATH` shows one); "
                       + _KIND_HINTS.get(kind, "list what is pinned with `ls /sys/fs/bpf`."))
    return fd


# What the kernel names each kind of BPF file (the fd's anon inode), and what to do with a pin of it.
_KIND_WORDS = {"prog": "program", "link": "link (an attached program)", "token": "token"}
_KIND_HINTS = {
    "prog": "a program's pin is for bpftool (`bpftool prog show pinned PATH`) or for attaching "
            "it again; read the maps it uses by their own pins, or from the program that "
            "loaded it (prog[\"name\"]).",
    "link": "a link's pin keeps a program attached; remove it (rm PATH) to detach the program.",
}


def _in_bpffs(path: Path) -> bool:
    """Is `path` under a mounted BPF filesystem (/proc/mounts, type bpf)? Only there are pins."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return True   # cannot tell: let the kernel's own answer stand
    where = os.path.realpath(path)
    return any(f[2] == "bpf" and (where == f[1] or where.startswith(f[1].rstrip("/") + "/"))
               for f in (line.split() for line in mounts) if len(f) > 2)


def _kind_of(fd: int) -> str:
    """"map", "prog", "link", ...: what a BPF fd stands for, from its anon inode's name
    (anon_inode:bpf-map, anon_inode:bpf-prog, anon_inode:bpf_link). A pin of any kind opens
    with the same call, and a program's info read as a map's gives nonsense, not an error."""
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "map"   # no /proc: the kernel's own answers must do
    kind = target.removeprefix("anon_inode:").removeprefix("bpf").lstrip("-_")
    return kind or "map"
