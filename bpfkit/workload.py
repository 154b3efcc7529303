"""Ways to make the kernel run a lesson's program a known number of times.

A lesson is only convincing when the map's numbers can be checked against what we did, so
these helpers do exactly what they say: `run_as(uid, n)` makes exactly n execve() calls as
that uid (an absolute path, so no PATH search adds failed attempts); `reads_in_child` makes
reads of the sizes asked for, in a child whose pid the program watches; `TcpPair` is a
connected pair of local sockets that sends known messages and checks every byte.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import warnings

from .errors import BpfkitError
from .sockets import endpoint
from .program import load

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


def hammer(uid: int, calls_per_worker: int, workers: int = 2) -> int:
    """Exactly `workers * calls_per_worker` getppid() calls as `uid`, as fast as possible,
    from `workers` processes started together, each pinned to its own CPU (needs root).

    getppid() is the cheapest syscall with a tracepoint (a few million calls a second per
    CPU), so two workers hit the same map entry from two CPUs at once: the load under which
    a lookup-then-update counter loses counts. Returns the number of calls made."""
    cpus = sorted(os.sched_getaffinity(0))
    go_read, go_write = os.pipe()
    ready_read, ready_write = os.pipe()
    pids = []
    try:
        for i in range(workers):
            with warnings.catch_warnings():  # fork in a process with threads (a Jupyter kernel)
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the worker: only plain syscalls from here to os._exit
                code = 1
                try:
                    os.close(go_write)
                    os.close(ready_read)
                    os.sched_setaffinity(0, {cpus[i % len(cpus)]})
                    os.setgroups([])
                    os.setgid(uid)
                    os.setuid(uid)
                    os.write(ready_write, b"r")
                    os.read(go_read, 1)
                    getppid = os.getppid
                    for _ in range(calls_per_worker):
                        getppid()
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        os.close(ready_write)
        ready_write = -1
        for _ in range(workers):  # every worker is pinned and waiting: start them together
            if not os.read(ready_read, 1):
                raise RuntimeError("a hammer worker died before it started")
        os.write(go_write, b"g" * workers)
    finally:
        for fd in (go_read, go_write, ready_read, ready_write):
            if fd >= 0:
                os.close(fd)
        failed = 0
        for pid in pids:
            _, status = os.waitpid(pid, 0)
            failed += os.waitstatus_to_exitcode(status) != 0
    if failed:
        raise RuntimeError(f"{failed} of {workers} hammer workers failed")
    return workers * calls_per_worker


def lost_updates(calls_per_worker: int = 500_000, workers: int = 2) -> dict:
    """How many counts the seed's lookup-then-update loses under load, next to exact counting.

    Loads bpf/counter_race.c (three counters of the same getppid() calls), hammers it from
    `workers` CPUs as a fresh uid, and returns {"generated", "atomic", "increment", "racy",
    "lost"}: "atomic" equals "generated"; "racy" (the seed's way) and "increment" (BCC's
    increment()) fall short, and "lost" is how many the seed's way lost."""
    uid = unused_uid()
    with load("counter_race") as prog:
        generated = hammer(uid, calls_per_worker, workers)
        counts = {t: prog[f"{t}_table"].get(uid, 0) for t in ("atomic", "increment", "racy")}
    return {"generated": generated, **counts, "lost": generated - counts["racy"]}


# -- reads of known sizes, in a child process a program watches ----------------------------------
# A fresh Python process reads plenty while it starts (its own modules, shared libraries), so
# the child first blocks in sigwait(), which reads nothing; meanwhile user space writes the
# child's pid into the program's config array; then a signal lets the child make exactly the
# reads asked for, and it leaves without cleaning up (os._exit), which reads nothing either.

_CHILD = r"""
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
ready, mode, target, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
fd = os.open(target, os.O_RDONLY) if mode == "read" else -1
os.write(ready, b"ready\n")
os.close(ready)
signal.sigwait({signal.SIGUSR1})
if mode == "exec":
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
    os.execv(target, [target] + rest)
for n in map(int, rest):
    if len(os.read(fd, n)) != n:
        os._exit(3)
os._exit(0)
"""


def _traced_child(config, mode: str, target: str, args: list[str], timeout: float) -> int:
    """Run the child, watched: config[0] holds its pid from the signal until it has exited."""
    ready_r, ready_w = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-c", _CHILD, str(ready_w), mode, target, *args],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 pass_fds=(ready_w,), cwd="/")
    finally:
        os.close(ready_w)
    try:
        with os.fdopen(ready_r, "rb") as ready:
            ready_r = -1
            if ready.readline() != b"ready\n":
                child.wait(timeout)
                raise BpfkitError("The helper process ended before it could be watched.",
                                  "run the cell again; if it keeps failing, run "
                                  "`python -m bpfkit doctor`.")
        config[0] = child.pid
        child.send_signal(signal.SIGUSR1)
        code = child.wait(timeout)
    finally:
        config[0] = 0
        if ready_r >= 0:
            os.close(ready_r)
        if child.poll() is None:
            child.kill()
            child.wait()
    if mode == "read" and code != 0:
        raise BpfkitError(f"The helper process failed (exit code {code}) while reading.",
                          "the file was shorter than the reads asked for; this is a bpfkit bug.")
    return child.pid


