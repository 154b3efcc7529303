"""Compiling a learner's C in a throwaway process first, so that no compile ever fails inside
the notebook's own.

BCC and LLVM do not always fail politely. A stray `*` before BPF_HASH makes BCC's rewriter
crash (SIGSEGV); a signed division makes LLVM abort (SIGABRT); a local buffer bigger than the
BPF stack or a bpf_trace_printk with four values makes LLVM print its error and call exit(1)
from inside the process; an #include of a pipe nobody writes to never returns. Any of these in
the notebook's process would end its kernel and everything the learner had in it.

So each new source is compiled once in a forked child, with the child's stderr collected. Only
a source the child compiled cleanly is compiled again for real in the notebook's process (BCC
cannot hand a compiled module from one process to another); everything else comes back as an
`Outcome` for `diagnostics` to put in words. A source that compiled once is not checked again in
this process.

Two things keep that second compile from doubling the wait for a new cell:

- The child may not create maps (a seccomp filter refuses bpf(BPF_MAP_CREATE), naming the
  syscall, not its number): it runs every stage of the compiler, which comes before BCC
  creates the maps, and stops there instead of creating maps of a million entries that it
  would throw away. What BCC does after the maps is not checked, so a failed real load also
  closes any map fds BCC left open (see `Program._open`).
- Both compiles run in one thread of ours that has a mount namespace of its own, in which
  /proc/kallsyms lists only the two symbols BCC's compiler looks up. BCC reads the whole file
  on every compile to find them (122,000 lines here: more than half of the compile's time).
  Only that thread sees the short file; the rest of the process sees the real one. Where the
  process may not make a mount namespace (no CAP_SYS_ADMIN), compiles run where they are called.
"""
from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import ctypes as ct
import dataclasses
import errno
import hashlib
import os
import queue
import re
import select
import signal
import tempfile
import threading
import time
import warnings

from ..access._libc import (CLONE_NEWNS, MS_BIND, MS_REC, MS_SLAVE, SCMP_ACT_ALLOW, SCMP_ACT_ERRNO,
                            SCMP_CMP_EQ, ScmpArgCmp, libc, seccomp)
from ..core import atomic
from ..host import lifetime

# The longest compile we have seen here is under 3 s (a program that includes
# bpf_perf_event.h); a slow VM may take several times that, a hang takes forever.
TIMEOUT = 60.0

_FAILED = 3  # the child's exit status when BCC raised its usual exception
# How bpf() fails in the check child: an errno no real map creation gives, so that BCC's "could
# not open bpf map: ..., error: State not recoverable" means the compile itself went through.
_REFUSED = errno.ENOTRECOVERABLE
_BPF_MAP_CREATE = 0  # the command number in include/uapi/linux/bpf.h, the same on every architecture

_survived: set[str] = set()


@dataclasses.dataclass
class Outcome:
    """How the check compile ended, when it did not end well.

    `how` is "error" (BCC reported a compile error), "exit" (the compiler ended the process
    with `code`), "signal" (it crashed with `code`, a signal number) or "hang" (no answer in
    `seconds`); `said` is what it wrote to stderr."""
    how: str
    said: str = ""
    code: int = 0
    seconds: float = 0.0

    @property
    def signal_name(self) -> str:
        try:
            return signal.Signals(self.code).name
        except ValueError:
            return f"signal {self.code}"


def _key(text: bytes, flags: list[str]) -> str:
    # The fds of maps given with maps= differ between loads; a number does not change what
    # the compiler does, so they do not make a source new.
    same = re.sub(rb"bpf_pseudo_fd\(1, \d+\)", b"bpf_pseudo_fd(1, FD)", text)
    return hashlib.sha1(same + b"\0" + "\0".join(flags).encode()).hexdigest()


