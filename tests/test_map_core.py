"""The map core on the real kernel: every map type made from Python, one frame() for every family,
maps BCC cannot declare used by a loaded program through `maps=`, local storage keyed by
objects, keyless maps, pins, and `close_all()` leaving nothing behind."""
from __future__ import annotations

import errno
import os
import platform
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import bpfkit
from bpfkit.host import lifetime
from bpfkit.core import maptypes
from bpfkit.lab.cgroup import Cgroup
from bpfkit.core.errors import (BpfkitError, CleanupError, Closed, ColumnError, MapEmpty, MapError,
                                MapFull, NotAllowedHere, UsageError)
from bpfkit.maps import btf
from conftest import kernel_state, leftovers, skip_unless_allowed

ROOT = Path(__file__).resolve().parent.parent


def kernel_version() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


# -- the kernel's list of map types ----------------------------------------------------------------

def test_map_types_lists_every_type_the_kernel_defines(no_leaks):
    types = bpfkit.map_types()
    defined = btf.vmlinux_enum("bpf_map_type")
    assert defined is not None, "this kernel has BTF: the list must come from it"
    numbers = sorted({v for k, v in defined.items() if v > 0 and not k.startswith("__")})
    assert types["number"].tolist() == numbers
    assert {"type", "supported", "error", "bcc_declares", "key", "per_cpu", "since"} <= set(types.columns)
    assert (types["error"] != "").tolist() == (~types["supported"]).tolist()  # a reason for each refusal
    known = types[types["number"] <= 33].set_index("type")
    # Every type of the table that this kernel's release already has is made for real here.
    release = kernel_version()
    due = [t.name for t in maptypes.TABLE if tuple(map(int, t.since.split("."))) <= release]
    # A due type this kernel refuses anyway (its policy: one of our machines refuses arena to
    # root) is a row that says why, in the words bpfkit.allowed() gives, never an exception.
    for kind in due:
        here = bpfkit.allowed(f"{kind} map")
        assert bool(here) == known.loc[kind, "supported"], kind
        assert here or known.loc[kind, "error"] == here.reason, kind
    assert sorted(known.index[~known["bcc_declares"]]) == sorted(
        ["bloom_filter", "devmap_hash", "reuseport_sockarray", "cgrp_storage", "user_ringbuf",
         "struct_ops", "arena"])


@pytest.mark.parametrize("kind", [t.name for t in maptypes.TABLE])
def test_create_map_makes_every_type_and_close_frees_it(kind, no_leaks):
    mt = maptypes.get(kind)
    if tuple(map(int, mt.since.split("."))) > kernel_version():
        pytest.skip(f"{kind} is newer than this kernel")
    extra = {}
    if mt.values == "map":
        extra["inner"] = bpfkit.create_map("array", value="u64", max_entries=2, name="template")

    def refused():   # where the kernel says no: the kit's error, with the errno, and nothing made
        with pytest.raises(NotAllowedHere) as e:
            bpfkit.create_map(kind, **extra)
        assert e.value.errno and "no privilege is missing" in e.value.what or "does not have" in e.value.what
        bpfkit.close_all()
    skip_unless_allowed(f"{kind} map", refused)
    m = bpfkit.create_map(kind, **extra)
    assert m.type == kind and m.owns_fd and m in lifetime.held("map")
    assert repr(m).startswith(f"<bpfkit.Map {m.name!r} {kind} id={m.id}")
    m.close()
    assert m not in lifetime.held("map")
    with pytest.raises(MapError, match="closed"):
        m.fd
    bpfkit.close_all()


