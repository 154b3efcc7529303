"""The Python objects a learner writes into maps, as the numbers the kernel takes.

The kernel names a socket, a program, a map, a cgroup or a task by a file descriptor of this
process, and an interface by its ifindex. A learner has the objects in hand: a socket, the
function BCC loaded, a `Map`, a `Cgroup`, a child process, "eth0". These turn one into the
other; a file descriptor opened only for the call (a pidfd for a child process, a cgroup's
directory) is closed again when the `with` block ends.
"""
from __future__ import annotations

import errno
import os
import socket
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..core.errors import KeyMissing, MapError, not_a_map
from .failures import KEY_HINTS, SOCKET_HINTS


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _fileno(obj):
    """An fd the object owns (a socket, a file, a Cgroup), or None."""
    if _is_int(obj):
        if not 0 <= int(obj) < 2**31:
            raise MapError(f"{int(obj)} is not a file descriptor: an fd is a small number this "
                           "process opened (0 to 2**31-1).",
                           "pass the object itself (a socket, a Map, a loaded function), or its "
                           ".fileno() / .fd.")
        return int(obj)
    fileno = getattr(obj, "fileno", None)
    if callable(fileno):
        return fileno()
    fd = getattr(obj, "fd", None)
    return int(fd) if _is_int(fd) else None


@contextmanager
def _opened(path, flags: int):
    fd = os.open(path, flags)
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def fd_for(obj, kind: str, map_name: str):
    """The file descriptor that names `obj` as a `kind` ("socket", "pidfd", "file",
    "cgroup"), for the `with` block. An int is taken as a file descriptor already."""
    fd = _fileno(obj)
    if fd is not None and fd < 0 and not _is_int(obj):
        raise MapError(f"{obj!r} is not an open {_KIND_WORDS[kind]} any more: it was closed, and "
                       f"a closed {_KIND_WORDS[kind]} keys nothing in {map_name!r}.",
                       "use it as a key while it is open: " + KEY_HINTS[kind])
    if fd is not None:
        yield fd
        return
    if kind == "pidfd" and _is_int(getattr(obj, "pid", None)):
        with _opened_pidfd(obj.pid) as pidfd:
            yield pidfd
        return
    if kind in ("file", "cgroup") and isinstance(obj, (str, Path)):
        flags = os.O_RDONLY | (os.O_DIRECTORY if kind == "cgroup" else 0)
        try:
            with _opened(obj, flags) as opened:
                yield opened
        except OSError as e:
            raise MapError(f"Could not open {str(obj)!r} to use as a key of {map_name!r}: "
                           f"{e.strerror}.", KEY_HINTS[kind], errno=e.errno) from None
        return
    raise MapError(f"{map_name!r} is keyed by a {_KIND_WORDS[kind]}; {type(obj).__name__} "
                   f"{obj!r} is not one.", KEY_HINTS[kind])


@contextmanager
def _opened_pidfd(pid: int):
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # a missing key, for get() and `in`: its value went with it
        raise KeyMissing(f"Process {pid} has exited, so it has no task storage any more.",
                       "task storage is freed with its task: read it while the process runs.") from None
    try:
        yield fd
    finally:
        os.close(fd)


_KIND_WORDS = {"socket": "socket", "pidfd": "task (a process)", "file": "file (an inode)",
               "cgroup": "cgroup"}