def reads_in_child(config, sizes: list[int], timeout: float = 30.0) -> int:
    """Make exactly one read() per entry of `sizes`, each returning that many bytes, in a
    child process whose pid is in `config[0]` while it reads. Returns the child's pid."""
    sizes = [int(s) for s in sizes]
    if any(s <= 0 for s in sizes):
        raise ValueError("each read size must be at least 1 byte")
    with tempfile.NamedTemporaryFile(prefix="bpfkit-reads-") as f:
        f.truncate(sum(sizes))  # a sparse file reads as zeros, as fast as any
        f.flush()
        return _traced_child(config, "read", f.name, [str(s) for s in sizes], timeout)


def trace_command(config, argv: list[str], timeout: float = 60.0) -> int:
    """Run command `argv` with its pid in `config[0]` from its very first instruction, so the
    program sees every read it makes (its loader's included). Returns its pid."""
    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if path is None:
        raise BpfkitError(f"No command {argv[0]!r} on this machine.", "pass a program that exists.")
    return _traced_child(config, "exec", path, list(argv[1:]), timeout)


# -- a TCP connection on loopback -----------------------------------------------------------------

_LOST_HINT = ("an sk_msg program that returns SK_DROP, or redirects to the wrong socket (or to its "
              "egress, without BPF_F_INGRESS), loses messages. Return SK_PASS, and redirect to the "
              "peer's key with BPF_F_INGRESS.")


class TcpPair:
    """A TCP client on 127.0.0.1 and the server-side socket it is connected to.

    Make it inside a cgroup (`with cg.inside(): pair = TcpPair()`) for the cgroup's sock_ops
    program to see both ends established. `exchange()` sends known messages and checks that
    every byte arrives, in order, whichever path the kernel took."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 5.0):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.client = self.server = None
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(1)
            listener.settimeout(timeout)
            self.client = socket.create_connection(listener.getsockname(), timeout=timeout)
            self.server, _ = listener.accept()
            self.server.settimeout(timeout)
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()

    @property
    def sockets(self) -> dict[str, socket.socket]:
        return {"client": self.client, "server": self.server}

    @property
    def server_port(self) -> int:
        return self.server.getsockname()[1]

    @property
    def client_port(self) -> int:
        return self.client.getsockname()[1]

    def exchange(self, n: int, size: int, *, echo: bool = True) -> dict[str, int]:
        """The client sends `n` messages of `size` bytes, one send() each; the server reads
        each one whole and (with `echo`) sends it back. Returns the bytes each side received;
        raises if a byte is missing or wrong."""
        got = {"client→server": 0, "server→client": 0}
        for i in range(n):
            message = bytes([i % 251]) * size
            self._send(self.client, message, i, "client")
            got["client→server"] += self._receive(self.server, message, i, "server")
            if echo:
                self._send(self.server, message, i, "server")
                got["server→client"] += self._receive(self.client, message, i, "client")
        return got

    @staticmethod
    def _send(sock, message: bytes, i: int, who: str) -> None:
        try:
            sock.sendall(message)
        except OSError as e:  # an sk_msg verdict of SK_DROP fails the send() with EACCES
            raise BpfkitError(f"The {who} could not send message {i}: {e.strerror or e}.",
                              _LOST_HINT) from None

    @staticmethod
    def _receive(sock, expected: bytes, i: int, who: str) -> int:
        buf = bytearray(len(expected))
        view, have = memoryview(buf), 0
        try:
            while have < len(expected):
                n = sock.recv_into(view[have:])
                if n == 0:
                    break
                have += n
        except socket.timeout:
            pass
        if bytes(buf[:have]) != expected:
            raise BpfkitError(
                f"Message {i} did not arrive whole at the {who}: {have} of {len(expected)} bytes"
                + (" (and they differ from what was sent)." if have else "."), _LOST_HINT)
        return have

    def close(self) -> None:
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()

    def __enter__(self) -> "TcpPair":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.client is None or self.client.fileno() < 0:
            return "<bpfkit TcpPair (closed)>"
        return f"<bpfkit TcpPair client {endpoint(self.client.getsockname())} ⇄ server " \
               f"{endpoint(self.server.getsockname())}>"
