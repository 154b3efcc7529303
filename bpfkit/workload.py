"""Ways to make the kernel run a lesson's program a known number of times.

A lesson is only convincing when the map's numbers can be checked against what we did, so
these helpers do exactly what they say: `run_as(uid, n)` makes exactly n execve() calls as
that uid (an absolute path, so no PATH search adds failed attempts); `reads_in_child` makes
reads of the sizes asked for, in a child whose pid the program watches; `TcpPair` is a
connected pair of local sockets that sends known messages and checks every byte.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings

from .errors import Closed, NotFound, SetupError, UsageError, WorkloadError
from .netns import inside
from .program import load
from .sockets import endpoint

TRUE = shutil.which("true") or "/bin/true"


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


def run_as(uid: int, n: int = 1, argv: list[str] | None = None) -> list[int]:
    """Exactly `n` execve() calls by processes running as `uid` (needs root), one after another:
    each is waited for before the next starts. Returns their pids in the order they started,
    which is the order a program watching execve() saw them arrive."""
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


def user_name(uid: int) -> str:
    """The account name of `uid`, or the number itself when no account has it."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _fork() -> int:
    """os.fork(), quietly: forking in a process with threads (a Jupyter kernel) warns, but the
    children here only make plain system calls before os._exit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _become(uid: int) -> None:
    """Run as `uid` (and its group) from now on: a forked child's first step."""
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


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
            pid = _fork()
            if pid == 0:  # the worker: only plain syscalls from here to os._exit
                code = 1
                try:
                    os.close(go_write)
                    os.close(ready_read)
                    os.sched_setaffinity(0, {cpus[i % len(cpus)]})
                    _become(uid)
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
                raise WorkloadError("A hammer worker died before it started.",
                                    "run the cell again; if it keeps failing, run "
                                    "`python -m bpfkit doctor`.")
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
        raise WorkloadError(f"{failed} of {workers} hammer workers failed.",
                            "the uid must be one a process may switch to (run as root).")
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


def _watched(config, code: str, args: list[str], timeout: float, during=None) -> tuple[int, int]:
    """Run Python `code` in a child that waits, blocked in sigwait(), until its pid is in
    `config[0]`; then let it go and wait for it, calling `during()` over and over meanwhile.
    config[0] holds the pid from the go until the child has exited. The child gets the write
    end of a pipe as sys.argv[1] (it writes "ready\n" there before it waits), then `args`.
    Returns (pid, exit code)."""
    ready_r, ready_w = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-c", code, str(ready_w), *args],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 pass_fds=(ready_w,), cwd="/")
    finally:
        os.close(ready_w)
    try:
        with os.fdopen(ready_r, "rb") as ready:
            ready_r = -1
            if ready.readline() != b"ready\n":
                child.wait(timeout)
                raise WorkloadError("The helper process ended before it could be watched.",
                                    "run the cell again; if it keeps failing, run "
                                    "`python -m bpfkit doctor`.")
        config[0] = child.pid
        child.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while during is not None and child.poll() is None and time.monotonic() < deadline:
            during()
        code = child.wait(max(0.0, deadline - time.monotonic()))
    finally:
        config[0] = 0
        if ready_r >= 0:
            os.close(ready_r)
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.pid, code


def _traced_child(config, mode: str, target: str, args: list[str], timeout: float) -> int:
    pid, code = _watched(config, _CHILD, [mode, target, *args], timeout)
    if mode == "read" and code != 0:
        raise WorkloadError(f"The helper process failed (exit code {code}) while reading.",
                            "the file was shorter than the reads asked for; this is a bpfkit bug.")
    return pid


def reads_in_child(config, sizes: list[int], timeout: float = 30.0) -> int:
    """Make exactly one read() per entry of `sizes`, each returning that many bytes, in a
    child process whose pid is in `config[0]` while it reads. Returns the child's pid."""
    sizes = [int(s) for s in sizes]
    if any(s <= 0 for s in sizes):
        raise UsageError(f"Each read size is at least 1 byte; the sizes were {sizes}.",
                         "give sizes like [100, 4096].")
    with tempfile.NamedTemporaryFile(prefix="bpfkit-reads-") as f:
        f.truncate(sum(sizes))  # a sparse file reads as zeros, as fast as any
        f.flush()
        return _traced_child(config, "read", f.name, [str(s) for s in sizes], timeout)


