"""Child processes a lesson drives, one step at a time, and the users they run as.

A lesson is only convincing when the map's numbers can be checked against what we did, so the
kit makes its system calls in a child process that does exactly what it is told and nothing
else: `Child()` waits between steps (blocked in read() on a pipe), and each step makes exactly
the calls it names. With `watch=config`, the child's pid is in `config[0]` for the step's calls
only: the child first gets ready (reads the step, opens what it needs), then waits in
sigwait(), which makes no call a lesson counts, until its pid is written; it leaves no call of
its own inside the window but one write() of its answer.

The child is a fresh `python -I -S` (its start-up reads are over before any step), so it shares
no file descriptor with the notebook: a program detached here is not kept alive by a child.
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import select
import shutil
import signal
import subprocess
import sys
import time

from ..core import waiting
from ..core.errors import BpfkitError, Closed, UsageError, WorkloadError
from ..host import lifetime

TRUE = shutil.which("true") or "/bin/true"
# The real interpreter, not a venv's link: a child running as another uid may not reach /work.
_PYTHON = os.path.realpath(sys.executable)

UID_BASE, UID_BLOCK = 1_000_000, 16


def unused_uid(after: int | None = None) -> int:
    """A uid no account on this machine has, so nothing else runs as it; `after` asks for the
    next such uid above one already in use (for a second and third user).

    The first one comes from a block of 16 that this process's pid picks, so two notebooks or
    test runs at the same time never count each other's processes."""
    taken = {p.pw_uid for p in pwd.getpwall()}
    uid = after + 1 if after is not None else UID_BASE + (os.getpid() % 2**22) * UID_BLOCK
    while uid in taken:
        uid += 1
    return uid


def private_uids(n: int = 1, *, skip: int = 0) -> list[int]:
    """`n` uids from this process's block (see `unused_uid`), the same ones each call; `skip`
    passes over the block's first uids (an exercise check takes uids the lesson does not use)."""
    if n < 1 or skip < 0 or n + skip > UID_BLOCK:
        raise UsageError(f"private_uids() gives uids 0 to {UID_BLOCK - 1} of this process's "
                         f"block, not n={n}, skip={skip}.",
                         f"ask for 1 <= n with n + skip <= {UID_BLOCK}: private_uids(2).")
    uids = [unused_uid()]
    while len(uids) < n + skip:
        uids.append(unused_uid(after=uids[-1]))
    return uids[skip:]


def user_name(uid: int) -> str:
    """The account name of `uid`, or the number itself when no account has it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def run_as(uid: int, n: int = 1, argv: list[str] | None = None) -> list[int]:
    """Exactly `n` execve() calls by processes running as `uid` (needs root), one after another:
    each is waited for before the next starts. Returns their pids in the order they started,
    which is the order a program watching execve() saw them arrive. (An absolute path: no PATH
    search adds failed attempts.)"""
    argv = argv or [TRUE]
    pids = []
    for _ in range(n):
        child = subprocess.Popen(argv, user=uid, group=uid if uid else None, cwd="/",
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        if child.wait() != 0:
            raise WorkloadError(f"{argv[0]} failed (exit code {child.returncode}) as uid {uid}.",
                                "pass a command that succeeds, such as the default `true`.")
        pids.append(child.pid)
    return pids


# -- the child's side ------------------------------------------------------------------------------
# One JSON step a line on its stdin; one answer a line ("wait", then "ok {...}" or "err ..."). The
# pipes move off fds 0 and 1 (close-on-exec) and /dev/null takes their place, so a command it
# execs gets no pipe of ours. Each step's preparation runs before the "wait"; its calls after.

_SERVE = r"""
import json, os, signal, socket, sys, threading, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
steps, out = os.fdopen(os.dup(0), "rb"), os.dup(1)
null = os.open(os.devnull, os.O_RDWR)
os.dup2(null, 0), os.dup2(null, 1), os.close(null)
if sys.argv[1] != "-":
    os.sched_setaffinity(0, {int(sys.argv[1])})
