"""One registry of everything bpfkit made in the kernel or the system, and `close_all()`.

A notebook makes programs, maps, pins, cgroups and network labs, re-runs cells, and is
stopped or restarted at any moment. Each of those objects registers here when it is made and
leaves when it closes, so one call (and interpreter exit) frees all of it, in an order that
never pulls a thing out from under another: the child processes a lesson drives first (a
cgroup with a process in it cannot go), labs (their XDP programs detach), then cgroups (their
programs detach), programs, sockets (AF_XDP), the maps the learner made, and
pins last.

Some things outlive a process that dies without exiting cleanly (SIGKILL, a crashed kernel):
network namespaces, veth cables, cgroups (with the programs attached to them), pins, folders
in /tmp, a sysctl turned on, a struct_ops registration made without a link. `claim()` writes
their names to a record of this process under /run/bpfkit BEFORE the change is made, so that
a later run can tell a leftover of a dead process (`orphans()`) from something a live notebook
still uses (`owners()`), and `free_dead()` undoes it: every load and every lab calls it (cheap
when no record of a dead process exists), and so does `python -m bpfkit reset`. Each kind is
undone by the module that makes it (`undoer()`); the simple ones (pins, folders, sysctls,
struct_ops) here.

Test switch: with the environment variable BPFKIT_KILL_AFTER=<kind> (or <kind>:<n>, the n-th
time), `made(kind)`, which the kit calls right after it makes a change of that kind, SIGKILLs
this process (tests/test_kill_undo.py kills at each such moment).
"""
from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import sys
import threading
import warnings
from pathlib import Path

from ..core.errors import CleanupError, UsageError
from ..access import kernel

ORDER = ("child", "lab", "cgroup", "program", "socket", "map", "pin")  # sockets: AF_XDP (bpfkit.lab.xsk)
OWNERS = Path("/run/bpfkit")
PREFIX = "bpfkit-"  # the start of every name the kit gives a cgroup, a namespace or a cable

_lock = threading.RLock()
_held: dict[str, dict] = {kind: {} for kind in ORDER}


def _kind(kind: str) -> dict:
    try:
        return _held[kind]
    except KeyError:
        raise UsageError(f"bpfkit makes no {kind!r}.", f"the kinds are {', '.join(ORDER)}.") from None


def add(kind: str, key, obj):
    """Register `obj` (anything with a `close()`) under `key`; returns the object registered
    there before, which the caller closes when it is ready to (a program is replaced only
    once its successor has loaded)."""
    with _lock:
        registry = _kind(kind)
        previous = registry.pop(key, None)
        registry[key] = obj
        return previous


def discard(kind: str, key, obj=None) -> None:
    """Forget `key` (only if it still names `obj`, when given): the object has closed."""
    with _lock:
        registry = _kind(kind)
        if key in registry and (obj is None or registry[key] is obj):
            del registry[key]


def get(kind: str, key):
    with _lock:
        return _kind(kind).get(key)


def held(kind: str | None = None) -> dict:
    """What the kit made and still holds open: {key: object} of one kind, or
    {kind: {key: object}} of every kind that holds something. (Named apart from
    `bpfkit.live`, the live plot of a map, which this has nothing to do with.)"""
    with _lock:
        if kind is not None:
            return dict(_kind(kind))
        return {k: dict(v) for k, v in _held.items() if v}


def close_all(*kinds: str, check: bool = False) -> None:
    """Close everything bpfkit made and has not closed yet (or only the `kinds` named), in
    `ORDER`, newest first within a kind. One failure does not stop the rest; each is reported
    as a warning.

    `check=True` is a lesson's last cell: after freeing, it makes sure nothing the kit made is
    left (nothing held, no pin or other system object this process claimed, no close that
    failed) and raises CleanupError naming what is, so a clean-up cell is one line that fails
    loudly instead of a row of asserts on the kit's insides."""
    failed = []
    for kind in ORDER:
        if kinds and kind not in kinds:
            continue
        while True:
            with _lock:
                registry = _held[kind]
                if not registry:
                    break
                key, obj = next(reversed(registry.items()))
                del registry[key]
            try:
                obj.close()
            except Exception as e:  # keep freeing the rest
                failed.append(f"{kind} {key!r} ({e})")
                if not check:
                    warnings.warn(f"bpfkit could not close {kind} {key!r}: {e}", stacklevel=2)
    if check:
        _check_freed(kinds, failed)