def test_create_map_explains_what_it_refuses(no_leaks):
    with pytest.raises(MapError, match="no map type 'bloom'") as e:
        bpfkit.create_map("bloom")
    assert "bloom_filter" in str(e.value)
    with pytest.raises(MapError, match="has no keys"):
        bpfkit.create_map("queue", key="u32")
    with pytest.raises(MapError, match="needs a template"):
        bpfkit.create_map("array_of_maps")
    with pytest.raises(MapError, match="refused to create an lpm_trie") as e:
        bpfkit.create_map("lpm_trie", flags=0)           # the kernel wants BPF_F_NO_PREALLOC
    assert "flags=0x1" in e.value.hint
    with pytest.raises(MapError, match="cannot name a map"):
        bpfkit.create_map("hash", name="a name with spaces")
    with pytest.raises(MapError, match="does not take colour="):
        bpfkit.create_map("hash", colour="red")
    with pytest.raises(BpfkitError, match="does not name a C type"):
        bpfkit.create_map("hash", value="u65")
    assert lifetime.held("map") == {}


# -- maps BCC cannot declare, used by a loaded program --------------------------------------------

SEEN = r"""
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (bpf_map_peek_elem(seen, &pid) == 0)     /* maybe seen before: say nothing */
        return 0;
    bpf_map_push_elem(seen, &pid, 0);           /* the bloom filter remembers it */
    bpf_map_push_elem(newcomers, &pid, 0);      /* and the queue tells user space, in order */
    return 0;
}
"""


def _getppid_in_children(n: int) -> list[int]:
    pids = []
    for _ in range(n):
        child = subprocess.run([sys.executable, "-c", "import os; [os.getppid() for _ in range(5)];"
                                " print(os.getpid())"], capture_output=True, text=True, check=True)
        pids.append(int(child.stdout))
    return pids


def test_a_bloom_filter_and_a_queue_made_here_serve_a_program(no_leaks):
    seen = bpfkit.create_map("bloom_filter", value="u32", max_entries=4096, name="seen", hashes=3)
    newcomers = bpfkit.create_map("queue", value="u32", max_entries=1024, name="newcomers")
    with bpfkit.load(SEEN, name="seen_once", maps={"seen": seen, "newcomers": newcomers}) as prog:
        assert prog["seen"] is seen and prog.map_names()[-2:] == ["seen", "newcomers"]
        pids = _getppid_in_children(3)
        arrived = newcomers.drain()
        ours = [p for p in arrived["value"].tolist() if p in pids]
        assert ours == pids                            # first in, first out; each pid once
        assert all(p in seen for p in pids)            # the program added them to the filter
        assert newcomers.peek(default=None) is None or newcomers.peek() not in pids
    assert seen.fd and seen.frame is not None          # the program is gone; the maps are ours
    assert all(p in seen for p in pids)
    bpfkit.close_all()
    assert lifetime.held() == {}


def test_a_bpf_cell_takes_maps_from_notebook_variables(no_leaks):
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext bpfkit")
    shell.user_ns["seen"] = bpfkit.create_map("bloom_filter", value="u32", name="seen")
    shell.user_ns["newcomers"] = bpfkit.create_map("queue", value="u32", name="newcomers")
    assert shell.run_cell("%%bpf seen_once maps=seen,newcomers\n" + SEEN).success
    prog = shell.user_ns["seen_once"]
    assert prog["newcomers"] is shell.user_ns["newcomers"]
    pids = _getppid_in_children(1)
    assert pids[0] in prog["seen"]
    missing = shell.run_cell("%%bpf seen_once maps=seen,nothing\n" + SEEN)
    assert "no variable 'nothing'" in str(missing.error_in_exec)
    assert shell.user_ns["seen_once"] is prog and not prog.closed   # a failed cell changes nothing
    bpfkit.close_all()


def test_maps_given_to_a_program_are_checked(no_leaks):
    m = bpfkit.create_map("queue", value="u32")
    with pytest.raises(BpfkitError, match="takes a bpfkit Map"):
        bpfkit.load(SEEN, name="seen_once", maps={"seen": 3})
    with pytest.raises(UsageError, match="is not a C name"):
        bpfkit.load(SEEN, name="seen_once", maps={"not a name": m})
    m.close()
    with pytest.raises(MapError, match="closed"):
        bpfkit.load(SEEN, name="seen_once", maps={"seen": m, "newcomers": m})
    assert bpfkit.loaded() == {}


# -- keyless maps ----------------------------------------------------------------------------------

