"""Every change the kit makes outside its process is undone after a kill (issue 23).

For each kind of change (a struct_ops registration, the BPF statistics switch, a folder in /tmp,
a cgroup with a program attached, a lab's namespace, cable and XDP program, a pin), a child
Python process makes it through the kit's own API, the same calls the lessons make, and is
SIGKILLed at the moment right after the change (the test switch BPFKIT_KILL_AFTER=<kind>[:<n>]
of `bpfkit.host.lifetime.made`). Then a new process loads something (create_map, bpfkit.load or
bpfobject.load: each calls `lifetime.free_dead`), and the machine must be as it was before the
child: the kernel's programs and maps of the names the child used, the congestion controls, the
kit's cgroups, namespaces and interfaces, the sysctl, /tmp/bpfkit-c-*, the pin, the records of
dead owners under /run/bpfkit.

Lesson -> kinds it changes (each case below names its lessons): 05, 14, 15, 18 cgroups and
their programs; 06, 12, 16, 17 labs (namespaces, cables, XDP programs); 07 the statistics
switch; 11 a folder; 13 pins; 19 struct_ops.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bpfkit.access import kernel
from bpfkit.host import lifetime
from bpfkit.lab import cgroup, net
from bpfkit.loader import bpfobject
from bpfkit.maps import pins

ROOT = Path(__file__).resolve().parents[1]
# Names of the kernel objects the children make: none of them may be left.
NAMES = {"l19", "l19_init", "l19_cong_avoid", "l19_ssthresh", "l19_undo_cwnd", "samples",
         "kill_l19.bss", "kill_xdp", "kill_egress", "kill_pin", "kill_next", "counter"}

XDP = "int kill_xdp(struct xdp_md *ctx) { return XDP_PASS; }"
EGRESS = "int kill_egress(struct __sk_buff *skb) { return 1; }"
NEXT_MAP = ("m = bpfkit.create_map('array', key='u32', value='u32', max_entries=1, "
            "name='kill_next'); m.close()")
NEXT_L19 = "from bpfkit.loader import bpfobject\nbpfobject.load('l19_cc', name='kill_l19').close()"
NO_LINK = ("from bpfkit.loader import bpfobject\n"
           "bpfobject.struct_ops_attach_type = lambda: None   # as a kernel before 6.4: no link\n")

# id: (BPFKIT_KILL_AFTER, the child's code, the next process's code)
CASES = {
    "l19 struct_ops (link)": ("struct_ops", "from bpfkit.loader import bpfobject\n"
                              "bpfobject.load('l19_cc', name='kill_l19')", NEXT_L19),
    "l19 struct_ops (no link)": ("struct_ops", NO_LINK + "bpfobject.load('l19_cc', name='kill_l19')",
                                 NEXT_L19),
    "l07 bpf_stats": ("sysctl", "from bpfkit.access import kernel\n"
                      "with kernel.bpf_stats(): pass", NEXT_MAP),
    "l07 bpf_stats (sysctl)": ("sysctl", "from bpfkit.access import kernel\n"
                               "kernel._enable_stats = lambda: None   # as a kernel before 5.8\n"
                               "with kernel.bpf_stats(): pass", NEXT_MAP),
    "l11 folder": ("dir", "from bpfkit.lessons import l11_stack_traces_profiler as l11\n"
                   "with l11.profiled_c_program([0], 'int main(void) { return 0; }'): pass", NEXT_MAP),
    "l11 folder, built": ("dir:2", "from bpfkit.lessons import l11_stack_traces_profiler as l11\n"
                          "with l11.profiled_c_program([0], 'int main(void) { return 0; }'): pass",
                          NEXT_MAP),
    "l05 l14 l15 l18 cgroup": ("cgroup", "from bpfkit.lab.cgroup import Cgroup\nCgroup('kill')",
                               NEXT_MAP),
    "l05 l14 l15 l18 cgroup with a program": (
        "cgroup attach", "from bpfkit.lab.cgroup import Cgroup\ncg = Cgroup('kill')\n"
        f"p = bpfkit.load({EGRESS!r}, name='kill_egress')\n"
        "cg.attach(p.load_func('kill_egress', 'cgroup_skb'), 'egress')",
        "bpfkit.load('counter', name='kill_next').close()"),
    "l06 l12 l16 l17 namespace": ("netdev", "from bpfkit.lab.net import Lab\nLab('kill').host('kil')",
                                  NEXT_MAP),
    "l06 l12 l16 l17 cable": ("netdev:2", "from bpfkit.lab.net import Lab\nLab('kill').host('kil')",
                              NEXT_MAP),
    "l06 l12 l16 l17 XDP program": (
        "xdp", "from bpfkit.lab.net import Lab\nlab = Lab('kill'); h = lab.host('kil')\n"
        f"p = bpfkit.load({XDP!r}, name='kill_xdp')\nlab.attach_xdp(p, h.port, 'kill_xdp')",
        NEXT_MAP),
    "l13 pin": ("pin", "m = bpfkit.create_map('array', key='u32', value='u32', max_entries=1, "
                "name='kill_pin')\nm.pin('kill_pin')", NEXT_MAP),
}

# Where the kernel undoes the change itself when the process goes (a struct_ops link, the
# statistics fd of BPF_ENABLE_STATS): the kit's records are for the other paths.
KERNEL_UNDOES = {"l19 struct_ops (link)", "l07 bpf_stats"}


def _python(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "import bpfkit\n" + code], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env})


def _named(ids, info) -> list[tuple[int, str]]:
    found = []
    for i in ids:
        about = info(i)
        if about and about.get("name") in NAMES:
            found.append((i, about["name"]))
    return found


def machine() -> dict:
    """What a killed child could have left, as comparable values."""
    root = cgroup.mount()
    dead = [p.name for p in lifetime.OWNERS.glob("owner-*.json")
            if not lifetime.alive(":".join(p.stem.removeprefix("owner-").split("-", 1)))] \
        if lifetime.OWNERS.is_dir() else []
    return {
        "programs": _named(kernel.prog_ids(), kernel.prog_info),
        "maps": _named(kernel.map_ids(), kernel.map_info),
        "congestion": sorted(c for c in Path("/proc/sys/net/ipv4/tcp_available_congestion_control")
                             .read_text().split() if c.startswith("bpfkit_")),
        "cgroups": sorted(p.name for p in root.glob("bpfkit-kill*")),
        "netns": [n for n in net.netns_names() if n.startswith("bpfkit-kil")],
        "links": [n for n in net.link_names() if n.startswith("bpfkit-kil")],
        "sysctl": Path(kernel.BPF_STATS_SYSCTL).read_text().strip(),
        "folders": sorted(str(p) for p in Path("/tmp").glob("bpfkit-c-*")),
        "pin": pins.path_of("kill_pin").exists(),
        "dead owners' records": dead,
    }


@pytest.mark.parametrize("case", list(CASES))
def test_a_kill_right_after_the_change_leaves_nothing_after_the_next_load(case):
    if case.startswith("l19") and bpfobject.missing():
        pytest.skip(f"this machine has no {bpfobject.missing()}")
    kind, make, load_next = CASES[case]
    lifetime.free_dead()   # what an earlier run left is not this case's
    before = machine()
    child = _python(make, BPFKIT_KILL_AFTER=kind)
    assert child.returncode == -9, f"the child was not killed at {kind!r}: {child.stderr[-2000:]}"
    if case in KERNEL_UNDOES:
        # (the record stays until the next load: the kit cannot know the kernel undid it)
        assert _settled(before, RECORDS) == _without(before, RECORDS), \
            "the kernel did not undo it with the process"
    else:
        assert machine() != before, "the kill left nothing to undo: the case tests nothing"
    after = _python(load_next)
    assert after.returncode == 0, after.stderr[-2000:]
    assert _settled(before) == before


RECORDS = "dead owners' records"


def _without(state: dict, *keys: str) -> dict:
    return {k: v for k, v in state.items() if k not in keys}


def _settled(expected: dict, *ignoring: str) -> dict:
    """The machine once it equals `expected` or 3 s passed: the kernel frees maps and programs
    a moment after their last reference goes."""
    deadline = time.monotonic() + 3
    expected = _without(expected, *ignoring)
    while (now := _without(machine(), *ignoring)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def test_nothing_to_free_costs_under_a_millisecond():
    lifetime.free_dead()
    start = time.perf_counter()
    for _ in range(200):
        lifetime.free_dead()
    assert (time.perf_counter() - start) / 200 < 1e-3


def test_a_live_owner_keeps_what_it_made():
    """free_dead from another process never touches what a running process made."""
    owner = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, bpfkit
        from bpfkit.lab.cgroup import Cgroup
        cg = Cgroup('kill_live'); print(cg.path, flush=True); sys.stdin.read()""")],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        path = Path(owner.stdout.readline().strip())
        assert path.is_dir()
        assert _python(NEXT_MAP).returncode == 0
        assert path.is_dir()
    finally:
        owner.stdin.close()
        owner.wait(timeout=10)
    assert not path.exists()