def _check_freed(kinds: tuple[str, ...], failed: list[str]) -> None:
    left = [f"{kind} {key!r}" for kind, objs in held().items() if not kinds or kind in kinds
            for key in objs]
    with _lock:
        claimed = [f"{kind} {name}" for kind, names in _mine().items() if not kinds or kind in kinds
                   for name in names]
    if not (failed or left or claimed):
        return
    parts = []
    if failed:
        parts.append("could not be closed: " + "; ".join(failed))
    if left:
        parts.append("is still open (made while close_all ran?): " + ", ".join(left))
    if claimed:
        parts.append("is still in the system: " + ", ".join(claimed))
    raise CleanupError("Not everything bpfkit made is gone. " + ". ".join(
        p[0].upper() + p[1:] for p in parts) + ".",
        "run bpfkit.close_all(check=True) again; if the same things stay, restart the notebook's "
        "kernel (Kernel > Restart) and run `python -m bpfkit reset --keep-lessons` in a terminal, "
        "which frees what the kit left behind.")


atexit.register(close_all)


# -- which process owns what survives it ---------------------------------------------------

def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, it names one process
    for good (a pid alone is reused)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def me() -> str:
    """"pid:start" of this process."""
    return f"{os.getpid()}:{start_time(os.getpid())}"


def alive(mark: str | None) -> bool:
    """Is the process a "pid:start" mark names still running?"""
    if not mark or ":" not in mark:
        return False
    pid, _, start = mark.partition(":")
    return pid.isdigit() and start_time(int(pid)) == start


def _record() -> Path:
    return OWNERS / f"owner-{me().replace(':', '-')}.json"


def _records():
    """(mark, claims, path) for every process's record."""
    if not OWNERS.is_dir():
        return
    for path in OWNERS.glob("owner-*.json"):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        yield data.get("mark", ""), data.get("claims", {}), path


def _write(claims: dict) -> None:
    path = _record()
    claims = {k: sorted(set(v)) for k, v in claims.items() if v}
    if not claims:
        path.unlink(missing_ok=True)
        return
    OWNERS.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"mark": me(), "claims": claims}))
    tmp.replace(path)


def _mine() -> dict:
    try:
        return json.loads(_record().read_text()).get("claims", {})
    except (OSError, ValueError):
        return {}


def claim(kind: str, *names: str) -> None:
    """Record that this process owns these system objects (namespaces, links, pins)."""
    with _lock:
        claims = _mine()
        claims.setdefault(kind, [])
        claims[kind] = list(set(claims[kind]) | set(names))
        _write(claims)


def release(kind: str, *names: str) -> None:
    with _lock:
        claims = _mine()
        claims[kind] = [n for n in claims.get(kind, []) if n not in names]
        _write(claims)


def owners(kind: str) -> dict[str, int]:
    """Names of `kind` that other live processes own -> that process's pid."""
    out = {}
    mine = me()
    for mark, claims, _ in _records():
        if mark != mine and alive(mark):
            out.update({name: int(mark.split(":")[0]) for name in claims.get(kind, [])})
    return out


def orphans(kind: str) -> set[str]:
    """Names of `kind` claimed by processes that are gone (their records go once nothing of
    theirs is left: see `forget_orphans`)."""
    return {name for mark, claims, _ in _records() if not alive(mark)
            for name in claims.get(kind, [])}


def forget_orphans(kind: str, names) -> None:
    """Drop `names` of `kind` from dead processes' records (they were removed)."""
    names = set(names)
    for mark, claims, path in list(_records()):
        if alive(mark) or kind not in claims:
            continue
        claims[kind] = [n for n in claims[kind] if n not in names]
        claims = {k: v for k, v in claims.items() if v}
        try:
            if claims:
                path.write_text(json.dumps({"mark": mark, "claims": claims}))
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass


# -- undoing what a dead process changed ----------------------------------------------------