def test_queue_and_stack_orders_and_limits(no_leaks):
    q = bpfkit.create_map("queue", value="u64", max_entries=3)
    s = bpfkit.create_map("stack", value="u64", max_entries=3)
    for m in (q, s):
        for v in (10, 20, 30):
            m.push(v)
        with pytest.raises(MapFull, match="max_entries=3"):
            m.push(40)
    assert q.peek() == 10 and s.peek() == 30                  # peek leaves it there
    assert list(q.frame().columns) == ["value"] and q.frame()["value"].tolist() == [10]
    q.push(40, overwrite=True)                                # drops the oldest, 10
    assert q.drain()["value"].tolist() == [20, 30, 40]
    assert s.drain().to_dict("list") == {"order": [0, 1, 2], "value": [30, 20, 10]}
    with pytest.raises(MapEmpty) as e:
        q.pop()
    assert isinstance(e.value, IndexError) and q.pop(default="none") == "none"
    with pytest.raises(MapError, match="without taking its values out"):
        len(q)
    with pytest.raises(MapError, match="no keys to write at"):
        q[0] = 1
    bloom = bpfkit.create_map("bloom_filter", value="u64", max_entries=100)
    bloom.add(7)
    assert 7 in bloom and 8 not in bloom                      # 1 value in 100 bits: no false positive
    with pytest.raises(MapError, match="value in m"):
        bloom.frame()
    bpfkit.close_all()


# -- local storage, keyed by kernel objects ---------------------------------------------------------

def test_keyless_maps_bcc_declares_read_through_the_same_map(no_leaks):
    source = ("BPF_QUEUE(q, u32, 32);\nBPF_STACK(st, u32, 32);\n"
              "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n"
              "    u32 pid = bpf_get_current_pid_tgid() >> 32;\n"
              "    q.push(&pid, 0);\n    st.push(&pid, 0);\n    return 0;\n}\n")
    with bpfkit.load(source, name="keyless_bcc") as prog:
        q, st = prog["q"], prog["st"]
        assert q.key_type is None and q.key_size == 0      # BCC describes no key at all
        pids = _getppid_in_children(2)
        ours_q = [p for p in q.drain()["value"].tolist() if p in pids]
        ours_st = [p for p in st.drain()["value"].tolist() if p in pids]
        assert ours_q == [pids[0]] * 5 + [pids[1]] * 5 and ours_st == ours_q[::-1]


def test_storage_maps_take_the_objects_their_values_belong_to(no_leaks):
    per_socket = bpfkit.create_map("sk_storage", value="u64", name="per_socket")
    per_task = bpfkit.create_map("task_storage", value="u64", name="per_task")
    per_cgroup = bpfkit.create_map("cgrp_storage", value="u64", name="per_cgroup")
    per_file = bpfkit.create_map("inode_storage", value="u64", name="per_file")
    a, b = socket.socketpair()
    child = subprocess.Popen(["sleep", "30"])
    try:
        per_socket[a] = 5
        per_socket[b.fileno()] = 6                             # an fd names the same socket
        assert per_socket[a] == 5 and per_socket[b] == 6
        frame = per_socket.frame(keys=[b, a])
        assert frame["value"].tolist() == [6, 5] and frame["key"].tolist() == [b, a]
        with pytest.raises(MapError, match="cannot be walked") as e:
            per_socket.frame()
        assert "keys=" in e.value.hint
        per_task[child] = 42                                   # a Popen: looked up by pidfd
        assert per_task[child] == 42
        with Cgroup("test-storage") as cg:
            per_cgroup[cg] = 9
            assert per_cgroup[cg] == 9 and per_cgroup[str(cg.path)] == 9
        with open(__file__) as f:
            per_file[f] = 3
            assert per_file[f] == 3
        del per_socket[a]
        assert a not in per_socket and per_socket.frame(keys=[a, b])["value"].tolist() == [6]
        with pytest.raises(MapError, match="keyed by a socket"):
            per_socket["not a socket"] = 1
    finally:
        a.close()
        b.close()
        child.kill()
        child.wait()
    with pytest.raises(KeyError, match="has exited"):          # the task's storage went with it
        per_task[child]
    assert per_task.get(child, "gone") == "gone" and child not in per_task  # as for a missing key
    bpfkit.close_all()


