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
`Outcome` for `diagnose` to put in words. A source that compiled once is not checked again in
this process.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import select
import signal
import tempfile
import time
import warnings

from . import atomic

# The longest compile we have seen here is under 3 s (a program that includes
# bpf_perf_event.h); a slow VM may take several times that, a hang takes forever.
TIMEOUT = 60.0

_FAILED = 3  # the child's exit status when BCC raised its usual exception

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
    # inherited a lock another thread held mid-compile would wait on it forever.
    with atomic.step(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads: we only compile
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
        try:
            bpf_class(text=text, cflags=flags)
        except Exception as e:  # BCC raises bare Exceptions for compile errors
            os.write(2, f"\n{e}\n".encode(errors="replace"))
            os._exit(_FAILED)
    except BaseException:
        os._exit(_FAILED + 1)
    os._exit(0)


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
