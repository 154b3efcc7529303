"""Shared fixtures, and what kind each test is.

Every test gets one marker of unit, kernel, notebook or browser (`pytest_collection_modifyitems`,
below): unit tests need no kernel and no root (`pytest -m unit` passes as any user); the others run
on the real kernel, as root, with the distro's BCC, and each of them is checked for leaks when it
ends (`leaves_nothing`), so a leak names the test that left it."""
from __future__ import annotations

import functools
import json
import os
import re
import stat
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.access import kernel
from bpfkit.core import guard


# Exercise checks record their outcomes: the tests, and the notebooks they run, keep theirs apart
# from a learner's record.
PROGRESS = Path(tempfile.gettempdir()) / f"bpfkit-test-progress-{os.getpid()}.json"
os.environ["BPFKIT_PROGRESS"] = str(PROGRESS)
# Every fd the kit owns records where it was opened: a leak names its origin (bpfkit.core.guard).
os.environ.setdefault("BPFKIT_TRACK_FDS", "1")


class _Bpftool(os.PathLike):
    """`bpfkit.access.system.bpftool()`, looked for when a test first uses it, not when the suite is
    collected: an argument of `subprocess.run` (a path), true where a bpftool runs."""

    @staticmethod
    @functools.cache
    def path() -> str | None:
        return bpfkit.access.system.bpftool()

    def __fspath__(self) -> str:
        if self.path() is None:
            raise RuntimeError("no bpftool that runs: mark the test @needs_bpftool")
        return self.path()

    def __bool__(self) -> bool:
        return self.path() is not None

    def __str__(self) -> str:
        return self.path() or ""

    def __repr__(self) -> str:
        return f"BPFTOOL({self.path()!r})"


BPFTOOL = _Bpftool()
NO_BPFTOOL = ("no bpftool that runs (Debian: apt install bpftool; Ubuntu: apt install "
              "linux-tools-$(uname -r)): nothing to compare bpfkit's reading with")
needs_bpftool = pytest.mark.needs_bpftool   # skipped at setup where BPFTOOL is false


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
    """Kept for the tests that ask for it: every kernel test is now checked by `leaves_nothing`."""
    yield


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


def pytest_collection_finish(session):
    """The kernel's state before the first test, if any test selected touches the kernel (a unit
    run, as a user without BPF, reads nothing of it); `pytest_sessionfinish` compares the end to
    it and fails the run, naming each leftover."""
    if any(not item.get_closest_marker("unit") for item in session.items):
        _SUITE["before"] = kernel_state()


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




# ---- what kind each test is ---------------------------------------------------------------

# Modules whose every test needs no kernel and no root. A test elsewhere that needs neither says
# so itself with @pytest.mark.unit. Names without their folder: a module moved keeps its kind.
UNIT_MODULES = {
    "test_structure", "test_map_units", "test_lesson_shape", "test_plot",
}
# Tests that take more than a few seconds each (in tests/test_notebooks.py and
# tests/test_browser.py every test does), by function name.
SLOW = {
    "test_a_lesson_runs_on_where_the_kernel_refuses_a_feature",          # a lesson in a fresh kernel
    "test_mutants_of_every_lesson_load_or_explain_and_leave_nothing",    # ~30 s
    "test_the_driver_records_a_dead_worker_and_a_leftover_and_carries_on",
    "test_stop_at_any_moment_of_a_load_leaves_the_old_program_or_the_new_one_whole",
    "test_stop_while_closing_making_or_reading_maps_leaves_nothing_half_done",
    "test_a_compile_that_never_returns_is_stopped_and_explained",
    "test_the_leak_check_names_every_kind_of_leftover",
    "test_a_fixed_seed_slice_finds_no_crash_raw_error_leak_or_wrong_write",   # ~30 s
}
KINDS = ("unit", "kernel", "notebook", "browser")


