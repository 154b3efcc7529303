"""The libbpf twins of lessons 01-07 (`bpf/**/NAME.bpf.c`, bpfkit.lessons.twins): each loads
through the kit's libbpf loader, declares the maps its BCC program declares (names, types, key
and value sizes), and does what the BCC program does under the same workload. The diff a
lesson's cell shows is checked without a kernel."""
from __future__ import annotations

import ctypes as ct
import re
import socket
import struct
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.lab.cgroup import Cgroup
from bpfkit.lab.traffic import TcpPair
from bpfkit.host.sockets import addresses, join_sockets
from bpfkit.lessons import twins
from bpfkit.lessons.l02_array_histogram import reads_in_child
from bpfkit.loader import bpfobject
from bpfkit.observe import testrun
from conftest import skip_unless_allowed

ROOT = Path(__file__).resolve().parents[1]
LACKING = bpfobject.missing()
needs_toolchain = pytest.mark.skipif(LACKING is not None, reason=f"this machine has no {LACKING}: "
                                     f"{bpfobject.INSTALL}")

# The twin's maps, by the BCC program's map name. (07's twin keeps two of its four maps.)
MAPS = {
    "counter": ["counter_table"],
    "read_histogram": ["config", "read_sizes"],
    "tail_calls": ["handlers", "route", "hits", "fell_through"],
    "map_of_maps": ["config_a", "config_b", "active", "counts"],
    "sockmap_redirect": ["sock_hash", "msg_stats"],
    "devmap_redirect": ["tx_port", "redirected", "sent_to"],
    "map_cost": ["hash_map", "array_map"],
}
# What each program needs of the kernel: a refusal of it skips with the kernel's reason.
FEATURES = {"sockmap_redirect": ["sockhash map", "sk_msg program", "sock_ops program"],
            "devmap_redirect": ["devmap map", "xdp program"], "map_cost": ["xdp program"],
            "tail_calls": ["prog_array map"], "map_of_maps": ["array_of_maps map"]}


def allowed_or_skip(name: str) -> None:
    """Skip with the kernel's reason where it refuses what the program needs; the twin's load
    must then say so in the kit's words and leave nothing loaded."""
    def refused():
        with pytest.raises(bpfkit.core.errors.NotAllowedHere):
            twin(name)
        assert bpfkit.loaded() == {}
    for feature in FEATURES.get(name, []):
        skip_unless_allowed(feature, refused)


def twin(name: str, **kw) -> bpfobject.BpfObject:
    """The twin, named apart from the BCC program so both can be loaded at once (one name is
    one loaded program in the kit, whichever loader made it)."""
    return bpfobject.load(name, name=f"{name}_twin", **kw)


# -- every twin: same maps -------------------------------------------------------------------

@needs_toolchain
@pytest.mark.parametrize("name", list(MAPS))
def test_the_twin_declares_the_bcc_program_s_maps(name, no_leaks):
    allowed_or_skip(name)
    with bpfkit.load(name) as bcc, twin(name) as lib:
        renamed = twins.TWINS[name].renamed
        assert sorted(lib.map_names()) == sorted(renamed.get(m, m) for m in MAPS[name])
        for m in MAPS[name]:
            want, got = bcc[m], lib[renamed.get(m, m)]
            assert (got.type, got.key_size, got.value_size, got.max_entries) == \
                (want.type, want.key_size, want.value_size, want.max_entries), m


# -- 01: the counter -------------------------------------------------------------------------

@needs_toolchain
def test_01_both_count_a_uid_s_execs_exactly(uid, no_leaks):
    with bpfkit.load("counter") as bcc, twin("counter") as lib:
        assert lib.unattached == []                   # attached by its section name
        children.run_as(uid, 5)
        assert bcc["counter_table"][uid] == lib["counter_table"][uid] == 5
        children.run_as(uid, 2)
        assert bcc["counter_table"][uid] == lib["counter_table"][uid] == 7