# -- one frame() for every family -------------------------------------------------------------------

def _filled(kind: str, stack) -> object:
    """A map of `kind` made here with one known entry in it."""
    if kind == "prog_array":
        prog = stack.enter_context(bpfkit.load("int target(void *ctx) { return 0; }", name="targets"))
        m = bpfkit.create_map(kind)
        m[1] = prog.load_func("target", "tracepoint")
        return m
    if kind in ("array_of_maps", "hash_of_maps"):
        inner = bpfkit.create_map("array", value="u64", max_entries=2, name="inner")
        m = bpfkit.create_map(kind, inner=inner)
        m[1] = inner
        return m
    if kind in ("sockmap", "sockhash", "reuseport_sockarray"):
        server = socket.create_server(("127.0.0.1", 0)) if kind != "reuseport_sockarray" else \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if kind == "reuseport_sockarray":
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            server.bind(("127.0.0.1", 0))
        stack.callback(server.close)
        m = bpfkit.create_map(kind)
        m[1] = server
        return m
    m = bpfkit.create_map(kind)
    if kind in ("devmap", "devmap_hash"):
        m[1] = "lo"
    elif kind == "cpumap":
        m[1] = 64
    elif kind == "lpm_trie":
        m[{"prefixlen": 24, "addr": [10, 1, 2, 0]}] = 7
    elif kind in ("queue", "stack"):
        m.push(7)
    elif m.map_type.per_cpu and m.map_type.key != "stored" or kind in ("percpu_hash", "lru_percpu_hash"):
        m[1] = 7
    elif kind not in ("stack_trace", "struct_ops", "cgroup_storage", "percpu_cgroup_storage"):
        m[1] = 7
    return m


READABLE = [t.name for t in maptypes.TABLE if t.readable and t.key != "fd"]
UNREADABLE = [t.name for t in maptypes.TABLE if not t.readable]


@pytest.mark.parametrize("kind", READABLE)
def test_frame_options_and_renames_behave_the_same_for_every_family(kind, no_leaks):
    import contextlib
    with contextlib.ExitStack() as stack:
        m = _filled(kind, stack)
        frame = m.frame()
        columns = list(frame.columns)
        assert frame.attrs["key_columns"] == columns[:len(frame.attrs["key_columns"])]
        if "iterate" in m.map_type.ops:  # an option is an option in every family, never a rename
            pd.testing.assert_frame_equal(m.frame(method="iterate"), frame)
        key_rule = {"index": ["index"], "stored": None, "none": []}[m.map_type.key]
        if key_rule is not None:
            assert frame.attrs["key_columns"][:len(key_rule)] == key_rule
        # One renaming step, two spellings, the same result; a keyword is never a rename.
        new = [f"c{i}" for i in range(len(columns))]
        by_list = m.frame(new)
        by_dict = m.frame(dict(zip(columns, new)))
        with pytest.raises(UsageError, match=rf"frame\(\{{'{columns[-1]}': 'c{len(columns) - 1}'\}}\)"):
            m.frame(**{columns[-1]: new[-1]})
        for renamed in (by_list, by_dict):
            assert list(renamed.columns) == new
            pd.testing.assert_frame_equal(renamed.set_axis(columns, axis=1), frame)
        with pytest.raises(ColumnError, match="no column 'nope'"):
            m.frame({"nope": "x"})
        wrong = ["only"] if len(columns) != 1 else ["a", "b"]
        with pytest.raises(ColumnError, match=f"names {len(wrong)} columns, the frame has {len(columns)}"):
            m.frame(columns=wrong)
        # An option another family reads is refused in words, not taken for a rename.
        foreign = "sockets" if m.codec.family != "sockets" else "netns"
        with pytest.raises(MapError, match=rf"frame\({foreign}=\.\.\.\) is for "):
            m.frame(**{foreign: {"x": None}})
        # sample() builds the same columns, with `time` first, for every family.
        sampled = bpfkit.sample(m, every=0.02, duration=0.05, columns=dict(zip(columns, new)))
        assert list(sampled.columns) == ["time"] + new
        assert len(sampled) == len(frame) * sampled["time"].nunique()
        if len(frame):  # (stack traces and cgroup storage fill only from programs)
            assert sampled["time"].nunique() >= 2
        if m.map_type.slots:
            full = m.frame(empty=True)
            assert sorted(set(full["index"].tolist())) == list(range(m.max_entries))
        else:
            with pytest.raises(MapError, match="empty slots"):
                m.frame(empty=True)
    bpfkit.close_all()