def pytest_collection_modifyitems(config, items):
    """One of unit, kernel, notebook, browser for each test; slow where it is."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if getattr(item, "module", None) else ""
        given = [kind for kind in KINDS if item.get_closest_marker(kind)]
        assert len(given) <= 1, f"{item.nodeid} is marked {given}: one kind only"
        if given:
            kind = given[0]
        elif module in ("test_notebooks", "test_refusal_matrix"):
            kind = "notebook"
        elif module == "test_browser":
            kind = "browser"
        elif module in UNIT_MODULES:
            kind = "unit"
        else:
            kind = "kernel"
        item.add_marker(kind)
        if kind in ("notebook", "browser") or getattr(item, "originalname", item.name) in SLOW:
            item.add_marker("slow")
    # The refusal matrix runs every lesson many times: only where asked for by its marker.
    if "refusals" not in (config.option.markexpr or ""):
        matrix = [i for i in items if i.get_closest_marker("refusals") and
                  not i.get_closest_marker("unit")]
        if matrix:
            config.hook.pytest_deselected(items=matrix)
            items[:] = [i for i in items if i not in matrix]


def pytest_runtest_setup(item):
    if item.get_closest_marker("needs_bpftool") and not BPFTOOL:
        pytest.skip(NO_BPFTOOL)


# ---- every kernel test leaves nothing ------------------------------------------------------

def quick_state() -> dict[str, set]:
    """What a test could leave behind, read without a subprocess or a walk of every cgroup (a
    few milliseconds): the BPF ids (a program attached to a cgroup, an XDP hook or a link keeps
    its id, so those show here too), bpffs pins, network namespaces, this namespace's
    interfaces, "bpfkit-" cgroups, registered congestion controls, open AF_XDP sockets."""
    state = {k: set(v) for k, v in kernel.snapshot().items()}
    state["pins"] = bpffs_pins()
    state["netns"] = _names(Path("/run/netns"))
    state["interfaces"] = _names(Path("/sys/class/net"))
    root = _cgroup_root()
    state["bpfkit cgroups"] = {p.name for p in root.glob("bpfkit-*")} if root else set()
    state["tcp_congestion"] = set(Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
                                  .read_text().split())
    state["af_xdp"] = af_xdp_sockets()
    return state


def _names(folder: Path) -> set[str]:
    try:
        return set(os.listdir(folder))
    except OSError:
        return set()


@functools.cache
def _cgroup_root() -> Path | None:
    return cgroup2_root()


def _new(before: dict, after: dict) -> dict[str, list]:
    return {k: sorted(after[k] - before.get(k, set())) for k in after if after[k] - before.get(k, set())}


def _registered() -> dict[tuple[str, int], object]:
    """What the kit has open now, each kept referenced (so that no new object takes its id)."""
    return {(kind, id(obj)): obj for kind, objs in bpfkit.host.lifetime.held().items() for obj in objs.values()}


def _close_registered_since(before: dict) -> None:
    """Close what the kit registered during the test and the test did not close, as
    `bpfkit.close_all()` would (in its order, newest first), leaving alone what fixtures of a
    wider scope made before it."""
    for kind in bpfkit.host.lifetime.ORDER:
        while True:
            new = [(key, obj) for key, obj in bpfkit.host.lifetime.held(kind).items() if (kind, id(obj)) not in before]
            if not new:
                break
            key, obj = new[-1]
            bpfkit.host.lifetime.discard(kind, key, obj)
            try:
                obj.close()
            except Exception as e:  # keep freeing the rest; the check below says what stayed
                warnings.warn(f"bpfkit could not close {kind} {key!r}: {e}")


def _wider_fixtures(item) -> list[str]:
    """The fixtures of a scope wider than the test that it uses (they may keep what the test
    made, e.g. a module's program keeps the functions a test loaded into it)."""
    names = item._fixtureinfo.name2fixturedefs
    here = str(Path(__file__).resolve().parent)
    return [name for name in item.fixturenames if name in names and names[name][-1].scope != "function"
            and getattr(names[name][-1].func, "__code__", None) is not None
            and names[name][-1].func.__code__.co_filename.startswith(here)]


LEAK_COST: dict[str, float] = {"tests": 0, "seconds": 0.0, "looked again": 0, "quick seconds": 0.0}
_DEFERRED: dict[str, list] = {}   # module -> [(test, what it left that a wider fixture holds)]


def _ours() -> dict[str, set[int]]:
    held = {"programs": set(), "maps": set(), "links": set()}
    for pid in _descendants(os.getpid()):
        for kind, ids in kernel.held_by(pid).items():
            held[kind] |= ids
    return held


@pytest.fixture(autouse=True)
def own_progress(tmp_path, monkeypatch):
    """Each test (and each notebook it runs) starts with no tries recorded: a check's words depend
    on its tries (first the problem, then a hint, then the fix), so a test sees the first try."""
    monkeypatch.setenv("BPFKIT_PROGRESS", str(tmp_path / "progress.json"))


@pytest.fixture(autouse=True)
def leaves_nothing(request):
    """After every test but a unit test: what the kit registered during the test is closed (as
    `close_all()` does), then nothing may be left that was not there when the test started
    (after the fixtures of wider scopes were set up): a quick comparison of ids and names, and
    only where it finds something, a wait for the kernel's deferred frees and a second look that
    leaves out what processes outside this run hold. What the test made that a module fixture
    still holds is checked again once that fixture is gone, at the module's end."""
    if request.node.get_closest_marker("unit") or request.node.get_closest_marker("refusals"):
        yield   # the refusal matrix runs notebooks in the background, across tests: it checks
        return  # each notebook's kernel, and the whole machine once at its end
    start = time.perf_counter()
    registered, before = _registered(), quick_state()
    fds_before = {id(fd) for fd in guard.unreleased()}
    LEAK_COST["setup"] = time.perf_counter() - start
    LEAK_COST["seconds"] += LEAK_COST["setup"]
    yield
    start = time.perf_counter()
    try:
        _close_registered_since(registered)
        if not _wider_fixtures(request.node):
            open_fds = [fd for fd in guard.unreleased() if id(fd) not in fds_before]
            assert not open_fds, f"{request.node.nodeid} left fds open: {open_fds}"
        left = _new(before, quick_state())
        LEAK_COST["quick seconds"] += time.perf_counter() - start + LEAK_COST.pop("setup", 0.0)
        if left:
            LEAK_COST["looked again"] += 1
            exempt = {}
            wider = _wider_fixtures(request.node)
            if wider:   # what this run still holds may be a wider fixture's: checked at the module's end
                ours = _ours()
                exempt = {k: set(ids) & ours[k] for k, ids in left.items() if k in ours and set(ids) & ours[k]}
                if exempt:
                    _DEFERRED.setdefault(request.node.module.__name__, []).append(
                        (request.node.nodeid, {k: sorted(v) for k, v in exempt.items()}, wider))
            left = _confirmed(before, exempt)
        assert not left, f"{request.node.nodeid} left in the kernel: {left}"
    finally:
        LEAK_COST["tests"] += 1
        LEAK_COST["seconds"] += time.perf_counter() - start


def _confirmed(before: dict, exempt: dict) -> dict[str, list]:
    """What is still new once the kernel's deferred frees have settled, leaving out `exempt`
    and what processes outside this run hold (other programs on the machine may load BPF
    meanwhile)."""
    expected = {k: ids | exempt.get(k, set()) for k, ids in before.items()}
    settled_snapshot({k: expected[k] for k in ("programs", "maps", "links")})
    left = _new(expected, quick_state())
    if left:
        time.sleep(0.5)   # a last deferred free, or another process's object that just went
        left = _new(expected, quick_state())
    held = held_elsewhere() if left else {}
    return {k: v for k, ids in left.items() if (v := sorted(set(ids) - held.get(k, set())))}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """At a module's end, once its fixtures are torn down: what its tests made that those
    fixtures held must be gone too."""
    result = yield
    module = getattr(item, "module", None)
    if module is None or (nextitem is not None and getattr(nextitem, "module", None) is module):
        return result
    deferred = _DEFERRED.pop(module.__name__, [])
    if deferred:
        before = {k: set() for k in ("programs", "maps", "links")}
        settled_snapshot(before, timeout=1.0)
        now = kernel.snapshot()
        held = held_elsewhere()
        still = [(test, {k: sorted(set(ids) & now[k] - held[k]) for k, ids in left.items()
                         if set(ids) & now[k] - held[k]}, wider) for test, left, wider in deferred]
        still = [(test, left, wider) for test, left, wider in still if left]
        assert not still, "left in the kernel after the module's fixtures closed: " + "; ".join(
            f"{test} made {left} (fixtures {wider} held it while they lived)" for test, left, wider in still)
    return result


def pytest_terminal_summary(terminalreporter):
    if LEAK_COST["tests"]:
        terminalreporter.write_line(
            f"bpfkit: leak check after {LEAK_COST['tests']:.0f} tests: {LEAK_COST['seconds']:.1f} s in all, "
            f"{1000 * LEAK_COST['seconds'] / LEAK_COST['tests']:.1f} ms a test (the quick look "
            f"{1000 * LEAK_COST['quick seconds'] / LEAK_COST['tests']:.1f} ms); "
            f"{LEAK_COST['looked again']:.0f} looked again after the kernel's deferred frees")
    left = _SUITE.get("left")
    if left:
        terminalreporter.section("bpfkit: the test run left these behind", red=True, bold=True)
        for kind, items in left.items():
            terminalreporter.write_line(f"LEAK {kind}: {items}", red=True)
