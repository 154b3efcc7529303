"""What a refused map operation means: one table from the kernel's errno to a learner's error.

The kernel answers a bad map operation with a bare number, and the same number means different
things for different maps: EINVAL is "past the end" for one, "not a program of the caller's
type" for a program array, "not like the template" for a map of maps. The rules below are
tried in order; the first that matches the operation, the errno and the map type speaks.
"""
from __future__ import annotations

import errno
import fcntl
import os
import resource
from dataclasses import dataclass
from typing import Callable

from ..access import refusal
from ..core.errors import BpfkitError, KeyMissing, MapEmpty, MapError, MapFull
from ..core.maptypes import MapType

ENOTSUPP = refusal.ENOTSUPP  # the kernel's own "not supported", which errno does not name

OP_WORDS = {"lookup": "read", "update": "update", "delete": "delete from", "iterate": "walk",
            "push": "push onto", "pop": "pop from", "peek": "peek at", "add": "add to",
            "test": "test", "batch": "read in batches", "pin": "pin"}


@dataclass(frozen=True)
class Rule:
    errnos: tuple
    ops: tuple          # operations it speaks for; () for any
    applies: Callable[[MapType], bool]
    error: type
    what: str
    hint: str
    flags: int = 0      # map flags the map must have for the rule to speak

    def matches(self, op: str, err: int, mt: MapType, map_flags: int = 0) -> bool:
        return (err in self.errnos and (not self.ops or op in self.ops) and self.applies(mt)
                and map_flags & self.flags == self.flags)


def _any(mt: MapType) -> bool:
    return True


def _values(*kinds: str):
    return lambda mt: mt.values in kinds


READS = ("lookup", "iterate", "batch", "peek", "pop", "test")
WRITES = ("update", "delete", "push", "pop", "add")

# What a map whose values are sockets takes, per map type: said whenever a socket is refused.
SOCKET_HINTS = {
    "xskmap": "write an AF_XDP socket bound to a queue: xsks[queue] = "
              "bpfkit.lab.xsk.XskSocket(ifname, queue). A TCP or UDP socket belongs in a sockmap, "
              "sockhash or reuseport array instead.",
    "reuseport_sockarray": "make the socket with SO_REUSEPORT before it binds: "
                           "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1); s.bind(...); "
                           "then s.listen() for TCP. bpfkit.lab.traffic makes such groups.",
    "sockmap": "a sockmap takes a TCP socket that is connected (established) or listening, or a "
               "UDP or Unix socket, given as the socket or its fd.",
    "sockhash": "a sockhash takes a TCP socket that is connected (established) or listening, or "
                "a UDP or Unix socket, given as the socket or its fd.",
}
KEY_HINTS = {
    "socket": "pass a socket object, or its file descriptor.",
    "pidfd": "pass a subprocess.Popen (or anything with a .pid), or a pidfd from os.pidfd_open(pid).",
    "file": "pass an open file, its file descriptor, or a path.",
    "cgroup": "pass a bpfkit Cgroup, a cgroup directory's path, or an fd of that directory.",
}
BPF_F_RDONLY, BPF_F_WRONLY = 1 << 3, 1 << 4