@pytest.mark.parametrize("kind", UNREADABLE)
def test_maps_user_space_cannot_read_say_so_in_frame_and_sample(kind, no_leaks):
    skip_unless_allowed(f"{kind} map")
    m = bpfkit.create_map(kind)
    with pytest.raises(MapError) as e:
        m.frame()
    assert e.value.hint and kind in e.value.what
    with pytest.raises(MapError) as again:
        bpfkit.sample(m, every=0.01, duration=0.02)
    assert again.value.what == e.value.what
    bpfkit.close_all()


def test_what_a_type_does_not_offer_is_refused_before_any_system_call(no_leaks):
    h = bpfkit.create_map("hash")
    a = bpfkit.create_map("array")
    with pytest.raises(MapError, match="queue and stack") :
        h.push(1)
    with pytest.raises(MapError, match="cannot be deleted"):
        del a[0]
    with pytest.raises(MapError, match="is for maps that hold maps"):
        h.inner(0)
    with pytest.raises(MapError, match="programs attach to sockmap"):
        h.attach(0)
    with pytest.raises(MapError, match="read an array"):
        h.histogram()
    bpfkit.close_all()


# -- pins --------------------------------------------------------------------------------------------

def test_a_pin_keeps_a_map_for_another_opener_and_close_all_removes_it(no_leaks):
    name = f"bpfkit-test-pin-{os.getpid()}"
    m = bpfkit.create_map("hash", key="u32", value="u64", name="pinned")
    m[1] = 11
    pin = m.pin(name)
    assert pin.path == Path("/sys/fs/bpf") / name and pin.path.exists()
    with pytest.raises(MapError, match="pinned there already"):
        m.pin(name)
    m.close()                                             # the pin holds the map now
    with bpfkit.open_pinned(name) as again:
        assert again.id == m.id and again[1] == 11 and again.name == "pinned"
    bpfkit.close_all()
    assert not pin.path.exists() and lifetime.held() == {}
    with pytest.raises(MapError, match="Could not open the map pinned"):
        bpfkit.open_pinned(name)


def test_pins_of_a_killed_process_are_removed_by_the_next_pin(no_leaks):
    name = f"bpfkit-test-orphan-{os.getpid()}"
    code = ("import sys, bpfkit; m = bpfkit.create_map('array', name='orphan'); "
            f"m.pin({name!r}); print('ready', flush=True); sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert child.stdout.readline().strip() == "ready"
    path = Path("/sys/fs/bpf") / name
    assert path.exists() and str(path) in lifetime.owners("pin")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    assert path.exists()                                  # a killed process leaves its pin
    mine = bpfkit.create_map("array", name="mine").pin(f"{name}-mine")
    assert not path.exists()                              # ... until the kit next makes one
    mine.close()
    bpfkit.close_all()


# -- one registry, one close_all -------------------------------------------------------------------

def test_close_all_frees_programs_maps_pins_cgroups_and_labs_in_order():
    from bpfkit.lab import net
    before = kernel_state()
    seen = bpfkit.create_map("bloom_filter", value="u32", name="seen")
    newcomers = bpfkit.create_map("queue", value="u32", name="newcomers")
    hooks = SEEN + ("int pass_all(struct xdp_md *ctx) { return XDP_PASS; }\n"
                    "int allow_all(struct __sk_buff *skb) { return 1; }\n")
    prog = bpfkit.load(hooks, name="seen_once", maps={"seen": seen, "newcomers": newcomers})
    seen.pin(f"bpfkit-test-all-{os.getpid()}")
    cg = Cgroup("test-close-all")                        # a program attached to it stays loaded
    cg.attach(prog.load_func("allow_all", "cgroup_skb"), "ingress")
    lab = net.Lab("closeall")                            # and so does an XDP program on its port
    lab.attach_xdp(prog, lab.host("z").port, "pass_all")
    assert set(lifetime.held()) == {"lab", "cgroup", "program", "map", "pin"}
    bpfkit.close_all(check=True)                         # and finds nothing left: no error
    assert lifetime.held() == {} and prog.closed and cg.closed and lab.closed and seen.closed
    assert leftovers(before) == {}


def test_close_all_check_names_what_is_left():
    """A close that fails and a pin this process still claims are both named, not warned."""
    class Stuck:
        def close(self):
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))

    pin = f"/sys/fs/bpf/bpfkit-test-stuck-{os.getpid()}"
    lifetime.add("map", "stuck", Stuck())
    lifetime.claim("pin", pin)
    try:
        with pytest.raises(CleanupError) as e:
            bpfkit.close_all(check=True)
        said = str(e.value)
        assert "Could not be closed: map 'stuck'" in said and os.strerror(errno.EBUSY) in said
        assert f"pin {pin}" in said
    finally:
        lifetime.release("pin", pin)
    assert lifetime.held() == {}
    bpfkit.close_all(check=True)                          # nothing left now


