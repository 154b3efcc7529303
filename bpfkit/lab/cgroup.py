"""A cgroup (v2) of a lesson's own: programs attached to it, and a way in and out.

Cgroup hooks (sock_ops, cgroup_skb, ...) run for the sockets of the processes in a cgroup. A
lesson makes its own cgroup so that its programs see only its own sockets, moves a process in
while that process opens its sockets, and at the end detaches, moves out and removes the cgroup.

That clean-up has to happen even when a cell fails halfway or the notebook's kernel dies: a
program attached to a cgroup stays attached (and loaded) after every file descriptor of ours is
closed, for as long as the cgroup exists. So `Cgroup` is a context manager, closes itself at
interpreter exit and when a cell makes a cgroup of the same name again, and marks the cgroups
it makes with the process that owns them: a later run removes those whose owner has died.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
from pathlib import Path

from ..core import atomic, waiting
from ..core.guard import Fd, held
from ..access import kernel, refusal
from ..host import lifetime
from ..core.errors import (AttachError, Closed, InUse, KernelError, SetupError, UsageError,
                           did_you_mean)
from ..host.lifetime import PREFIX

OWNER_XATTR = "user.bpfkit.owner"


# -- where cgroup v2 is --------------------------------------------------------------------
def mount() -> Path:
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup on a unified system,
    /sys/fs/cgroup/unified on a hybrid one (v1 controllers beside it)."""
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return Path(fields[1].replace("\\040", " "))
    raise SetupError("This machine has no cgroup v2 hierarchy mounted, and sock_ops programs "
                     "attach to a cgroup v2.",
                     "mount one as root: mkdir -p /sys/fs/cgroup/unified && "
                     "mount -t cgroup2 none /sys/fs/cgroup/unified")


def current(pid: int | str = "self") -> Path:
    """The cgroup v2 directory process `pid` is in now."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return mount() / line[3:].lstrip("/")
    return mount()


def _procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def _move(pid: int, path: Path) -> None:
    (path / "cgroup.procs").write_text(str(pid))


# -- who owns a cgroup ---------------------------------------------------------------------
def owner(path: Path) -> str | None:
    """"pid:start" of the process that made the cgroup, if bpfkit made it."""
    try:
        return os.getxattr(path, OWNER_XATTR).decode()
    except OSError:
        return None


def _remove(path: Path, timeout: float = 1.0) -> None:
    """rmdir a cgroup. The kernel then detaches the programs attached to it and frees them.
    It refuses while processes are inside; a process just moved out can take a moment."""
    def removed() -> bool:
        try:
            path.rmdir()
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            return False
        return True

    if not waiting.until(removed, timeout, every=0.025):
        path.rmdir()


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Remove the cgroups named `prefix`* that a bpfkit process made and that outlived it
    (a crashed or killed notebook), with whatever was attached to them. Cgroups of live
    processes, and cgroups bpfkit did not mark, are left alone. Returns the names removed."""
    removed = []
    root = mount()
    for path in sorted(root.glob(prefix + "*")):
        if not path.is_dir() or path.name in lifetime.held("cgroup"):
            continue
        mark = owner(path)
        if mark is None or lifetime.alive(mark):
            continue
        try:
            _evacuate(path, root)
            _remove(path, timeout=0.1)
            removed.append(path.name)
        except OSError:
            pass  # something else keeps it busy: leave it
    return removed


def _undo(name: str) -> None:
    """A cgroup a dead process claimed (lifetime.free_dead): its processes out, then rmdir,
    which detaches and frees the programs attached to it. OSError while still busy."""
    path = Path(name)
    if not path.name.startswith(PREFIX) or not path.is_dir():
        return
    _evacuate(path, path.parent)
    _remove(path, timeout=0.1)


lifetime.undoer("cgroup", _undo)


def _evacuate(path: Path, to: Path) -> None:
    """Move out the processes left inside a dead owner's cgroup (its children, say)."""
    for pid in _procs(path):
        with contextlib.suppress(OSError):
            _move(pid, to)


def _attach_type(attach_type) -> int:
    if isinstance(attach_type, int):
        return attach_type
    name = str(attach_type).lower()
    for candidate in (name, "cgroup_" + name, "cgroup_inet_" + name):
        if candidate in kernel.ATTACH_TYPES:
            return kernel.ATTACH_TYPES[candidate]
    names = [n.removeprefix("cgroup_").removeprefix("inet_") for n in kernel.ATTACH_TYPES
             if n.startswith("cgroup_")]
    hint = did_you_mean(name, names)
    raise AttachError(f"Unknown cgroup attach type {attach_type!r}.",
                      (hint + " " if hint else "") + "use one of: " + ", ".join(n.removeprefix("cgroup_") for n in kernel.ATTACH_TYPES
                                                 if n.startswith("cgroup_")) + ".")