RULES = [
    Rule((errno.E2BIG,), ("lookup", "update", "delete"), lambda mt: mt.slots, MapError,
         "Slot {key!r} is past the end of {name!r}: {a_type} has slots 0..{last}, fixed when it is made.",
         "use a slot below {max_entries}, or declare more slots in C and load again."),
    Rule((errno.ENOENT,), ("lookup", "delete"), lambda mt: mt.slots, KeyMissing,
         "Slot {key!r} is past the end of {name!r}: {a_type} has slots 0..{last}, fixed when it is made.",
         "use a slot from 0 to {last}; .get(slot, 0) gives 0 past the end instead of an error."),
    Rule((errno.ENOENT,), ("lookup", "delete"), lambda mt: mt.key != "fd", KeyMissing,
         "Map {name!r} has no key {key!r}.",
         "a key is only there once the program (or you) stored it: use .get({key!r}, 0) to get 0 "
         "for a key not yet there, or test `{key!r} in m` first."),
    Rule((errno.ENOENT,), ("lookup", "delete"), _any, KeyMissing,
         "Map {name!r} holds nothing for that {fd_of} ({key!r}).",
         "a value is there only once a program stored it for that {fd_of}: use .get(obj, 0)."),
    Rule((errno.E2BIG,), ("update", "push", "add"), lambda mt: mt.key == "none", MapFull,
         "Map {name!r} is full: it holds at most max_entries={max_entries} values.",
         "take values out (m.pop()) before you put more in, or make the map with a larger "
         "max_entries."),
    Rule((errno.E2BIG,), ("update",), _any, MapFull,
         "Map {name!r} is full: it holds at most max_entries={max_entries} entries, and a new "
         "key needs a free one.",
         "delete entries you no longer need, update existing keys only, or give the map a "
         "larger max_entries in C (e.g. BPF_HASH(name, key_t, value_t, 10240)) and load again."),
    Rule((errno.EINVAL, errno.EBADF), ("update",), _values("program"), MapError,
         "The kernel refused to put that program into slot {key!r} of {name!r}: {reason}.",
         "a slot takes a BPF program of the same program type as the program that makes the "
         "tail call: prog.load_func('name', 'tracepoint') for a TRACEPOINT_PROBE caller, "
         "'xdp' for an XDP one. A plain number is taken as a file descriptor."),
    Rule((errno.EINVAL,), ("update",), _values("map"), MapError,
         "The kernel refused {value} as an inner map of {name!r}: {reason}.",
         "an inner map must have the same type, key size, value size and flags as the template "
         "named in the C declaration of {name!r} (the string in {bcc}), and an inner array the "
         "same max_entries too. Compare the two maps' repr()."),
    Rule((errno.EBADF,), ("update",), _values("map", "socket", "cgroup", "xsk_socket", "perf_event"),
         MapError, "{value} is not an open file descriptor of the right kind any more.",
         "load its program again (or open the object again) and write the new one."),
    Rule((errno.EINVAL, errno.ENODEV), ("update",), _values("device"), MapError,
         "The kernel has no interface with ifindex {value} in this network namespace.",
         "a devmap entry is resolved in the writer's namespace: write it from the namespace the "
         "interface is in (bpfkit.lab.net.inside(netns)), or check the ifindex with `ip -o link`."),
    Rule((errno.ENOTSOCK,), ("update",), _values("socket", "xsk_socket"), MapError,
         "{value!r} is not a socket, and {name!r} ({a_type}) holds sockets.",
         "{socket_hint}"),
    Rule((errno.EOPNOTSUPP, ENOTSUPP, errno.EINVAL), ("update",), _values("xsk_socket"), MapError,
         "The kernel refused {value!r} as an AF_XDP socket for slot {key!r} of {name!r}: "
         "{reason}. An xskmap holds AF_XDP sockets that are bound to an interface's queue; "
         "any other socket, or an AF_XDP socket not bound yet, is refused.",
         "{socket_hint}"),
    Rule((errno.EINVAL,), ("update",), lambda mt: mt.name == "reuseport_sockarray", MapError,
         "The kernel refused {value!r} for slot {key!r} of {name!r}: {reason}. A reuseport "
         "array takes only a socket that set SO_REUSEPORT before it bound, and that is bound "
         "(UDP) or listening (TCP).",
         "{socket_hint}"),
    Rule((errno.EOPNOTSUPP, ENOTSUPP), ("update",), lambda mt: mt.name == "reuseport_sockarray",
         MapError, "The kernel refused {value!r} for slot {key!r} of {name!r} ({reason}): a "
         "reuseport array takes only TCP or UDP sockets over IPv4 or IPv6.",
         "{socket_hint}"),
    Rule((errno.EOPNOTSUPP, ENOTSUPP, errno.EINVAL), ("update",), _values("socket"), MapError,
         "The kernel refused to put that socket into {name!r}: {reason}.",
         "a sockmap takes a TCP socket that is connected (established) or listening, or a UDP "
         "or Unix socket, given as the socket or its fd."),
    Rule((errno.EBUSY,), ("update",), lambda mt: mt.name == "reuseport_sockarray", MapError,
         "That socket already holds a slot of a reuseport array, this one or another: {reason}.",
         "a socket sits in one slot at a time: delete it from its slot first (del m[slot]), "
         "then write it into the new one."),
    Rule((errno.EBUSY,), ("update",), _values("socket"), MapError,
         "That socket is already in another map with its own programs: {reason}.",
         "a socket can run only one sk_msg program: remove it from the other map."),
    Rule((errno.EINVAL,), ("delete",), lambda mt: mt.slots and mt.values == "data", MapError,
         "Map {name!r} is {a_type}: its slots always exist, so they cannot be deleted.",
         "set the slot to zero instead: m[index] = 0."),
    Rule((errno.ENOENT,), ("pop", "peek"), _any, MapEmpty,
         "The {type} {name!r} is empty: there is nothing to {op_word}.",
         "push a value first, or pass a default: m.pop(default=None)."),
    Rule((errno.EBADF,), (), lambda mt: mt.fd_of == "pidfd", MapError,
         "{key!r} is not an open pidfd, so {name!r} cannot {op_word} an entry for it: "
         "{a_type} is keyed by a pidfd (a file descriptor that names a process), not by a pid.",
         "open one from the pid with os.pidfd_open(pid) and close it when done (os.close), or "
         "pass a subprocess.Popen: m[popen] opens and closes its pidfd for you. For this "
         "process: fd = os.pidfd_open(os.getpid()); m[fd] = 1; os.close(fd)."),
    Rule((errno.EBADF, errno.ENOTSOCK), (), lambda mt: mt.key == "fd", MapError,
         "{key!r} is not an open {fd_of}, so {name!r} cannot {op_word} an entry for it: "
         "{a_type} is keyed by a file descriptor of a {fd_of}.",
         "{key_hint} The object must still be open."),
    Rule((errno.EPERM, errno.EACCES), READS, _any, MapError,
         "Map {name!r} was made with BPF_F_WRONLY: user space may only write it, so the kernel "
         "refuses every read from Python (this {op}: {reason}). The flag is the map's own, not a missing "
         "privilege: no privilege changes it.",
         "read it from a program, or make the map without BPF_F_WRONLY (leave flags= out, or "
         "drop the flag from map_flags in C) if Python should read it.", flags=BPF_F_WRONLY),
    Rule((errno.EPERM, errno.EACCES), WRITES, _any, MapError,
         "Map {name!r} was made with BPF_F_RDONLY: user space may only read it, so the kernel "
         "refuses every write from Python (this {op}: {reason}). The flag is the map's own, not a missing "
         "privilege: no privilege changes it.",
         "let a program write it, or make the map without BPF_F_RDONLY (leave flags= out, or "
         "drop the flag from map_flags in C) if Python should write it.", flags=BPF_F_RDONLY),
    Rule((errno.EACCES,), (), _any, MapError,
         "Could not {op_word} map {name!r}: {reason}.",
         "the map is read-only or write-only from user space (BPF_F_RDONLY, BPF_F_WRONLY)."),
    Rule((errno.ENOENT,), ("update",), _any, KeyMissing,
         "Could not update map {name!r} at key {key!r}: it holds nothing there yet, and the "
         "update asked to replace an existing entry only (BPF_EXIST).",
         "write without flags (BPF_ANY, 0) to add or replace, or store the entry first."),
    Rule((errno.EEXIST,), (), _any, MapError,
         "Could not {op_word} map {name!r} at key {key!r}: {reason}.",
         "the key already exists and the update asked for a new one only (BPF_NOEXIST)."),
    Rule((errno.EOPNOTSUPP, ENOTSUPP), (), _any, MapError,
         "The kernel cannot {op_word} {a_type} from user space ({reason}).",
         "see what this map type offers: bpfkit.map_types()."),
    Rule((errno.EINVAL,), (), _any, MapError,
         "Could not {op_word} map {name!r}{at_key}: {reason}.",
         "the key or value does not fit this map type (EINVAL)."),
]