@contextmanager
def value_for(map_type, value, map_name: str, function_by_name=None):
    """`value` as the number a map whose values are kernel objects stores, for the block:
    an fd of a program, map, socket or cgroup, or an interface's ifindex. Plain data passes
    through unchanged. `function_by_name` loads a function of the map's own program by name
    (for program arrays)."""
    kind = map_type.values
    if kind == "program":
        if isinstance(value, str):
            if function_by_name is None:
                raise MapError(f"Map {map_name!r} does not belong to a bpfkit program, so a "
                               f"function name ({value!r}) cannot be loaded for it.", PROGRAM_HINT)
            value = function_by_name(value)
        fd = _fileno(value)
        if fd is None:
            raise MapError(f"A slot of {map_name!r} holds a program; {type(value).__name__} is "
                           "not one.", PROGRAM_HINT)
        yield fd
    elif kind == "map":
        if _is_int(value):
            raise MapError(
                f"A slot of {map_name!r} holds a map, so it takes a Map, not the number {value}.",
                f"write {map_name}[key] = prog[\"inner_map_name\"]. The kernel takes an inner map "
                "by fd and gives back its id: ids read from the outer map cannot be written back. "
                f"To copy a slot, use {map_name}[1] = {map_name}.inner(0).")
        fd = getattr(value, "fd", None)
        if not _is_int(fd):
            raise not_a_map(value, f"A slot of {map_name!r}", f'{map_name}[key] = prog["inner_map_name"]')
        yield fd
    elif kind == "device":
        yield ifindex(value)
    elif kind in ("socket", "xsk_socket", "perf_event"):
        fd = _fileno(value)
        if fd is None:
            raise MapError(f"A slot of {map_name!r} holds a {kind.replace('_', ' ')}; "
                           f"{type(value).__name__} is not one.",
                           "pass the socket object (or file descriptor) itself.")
        if kind != "perf_event":
            _check_socket(map_type, value, fd, map_name)
        yield fd
    elif kind == "cgroup":
        with fd_for(value, "cgroup", map_name) as fd:
            yield fd
    else:
        yield value


def _check_socket(map_type, value, fd: int, map_name: str) -> None:
    """Refuse, before the kernel does with a bare errno, what cannot be a socket of this map:
    a closed socket (its fileno() is -1), a number that is no open file, a file that is not a
    socket, and for an xskmap a socket that is not AF_XDP."""
    hint = SOCKET_HINTS.get(map_type.name, "pass the socket object (or its fd) itself.")
    then = hint[0].upper() + hint[1:]   # the same, after a sentence of its own
    if fd < 0 and not _is_int(value):
        raise MapError(f"The socket written into {map_name!r} is closed: {value!r}.",
                       "write a socket while it is open (a closed one has no file descriptor "
                       "left); make a new one if you closed it. " + then)
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        raise MapError(f"{value!r} is not an open file descriptor, so it names no socket for "
                       f"{map_name!r}.", "pass the socket object itself while it is open. " + then,
                       errno=errno.EBADF) from None
    if not stat.S_ISSOCK(mode):
        raise MapError(f"{value!r} is not a socket, and {map_name!r} ({map_type.a}) holds sockets.",
                       hint, errno=errno.ENOTSOCK)
    if map_type.values == "xsk_socket":
        family = _family(fd)
        if family is not None and family != AF_XDP:
            name = getattr(socket.AddressFamily, "_value2member_map_", {}).get(family)
            name = name.name if name is not None else f"family {family}"
            raise MapError(f"{value!r} is an {name} socket, not an AF_XDP one: an xskmap holds "
                           "AF_XDP sockets only, each bound to one queue of an interface, so "
                           "XDP can hand it frames.", hint, errno=errno.EOPNOTSUPP)


AF_XDP = 44


def _family(fd: int) -> int | None:
    """The socket's address family (SO_DOMAIN), asked through a copy of its fd: Python's own
    socket(fileno=fd) asks more of it than an AF_XDP socket answers."""
    copy = os.dup(fd)
    try:
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=copy)
    except OSError:
        os.close(copy)
        return None
    with probe:
        try:
            return probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        except OSError:
            return None


def ifindex(value) -> int:
    """An interface's ifindex, from its name (in this network namespace) or the number itself."""
    if isinstance(value, str):
        try:
            return socket.if_nametoindex(value)
        except OSError:
            raise MapError(f"There is no interface named {value!r} in this network namespace.",
                           "list them with `ip -o link`; an interface inside another namespace "
                           "is only visible there.") from None
    return value


PROGRAM_HINT = ("store a loaded function, its fd, or the name of a function in the same C program: "
                "m[0] = prog.load_func('handler', 'tracepoint'), m[0] = fn.fd, or m[0] = 'handler'.")