@needs_toolchain
def test_01_a_twin_of_the_same_name_replaces_the_bcc_program(no_leaks):
    """`counter` names both files; loaded under that one name, the newer program replaces the
    older as any reload does, whichever loader made either."""
    bcc = bpfkit.load("counter")
    lib = bpfobject.load("counter")
    try:
        assert bcc.closed and not lib.closed and bpfkit.loaded()["counter"] is lib
    finally:
        lib.close()
        bcc.close()


# -- 02: the histogram -----------------------------------------------------------------------

@needs_toolchain
def test_02_reads_of_known_sizes_land_in_the_same_slots(no_leaks):
    sizes = [1, 100, 100, 4096, 5000, 70000]
    with bpfkit.load("read_histogram") as bcc, twin("read_histogram") as lib:
        reads_in_child(bcc["config"], sizes)
        reads_in_child(lib["read_config"], sizes)
        want = [0] * 32
        for size in sizes:
            want[size.bit_length()] += 1          # bpf_log2l(n): the bits n needs
        assert [int(x) for x in bcc["read_sizes"].counts()] == want
        assert [int(x) for x in lib["read_sizes"].counts()] == want


# -- 03: tail calls --------------------------------------------------------------------------

@needs_toolchain
def test_03_tail_calls_reach_the_same_handlers_and_an_empty_slot_falls_through(uid, no_leaks):
    allowed_or_skip("tail_calls")
    second = children.unused_uid(after=uid)
    third = children.unused_uid(after=second)
    with bpfkit.load("tail_calls") as bcc, twin("tail_calls") as lib:
        assert sorted(lib.unattached) == ["count_a", "count_b"]   # loaded, for the slots
        bcc["handlers"][0] = bcc.load_func("count_a", "tracepoint")
        bcc["handlers"][1] = bcc.load_func("count_b", "tracepoint")
        lib["handlers"][0] = lib.load_func("count_a", "tracepoint")
        lib["handlers"][1] = lib.load_func("count_b", "tracepoint")
        for prog in (bcc, lib):
            for who, slot in ((uid, 0), (second, 1), (third, 2)):   # slot 2 is empty
                prog["route"][who] = slot
        children.run_as(uid, 3)
        children.run_as(second, 2)
        children.run_as(third, 1)
        for prog in (bcc, lib):
            assert [int(x) for x in prog["hits"].counts()] == [3, 2, 0, 0], prog.name
            assert prog["fell_through"][0] == 1, prog.name


# -- 04: map of maps -------------------------------------------------------------------------

@needs_toolchain
def test_04_the_active_inner_map_weights_the_count_and_one_update_switches_it(uid, no_leaks):
    allowed_or_skip("map_of_maps")
    with bpfkit.load("map_of_maps") as bcc, twin("map_of_maps") as lib:
        for prog in (bcc, lib):
            prog["config_a"][uid] = 3
            prog["config_b"][uid] = 10
        children.run_as(uid, 1)                       # no inner map yet: nothing counted
        for prog in (bcc, lib):
            assert prog["counts"].get(uid) is None, prog.name
            prog["active"][0] = prog["config_a"]
        children.run_as(uid, 2)
        for prog in (bcc, lib):
            prog["active"][0] = prog["config_b"]
        children.run_as(uid, 1)
        assert bcc["counts"][uid] == lib["counts"][uid] == 2 * 3 + 10


# -- 05: sockhash and sk_msg -----------------------------------------------------------------

class SockKey(ct.Structure):
    _fields_ = [("local_ip4", ct.c_uint32), ("remote_ip4", ct.c_uint32),
                ("local_port", ct.c_uint32), ("remote_port", ct.c_uint32)]


class MsgStats(ct.Structure):
    _fields_ = [("messages", ct.c_uint64), ("bytes", ct.c_uint64), ("redirected", ct.c_uint64)]