sock = None

def calls(n, key):
    if key is None:
        call = os.getppid
        for _ in range(n):
            call()
        return
    for _ in range(n):
        try:
            os.getpgid(key)
        except OSError:
            pass

def in_thread(n, key):
    t = threading.Thread(target=calls, args=(n, key))
    t.start(), t.join()
    return {"made": n, "tid": t.native_id}

def new_socket():
    global sock
    if sock is not None:
        sock.close()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return {"made": 1}

def send(n, size, to):
    payload = b"x" * size
    for _ in range(n):
        sock.sendto(payload, tuple(to))
    return {"made": n}

def opens(paths, cpus, every):
    for cpu, path in zip(cpus, paths):
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})    # returns once the child runs on that CPU
        try:
            os.close(os.open(path, os.O_RDONLY))
        except OSError:
            pass                              # the call was made; that it failed is fine
        if every:
            time.sleep(every)
    return {"made": len(paths)}

def reads(fd, sizes):
    for n in sizes:
        if len(os.read(fd, n)) != n:
            raise EOFError(f"a read of {n} bytes came back short")
    os.close(fd)
    return {"made": len(sizes)}

def execs(argv):
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    os.execv(argv[0], argv)

def prepare(s):
    if s.get("cpu") is not None:
        os.sched_setaffinity(0, {s["cpu"]})
    verb, key = s["verb"], s.get("key")
    if verb == "calls":
        return (lambda: in_thread(s["n"], key)) if s.get("thread") else \
               (lambda: calls(s["n"], key) or {"made": s["n"]})
    if verb == "read":
        fd = os.open(s["path"], os.O_RDONLY)
        return lambda: reads(fd, s["sizes"])
    return {"socket": lambda: new_socket(), "send": lambda: send(s["n"], s["size"], s["to"]),
            "open": lambda: opens(s["paths"], s["cpus"], s["every"]),
            "exec": lambda: execs(s["argv"])}[verb]

os.write(out, b"ready\n")
for line in steps:
    step = json.loads(line)
    try:
        act = prepare(step)
        if step["wait"]:
            os.write(out, b"wait\n")
            signal.sigwait({signal.SIGUSR1})
        said = "ok " + json.dumps(act())
    except Exception as e:
        said = "err " + json.dumps(f"{type(e).__name__}: {e}")
    os.write(out, said.encode() + b"\n")