class Cgroup:
    """A cgroup v2 named "bpfkit-NAME", made now and removed by `close()`.

        with Cgroup("sockmap") as cg:
            cg.attach(fn, "sock_ops")        # fn = prog.load_func("name", "sock_ops")
            with cg.inside():                # this process, only while in the block
                ...                          # sockets made here belong to the cgroup
    """

    @atomic.whole
    def __init__(self, name: str):
        full = name if name.startswith(PREFIX) else PREFIX + name
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", full):
            raise UsageError(f"{name!r} cannot name a cgroup.",
                             "use letters, digits, '-', '_' or '.', e.g. Cgroup(\"sockmap\").")
        self.name = full
        self._fd: Fd | None = None   # the directory's fd: what maps and attachments name it by
        self._closing = False
        earlier = lifetime.get("cgroup", full)
        if earlier is not None:
            earlier.close()
        root = mount()
        self.path = root / full
        lifetime.free_dead()
        cleanup_stale()
        if self.path.exists():
            self._take_over_leftover(root)
        lifetime.claim("cgroup", str(self.path))   # before it exists: a kill now leaves a record
        self.path.mkdir()
        lifetime.made("cgroup")
        with contextlib.suppress(OSError):  # user xattrs: cgroup v2 since Linux 5.7
            os.setxattr(self.path, OWNER_XATTR, lifetime.me().encode())
        self._fd = Fd(os.open(self.path, os.O_RDONLY | os.O_DIRECTORY), self._closed_error,
                      f"cgroup {full}")
        self._attached: list[tuple[int, int, str]] = []  # (our copy of the prog fd, type, name)
        self._homes: dict[int, Path] = {}                 # pid -> cgroup it came from
        lifetime.add("cgroup", full, self)

    @property
    def closed(self) -> bool:
        return self._fd is None or self._fd.closed

    @property
    def fd(self) -> int:
        if self._fd is None:
            raise self._closed_error()
        return self._fd.number

    @property
    def _guard(self) -> Fd:
        if self._fd is None:
            raise self._closed_error()
        return self._fd

    def fd_held(self) -> Fd:
        """Held while a map stores or looks up this cgroup by its fd (see Map._value): closed
        meanwhile by another thread, the number could name another object."""
        return self._guard

    @property
    @held
    def id(self) -> int:
        """The kernel's number for this cgroup: what bpf_get_current_cgroup_id() returns and
        cgroup storage keys hold (`cgroup_inode_id`). On cgroup v2 it is the inode number of the
        cgroup's directory."""
        self._check_open()
        return os.fstat(self.fd).st_ino

    def _take_over_leftover(self, root: Path) -> None:
        """A cgroup of this name exists already: a run that died, or another notebook."""
        mark = owner(self.path)
        if lifetime.alive(mark) and mark != lifetime.me():
            raise InUse(
                f"The cgroup {self.path} is in use by another process (pid {mark.split(':')[0]}), "
                "maybe the same notebook open twice.",
                "close the lesson there (its clean-up cell), or pick another name: Cgroup(\"...\").")
        inside = [p for p in _procs(self.path) if p != os.getpid()]
        if inside and mark is None:
            raise InUse(f"The cgroup {self.path} exists and has processes in it: {inside}.",
                        f"move them out (echo PID > {root}/cgroup.procs) and remove it "
                        f"(rmdir {self.path}), or pick another name.")
        _evacuate(self.path, root)
        _remove(self.path)

    # -- processes -------------------------------------------------------------------------
    def enter(self, pid: int | None = None) -> None:
        """Move process `pid` (this one by default) into the cgroup; `leave()` moves it back.
        Sockets belong to the cgroup their process was in when it created them."""
        self._check_open()
        pid = pid or os.getpid()
        self._homes.setdefault(pid, current(pid))
        try:
            _move(pid, self.path)
        except OSError as e:
            raise KernelError(f"Could not move process {pid} into {self.path}: {e.strerror}.",
                              "moving processes between cgroups needs root.", errno=e.errno) from None

    def leave(self, pid: int | None = None) -> None:
        """Move process `pid` back to the cgroup it was in before `enter()`."""
        pid = pid or os.getpid()
        home = self._homes.pop(pid, None)
        if home is None:
            return
        failure = None
        for target in (home, mount()):  # its home may be gone: then the root
            try:
                _move(pid, target)
                return
            except OSError as e:
                if e.errno == errno.ESRCH:
                    return  # the process has exited
                failure = e
        raise KernelError(f"Could not move process {pid} out of {self.path}: {failure.strerror}.",
                          f"move it by hand: echo {pid} > {mount()}/cgroup.procs", errno=failure.errno)

    @contextlib.contextmanager
    def inside(self, pid: int | None = None):
        """`with cg.inside():` the process is in the cgroup for the block only, even if it fails."""
        self.enter(pid)
        try:
            yield self
        finally:
            self.leave(pid)

    def pids(self) -> list[int]:
        return _procs(self.path)

    # -- programs --------------------------------------------------------------------------
    @atomic.whole
    def attach(self, fn, attach_type="sock_ops", flags: int = 0) -> None:
        """Attach a loaded function (`prog.load_func(...)`, or its fd) at `attach_type`
        ("sock_ops", "ingress", "egress": the kernel's names in `kernel.ATTACH_TYPES`, with or
        without "cgroup_"; BCC's `BPFAttachType.CGROUP_SOCK_OPS`, a number, is still taken).

        This is BCC's `BPF.attach_func(fn, cg.fd, BPFAttachType.CGROUP_SOCK_OPS)`, plus a
        note of what to detach at close."""
        self._check_open()
        kind = _attach_type(attach_type)
        prog_fd = fn if isinstance(fn, int) else fn.fd
        name = getattr(fn, "name", b"")
        name = name.decode() if isinstance(name, bytes) else str(name or prog_fd)
        own = os.dup(prog_fd)  # ours to detach with, whatever happens to the program's fds
        try:
            kernel.attach(own, self.fd, kind, flags)
        except OSError as e:
            os.close(own)
            if e.errno == errno.EPERM:   # a missing privilege, or the kernel's own policy
                raise refusal.explain(e.errno,
                                      f"attaching {name!r} to a cgroup ({attach_type})") from None
            hints = {errno.EINVAL: "the function's program type must match the attach type: "
                                   "load it as \"sock_ops\" for \"sock_ops\", as \"cgroup_skb\" for "
                                   "\"ingress\" and \"egress\".",
                     errno.EEXIST: "a program is already attached there: detach it first."}
            raise AttachError(f"Could not attach {name!r} to cgroup {self.path}: {e.strerror}.",
                              hints.get(e.errno, "run `python -m bpfkit doctor`."),
                              errno=e.errno) from None
        self._attached.append((own, kind, name))
        lifetime.made("cgroup attach")

    @held
    def attached(self) -> dict[str, list[int]]:
        """The ids of the programs the kernel has attached to this cgroup, per attach type."""
        self._check_open()
        kinds = {n: t for n, t in kernel.ATTACH_TYPES.items() if n.startswith("cgroup_")}
        out = {}
        for name, kind in kinds.items():
            with contextlib.suppress(OSError):
                ids = kernel.attached_prog_ids(self.fd, kind)
                if ids:
                    out[name.removeprefix("cgroup_")] = ids
        return out

    @atomic.whole
    def detach(self) -> None:
        """Detach every program this object attached."""
        while self._attached:
            own, kind, _ = self._attached.pop()
            try:
                with contextlib.suppress(OSError):   # detached already: the cgroup went
                    kernel.detach(own, self.fd, kind)
            finally:
                os.close(own)

    # -- lifetime --------------------------------------------------------------------------
    def _closed_error(self):
        return Closed(f"The cgroup {self.name} is closed (removed).",
                      f"make it again: Cgroup({self.name.removeprefix(PREFIX)!r}).")

    def _check_open(self) -> None:
        if self.closed:
            raise self._closed_error()

    @atomic.whole
    def close(self) -> None:
        """Detach, move every process this object moved back home, remove the cgroup.
        Safe to call twice."""
        if self.closed or self._closing:
            return
        self._closing = True
        lifetime.discard("cgroup", self.name, self)
        try:
            self.detach()
        finally:
            for pid in list(self._homes):
                self.leave(pid)
            self._fd.close()   # the number is freed once no call in flight uses it
            _evacuate_self(self.path)
            _remove(self.path)
            lifetime.release("cgroup", str(self.path))

    def __enter__(self) -> "Cgroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else \
            f"{len(self.pids())} processes, {len(self._attached)} programs attached"
        return f"<bpfkit.Cgroup {self.path} ({state})>"


def _evacuate_self(path: Path) -> None:
    """If this process is still inside (moved in by hand), put it in the root cgroup."""
    if os.getpid() in _procs(path):
        with contextlib.suppress(OSError):
            _move(os.getpid(), mount())


def held() -> dict[str, Cgroup]:
    """The cgroups this process has made and not closed yet, by name."""
    return lifetime.held("cgroup")