# -- the same in a notebook's kernel, killed in the middle of the lesson ------------------------

@pytest.mark.parametrize("stem, kind", [("19_beyond_bcc", "struct_ops"),
                                        ("07_map_cost_in_kernel", "sysctl")])
def test_a_lesson_kernel_killed_mid_lesson_leaves_nothing_after_the_next_load(stem, kind):
    """Run All in a fresh notebook kernel that kills itself at the lesson's change (lesson 19:
    its congestion control registered, cell 5; lesson 07: inside kernel.bpf_stats()), then the
    next load: the machine is as it was."""
    from nbclient.exceptions import DeadKernelError
    from notebook_runs import execute, notebook_path
    if stem.startswith("19") and bpfobject.missing():
        pytest.skip(f"this machine has no {bpfobject.missing()}")
    lifetime.free_dead()
    before, bpf_before = machine(), kernel.snapshot()
    with pytest.raises(DeadKernelError):
        execute(notebook_path(stem), timeout=120, kernel_env={"BPFKIT_KILL_AFTER": kind,
                                                               "PYTHONPATH": str(ROOT)})
    assert _python(NEXT_MAP).returncode == 0
    assert _settled(before) == before
    now = kernel.snapshot()   # and no program or map the kernel made since, that no process holds
    stray = {k: sorted((now[k] - bpf_before[k]) & _held_by_none(k)) for k in ("programs", "maps")}
    assert not any(stray.values()), stray


