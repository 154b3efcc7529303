"""Shared fixtures: every test here runs on the real kernel, as root, with the distro's BCC."""
from __future__ import annotations

import json
import os
import re
import stat
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import bpfkit
from bpfkit import children, kernel


# Exercise checks record their outcomes: the tests, and the notebooks they run, keep theirs apart
# from a learner's record.
PROGRESS = Path(tempfile.gettempdir()) / f"bpfkit-test-progress-{os.getpid()}.json"
os.environ["BPFKIT_PROGRESS"] = str(PROGRESS)

BPFTOOL = bpfkit.system.bpftool()
needs_bpftool = pytest.mark.skipif(
    BPFTOOL is None, reason="no bpftool that runs (Debian: apt install bpftool; Ubuntu: apt install "
                            "linux-tools-$(uname -r)): nothing to compare bpfkit's reading with")


def kit_is_private() -> bool:
    """Whether other users cannot reach the kit or its venv: a clone in a home folder of mode 0700
    (Debian 13's default for new users, and /root's everywhere)."""
    places = [Path(__file__).resolve().parent.parent, Path(sys.prefix)]
    return any(not os.stat(folder).st_mode & stat.S_IXOTH
               for place in places for folder in (place, *place.parents))


def as_user(uid: int, gid: int | None = None, *, read_kit: bool = True) -> list[str]:
    """A command prefix that runs the rest as `uid`, with no privilege. Where the kit is private
    (and `read_kit`), the child keeps CAP_DAC_READ_SEARCH alone, to read the kit's files: it still
    may not load BPF, which is what the tests that run as another user are about."""
    argv = ["setpriv", f"--reuid={uid}", f"--regid={uid if gid is None else gid}", "--clear-groups"]
    if read_kit and kit_is_private():
        argv += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return argv


def settled_snapshot(expected: dict | None = None, timeout: float = 3.0) -> dict:
    """The kernel's BPF ids, after letting deferred frees finish.

    The kernel frees a closed program's maps after an RCU grace period, so right after a close
    a map can still be listed for a moment; wait until the picture matches `expected` (or
    stops changing)."""
    deadline = time.monotonic() + timeout
    snap = kernel.snapshot()
    while time.monotonic() < deadline:
        if expected is not None and all(snap[k] <= expected[k] for k in snap):
            return snap
        time.sleep(0.05)
        new = kernel.snapshot()
        if expected is None and new == snap:
            return new
        snap = new
    return snap