def test_a_socket_in_two_slots_of_a_reuseport_array_is_named_as_such(no_leaks):
    """The kernel answers EBUSY, which for a sockmap means another map's programs: here it means
    the socket holds a slot already."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock, \
            bpfkit.create_map("reuseport_sockarray", max_entries=2) as slots:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        slots[0] = sock
        with pytest.raises(MapError, match="already holds a slot of a reuseport array") as e:
            slots[1] = sock
        assert "delete it from its slot first" in str(e.value)
        del slots[0]
        slots[1] = sock  # the hint, followed
        assert slots.frame()["index"].tolist() == [1]


def test_a_cgroup_s_id_is_the_one_its_programs_see(no_leaks):
    """Cgroup.id is what bpf_get_current_cgroup_id() says inside it, and cgroup storage keys hold."""
    source = """
BPF_HASH(seen, u64, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u64 id = bpf_get_current_cgroup_id();
    seen.atomic_increment(id);
    return 0;
}
"""
    with Cgroup("test-id") as cg, bpfkit.load(source, name="cgroup_id") as prog:
        assert cg.id == os.stat(cg.path).st_ino
        with cg.inside():
            for _ in range(3):
                os.getppid()
        assert prog["seen"][cg.id] == 3
    with pytest.raises(Closed, match="closed"):
        cg.id


def test_a_learners_batch_loop_reads_what_frame_reads_and_raw_is_the_kernels_bytes():
    """Map.lookup_batch is one BPF_MAP_LOOKUP_BATCH call: a loop over it with its cursor reads
    every entry once; Map.raw is a per-CPU value as the kernel hands it, a padded copy per
    possible CPU."""
    import numpy as np
    with bpfkit.create_map("hash", key="u32", value="u64", max_entries=1000, name="t_batch_loop") as m:
        m.update_batch(np.arange(300, dtype=np.uint32), np.arange(300, dtype=np.uint64) * 2)
        cursor, got, calls = None, {}, 0
        while True:
            keys, values, cursor = m.lookup_batch(cursor, 50)
            calls += 1
            assert len(keys) <= 50
            got.update(zip(keys.tolist(), values.tolist()))
            if cursor is None:
                break
        whole = m.frame()
        assert got == dict(zip(whole["key"].tolist(), whole["value"].tolist())) and len(got) == 300
        assert calls >= 6
        with pytest.raises(bpfkit.BpfkitError, match="cursor"):
            m.lookup_batch(b"short", 10)
    with bpfkit.create_map("percpu_array", key="u32", value="u32", max_entries=2, name="t_raw") as pc:
        raw = pc.raw(1)
        assert len(raw) == 8 * bpfkit.possible_cpus() and set(raw) == {0}