def check(bpf_class, text: bytes, flags: list[str], timeout: float | None = None) -> Outcome | None:
    """Compile `text` with `bpf_class` (BCC's BPF) in a child process: None if it compiled,
    else how it failed. Stop (KeyboardInterrupt) while it runs ends the child too."""
    key = _key(text, flags)
    if key in _survived:
        return None
    with tempfile.TemporaryFile() as said:
        pid = _fork_compiler(bpf_class, text, flags, said.fileno())
        status, seconds = _wait(pid, TIMEOUT if timeout is None else timeout)
        said.seek(0)
        words = said.read()[-8000:].decode("utf-8", "replace")
    if status is None:
        return Outcome("hang", words, seconds=seconds)
    if os.WIFSIGNALED(status):
        return Outcome("signal", words, code=os.WTERMSIG(status))
    code = os.WEXITSTATUS(status)
    if code == 0:
        _survived.add(key)
        return None
    return Outcome("error" if code == _FAILED else "exit", words, code=code)


def _fork_compiler(bpf_class, text: bytes, flags: list[str], said: int) -> int:
    # Fork only while no other thread is inside BCC or LLVM (the step's lock): a child that
    # inherited a lock another thread held mid-compile would wait on it forever. The child is
    # forked from the compiling thread, so it sees the short kallsyms too.
    with atomic.step():
        return run(lambda: _fork(bpf_class, text, flags, said))


# Python 3.12 warns about fork() in a process with threads (a Jupyter kernel has several); the
# child here only compiles and exits, touching no lock another thread may hold.
warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", module=__name__)


def _fork(bpf_class, text: bytes, flags: list[str], said: int) -> int:
    pid = os.fork()
    if pid != 0:
        return pid
    try:  # the child: compile, and say how it went only through the exit status and stderr
        import faulthandler
        faulthandler.disable()  # a crash is what we are looking for; the parent reports it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Stop is the parent's to handle
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(said, 2)
        refused = _refuse_bpf_syscall()
        try:
            bpf_class(text=text, cflags=flags)
        except Exception as e:  # BCC raises bare Exceptions for compile errors
            os.write(2, f"\n{e}\n".encode(errors="replace"))
            if refused and _only_maps_refused(said):
                os._exit(0)  # every compiler stage ran; only the maps were not made
            os._exit(_FAILED)
    except BaseException:
        os._exit(_FAILED + 1)
    os._exit(0)


def _refuse_bpf_syscall() -> bool:
    """In the check child: make bpf(BPF_MAP_CREATE, ...) fail with _REFUSED, so BCC makes no
    maps (the rest of bpf(), loading the program's BTF for one, works as in the real load).
    True if done."""
    if seccomp is None:
        return False
    ctx = seccomp.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        return False
    try:
        number = seccomp.seccomp_syscall_resolve_name(b"bpf")
        map_create = ScmpArgCmp(0, SCMP_CMP_EQ, _BPF_MAP_CREATE, 0)  # bpf()'s first argument
        return (number >= 0
                and seccomp.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(_REFUSED), number, 1,
                                                   ct.byref(map_create)) == 0
                and seccomp.seccomp_load(ctx) == 0)
    finally:
        seccomp.seccomp_release(ctx)


def _only_maps_refused(said: int) -> bool:
    """Did BCC stop only because it could not create a map (after every compiler stage)?"""
    os.lseek(said, 0, os.SEEK_SET)
    words = b""
    while chunk := os.read(said, 65536):
        words += chunk
    return os.strerror(_REFUSED).encode() in words and b"could not open bpf map" in words


def _wait(pid: int, timeout: float) -> tuple[int | None, float]:
    """(the child's wait status, or None if it ran past `timeout`; seconds waited)."""
    start = time.monotonic()
    pidfd = os.pidfd_open(pid)  # names this child even after it ends: no pid-reuse race
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        if ready:
            return os.waitpid(pid, 0)[1], time.monotonic() - start
        _kill(pid, pidfd)
        return None, time.monotonic() - start
    except BaseException:  # Stop while it compiles: end the child, then stop too
        _kill(pid, pidfd)
        raise
    finally:
        os.close(pidfd)


def _kill(pid: int, pidfd: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):  # already ended and reaped
        pass


# -- the compiling thread -----------------------------------------------------------------------

_start_lock = threading.Lock()
_jobs: "queue.Queue | None" = None
_tried = False