@pytest.fixture
def uid() -> int:
    """A uid nobody else on the machine runs as: counts for it are exact."""
    return children.unused_uid()


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves BPF programs, maps or links behind (objects that another
    process on the machine holds are that process's, not this test's)."""
    before = settled_snapshot()
    yield
    bpfkit.close_all()
    after = settled_snapshot(before)
    held = held_elsewhere()
    left = {k: sorted(after[k] - before[k] - held[k]) for k in after if after[k] - before[k] - held[k]}
    assert not left, f"left in the kernel: {left}"


# ---- the whole suite leaves the machine as it found it ------------------------------------

def cgroup2_root() -> Path | None:
    """Where cgroup v2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid mode)."""
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[2] == "cgroup2":
            return Path(fields[1])
    return None


def cgroup_attachments() -> set[tuple[str, int, int]]:
    """(cgroup, attach type, program id) for every program attached to any cgroup v2 group."""
    root = cgroup2_root()
    if root is None:
        return set()
    found = set()
    for folder, _, _ in os.walk(root):
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            for attach_type in range(64):  # every type the kernel knows; non-cgroup ones fail
                try:
                    ids = kernel.attached_prog_ids(fd, attach_type)
                except OSError:
                    continue
                rel = os.path.relpath(folder, root)
                found.update((rel, attach_type, i) for i in ids)
        finally:
            os.close(fd)
    return found


def _ip_json(*args: str, netns: str | None = None) -> list:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["-j", *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    return json.loads(out.stdout or "[]") if out.returncode == 0 else []


def network_namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def xdp_attachments(namespaces=()) -> set[tuple[str, str, tuple]]:
    """(namespace, interface, attached program ids) for every interface with an XDP program."""
    found = set()
    for ns in (None, *sorted(namespaces)):
        for link in _ip_json("-d", "link", "show", netns=ns):
            xdp = link.get("xdp")
            if xdp:
                ids = tuple(sorted({int(i) for i in re.findall(r'"id": (\d+)', json.dumps(xdp))}))
                found.add((ns or "", link.get("ifname", "?"), ids))
    return found


def kernel_state() -> dict[str, set]:
    """Everything a test or a notebook could leave behind, each as a set to compare."""
    state = {k: set(v) for k, v in kernel.snapshot().items()}
    state["netns"] = network_namespaces()
    state["veth"] = {link.get("ifname", "?") for link in _ip_json("link", "show", "type", "veth")}
    state["xdp"] = xdp_attachments(state["netns"])
    state["cgroup"] = cgroup_attachments()
    state["pins"] = bpffs_pins()
    state["tcp_congestion"] = set(Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
                                  .read_text().split())   # a struct_ops left registered (lesson 19)
    state["af_xdp"] = af_xdp_sockets()
    return state


def af_xdp_sockets() -> set[str]:
    """{"N open"} for the AF_XDP sockets of this network namespace (lesson 17): this kernel has no
    socket diagnostics for them (no CONFIG_XDP_SOCKETS_DIAG, so `ss --xdp` is empty), but
    /proc/net/protocols counts them."""
    for line in Path("/proc/net/protocols").read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["XDP"] and int(fields[2]):
            return {f"{fields[2]} open"}
    return set()


def bpffs_pins() -> set[str]:
    """Everything pinned under the BPF filesystem (a pin keeps a map alive after its program)."""
    root = Path("/sys/fs/bpf")
    try:
        return {str(p.relative_to(root)) for p in root.rglob("*")}
    except OSError:
        return set()


def skip_unless_allowed(feature: str, refused_path=None) -> None:
    """Skip with the kernel's own reason where it refuses `feature` ("arena map", "lsm program").
    `refused_path()`, run first, is what the kit must then do: a test that needs a refused
    feature still fails when the kit mishandles the refusal."""
    here = bpfkit.allowed(feature)
    if here:
        return
    assert here.error.errno and here.reason, f"a refusal without its reason: {here.error!r}"
    if refused_path is not None:
        refused_path()
    pytest.skip(f"this kernel refuses {here.thing}: {here.reason}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now (for a lab server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    """pid and every live process below it."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    family, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in family} - family
        family |= more
        grew = bool(more)
    return family


def held_elsewhere() -> dict[str, set[int]]:
    """BPF ids that processes outside this test run hold an fd to: theirs, not ours (other
    programs on the machine may load BPF while the suite runs)."""
    ours = _descendants(os.getpid())
    held = {"programs": set(), "maps": set(), "links": set()}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        if int(entry) not in ours:
            for kind, ids in kernel.held_by(int(entry)).items():
                held[kind] |= ids
    return held


def leftovers(before: dict, timeout: float = 3.0) -> dict[str, list]:
    """What is in the kernel now and was not in `before`, after deferred frees have settled,
    minus BPF objects that processes outside this run hold."""
    settled_snapshot(before, timeout)
    after = kernel_state()
    held = held_elsewhere()
    left = {}
    for key, now in after.items():
        new = now - before.get(key, set()) - held.get(key, set())
        if new:
            left[key] = sorted(new)
    return left


_SUITE: dict = {}


@pytest.fixture(scope="session", autouse=True)
def suite_leaves_nothing():
    """The kernel's state before the first test; `pytest_sessionfinish` compares the end to it
    and fails the run, naming each leftover."""
    _SUITE["before"] = kernel_state()
    yield


def pytest_sessionfinish(session, exitstatus):
    for record in (PROGRESS, PROGRESS.with_name(PROGRESS.name + ".lock")):
        record.unlink(missing_ok=True)
    before = _SUITE.pop("before", None)
    if before is None:
        return
    bpfkit.close_all()
    left = leftovers(before)
    if left:
        time.sleep(1.0)  # a last deferred free, or another process's object that just went
        left = leftovers(before)
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        _SUITE["left"] = left


def pytest_terminal_summary(terminalreporter):
    left = _SUITE.get("left")
    if left:
        terminalreporter.section("bpfkit: the test run left these behind", red=True, bold=True)
        for kind, items in left.items():
            terminalreporter.write_line(f"LEAK {kind}: {items}", red=True)