def trace_command(config, argv: list[str], timeout: float = 60.0) -> int:
    """Run command `argv` with its pid in `config[0]` from its very first instruction, so the
    program sees every read it makes (its loader's included). Returns its pid."""
    path = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if path is None:
        raise NotFound(f"No command {argv[0]!r} on this machine.", "pass a program that exists.")
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
            raise WorkloadError(f"The {who} could not send message {i}: {e.strerror or e}.",
                                _LOST_HINT, errno=e.errno) from None

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
            raise WorkloadError(
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


# -- several users of this process's own --------------------------------------------------------

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


def calls_on_cpus(uid: int, steps) -> dict[int, int]:
    """Exactly the system calls in `steps`, made in order by one child process running as
    `uid` (needs root), each step pinned to one CPU: `(cpu, n)` is n getppid() calls on that
    CPU; `(cpu, n, key)` is n getpgid(key) calls, for a program that reads its key from the
    call's argument (the answer does not matter: usually no process has that id).

    Lessons on per-CPU maps use it to put a known number of events on each CPU. CPU numbers
    fold onto the CPUs this process may use (cpu % how many), so a plan for two CPUs still
    runs on one. Returns {cpu: calls made there}, by the CPU the calls really ran on."""
    cpus = sorted(os.sched_getaffinity(0))
    plan = []
    for step in steps:
        cpu, n, *key = step
        if int(n) < 0 or len(key) > 1:
            raise UsageError(f"A step is (cpu, n) or (cpu, n, key) with n >= 0, not {step!r}.",
                             "for example [(0, 100), (1, 50)].")
        plan.append((cpus[int(cpu) % len(cpus)], int(n), int(key[0]) if key else None))
    pid = _fork()
    if pid == 0:  # the child: only plain syscalls from here to os._exit
        code = 1
        try:
            _become(uid)
            getppid, getpgid, pin = os.getppid, os.getpgid, os.sched_setaffinity
            for cpu, n, key in plan:
                pin(0, {cpu})  # returns once the child runs on that CPU
                if key is None:
                    for _ in range(n):
                        getppid()
                else:
                    for _ in range(n):
                        try:
                            getpgid(key)
                        except OSError:
                            pass
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise WorkloadError(f"The child making calls as uid {uid} failed "
                            f"(exit code {os.waitstatus_to_exitcode(status)}).",
                            "run it as root; this is a bpfkit bug otherwise.")
    made: dict[int, int] = {}
    for cpu, n, _ in plan:
        made[cpu] = made.get(cpu, 0) + n
    return made


# -- openat() calls of known files, in a watched child (lesson 09) ----------------------------------
# The same handshake as reads_in_child (`_watched`): the child blocks in sigwait() (which opens nothing) until
# its pid is in config[0]; then it makes exactly one openat() per path (os.open), moving first to
# the CPU asked for, and leaves with os._exit, which opens nothing either.

_OPENS_CHILD = r"""
import os, signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
ready, every, n = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
cpus, paths = sys.argv[4:4 + n], sys.argv[4 + n:]
os.write(ready, b"ready\n")
os.close(ready)
signal.sigwait({signal.SIGUSR1})
for cpu, path in zip(cpus, paths):
    if cpu != "-":
        os.sched_setaffinity(0, {int(cpu)})   # returns once the child runs on that CPU
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError:
        pass                                  # the call was made; that it failed is fine
    if every:
        time.sleep(every)
os._exit(0)
"""


def opens_in_child(config, paths: list[str], *, cpus=None, every: float = 0.0, during=None,
                   timeout: float = 30.0) -> int:
    """Exactly one openat() per entry of `paths`, in that order, by a child process whose pid
    is in `config[0]` while it runs (a path that does not exist still makes its call, which
    fails with ENOENT). Returns the child's pid.

    `cpus`: one CPU for every call, or a list with one CPU (or None) per call; the child moves
    to that CPU just before the call, so a program sees the call on exactly that CPU.
    `every`: seconds the child sleeps after each call. `during`: called over and over while
    the child runs (a reader's poll, say), so user space works while the events come."""
    paths = [os.fspath(p) for p in paths]
    if not paths or any(not isinstance(p, str) or not p or "\0" in p for p in paths):
        raise UsageError("opens_in_child() needs at least one path, each a non-empty str "
                         "without NUL.", 'give paths like ["/etc/hostname"].')
    cpus = [cpus] * len(paths) if cpus is None or isinstance(cpus, int) else list(cpus)
    if len(cpus) != len(paths):
        raise UsageError(f"cpus has {len(cpus)} entries for {len(paths)} paths.",
                         "give one CPU for every call, or one per call.")
    allowed = os.sched_getaffinity(0)
    bad = sorted({c for c in cpus if c is not None and c not in allowed})
    if bad:
        raise UsageError(f"CPU {bad[0]} is not one this process may run on.",
                         f"pick from {sorted(allowed)} (os.sched_getaffinity(0)).")
    pid, code = _watched(config, _OPENS_CHILD, [repr(float(every)), str(len(paths)),
                                                *("-" if c is None else str(c) for c in cpus),
                                                *paths], timeout, during)
    if code != 0:
        raise WorkloadError(f"The helper process failed (exit code {code}) while opening files.",
                            "this is a bpfkit bug.")
    return pid


def udp_from(host, sources: dict[str, int], to: str, port: int = 9000) -> int:
    """Exactly `n` UDP datagrams to `to`:`port` from each source address in `sources`
    ({"10.1.2.3": 5, ...}, sent in that order), out of `host`, a `bpfkit.net` lab host.

    Each socket is bound to its source address, so the frames carry it; an address the host
    lacks is first added to its eth0 as a /32 (which adds no route), so one host stands in for
    many machines behind one cable. The host needs a route to `to`, and a neighbour entry for
    it if no ARP frame should reach the wire (`host.neighbour(to, mac)`). Returns how many
    datagrams were sent."""
    for address in sources:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise UsageError(f"{address!r} is not an IPv4 address.",
                             'give source addresses like "10.1.2.3".') from None
    shown = json.loads(host.run("ip", "-j", "-4", "addr", "show", "dev", host.dev).stdout or "[]")
    present = {a.get("local") for link in shown for a in link.get("addr_info", [])}
    for address in sources:
        if address not in present:
            host.run("ip", "addr", "add", f"{address}/32", "dev", host.dev)
    sent = 0
    for address, n in sources.items():
        with inside(host.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind((address, 0))
            for _ in range(n):
                sock.sendto(b"bpfkit", (to, port))
        sent += n
    return sent


# -- a C program to profile (lesson 11) -------------------------------------------------------------

def profiled_c_program(config, source: str, cpu_seconds: float = 1.0, *,
                       cflags=("-O0", "-g", "-fno-omit-frame-pointer"), timeout: float = 30.0):
    """C `source`, compiled now and run in a child process for `cpu_seconds` of CPU time with
    its pid in `config[0]` for exactly that time, so a profiler that watches that pid samples
    it and nothing else: `with profiled_c_program(config, SOURCE, 1.0) as child: ...`.

    gcc compiles `source` (it needs a `main()`, which may loop for ever) with `cflags` (frame
    pointers kept by default, so its stacks unwind) into a temporary directory, together with
    a small harness: before main() runs, the harness waits for the go; after `cpu_seconds` of
    CPU time (ITIMER_PROF: a busy machine makes the run longer, not the profile shorter), or
    when main() returns, it reports back and waits. So the `with` block runs while the child
    still exists, stopped, with its memory map intact: the moment to read its symbols
    (`bpfkit.profile.Symbols(child.pid)`). Leaving the block ends the child and deletes the
    binary. Yields the child's `subprocess.Popen`. A program that sleeps uses no CPU time: after
    `timeout` seconds of wall time its run is ended anyway."""
    harness = r"""
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
static int control_in = -1, control_out = -1;
static void bpfkit_finished(int sig) {      /* report "done", then wait for the parent */
    char c;
    (void)sig;
    if (control_out < 0)
        return;
    if (write(control_out, "done\n", 5) != 5) _exit(2);
    control_out = -1;
    while (read(control_in, &c, 1) > 0) {}
    _exit(0);
}
__attribute__((constructor)) static void bpfkit_start(void) {
    const char *fds = getenv("BPFKIT_CONTROL"), *seconds = getenv("BPFKIT_CPU_SECONDS");
    char c;
    if (!fds || !seconds || !strchr(fds, ','))
        return;                               /* run by hand: no harness */
    control_in = atoi(fds);
    control_out = atoi(strchr(fds, ',') + 1);
    signal(SIGPROF, bpfkit_finished);
    if (write(control_out, "ready\n", 6) != 6 || read(control_in, &c, 1) != 1) _exit(2);
    double s = atof(seconds);
    struct itimerval t = {{0, 0}, {(long)s, (long)((s - (long)s) * 1e6)}};
    setitimer(ITIMER_PROF, &t, 0);
}
__attribute__((destructor)) static void bpfkit_end(void) { bpfkit_finished(0); }
"""

    @contextlib.contextmanager
    def run():
        if not cpu_seconds > 0:
            raise UsageError(f"cpu_seconds is more than 0, not {cpu_seconds}.",
                             "give the CPU time the program runs for, e.g. cpu_seconds=2.")
        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc is None:
            raise SetupError("There is no C compiler (gcc) on this machine.",
                             "install it: apt-get install gcc (make lab's provisioning does).")
        folder = tempfile.mkdtemp(prefix="bpfkit-c-")
        fds = []
        child = None
        try:
            with open(os.path.join(folder, "program.c"), "w") as f:
                f.write(source)
            with open(os.path.join(folder, "harness.c"), "w") as f:
                f.write(harness)
            binary = os.path.join(folder, "program")
            built = subprocess.run([gcc, *cflags, "-o", binary, "program.c", "harness.c"], cwd=folder,
                                   capture_output=True, text=True)
            if built.returncode != 0:
                said = "\n".join(built.stderr.strip().splitlines()[:12])
                raise WorkloadError(f"gcc could not compile the C program:\n{said}",
                                    "fix the line gcc names (program.c:LINE:COLUMN) and run the cell again.")
            to_child_r, to_child_w = os.pipe()
            from_child_r, from_child_w = os.pipe()
            fds += [to_child_w, from_child_r]
            try:
                env = dict(os.environ, BPFKIT_CONTROL=f"{to_child_r},{from_child_w}",
                           BPFKIT_CPU_SECONDS=repr(float(cpu_seconds)))
                child = subprocess.Popen([binary], cwd=folder, env=env, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         pass_fds=(to_child_r, from_child_w))
            finally:
                os.close(to_child_r)
                os.close(from_child_w)
            said = b""

            def line(wait: float) -> bytes:
                nonlocal said
                while b"\n" not in said:
                    ready, _, _ = select.select([from_child_r], [], [], wait)
                    if not ready:
                        return b""
                    chunk = os.read(from_child_r, 64)
                    if not chunk:
                        return b""
                    said += chunk
                first, _, said = said.partition(b"\n")
                return first

            if line(timeout) != b"ready":
                code = child.wait(5)
                raise WorkloadError(f"The C program ended (exit code {code}) before it could be watched.",
                                    "does it build and start? Run it by hand to see.")
            config[0] = child.pid
            os.write(to_child_w, b"g")
            done = line(timeout)
            if not done and child.poll() is None:   # no CPU time used within `timeout`: end it
                child.send_signal(signal.SIGPROF)
                done = line(5.0)
            config[0] = 0
            if done != b"done":
                code = child.wait(5)
                reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
                raise WorkloadError(f"The C program died ({reason}) before its {cpu_seconds} s of CPU "
                                    "time were up.", "a crash in main()? Run it by hand to see.")
            yield child
        finally:
            config[0] = 0
            for fd in fds:
                os.close(fd)  # the child's last read() returns: it exits
            if child is not None:
                try:
                    child.wait(5)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            shutil.rmtree(folder, ignore_errors=True)

    return run()


# -- a child that makes getppid() calls on request (lesson 15) ------------------------------------

def getppid_child(timeout: float = 10.0) -> subprocess.Popen:
    """A child Python process that makes getppid() calls when asked, then waits for more.

    `child.call(n)` makes it call getppid() exactly n times and returns once it has;
    `child.call(n, in_thread=True)` makes the calls in a new thread, and returns once that
    thread's task has left the kernel (the process goes on); `child.exit()` ends it and reaps it. It is a `subprocess.Popen`, so a
    task-storage map takes it as a key (`m[child]`); it prints as "child PID"."""
    code = ("import os, sys, threading\n"
            "def calls(n):\n"
            "    for _ in range(n): os.getppid()\n"
            "for line in sys.stdin:\n"
            "    n, where = line.split()\n"
            "    tid = 0\n"
            "    if where == 'thread':\n"
            "        t = threading.Thread(target=calls, args=(int(n),)); t.start(); t.join()\n"
            "        tid = t.native_id\n"
            "    else:\n"
            "        calls(int(n))\n"
            "    print('done', tid, flush=True)\n")

    class GetppidChild(subprocess.Popen):
        def call(self, n: int, *, in_thread: bool = False) -> None:
            self.stdin.write(f"{int(n)} {'thread' if in_thread else 'main'}\n")
            self.stdin.flush()
            ready, _, _ = select.select([self.stdout], [], [], timeout)
            said = self.stdout.readline().split() if ready else []
            if not said or said[0] != "done":
                raise WorkloadError(f"The child (pid {self.pid}) did not finish its {n} getppid() calls.",
                                    "it may have been killed; start a new one with getppid_child().")
            # A joined thread may still be exiting in the kernel: wait until its task is gone.
            task = f"/proc/{self.pid}/task/{said[1]}"
            deadline = time.monotonic() + timeout
            while in_thread and os.path.exists(task) and time.monotonic() < deadline:
                time.sleep(0.001)

        def exit(self) -> int:
            """End the child and wait for it: its task is then gone from the kernel."""
            if self.poll() is None:
                self.stdin.close()
                try:
                    self.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
                    self.wait()
            self.stdout.close()
            return self.returncode

        def __repr__(self) -> str:
            return f"child {self.pid}"

        __str__ = __repr__

    return GetppidChild([sys.executable, "-S", "-c", code], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, text=True, bufsize=1)


# -- a child process to move between cgroups (lesson 14) -------------------------------------------
def cgroup_child(cpu: int | None = None):
    """A child process that waits, and does exactly what it is told, one step at a time, so a
    lesson can move it between cgroups (`cg.enter(child.pid)`) and count what each step did:

        child = cgroup_child(cpu=0)
        web.enter(child.pid)
        child.calls(20)                        # exactly 20 getppid() calls, then returns
        child.socket()                         # a new UDP socket (it belongs to the cgroup now)
        child.send(5, 100, ("127.0.0.1", port))   # 5 datagrams of 100 bytes on that socket
        child.close()                          # the child exits

    Between steps the child blocks in read() on a pipe: no getppid(), no packets. `cpu` pins
    it to one CPU (folded onto the CPUs this process may use). Returns a small object with
    `pid`, `calls(n)`, `socket()`, `send(n, size, to)` and `close()`; each step returns once
    the child has done it."""
    import types
    cpus = sorted(os.sched_getaffinity(0))
    where = None if cpu is None else cpus[int(cpu) % len(cpus)]
    from_parent, to_child = os.pipe()
    from_child, to_parent = os.pipe()
    pid = _fork()
    if pid == 0:  # the child: plain system calls only, until os._exit
        code = 1
        try:
            os.close(to_child)
            os.close(from_child)
            if where is not None:
                os.sched_setaffinity(0, {where})
            sock, getppid = None, os.getppid
            while True:
                line = b""
                while not line.endswith(b"\n"):
                    piece = os.read(from_parent, 64)
                    if not piece:
                        os._exit(0)
                    line += piece
                op, *args = line.split()
                if op == b"calls":
                    for _ in range(int(args[0])):
                        getppid()
                elif op == b"socket":
                    if sock is not None:
                        sock.close()
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                elif op == b"send":
                    n, size, host, port = int(args[0]), int(args[1]), args[2].decode(), int(args[3])
                    payload = b"x" * size
                    for _ in range(n):
                        sock.sendto(payload, (host, port))
                elif op == b"exit":
                    code = 0
                    break
                os.write(to_parent, b"ok\n")
        finally:
            os._exit(code)
    os.close(from_parent)
    os.close(to_parent)
    state = {"open": True}

    def _do(*words) -> None:
        if not state["open"]:
            raise Closed(f"The child {pid} has exited.", "make a new one: cgroup_child().")
        os.write(to_child, (" ".join(str(w) for w in words) + "\n").encode())
        if os.read(from_child, 16) != b"ok\n":
            close()
            raise WorkloadError(f"The child {pid} failed.", "this is a bpfkit bug.")

    def close() -> None:
        if not state["open"]:
            return
        state["open"] = False
        with contextlib.suppress(OSError):
            os.write(to_child, b"exit\n")
        for fd in (to_child, from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def send(n: int, size: int, to) -> None:
        host, port = to
        _do("send", int(n), int(size), host, int(port))

    return types.SimpleNamespace(pid=pid, calls=lambda n: _do("calls", int(n)),
                                 socket=lambda: _do("socket"), send=send, close=close)


# -- a reuseport group of UDP sockets (lesson 18) ---------------------------------------------------

class ReuseportGroup:
    """`n` UDP sockets bound to one port of 127.0.0.1 with SO_REUSEPORT (a reuseport group),
    named "s0", "s1", ..., and one sender socket with a fixed source port.

    Make it inside a cgroup (`with cg.inside(): group = ReuseportGroup(4)`) for the cgroup's
    programs to see its sockets. `send([0, 0, 3])` sends one datagram per number, the number
    as the payload's first byte; `receive()` reads what each socket got."""

    def __init__(self, n: int = 4, host: str = "127.0.0.1"):
        self.sockets: dict[str, socket.socket] = {}
        self.sender = None
        self.host, self.port = host, 0
        try:
            for i in range(n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sockets[f"s{i}"] = sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, self.port))
                sock.setblocking(False)
                self.port = sock.getsockname()[1]
            self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sender.bind((host, 0))
        except BaseException:
            self.close()
            raise

    def send(self, first_bytes) -> int:
        """One datagram per number in `first_bytes` (0-255), that number as its first byte."""
        n = 0
        for b in first_bytes:
            self.sender.sendto(bytes([b]) + b"bpfkit", (self.host, self.port))
            n += 1
        return n

    def receive(self, expect: int | None = None, timeout: float = 1.0) -> dict[str, int]:
        """Datagrams each socket received since the last call (read and counted). Waits until
        `expect` datagrams arrived in all (or `timeout` seconds); without `expect`, reads
        what is there, lets 10 ms pass, and reads again."""
        got = dict.fromkeys(self.sockets, 0)
        deadline = time.monotonic() + (0.01 if expect is None else timeout)
        while True:
            for name, sock in self.sockets.items():
                while True:
                    try:
                        sock.recv(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    got[name] += 1
            done = expect is not None and sum(got.values()) >= expect
            if done or time.monotonic() >= deadline:
                return got
            time.sleep(0.002)

    def close(self) -> None:
        for sock in [*self.sockets.values(), self.sender]:
            if sock is not None:
                sock.close()

    def __enter__(self) -> "ReuseportGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<bpfkit ReuseportGroup of {len(self.sockets)} UDP sockets on {self.host}:{self.port}>"


def tcp_transfer(nbytes: int, congestion: str, mss: int = 1000) -> dict:
    """Send `nbytes` over one loopback TCP connection whose sender chose the congestion control
    `congestion` (setsockopt TCP_CONGESTION) and segments of `mss` bytes (TCP_MAXSEG); a thread
    receives them. Returns {"congestion": what the socket reported (getsockopt TCP_CONGESTION),
    "sent": nbytes, "received": bytes the receiver counted}. Lesson 19."""
    import socket
    import threading
    server = socket.socket()
    sender = socket.socket()
    got = {}
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sender.connect(server.getsockname())
        reported = sender.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)

        def receive():
            conn, _ = server.accept()
            with conn:
                n = 0
                while data := conn.recv(1 << 16):
                    n += len(data)
                got["received"] = n

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        sender.sendall(b"x" * nbytes)
        sender.close()
        receiver.join(timeout=10)
    finally:
        sender.close()
        server.close()
    return {"congestion": reported.split(b"\0")[0].decode(), "sent": nbytes,
            "received": got.get("received", 0)}