def _unlink(path: str) -> None:
    Path(path).unlink(missing_ok=True)


def _rmtree(path: str) -> None:
    """A folder the kit made in /tmp (a compiled C program's sources and binary)."""
    if Path(path).name.startswith(PREFIX):   # never more than the kit's own folders
        shutil.rmtree(path, ignore_errors=True)


def _sysctl(entry: str) -> None:
    """"<path under /proc/sys>=<value before>": write the value back."""
    path, _, value = entry.partition("=")
    if path.startswith("/proc/sys/"):
        Path(path).write_text(value)


def _struct_ops(entry: str) -> None:
    """"<map id>:<map name>": unregister a struct_ops map registered without a link (deleting
    its one element is how the kernel is told), if the id still names that map."""
    map_id, _, name = entry.partition(":")
    info = kernel.map_info(int(map_id)) if map_id.isdigit() else None
    if not info or info.get("name") != name:
        return   # gone with its owner (a link), or the id names another map now
    fd = kernel.lib.bpf_map_get_fd_by_id(int(map_id))
    try:
        key = kernel.ct.c_uint32(0)
        kernel.lib.bpf_map_delete_elem(fd, kernel.ct.byref(key))
    except OSError:
        pass   # not registered (a link map whose link went): the map goes once unused
    finally:
        os.close(fd)


_undo = {"pin": _unlink, "dir": _rmtree, "sysctl": _sysctl, "struct_ops": _struct_ops}
# The order a dead process's changes are undone in, as close_all's: labs (their XDP programs go
# with the cables), cgroups (the programs attached to them go with them), folders, pins last.
UNDO_ORDER = ("struct_ops", "sysctl", "netdev", "cgroup", "dir", "pin")


def undoer(kind: str, undo) -> None:
    """Name how a `kind` a dead process claimed is undone: `undo(name)` (the module that makes
    that kind registers it on import)."""
    _undo[kind] = undo


def _dead_records() -> list[Path]:
    """The records of processes that are gone, told from the file name alone (owner-PID-START),
    so that with none the check costs one listdir and a stat per live owner."""
    try:
        names = os.listdir(OWNERS)
    except OSError:
        return []
    dead = []
    for name in names:
        if name.startswith("owner-") and name.endswith(".json"):
            pid, _, start = name[len("owner-"):-len(".json")].partition("-")
            if not alive(f"{pid}:{start}"):
                dead.append(OWNERS / name)
    return dead


def free_dead() -> dict[str, list[str]]:
    """Undo what processes that died without cleaning up (SIGKILL) left in the system, and
    forget their records; never what a live process owns. Returns {kind: [names undone]}.
    A kind whose module is not imported here stays recorded for a later run (or reset)."""
    freed: dict[str, list[str]] = {}
    dead = _dead_records()
    if not dead:
        return freed
    live = {kind: set(owners(kind)) for kind in _undo}   # a pin path made again by a live run
    for path in dead:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        claims = data.get("claims", {})
        if alive(data.get("mark")):
            continue
        left = {}
        for kind in sorted(claims, key=lambda k: UNDO_ORDER.index(k) if k in UNDO_ORDER else 0):
            undo = _undo.get(kind)
            for name in claims[kind]:
                if name in live.get(kind, ()):
                    continue   # a live process made the same thing again: it is theirs now
                if undo is None:
                    left.setdefault(kind, []).append(name)
                    continue
                try:
                    undo(name)
                    freed.setdefault(kind, []).append(name)
                except OSError:
                    left.setdefault(kind, []).append(name)   # busy: try again next time
        try:
            if left:
                path.write_text(json.dumps({"mark": data.get("mark"), "claims": left}))
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass
    return freed


def made(kind: str) -> None:
    """The kit made a change of `kind` (claimed before): the kill test's moment (see above)."""
    target = os.environ.get("BPFKIT_KILL_AFTER")
    if not target:
        return
    want, _, nth = target.partition(":")
    if want != kind:
        return
    _made[kind] = _made.get(kind, 0) + 1
    if _made[kind] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_made: dict[str, int] = {}

kernel.owner = sys.modules[__name__]   # access/kernel.py records its sysctl through claim()