def _exchange_counts(prog, n: int, size: int) -> dict[str, tuple]:
    """Attach prog's sk_msg to its sockhash and its sock_ops to a fresh cgroup, exchange `n`
    messages of `size` bytes each way between two sockets made there: each socket's counts."""
    prog["sock_hash"].attach(prog.load_func("msg_redirect", "sk_msg"))
    with Cgroup(f"test-{prog.name}"[:24]) as cg:
        cg.attach(prog.load_func("sockops_record", "sock_ops"), "sock_ops")
        with cg.inside():
            pair = TcpPair()
        with pair:
            assert pair.exchange(n, size) == {"client→server": n * size, "server→client": n * size}
            assert len(prog["sock_hash"].frame()) == 2
            stats = join_sockets(addresses(prog["msg_stats"].frame()), pair.sockets).set_index("socket")
            return {who: (int(stats.loc[who, "messages"]), int(stats.loc[who, "bytes"]),
                          int(stats.loc[who, "redirected"])) for who in stats.index}


@needs_toolchain
def test_05_messages_are_redirected_and_counted_alike(no_leaks):
    allowed_or_skip("sockmap_redirect")
    n, size = 20, 300
    with bpfkit.load("sockmap_redirect") as bcc:
        want = _exchange_counts(bcc, n, size)
    with twin("sockmap_redirect", types={"msg_stats": (SockKey, MsgStats),
                                        "sock_hash": (SockKey, "u64")}) as lib:
        assert sorted(lib.unattached) == ["msg_redirect", "sockops_record"]
        got = _exchange_counts(lib, n, size)
    assert want == got == {"client": (n, n * size, n), "server": (n, n * size, n)}


# -- 06: devmap and XDP ------------------------------------------------------------------------

def udp_frame(port: int) -> bytes:
    """An Ethernet + IPv4 + UDP frame to `port` (no checksums: XDP reads, nothing verifies)."""
    eth = bytes(6) + bytes.fromhex("020000000001") + struct.pack("!H", 0x0800)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + 8, 0, 0, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton("192.0.2.1"), socket.inet_aton("192.0.2.100"))
    udp = struct.pack("!HHHH", 40000, port, 16, 0)
    return eth + ip + udp + bytes(8)


@needs_toolchain
def test_06_frames_to_9000_plus_slot_go_to_the_slot_and_others_pass(no_leaks):
    allowed_or_skip("devmap_redirect")
    with bpfkit.load("devmap_redirect") as bcc, twin("devmap_redirect") as lib:
        assert sorted(lib.unattached) == ["xdp_pass", "xdp_redirect"]   # an interface is ours to pick
        lo = socket.if_nametoindex("lo")
        for prog in (bcc, lib):
            prog["tx_port"][1] = lo
            assert testrun.run(prog, "xdp_redirect", data=udp_frame(53)).retval == testrun.XDP_PASS
            empty = testrun.run(prog, "xdp_redirect", data=udp_frame(9000)).retval   # an empty slot
            full = testrun.run(prog, "xdp_redirect", data=udp_frame(9001), repeat=3).retval
            assert (empty, full) == (testrun.XDP_ABORTED, testrun.XDP_REDIRECT), prog.name
            assert [int(x) for x in prog["redirected"].counts()] == [1, 3, 0, 0], prog.name
            assert dict(prog["sent_to"].items()) == {lo: 3}, prog.name


# -- 07: in-kernel costs -------------------------------------------------------------------------

@needs_toolchain
def test_07_the_twin_s_functions_pass_and_count_hash_counts(no_leaks):
    allowed_or_skip("map_cost")
    with bpfkit.load("map_cost") as bcc, twin("map_cost") as lib:
        for prog in (bcc, lib):
            for key in range(32):
                prog["hash_map"][key] = 5
                prog["array_map"][key] = 5
            for fn in ("empty", "lookup_hash", "lookup_array"):
                assert testrun.run(prog, fn, repeat=10).retval == testrun.XDP_PASS, (prog.name, fn)
            del prog["hash_map"][0]                    # count_hash makes its entry itself
            assert testrun.run(prog, "count_hash", repeat=7).retval == testrun.XDP_PASS
            assert testrun.run(prog, "count_hash").retval == testrun.XDP_PASS
            assert prog["hash_map"][0] == 8, prog.name
        assert lib.load_func("empty").type == "xdp"
        with pytest.raises(bpfkit.core.errors.UsageError, match="its section"):
            lib.load_func("empty", "sched_cls")      # libbpf chose the type: not overridden