os._exit(0)
"""


class Child:
    """A child process that makes system calls when asked, one step at a time, then waits.

        child = Child(cpu=0)            # optional: uid=..., watch=config, timeout=...
        child.join(web)                 # into a cgroup (the kit moves it: `web.enter(child.pid)`)
        child.calls(20)                 # exactly 20 getppid() calls, then returns
        child.socket()                  # a new UDP socket, in the cgroup the child is in now
        child.send(5, 100, ("127.0.0.1", port))   # 5 datagrams of 100 bytes on it
        child.close()                   # the child exits and is reaped

    Every step returns once the child has made its calls, and returns how many it made. A
    step that fails in the child raises; one interrupted here (Ctrl-C) ends the child, whose
    state is then unknown. `uid` runs it as that user (needs root), `cpu` pins it to one CPU
    (folded onto the CPUs this process may use), `watch` puts its pid in `watch[0]` during
    each step's calls only. A task-storage map takes it as a key (`m[child]`, by its `pid`);
    it prints as "child PID". `with Child() as child:` closes it at the end of the block;
    `bpfkit.close_all()` and the notebook's exit close it too, before any cgroup it is in."""

    def __init__(self, *, uid: int | None = None, cpu: int | None = None, watch=None,
                 timeout: float = 10.0):
        self.watch, self.timeout = watch, timeout
        self._said, self._cgroups = b"", []
        where = "-" if cpu is None else str(on_cpu(cpu))
        who = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
        self.process = subprocess.Popen([_PYTHON, "-I", "-S", "-c", _SERVE, where], cwd="/",
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, **who)
        lifetime.add("child", self.pid, self)    # close_all() and interpreter exit end it
        try:
            if self._line(timeout) != b"ready":
                raise WorkloadError(f"The child process ended (exit code {self.process.wait(timeout)}) "
                                    "before its first step.", "run the cell again; if it keeps "
                                    "failing, run `python -m bpfkit doctor`.")
        except BaseException:
            self._end()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    # -- the steps ----------------------------------------------------------------------------
    def calls(self, n: int, *, key: int | None = None, in_thread: bool = False,
              cpu: int | None = None) -> int:
        """Exactly `n` getppid() calls, or getpgid(`key`) calls (for a program that reads its
        key from the call's argument; no process need have that id). `in_thread`: in a new
        thread, and the step returns once that thread's task has left the kernel (the process
        goes on). `cpu`: on that CPU, where the child then stays."""
        said = self._step("calls", n=int(n), key=None if key is None else int(key),
                          thread=bool(in_thread), cpu=None if cpu is None else on_cpu(cpu))
        task = f"/proc/{self.pid}/task/{said.get('tid')}"
        if in_thread:                  # a joined thread may still be exiting in the kernel
            waiting.until(lambda: not os.path.exists(task), self.timeout, every=0.001)
        return said["made"]

    def socket(self) -> int:
        """A new UDP socket (the one before it, if any, is closed): it belongs to the cgroup the
        child is in now."""
        return self._step("socket")["made"]

    def send(self, n: int, size: int, to) -> int:
        """`n` datagrams of `size` bytes to `to` = (host, port), on the child's socket."""
        host, port = to
        return self._step("send", n=int(n), size=int(size), to=[host, int(port)])["made"]

    def open(self, paths: list[str], *, cpus: list | None = None, every: float = 0.0,
             during=None) -> int:
        """Exactly one openat() per path, in order (one that fails still made its call).
        `cpus`: one CPU or None per path, moved to just before its call; `every`: seconds
        of sleep after each call; `during()` is called over and over while the child works."""
        cpus = [None] * len(paths) if cpus is None else list(cpus)
        return self._step("open", during, paths=list(paths), cpus=cpus,
                          every=float(every))["made"]

    def read(self, path: str, sizes: list[int]) -> int:
        """Exactly one read() of `path` per entry of `sizes`, each returning that many bytes
        (the file is opened before the step's window)."""
        return self._step("read", path=os.fspath(path), sizes=[int(s) for s in sizes])["made"]

    def exec(self, argv: list[str], during=None) -> int:
        """Become command `argv` (an absolute path first) and run it to its end, watched from its
        first instruction; its exit code is then `returncode`. The child is gone after it."""
        self._step("exec", during, argv=list(argv))
        return 1

    def join(self, cgroup) -> None:
        """Move the child into `cgroup` (a `bpfkit.lab.cgroup.Cgroup`); not a step of the child's:
        the kit moves it. Closing the child also forgets it there."""
        cgroup.enter(self.pid)
        self._cgroups.append(cgroup)

    # -- the protocol ----------------------------------------------------------------------------
    def _step(self, verb: str, during=None, **args) -> dict:
        if self.process.stdin is None:
            raise Closed(f"The child {self.pid} has exited.", "make a new one: Child().")
        try:
            self._ask(verb, args)
            if self.watch is not None:      # the window opens: its pid, then the go
                self.watch[0] = self.pid
                self.process.send_signal(signal.SIGUSR1)
            return self._answer(verb, during)
        except BpfkitError:
            raise
        except BaseException:
            self.process.kill()    # interrupted mid-step: its state is unknown
            self._end()
            raise
        finally:
            if self.watch is not None:
                self.watch[0] = 0

    def _ask(self, verb: str, args: dict) -> None:
        """Send one step; with a watch, return once the child is ready and waits for the go."""
        step = dict(args, verb=verb, wait=self.watch is not None)
        try:
            self.process.stdin.write(json.dumps(step).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self._failed(verb, b"")
        if self.watch is not None:
            said = self._line(self.timeout)
            if said != b"wait":
                self._failed(verb, said)

    def _answer(self, verb: str, during) -> dict:
        said = self._line(self.timeout, during)
        if verb == "exec" and said == b"":     # it became the command: wait for its end
            def ended() -> bool:
                done = self.process.poll() is not None
                if not done and during is not None:
                    during()
                return done

            waiting.until(ended, self.timeout, every=0 if during is not None else 0.001)
            if self.process.poll() is None:
                self.process.kill()
                self._end()
                raise WorkloadError(f"The command the child {self.pid} became did not end within "
                                    f"{self.timeout} s; it was killed.", "give it a larger timeout.")
            self._end()
            return {"made": 1}
        if said.startswith(b"ok "):
            return json.loads(said[3:])
        self._failed(verb, said)

    def _failed(self, verb: str, said: bytes):
        if said.startswith(b"err "):
            raise WorkloadError(f"The child {self.pid} could not do its '{verb}' step: "
                                f"{json.loads(said[4:])}.", "this is a bpfkit bug.")
        self._end()
        raise WorkloadError(f"The child {self.pid} ended (exit code {self.process.returncode}) "
                            f"during its '{verb}' step.", "it may have been killed; make a new one.")

    def _line(self, timeout: float, during=None) -> bytes:
        """The child's next line (b"" once it is gone), calling `during()` while waiting."""
        deadline = time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self._said:
            left = deadline - time.monotonic()
            if left <= 0:
                self.process.kill()        # mid-step: its state is unknown
                self._end()
                raise WorkloadError(f"The child {self.pid} did not answer within {timeout} s.",
                                    "the machine may be very busy; run the cell again.")
            ready, _, _ = select.select([fd], [], [], 0 if during is not None else left)
            if not ready:
                if during is not None:
                    during()
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return b""
            self._said += chunk
        line, _, self._said = self._said.partition(b"\n")
        return line

    # -- the end --------------------------------------------------------------------------------
    def close(self) -> int:
        """End the child and wait for it: its task is then gone from the kernel, and from every
        cgroup it joined. Returns its exit code; twice is fine."""
        self._end()
        return self.process.returncode

    def _end(self) -> None:
        """Reap the child (killed if it does not leave by itself), then forget its cgroups."""
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):   # a step it never read: it is gone
                self.process.stdin.close()     # the child reads EOF and leaves
            self.process.stdin = None
        try:
            self.process.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
            self.process.stdout = None
        for cgroup in self._cgroups:
            cgroup.leave(self.pid)
        self._cgroups = []
        lifetime.discard("child", self.pid, self)

    def __enter__(self) -> "Child":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"child {self.pid}"

    __str__ = __repr__


def on_cpu(cpu: int) -> int:
    """CPU number `cpu` folded onto the CPUs this process may use (cpu % how many), so a plan
    for two CPUs still runs on one."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[int(cpu) % len(cpus)]


def hammer(uid: int, calls_per_worker: int, workers: int = 2) -> int:
    """Exactly `workers * calls_per_worker` getppid() calls as `uid`, as fast as possible,
    from `workers` processes started together, each pinned to its own CPU (needs root).

    getppid() is the cheapest syscall with a tracepoint (a few million calls a second per
    CPU), so two workers hit the same map entry from two CPUs at once: the load under which
    a lookup-then-update counter loses counts. Returns the number of calls made."""
    team = []
    try:
        for i in range(workers):         # a watch of their own makes each wait for the go
            team.append(Child(uid=uid, cpu=i, watch=[0], timeout=60.0))
        for child in team:               # each one ready and waiting in sigwait()
            child._ask("calls", {"n": int(calls_per_worker), "key": None})
        for child in team:               # start them together
            child.process.send_signal(signal.SIGUSR1)
        return sum(child._answer("calls", None)["made"] for child in team)
    finally:
        for child in team:
            child.close()