def reason(err: int) -> str:
    return "ENOTSUPP" if err == ENOTSUPP else os.strerror(err)


def access_flags(fd: int | None) -> int:
    """BPF_F_RDONLY or BPF_F_WRONLY as the map's fd carries them. The kernel keeps these flags
    on the file, not the map (its info reports neither), so the fd's access mode tells."""
    if fd is None or fd < 0:
        return 0
    try:
        mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    except OSError:
        return 0
    return {os.O_RDONLY: BPF_F_RDONLY, os.O_WRONLY: BPF_F_WRONLY}.get(mode, 0)


def explain(spec, op: str, err: int, key=None, value=None, fd: int | None = None) -> BpfkitError:
    """The error for `op` on the map of `spec` refused with `err` (a positive errno); `fd`, the
    map's own, tells a map made read-only or write-only from a missing privilege."""
    mt = spec.type
    fields = {"name": spec.name, "type": mt.name, "a_type": mt.a, "key": key, "value": value,
              "max_entries": spec.max_entries, "last": spec.max_entries - 1, "reason": reason(err),
              "op": op, "op_word": OP_WORDS.get(op, op), "bcc": mt.bcc or mt.name,
              "fd_of": mt.fd_of or "object", "at_key": f" at key {key!r}" if key is not None else "",
              "socket_hint": SOCKET_HINTS.get(mt.name, "pass the socket object (or its fd) itself."),
              "key_hint": KEY_HINTS.get(mt.fd_of, "")}
    flags = (getattr(spec, "flags", 0) or 0) | (access_flags(fd) if err in (errno.EPERM, errno.EACCES) else 0)
    for rule in RULES:
        if rule.matches(op, err, mt, flags):
            return rule.error(rule.what.format(**fields), rule.hint.format(**fields), errno=err)
    if err == errno.EPERM:   # privilege, or the kernel's own policy: refusal tells which
        return refusal.explain(err, "this {op} on map {name!r}".format(**fields))
    if err in (errno.EMFILE, errno.ENFILE):
        return too_many_files(err, "{op_word} map {name!r}".format(**fields))
    return MapError("Could not {op_word} map {name!r}{at_key}: {reason}.".format(**fields),
                    "run `python -m bpfkit doctor`; if this keeps happening, it is worth a bug report.",
                    errno=err)


