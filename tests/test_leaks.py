"""Nothing leaks, nothing is lost.

- The suite-wide check (tests/conftest.py) sees every kind of leftover: programs, maps, links,
  XDP and cgroup attachments, network namespaces, veths.
- A failed load leaves nothing new in the kernel, and the program loaded earlier under the
  same name keeps running (the chosen behaviour, documented in `bpfkit.load`).
- A Jupyter kernel's shutdown, restart or death frees what its notebook loaded; notebooks 00
  and 01 run twice in one kernel leave the kernel as one run does.
- Under load from both CPUs an atomic counter is exact; the seed's lookup-then-update is not,
  and the test says by how much. Ring and perf buffer readers count what they drop.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

import bpfkit
from bpfkit.access import _libbpf, kernel
from bpfkit.lab import children
from bpfkit.core import errors
from bpfkit.observe import events
from bpfkit.lessons.l01_hash_map_counter import lost_updates
from conftest import cgroup2_root, held_elsewhere, kernel_state, leftovers

ROOT = Path(__file__).resolve().parent.parent


# ---- the leak check itself ---------------------------------------------------------------------

def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def test_the_leak_check_names_every_kind_of_leftover():
    """Make one of each leftover on purpose: the check must name it, then clean up."""
    tag = f"bpfkl{os.getpid() % 100000}"
    before = kernel_state()
    group = None
    prog = bpfkit.load("""
        BPF_ARRAY(pinned, u64, 1);
        int pass_all(struct xdp_md *ctx) { return XDP_PASS; }
        int allow_all(struct __sk_buff *skb) { return 1; }
    """, name="leak_check")
    pin = Path("/sys/fs/bpf") / tag
    try:
        assert _libbpf.lib.bpf_obj_pin(prog["pinned"].fd, str(pin).encode()) == 0  # not the kit's pin()
        _ip("netns", "add", tag)
        _ip("link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        xdp = prog.load_func("pass_all", "xdp")
        prog.bpf.attach_xdp(f"{tag}a".encode(), xdp, 1 << 1)  # XDP_FLAGS_SKB_MODE: generic, works on veth
        root = cgroup2_root()
        if root is not None:
            group = root / tag
            group.mkdir()
            skb = prog.load_func("allow_all", "cgroup_skb")
            fd = os.open(group, os.O_RDONLY | os.O_DIRECTORY)
            try:
                kernel.attach(skb.fd, fd, 0)  # BPF_CGROUP_INET_INGRESS; a refusal raises
            finally:
                os.close(fd)
        ids = set(prog.program_ids())
        left = leftovers(before)  # (other processes may add their own: look for ours)
        assert ids <= set(left["programs"])
        assert tag in left["netns"] and tag in left["pins"]
        assert {f"{tag}a", f"{tag}b"} <= set(left["veth"])
        ours = [(ns, dev, attached) for ns, dev, attached in left["xdp"] if dev == f"{tag}a"]
        assert len(ours) == 1 and ours[0][0] == "" and ours[0][2][0] in ids
        if group is not None:
            assert [(g, t, i in ids) for g, t, i in left["cgroup"] if g == tag] == [(tag, 0, True)]
    finally:
        pin.unlink(missing_ok=True)
        subprocess.run(["ip", "link", "del", f"{tag}a"], capture_output=True)
        subprocess.run(["ip", "netns", "del", tag], capture_output=True)
        prog.close()  # closing the program's fds detaches its cgroup program
        if group is not None:
            for _ in range(50):
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)
    assert not leftovers(before)


def test_objects_other_processes_hold_are_not_ours():
    """Another process's program (another learner, another tool) is not a leak of this run."""
    code = ("import bpfkit, sys; p = bpfkit.load('counter'); print(*p.program_ids(), flush=True); "
            "sys.stdin.read()")
    # setsid -f: the process is re-parented away from this run, like someone else's.
    child = subprocess.Popen(["setsid", "-f", sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        ids = {int(x) for x in child.stdout.readline().split()}
        assert ids and ids <= held_elsewhere()["programs"]
    finally:
        child.stdin.close()  # the other process ends when its stdin does
        child.wait(timeout=30)
    assert child.stdout.read() == ""
    deadline = time.monotonic() + 10
    while ids & kernel.snapshot()["programs"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ids & kernel.snapshot()["programs"]


# ---- a failed load changes nothing ---------------------------------------------------------------

GOOD = "BPF_HASH(counter_table);\nTRACEPOINT_PROBE(syscalls, sys_enter_execve) {\n" \
       "    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;\n    counter_table.increment(uid);\n" \
       "    return 0;\n}\n"
BAD = {
    "compile": GOOD.replace("increment(uid);", "increment(uid)"),
    "verifier": GOOD.replace("    counter_table.increment(uid);\n",
                             "    u64 *p = counter_table.lookup(&uid);\n    *p += 1;\n"),
    "tracepoint": GOOD.replace("sys_enter_execve", "sys_enter_no_such_call"),
    "map": GOOD.replace("BPF_HASH(counter_table);", "BPF_HASH(counter_table);\nBPF_ARRAY(empty, u64, 0);"),
}


@pytest.mark.parametrize("failure", sorted(BAD))
def test_a_failed_load_leaves_nothing_and_keeps_the_earlier_program(failure, uid, no_leaks):
    first = bpfkit.load(GOOD, name="same_name")
    try:
        children.run_as(uid, 2)
        before = kernel_state()
        with pytest.raises(errors.BpfkitError) as e:
            bpfkit.load(BAD[failure], name="same_name")
        assert "(The program loaded earlier as 'same_name' is still loaded, unchanged.)" in str(e.value)
        left = {k: v for k, v in leftovers(before).items() if k in ("programs", "maps", "links", "xdp")}
        assert not left, f"a {failure} failure left objects in the kernel: {left}"
        assert bpfkit.loaded()["same_name"] is first and not first.closed
        children.run_as(uid, 3)
        assert first["counter_table"][uid] == 5  # still attached, still counting
    finally:
        first.close()


# ---- a Jupyter kernel frees what its notebook loaded ---------------------------------------------

LOAD_IN_KERNEL = """
import json, os, bpfkit
_p = bpfkit.load("counter")
_m = bpfkit.create_map("queue", value="u32", name="made_here")   # a map the notebook made
_pin = _m.pin(f"bpfkit-test-kernel-{os.getpid()}")               # and pinned: it outlives a crash
print(json.dumps({"programs": _p.program_ids(), "maps": [m.id for m in _p.maps.values()] + [_m.id],
                  "pins": [str(_pin.path)]}))
"""


@pytest.fixture
def jupyter_kernel():
    from jupyter_client import KernelManager
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def _run(kc, code: str) -> str:
    out = []
    reply = kc.execute_interactive(code, timeout=60, output_hook=lambda m: out.append(
        m["content"].get("text", "")) if m["msg_type"] == "stream" else None)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def _loaded_in(kc) -> dict[str, set]:
    ids = json.loads(_run(kc, LOAD_IN_KERNEL).strip().splitlines()[-1])
    now = kernel.snapshot()
    assert set(ids["programs"]) <= now["programs"] and set(ids["maps"]) <= now["maps"]
    assert all(Path(p).exists() for p in ids["pins"])
    return {k: set(v) for k, v in ids.items()}


def _gone(ids: dict[str, set]) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = kernel.snapshot()
        if not (ids["programs"] & now["programs"] or ids["maps"] & now["maps"]
                or any(Path(p).exists() for p in ids["pins"])):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("how", ["shutdown", "restart", "kill"])
def test_kernel_shutdown_restart_or_death_frees_what_the_notebook_loaded(how, jupyter_kernel):
    km, kc = jupyter_kernel
    ids = _loaded_in(kc)
    if how == "shutdown":
        km.shutdown_kernel(now=False)
    elif how == "restart":
        km.restart_kernel(now=False)
        kc.wait_for_ready(timeout=60)
    else:
        km.shutdown_kernel(now=True)  # SIGKILL: no atexit, no clean-up cell
        time.sleep(0.2)
        assert all(Path(p).exists() for p in ids["pins"]), "a pin outlives a killed process ..."
        bpfkit.create_map("hash").close()  # ... until the kit's next use sweeps dead processes' pins
    assert _gone(ids), f"after {how}, the kernel still holds {ids}"
    if how == "restart":  # the restarted kernel works, and its own program goes at shutdown
        again = _loaded_in(kc)
        km.shutdown_kernel(now=False)
        assert _gone(again)


# ---- nothing is lost --------------------------------------------------------------------------------

def test_an_atomic_counter_is_exact_under_load_and_the_seeds_is_not(no_leaks, capsys):
    result = lost_updates(calls_per_worker=300_000, workers=2)
    assert result["generated"] == 600_000
    assert result["atomic"] == result["generated"], result
    assert result["racy"] + result["lost"] == result["generated"]
    assert result["increment"] <= result["generated"]
    if len(os.sched_getaffinity(0)) >= 2:  # two CPUs at once is what makes the seed lose
        assert result["lost"] > 0, result
    with capsys.disabled():
        print(f"\n  under load: {result['generated']:,} events; atomic {result['atomic']:,}; "
              f"BCC increment() {result['increment']:,} (lost {result['generated'] - result['increment']:,}); "
              f"seed lookup-then-update {result['racy']:,} (lost {result['lost']:,}, "
              f"{100 * result['lost'] / result['generated']:.1f}%)")


def test_hammer_makes_exactly_the_calls_it_says(uid, no_leaks):
    source = ("BPF_ARRAY(calls, u64, 1);\nTRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n"
              f"    if ((bpf_get_current_uid_gid() & 0xFFFFFFFF) != {uid}) return 0;\n"
              "    int zero = 0;\n    u64 *n = calls.lookup(&zero);\n"
              "    if (n) __sync_fetch_and_add(n, 1);\n    return 0;\n}\n")
    with bpfkit.load(source, name="hammer_check") as prog:
        assert children.hammer(uid, 12_345, workers=3) == 37_035
        assert prog["calls"][0] == 37_035


EVENT_SOURCE = """
struct event {{ u32 uid; u32 pid; u64 seq; }};
{declare}
BPF_ARRAY(dropped, u64, 1);
BPF_ARRAY(seq, u64, 1);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {{
    u32 uid = bpf_get_current_uid_gid();
    int zero = 0;
    if (uid != {uid}) return 0;
    u64 *n = seq.lookup(&zero);
    if (!n) return 0;
    u64 s = __sync_fetch_and_add(n, 1);
    {send}
    return 0;
}}
"""
RING_SEND = """struct event *e = events.ringbuf_reserve(sizeof(struct event));
    if (!e) {
        u64 *d = dropped.lookup(&zero);
        if (d) __sync_fetch_and_add(d, 1);
        return 0;
    }
    e->uid = uid; e->pid = bpf_get_current_pid_tgid() >> 32; e->seq = s;
    events.ringbuf_submit(e, 0);"""
PERF_SEND = """struct event e = {};
    e.uid = uid; e.pid = bpf_get_current_pid_tgid() >> 32; e.seq = s;
    events.perf_submit(args, &e, sizeof(e));"""


def test_ring_buffer_reader_counts_what_a_full_buffer_dropped(uid, no_leaks):
    source = EVENT_SOURCE.format(declare="BPF_RINGBUF_OUTPUT(events, 1);", uid=uid, send=RING_SEND)
    with bpfkit.load(source, name="ring_drops") as prog:
        reader = events.ring(prog["events"], dropped=prog["dropped"])
        children.hammer(uid, 2000, workers=1)  # one page holds ~170 events: the rest cannot fit
        reader.drain()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = reader.frame()
        assert reader.received + reader.dropped == 2000
        assert 0 < reader.received < 2000
        assert list(frame.columns) == ["uid", "pid", "seq"] and len(frame) == reader.received
        assert (frame["uid"] == uid).all()
        assert frame["seq"].tolist() == list(range(reader.received))  # the first ones fit, in order
        assert frame.attrs == {"received": reader.received, "dropped": reader.dropped}
        assert [str(w.message).split(" events")[0] for w in caught] == [str(reader.dropped)]
        assert f"{reader.dropped} events were dropped because the ring buffer 'events' was full" \
            in str(caught[0].message)
        dropped = reader.dropped
        reader.clear()
        children.hammer(uid, 10, workers=1)  # with room again, nothing more is lost
        reader.drain()
        assert (reader.received, reader.dropped) == (10, dropped)
        assert reader.frame()["seq"].tolist() == list(range(2000, 2010))


def test_perf_buffer_reader_counts_what_the_kernel_lost(uid, no_leaks):
    source = EVENT_SOURCE.format(declare="BPF_PERF_OUTPUT(events);", uid=uid, send=PERF_SEND)
    with bpfkit.load(source, name="perf_drops") as prog:
        reader = events.perf(prog["events"], pages=1)
        children.hammer(uid, 2000, workers=1)  # all on one CPU, into one page
        reader.drain()
        received = reader.received
        assert 0 < received < 2000
        # The kernel reports a CPU's losses with the next event it writes there.
        children.hammer(uid, 1, workers=1)
        reader.drain()
        assert reader.received == received + 1
        assert reader.received + reader.dropped == 2001
        with pytest.warns(events.DroppedEvents, match=f"{reader.dropped} events were dropped"):
            seqs = reader.frame()["seq"].tolist()
        assert seqs[:received] == list(range(received)) and seqs[-1] == 2000


def test_readers_refuse_a_misspelled_map_and_odd_page_counts(no_leaks):
    with bpfkit.load("BPF_PERF_OUTPUT(events);\nBPF_ARRAY(counts, u64, 1);", name="perf_names") as prog:
        with pytest.raises(errors.MapNotFound, match="Did you mean 'events'"):
            events.perf(prog["event"])
        with pytest.raises(errors.UsageError, match="power of two"):
            events.perf(prog["events"], pages=3)
        with pytest.raises(errors.UsageError, match=r"takes the buffer's map, not the program") as e:
            events.perf(prog, "events")
        assert 'events.perf(perf_names["events"])' in e.value.hint
        with pytest.raises(errors.UsageError, match="'counts' is an array map, not a perf buffer"):
            events.perf(prog["counts"])
        with pytest.raises(errors.UsageError, match="not a ring buffer"):
            events.ring(prog["events"])