def run(fn):
    """`fn()` run in the compiling thread (see the top of this module): its result, or its
    exception raised here. Where there is no such thread, `fn()` runs in this one."""
    jobs = _compiling_thread()
    if jobs is None:
        return fn()
    future: concurrent.futures.Future = concurrent.futures.Future()
    try:
        cwd = os.getcwd()
    except OSError:  # the folder was removed under the notebook
        cwd = None
    jobs.put((fn, cwd, future))
    return future.result()


def _compiling_thread() -> "queue.Queue | None":
    global _jobs, _tried
    with _start_lock:
        if not _tried:
            _tried = True
            jobs: queue.Queue = queue.Queue()
            ready: concurrent.futures.Future = concurrent.futures.Future()
            threading.Thread(target=_serve, args=(jobs, ready), name="bpfkit-compiler",
                             daemon=True).start()
            if ready.result():
                _jobs = jobs
        return _jobs


def _serve(jobs: queue.Queue, ready: concurrent.futures.Future) -> None:
    try:
        home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY)
        root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
        short = _short_kallsyms()
        _enter_private_mounts(short)  # also gives this thread a cwd of its own
    except OSError:
        ready.set_result(False)  # no CAP_SYS_ADMIN, no /proc/kallsyms: compile where called
        return
    ready.set_result(True)
    while True:
        fn, cwd, future = jobs.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:  # a fresh copy of everyone's mounts each time: what was mounted since is there
            libc.setns(home, CLONE_NEWNS)
            # setns() also moved this thread's root to the namespace's own: in a chroot, that
            # is outside it. Back into the process's root (setns needed CAP_SYS_CHROOT too).
            os.fchdir(root)
            os.chroot(".")
            _enter_private_mounts(short)
        except OSError:
            pass  # the full kallsyms then: slower, not wrong
        if cwd is not None:
            with contextlib.suppress(OSError):
                os.chdir(cwd)  # the caller's folder, as if the compile ran there
        try:
            future.set_result(fn())
        except BaseException as e:
            future.set_exception(e)


def _enter_private_mounts(short: bytes) -> None:
    libc.unshare(CLONE_NEWNS)   # each raises OSError(errno) on failure
    libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None)  # ours stay ours
    libc.mount(short, b"/proc/kallsyms", None, MS_BIND, None)


def _short_kallsyms() -> bytes:
    """A file of the kallsyms lines BCC's compiler looks up (bpf_probe_read_kernel and
    bpf_probe_read_user, on every BCC from 0.18 to 0.35), removed at exit.

    The file cannot be unlinked while in use: every compile binds it afresh, and the kernel
    will not bind an unlinked file or a memfd. A process killed before its atexit ran leaves
    its file behind, so the name carries the process's owner mark (pid and start time, as
    `lifetime` marks what outlives a process: a pid alone is reused), and each new one removes
    those of dead processes."""
    with open("/proc/kallsyms", "rb") as real:
        lines = [l for l in real if b" bpf_probe_read_" in l]
    remove_orphans()
    path = os.path.join(tempfile.gettempdir(), KALLSYMS_PREFIX + lifetime.me().replace(":", "-"))
    _remove(path)  # this process's own from before, if any
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.writelines(lines)
    atexit.register(_remove, path)
    return path.encode()


KALLSYMS_PREFIX = "bpfkit-kallsyms-"


def remove_orphans(folder: str | None = None) -> list[str]:
    """Remove the short kallsyms files of processes that no longer run, and name them. A
    notebook kernel stopped by a kill, as test runners do, never runs its atexit. Kits before
    the owner mark named the file by pid alone (kept while that pid runs), and before that by
    nothing (removed)."""
    folder = folder or tempfile.gettempdir()
    removed = []
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if name.startswith(KALLSYMS_PREFIX) and not _owner_runs(name[len(KALLSYMS_PREFIX):]):
                _remove(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
    return removed


def _owner_runs(owner: str) -> bool:
    """Does the process a file's "pid-start" (or older kits' "pid") names still run?"""
    pid, _, start = owner.partition("-")
    if start:
        return lifetime.alive(f"{pid}:{start}")
    return pid.isdigit() and lifetime.start_time(int(pid)) is not None


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