def too_many_files(err: int, doing: str) -> MapError:
    """The error for EMFILE or ENFILE: every map, program and pin the kit opens is a file
    descriptor, so a notebook that makes maps in a loop meets the open-file limit as a bare
    OSError on whatever file came next."""
    if err == errno.ENFILE:
        return MapError(f"Could not {doing}: the whole system has too many files open (ENFILE), "
                        "so the kernel gives out no more file descriptors.",
                        "close maps and programs you no longer use (m.close(), "
                        "bpfkit.close_all()); the system-wide limit is the sysctl fs.file-max.",
                        errno=err)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
    return MapError(f"Could not {doing}: this process has too many files open (EMFILE). Every "
                    "map, program and pin the kit holds is an open file descriptor, and the "
                    f"process may have at most {soft} (its RLIMIT_NOFILE, `ulimit -n`).",
                    "close maps you no longer need (m.close(), or `with bpfkit.create_map(...) as "
                    "m:`, or bpfkit.close_all()), or raise the limit up to its hard limit "
                    f"({shown}): resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard)) in "
                    "Python, or `ulimit -n` in the shell before starting Jupyter.", errno=err)


_NOT_OFFERED = [  # (op, when, what is wrong, what to do) for an operation the map type lacks
    ("delete", lambda mt: mt.slots, "Map {name!r} is {a_type}: its slots always exist, so they "
     "cannot be deleted.", "set the slot to zero instead: m[index] = 0."),
    ("iterate", lambda mt: mt.key == "fd", "Map {name!r} is {a_type}: the kernel finds a value "
     "only from its {fd_of}, so the map cannot be walked from user space.",
     "name the objects you want: m[obj], or m.frame(keys=[obj1, obj2])."),
    ("iterate", lambda mt: "pop" in mt.ops, "Map {name!r} is {a_type}: user space cannot walk it "
     "without taking its values out.",
     "m.peek() shows the next value, m.pop() takes it out, m.drain() takes them all, in order."),
    ("update", lambda mt: "push" in mt.ops or "add" in mt.ops, "Map {name!r} is {a_type}: its "
     "values have no keys to write at.", "put values in with m.{put}(value)."),
]
_OP_HINTS = {
    "push": "push(), pop(), peek() and drain() are for queue and stack maps.",
    "pop": "push(), pop(), peek() and drain() are for queue and stack maps.",
    "peek": "push(), pop(), peek() and drain() are for queue and stack maps.",
    "add": "add() and `value in m` are for bloom filters.",
    "test": "add() and `value in m` are for bloom filters.",
    "attach": "programs attach to sockmap and sockhash maps; other programs attach to hooks.",
    "mmap": "only arrays made with BPF_F_MMAPABLE (and arenas) can be memory-mapped.",
}


def not_offered(spec, op: str) -> MapError:
    """The error for an operation this map type does not offer user space at all."""
    mt = spec.type
    fields = {"name": spec.name, "type": mt.name, "a_type": mt.a, "fd_of": mt.fd_of,
              "put": "push" if "push" in mt.ops else "add"}
    for rule_op, when, what, hint in _NOT_OFFERED:
        if rule_op == op and when(mt):
            return MapError(what.format(**fields), hint.format(**fields))
    offered = ", ".join(o for o in ("lookup", "update", "delete", "iterate", "push", "pop", "peek",
                                    "add", "test", "mmap", "attach", "events") if o in mt.ops)
    return MapError(f"Map {spec.name!r} is {mt.a}: user space cannot {OP_WORDS.get(op, op)} it. "
                    f"{mt.a.capitalize()} offers: {offered or 'nothing through bpf() calls'}.",
                    _OP_HINTS.get(op, "see what each map type offers: bpfkit.map_types()."))