# -- the diff a lesson's cell shows (no kernel) ------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("name", list(twins.TWINS))
def test_each_lesson_s_diff_is_short_and_names_what_bcc_writes(name):
    d = twins.twin(name)
    entry = twins.TWINS[name]
    assert 3 <= len(entry.bullets) <= 5
    assert entry.lesson in bpfkit.core.catalogue.BY_STEM and int(entry.lesson[:2]) <= 7
    assert d.libbpf_path == f"bpf/{entry.lesson}/{name}.bpf.c"
    assert d.lines[:2] == [f"--- {d.bcc_path}", f"+++ {d.libbpf_path}"]
    assert 3 < len(d.shown) <= twins.SHOWN
    text, htm = str(d), d._repr_html_()
    assert all(b in text for b in entry.bullets)
    assert htm.count("<li>") == len(entry.bullets) and "<script" not in htm
    source = (ROOT / d.libbpf_path).read_text()
    assert 'SEC(".maps")' in source and 'SEC("license")' in source and '#include "vmlinux.h"' in source
    assert any(line.startswith("+") and 'SEC(".maps")' in line for line in d.lines)


@pytest.mark.unit
def test_the_diff_shows_changed_lines_with_little_context_and_ignores_comments():
    bcc = "// top\nBPF_HASH(t);\n\nint f(void *ctx) {\n    a();   // one comment\n" + \
          "".join(f"    same{i}();\n" for i in range(10)) + "    t.increment(1);\n    return 0;\n}\n"
    lib = '#include "vmlinux.h"\nstruct {\n    __uint(type, BPF_MAP_TYPE_HASH);\n    __type(key, u64);\n' \
          '} t SEC(".maps");\nint f(void *ctx) {\n    a();   // another comment\n' + \
          "".join(f"    same{i}();\n" for i in range(10)) + "    add(&t, 1);\n    return 0;\n}\n"
    d = twins.diff("counter", bcc, lib)
    body = d.lines[2:]
    assert "-BPF_HASH(t);" in body
    assert '+struct { __uint(type, BPF_MAP_TYPE_HASH); __type(key, u64); } t SEC(".maps");' in body
    assert "-    t.increment(1);" in body and "+    add(&t, 1);" in body
    assert not any("same3" in line or "same5" in line for line in body)   # far from any change
    assert not any(re.match(r"[-+]\s*a\(\);", line) for line in body)   # only its comment differs
    assert not any("// top" in line for line in body)
    assert sum(line.startswith("@@") for line in body) == 2
    html = d._repr_html_()
    assert "&lt;bpf/bpf_helpers.h&gt;" in twins.twin("counter")._repr_html_()   # C is escaped
    assert '<span style="background:#ffebe9">-BPF_HASH(t);</span>' in html
    assert "<code>BPF_HASH(counter_table)</code>" in html
    long = twins.diff("counter", "".join(f"a{i};\n" for i in range(80)), "".join(f"b{i};\n" for i in range(80)))
    assert len(long.shown) == twins.SHOWN and "print(twins.twin('counter').full)" in long.shown[-1]
    assert len(long.full.splitlines()) == 2 + 1 + 160


@pytest.mark.unit
def test_a_name_without_a_twin_says_which_have_one():
    with pytest.raises(bpfkit.core.errors.NotFound) as e:
        twins.twin("countr")
    assert "'counter'" in e.value.hint and "map_cost" in e.value.hint