def _held_by_none(kind: str) -> set[int]:
    """Ids of `kind` no process holds an fd to (what another engineer's live test holds is not
    this kill's)."""
    held = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            held |= kernel.held_by(int(pid))[kind]
    return set(getattr(kernel, {"programs": "prog_ids", "maps": "map_ids"}[kind])()) - held


def test_reset_names_what_it_freed():
    """`python -m bpfkit reset` frees a dead owner's leftovers too, and says so (never "nothing
    left behind" when something was)."""
    lifetime.free_dead()
    child = _python("from bpfkit.lab.cgroup import Cgroup\nCgroup('kill')", BPFKIT_KILL_AFTER="cgroup")
    assert child.returncode == -9
    said = subprocess.run([sys.executable, "-m", "bpfkit", "reset", "--keep-lessons"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    assert "cgroups: removed bpfkit-kill" in said, said
    assert not (cgroup.mount() / "bpfkit-kill").exists()


@pytest.mark.unit
def test_free_dead_undoes_a_dead_owners_claims_and_keeps_a_live_owners(tmp_path, monkeypatch):
    """The records alone, with no kernel: a dead owner's folder goes with its record; what a
    live process (this one) claimed stays, and so does its record."""
    monkeypatch.setattr(lifetime, "OWNERS", tmp_path / "owners")
    dead_dir, live_dir = tmp_path / "bpfkit-c-dead", tmp_path / "bpfkit-c-live"
    dead_dir.mkdir(), live_dir.mkdir()
    lifetime.claim("dir", str(live_dir))
    dead = lifetime.OWNERS / "owner-999999999-1.json"   # no such pid: a dead owner
    dead.write_text(f'{{"mark": "999999999:1", "claims": {{"dir": ["{dead_dir}"], '
                    f'"made by a newer kit": ["x"]}}}}')
    assert lifetime.free_dead() == {"dir": [str(dead_dir)]}
    assert not dead_dir.exists() and live_dir.is_dir()
    assert "made by a newer kit" in dead.read_text()   # a kind with no undoer here is kept
    assert lifetime.orphans("dir") == set()
    lifetime.release("dir", str(live_dir))
    assert not list(lifetime.OWNERS.glob(f"owner-{os.getpid()}-*"))
