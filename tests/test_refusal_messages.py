"""Every refusal on the maps side of user space says what happened and what to do (issue 23).

Each mistake below once gave wrong advice ("run as root" for a map's own BPF_F_WRONLY, "worth a
bug report" for a file in a reuseport array), nothing at all (`send(42)` sent 42 zero bytes, a
u16 declared for an 8-byte value showed 0), a bare errno, or one of Python's own exceptions. Each
is made here on the real kernel, in more than one form (another map type, another wrong value,
another argument out of range), and each test checks that the refusal left no kernel object and
no file descriptor behind in this process. The checks that need no kernel are unit tests.
"""
from __future__ import annotations

import ctypes as ct
import errno
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import bpfkit
from bpfkit.access import kernel
from bpfkit.core import maptypes
from bpfkit.core.errors import (BpfkitError, Closed, KeyTypeError, MapError, MapFull,
                                NotAllowedHere, UsageError)
from bpfkit.loader import bpfobject
from bpfkit.loader.bpfobject import _record_bytes
from bpfkit.maps import arguments, convert, failures
from bpfkit.maps.codecs import for_type
from bpfkit.maps.spec import MapSpec, possible_cpus

ROOT = Path(__file__).resolve().parent.parent
NOT_ADVICE = ("bug report", "run as root", "The kernel cannot", "does not fit this map type")


def explained(err: BpfkitError, *words: str) -> None:
    """A refusal with both sentences, each naming what it must, and none of the old advice."""
    assert err.what and err.hint, err
    text = f"{err.what}\n{err.hint}"
    for word in words:
        assert word in text, (word, text)
    for wrong in NOT_ADVICE:
        assert wrong not in text, (wrong, text)


def open_files() -> set[tuple[str, str]]:
    """This process's fds and what each names, but the root folder and mount namespace the
    compiler keeps open from its first use on (a cache, not a leak)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target != "/" and not target.startswith("mnt:"):
            found.add((fd, target))
    return found


@pytest.fixture
def nothing_left():
    """This process holds the same BPF objects and file descriptors after the test as before."""
    before_held, before_fds = kernel.held_by(os.getpid()), open_files()
    yield
    bpfkit.close_all()
    assert kernel.held_by(os.getpid()) == before_held
    assert open_files() <= before_fds


def spec_of(type_name: str, value_size: int = 8, **kw) -> MapSpec:
    mt = maptypes.get(type_name)
    return MapSpec("m", mt, 4, value_size, 4, cpus=possible_cpus() if mt.per_cpu else 1, **kw)


# -- without a kernel ------------------------------------------------------------------------------

@pytest.mark.unit
@pytest.mark.parametrize("value, name", [(2**32, "max_entries"), (-1, "max_entries"),
                                         (2**32 + 5, "flags"), (-3, "flags"),
                                         (2**70, "map_extra"), (2**32, "numa_node"),
                                         (2.0, "max_entries"), (True, "flags"), ("16", "max_entries")])
def test_create_map_refuses_a_number_ctypes_would_cut(value, name):
    args = {"max_entries": {"max_entries": value}, "flags": {"flags": value},
            "map_extra": {"map_extra": value}, "numa_node": {"numa_node": value}}[name]
    type_name = "bloom_filter" if name == "map_extra" else "hash"
    with pytest.raises(UsageError) as e:
        bpfkit.create_map(type_name, name="maps_range", **args)
    explained(e.value, f"{name}=", "pass")


@pytest.mark.unit
def test_a_value_type_of_4_gib_is_refused_before_ctypes_cuts_its_size():
    with pytest.raises(UsageError) as e:
        bpfkit.create_map("array", value=ct.c_char * (2**32 + 8), name="maps_huge")
    explained(e.value, "value size", "4294967295")


@pytest.mark.unit
@pytest.mark.parametrize("flags", [3, 8, 2**64, -1, 1.0, None])
def test_update_flags_are_those_the_kernel_takes(flags):
    with pytest.raises(UsageError) as e:
        arguments.update_flags(flags)
    explained(e.value, "flags", "BPF_NOEXIST")
    assert [arguments.update_flags(f) for f in (0, 1, 2, 4, 5, 6)] == [0, 1, 2, 4, 5, 6]


@pytest.mark.unit
def test_out_of_range_says_what_the_kernel_would_have_got():
    with pytest.raises(UsageError) as e:
        arguments.whole(2**32 + 7, "max_entries", "create_map('hash')")
    assert "cut to 7" in e.value.what and "u32" in e.value.what


@pytest.mark.unit
@pytest.mark.parametrize("key, value, sizes, words", [
    (None, ct.c_uint16, (4, 8), ["u16 (2 bytes)", "value is 8 bytes", "u64"]),
    (ct.c_uint64, None, (4, 8), ["u64 (8 bytes)", "key is 4 bytes", "u32"]),
    (None, ct.c_char * 16, (4, 4), ["char[16] (16 bytes)", "value is 4 bytes"]),
    (ct.c_uint32, None, (0, 0), ["key is 0 bytes", "leave the key out"]),
])
def test_declared_types_of_another_size_are_refused(key, value, sizes, words):
    with pytest.raises(UsageError) as e:
        convert.check_declared("totals", key, value, *sizes, "types={'totals': ...}")
    explained(e.value, "'totals'", *words)
    convert.check_declared("totals", ct.c_uint32, ct.c_uint64, 4, 8, "types=")  # sizes agree


@pytest.mark.unit
@pytest.mark.parametrize("type_name", ["percpu_array", "percpu_hash", "lru_percpu_hash"])
def test_a_per_cpu_list_of_the_wrong_length_names_the_possible_cpus(type_name):
    spec, cpus = spec_of(type_name), possible_cpus()
    codec = for_type(spec.type)
    for wrong in ([1] * (cpus + 1), (7,) * (cpus + 3), np.arange(cpus + 2)):
        with pytest.raises(KeyTypeError) as e:
            codec.encode_value(spec, wrong)
        explained(e.value, f"{cpus} here", f"has {len(wrong)}", "possible_cpus()")
    with pytest.raises(KeyTypeError) as e:       # one per CPU, one of them wrong: which CPU
        codec.encode_value(spec, [1] * (cpus - 1) + [-1])
    explained(e.value, f"CPU {cpus - 1}")
    assert bytes(codec.encode_value(spec, list(range(cpus))))[:8] == bytes(8)
    with pytest.raises(KeyTypeError) as e:
        codec.values_array(spec, np.zeros((3, cpus + 1)))
    explained(e.value, f"{cpus} here", "(3, ")


@pytest.mark.unit
@pytest.mark.parametrize("record", [42, 0, True, 3.5, "hello", None, object()])
def test_a_user_ring_record_is_bytes_never_a_number(record):
    with pytest.raises(UsageError) as e:
        _record_bytes(record, "inbox")
    explained(e.value, "'inbox'", "ctypes.Structure")
    if type(record) is int:
        assert f"{record} zero bytes" in e.value.what

    class Message(ct.Structure):
        _fields_ = [("kind", ct.c_uint32), ("value", ct.c_uint32)]
    assert _record_bytes(Message(1, 42), "inbox") == bytes(Message(1, 42))
    assert _record_bytes(bytearray(b"ab"), "inbox") == b"ab"
    assert _record_bytes(np.uint32(7), "inbox") == (7).to_bytes(4, sys.byteorder)


@pytest.mark.unit
@pytest.mark.parametrize("flag, access, op", [
    (maptypes.BPF_F_WRONLY, os.O_WRONLY, "lookup"), (maptypes.BPF_F_WRONLY, os.O_WRONLY, "batch"),
    (maptypes.BPF_F_WRONLY, os.O_WRONLY, "peek"), (maptypes.BPF_F_RDONLY, os.O_RDONLY, "update"),
    (maptypes.BPF_F_RDONLY, os.O_RDONLY, "delete"), (maptypes.BPF_F_RDONLY, os.O_RDONLY, "push"),
])
def test_a_maps_own_access_flag_is_named_not_a_privilege(tmp_path, flag, access, op):
    """The kernel keeps BPF_F_RDONLY/WRONLY on the fd (map info reports neither): any fd's
    access mode stands for it here."""
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, access)
    try:
        err = failures.explain(spec_of("hash"), op, errno.EPERM, key=1, fd=fd)
    finally:
        os.close(fd)
    name = "BPF_F_WRONLY" if flag == maptypes.BPF_F_WRONLY else "BPF_F_RDONLY"
    assert type(err) is MapError and err.errno == errno.EPERM
    explained(err, name, "no privilege changes it")


SOCKET_ERRNOS = (errno.EINVAL, errno.EOPNOTSUPP, failures.ENOTSUPP, errno.ENOTSOCK, errno.EBADF,
                 errno.EBUSY, errno.ENOENT)


@pytest.mark.unit
@pytest.mark.parametrize("type_name", ["sockmap", "sockhash", "reuseport_sockarray", "xskmap"])
def test_every_socket_refusal_on_update_is_read_for_its_map_type(type_name):
    for err in SOCKET_ERRNOS:
        if type_name == "xskmap" and err == errno.EBUSY:   # not an answer an xskmap gives
            continue
        refused = failures.explain(spec_of(type_name), "update", err, key=0, value="<socket>")
        explained(refused)
        if type_name != "xskmap" and err in (errno.EINVAL, errno.EOPNOTSUPP):
            assert "AF_XDP" not in refused.hint
    xsk = failures.explain(spec_of("xskmap"), "update", errno.EOPNOTSUPP, key=0, value="s")
    explained(xsk, "AF_XDP", "XskSocket")
    reuse = failures.explain(spec_of("reuseport_sockarray"), "update", errno.EINVAL, key=0, value="s")
    explained(reuse, "SO_REUSEPORT", "setsockopt")


@pytest.mark.unit
@pytest.mark.parametrize("type_name, words", [
    ("task_storage", ["pidfd", "os.pidfd_open(pid)", "not by a pid"]),
    ("sk_storage", ["socket"]), ("cgrp_storage", ["cgroup"]), ("inode_storage", ["file"])])
def test_a_local_storage_key_that_is_no_open_fd_says_what_it_takes(type_name, words):
    for op in ("lookup", "update", "delete"):
        explained(failures.explain(spec_of(type_name), op, errno.EBADF, key=16291), "16291", *words)


@pytest.mark.unit
def test_the_open_file_limit_is_named_with_its_numbers():
    import resource
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    err = failures.too_many_files(errno.EMFILE, "make a hash")
    explained(err, "too many files open", str(soft), "RLIMIT_NOFILE", "close", "setrlimit")
    explained(failures.too_many_files(errno.ENFILE, "make a hash"), "fs.file-max")


# -- on the kernel: values of the wrong kind ------------------------------------------------------

@pytest.mark.kernel
def test_a_socket_of_another_kind_into_an_xskmap_is_named(nothing_left):
    m = bpfkit.create_map("xskmap", name="maps_xsk")
    r, w = os.pipe()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp, \
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as unix:
        for sock, family in ((udp, "AF_INET"), (tcp, "AF_INET"), (unix, "AF_UNIX"),
                             (udp.fileno(), "AF_INET")):
            with pytest.raises(MapError) as e:
                m[0] = sock
            explained(e.value, family, "AF_XDP", "XskSocket")
    with open(os.devnull) as devnull:
        for not_socket in (r, devnull):
            with pytest.raises(MapError) as e:
                m[1] = not_socket
            explained(e.value, "not a socket", "XskSocket")
    os.close(r), os.close(w)
    m.close()


@pytest.mark.kernel
@pytest.mark.parametrize("type_name", ["reuseport_sockarray", "sockmap", "sockhash"])
def test_a_file_or_a_closed_socket_into_a_socket_map_is_named(nothing_left, type_name):
    m = bpfkit.create_map(type_name, name="maps_sk")
    key = 0 if type_name != "sockhash" else 7
    with open(os.devnull) as f, pytest.raises(MapError) as e:
        m[key] = f
    explained(e.value, "not a socket", "/dev/null")
    closed = socket.socket()
    closed.close()
    with pytest.raises(MapError) as e:
        m[key] = closed
    explained(e.value, "closed", "open")
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)                                  # a number that is no open file any more
    with pytest.raises(MapError) as e:
        m[key] = fd
    explained(e.value, "not an open file descriptor")
    m.close()


@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["udp", "tcp_bound"])
def test_a_socket_without_so_reuseport_or_not_yet_listening_says_how(nothing_left, kind):
    m = bpfkit.create_map("reuseport_sockarray", name="maps_rp")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    if kind == "tcp_bound":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    with sock, pytest.raises(MapError) as e:
        m[0] = sock
    assert e.value.errno == errno.EINVAL
    explained(e.value, "SO_REUSEPORT", "listening (TCP)", "setsockopt")
    m.close()


@pytest.mark.kernel
def test_task_storage_keyed_by_a_pid_says_it_takes_a_pidfd(nothing_left):
    m = bpfkit.create_map("task_storage", name="maps_ts")
    pid = os.getpid()
    for act in (lambda: m.__setitem__(pid, 1), lambda: m[pid], lambda: m.__delitem__(pid),
                lambda: m.get(pid)):
        with pytest.raises(MapError) as e:
            act()
        explained(e.value, str(pid), "pidfd", "os.pidfd_open(pid)")
    fd = os.pidfd_open(pid)                       # what the hint says works
    m[fd] = 5
    assert m[fd] == 5
    os.close(fd)
    m.close()


@pytest.mark.kernel
def test_a_per_cpu_list_of_the_wrong_length_is_refused_before_the_kernel(nothing_left):
    m = bpfkit.create_map("percpu_hash", name="maps_pc")
    cpus = possible_cpus()
    with pytest.raises(KeyTypeError) as e:
        m[1] = list(range(cpus + 1))
    explained(e.value, f"{cpus} here")
    assert 1 not in m
    m.close()


# -- on the kernel: arguments and flags -------------------------------------------------------------

@pytest.mark.kernel
def test_max_entries_past_u32_makes_no_map(nothing_left):
    before = set(kernel.map_ids())
    with pytest.raises(UsageError) as e:
        bpfkit.create_map("hash", max_entries=2**32, name="maps_big")
    explained(e.value, "max_entries=4294967296", "cut to 0")
    assert not {i for i in set(kernel.map_ids()) - before
                if (kernel.map_info(i) or {}).get("name") == "maps_big"}


@pytest.mark.kernel
def test_update_flags_out_of_range_never_reach_the_kernel(nothing_left):
    m = bpfkit.create_map("hash", name="maps_fl")
    for flags in (2**64 + 1, 8, -1):
        with pytest.raises(UsageError) as e:
            m.update(1, 1, flags=flags)
        explained(e.value, "flags")
        with pytest.raises(UsageError):
            m.update_batch([1], [1], flags=flags)
    assert 1 not in m
    m.update(1, 1, flags=arguments.BPF_NOEXIST)
    m.close()


@pytest.mark.kernel
@pytest.mark.parametrize("type_name", ["hash", "array", "percpu_hash"])
def test_a_maps_own_wronly_and_rdonly_flags_are_named(nothing_left, type_name):
    wronly = bpfkit.create_map(type_name, flags=maptypes.BPF_F_WRONLY, name="maps_wo")
    wronly[1] = 2                                              # writing is what it allows
    for read in (wronly.frame, lambda: wronly[1], lambda: wronly.get(1), wronly.keys):
        with pytest.raises(MapError) as e:
            read()
        assert not isinstance(e.value, NotAllowedHere)
        explained(e.value, "BPF_F_WRONLY", "may only write")
    rdonly = bpfkit.create_map(type_name, flags=maptypes.BPF_F_RDONLY, name="maps_ro")
    writes = [lambda: rdonly.__setitem__(1, 2)]
    if type_name != "array":
        writes.append(lambda: rdonly.__delitem__(1))
    for write in writes:
        with pytest.raises(MapError) as e:
            write()
        explained(e.value, "BPF_F_RDONLY", "may only read")
    assert rdonly.get(1, "none") in ("none", 0, [0] * possible_cpus())
    wronly.close(), rdonly.close()


@pytest.mark.kernel
def test_create_map_at_the_open_file_limit_names_the_limit():
    """In a child process: the limit is lowered to just above what it holds."""
    code = textwrap.dedent("""
        import os, resource, bpfkit
        from bpfkit.core.errors import MapError
        maps = [bpfkit.create_map("hash", name="maps_fd")]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 2, hard))
        try:
            for _ in range(20):
                maps.append(bpfkit.create_map("hash", name="maps_fd"))
        except MapError as e:
            print(type(e).__name__, e.errno, "|", e.what, "|", e.hint)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"MapError {errno.EMFILE} |"), out.stdout + out.stderr
    for words in ("too many files open", "RLIMIT_NOFILE", "close maps", "setrlimit"):
        assert words in out.stdout, out.stdout


# -- on the kernel: the libbpf object, pins and event readers -----------------------------------------

@pytest.fixture
def uring(nothing_left):
    obj = bpfobject.load("l19_uring", name="maps_uring", types={"totals": ("u32", "u16")})
    yield obj
    obj.close()


@pytest.mark.kernel
def test_the_user_ring_refuses_a_number_and_a_record_that_can_never_fit(uring):
    inbox = uring.ring("inbox")
    for record in (42, 8, "hi"):
        with pytest.raises(UsageError) as e:
            inbox.send(record)
        explained(e.value, "'inbox'")
    for size in (8192, 4089, 2**32 + 1):
        with pytest.raises(MapFull) as e:
            inbox.send(bytes(size))
        explained(e.value, "never fit", "4088 bytes")
        assert "drain" not in e.value.hint
    inbox.send(bytes(4088))                       # the largest: it fits an empty ring
    with pytest.raises(MapFull) as e:
        inbox.send(bytes(8))                      # now full: this one waits for a drain
    explained(e.value, "drain")


@pytest.mark.kernel
def test_arena_and_ring_of_a_map_of_another_type_name_it(uring):
    for name in ("totals", "inbox"):
        with pytest.raises(UsageError) as e:
            uring.arena(name)
        explained(e.value, f"{name!r}", "not an arena", "BPF_MAP_TYPE_ARENA")
    with pytest.raises(UsageError) as e:
        uring.ring("totals")
    explained(e.value, "'totals'", "an array", "USER_RINGBUF")


@pytest.mark.kernel
def test_types_that_do_not_match_the_maps_sizes_are_refused(uring):
    with pytest.raises(UsageError) as e:
        uring["totals"]
    explained(e.value, "'totals'", "u16 (2 bytes)", "8 bytes")
    uring.types["totals"] = ("u64", "u64")
    with pytest.raises(UsageError) as e:
        uring["totals"]
    explained(e.value, "key", "u64 (8 bytes)", "4 bytes")
    uring.types["totals"] = ("u32", "u64")
    assert uring["totals"][0] == 0


@pytest.mark.kernel
def test_open_pinned_of_a_program_pin_says_it_is_a_program(uring):
    from bpfkit.access._libbpf import lib
    path = Path("/sys/fs/bpf/maps_prog_pin")
    lib.bpf_obj_pin(uring.program_fd("drain"), str(path).encode())
    try:
        fds = open_files()
        with pytest.raises(MapError) as e:
            bpfkit.open_pinned(path)
        explained(e.value, "program, not a map", "bpftool prog")
        assert open_files() <= fds                         # the fd it opened is closed again
    finally:
        path.unlink()


@pytest.mark.kernel
def test_each_event_reader_names_the_other_for_the_other_buffer(nothing_left):
    from bpfkit.observe import events
    prog = bpfkit.load("open_events")
    try:
        for reader, name, right in ((events.ring, "perf_buf", "events.perf(prog['perf_buf'])"),
                                    (events.perf, "ring_buf", "events.ring(prog['ring_buf'])")):
            with pytest.raises(UsageError) as e:
                reader(prog[name])
            explained(e.value, f"{name!r}", right)
        with pytest.raises(UsageError) as e:
            events.ring(prog["config"])
        explained(e.value, "'config'", "BPF_RINGBUF_OUTPUT")
    finally:
        prog.close()


@pytest.mark.kernel
def test_a_second_xsk_socket_on_one_queue_says_so(nothing_left):
    from bpfkit.lab import net, xsk
    with net.Lab("maps-xsk") as lab:
        host = lab.host("mx", "192.0.2.31/24")
        first = xsk.XskSocket("eth0", 0, netns=host.netns)
        with pytest.warns(UserWarning, match="one per queue"):
            second = xsk.XskSocket("eth0", 0, netns=host.netns)
        for use in (first.fileno, first.receive, first.statistics):
            with pytest.raises(Closed) as e:
                use()
            explained(e.value, "newer XskSocket", "one socket per queue", "queue=1")
        assert second.receive() == [] and not second.closed
        second.close()


@pytest.mark.unit
@pytest.mark.parametrize("type_name, value", [
    ("prog_array", 2**32 + 3), ("array_of_maps", 2**32), ("cgroup_array", -1),
    ("devmap", 2**32 + 1), ("devmap_hash", 2**40), ("cpumap", 2**32 + 192)])
def test_an_fd_or_ifindex_past_its_c_type_is_refused_not_cut(type_name, value):
    spec = spec_of(type_name, value_size=4)
    with pytest.raises(MapError) as e:
        for_type(spec.type).encode_value(spec, value)
    explained(e.value, repr(value))


@pytest.mark.unit
@pytest.mark.parametrize("map_id", [2**32 + 1, -5, "7"])
def test_a_map_id_past_u32_is_refused_before_ctypes_cuts_it(map_id):
    from bpfkit.maps.map import Map
    with pytest.raises(UsageError) as e:
        Map.open_by_id(map_id)
    explained(e.value, "map_id=")


@pytest.mark.kernel
def test_a_numa_node_the_machine_lacks_is_named_and_one_it_has_is_used(nothing_left):
    nodes = sorted(int(p.name[4:]) for p in Path("/sys/devices/system/node").glob("node[0-9]*"))
    if not nodes:
        pytest.skip("this kernel shows no memory nodes")
    with pytest.raises(UsageError) as e:
        bpfkit.create_map("hash", numa_node=max(nodes) + 1, name="maps_numa")
    explained(e.value, f"numa_node={max(nodes) + 1}", "leave numa_node= out")
    with bpfkit.create_map("hash", numa_node=nodes[0], name="maps_numa") as m:
        m[1] = 2
        assert m[1] == 2


@pytest.mark.kernel
def test_open_pinned_of_a_folder_or_an_ordinary_file_says_it_is_no_pin(nothing_left, tmp_path):
    folder = Path("/sys/fs/bpf/maps_folder")
    folder.mkdir(exist_ok=True)
    plain = tmp_path / "not_a_pin"
    plain.write_text("")
    try:
        for path, words in ((folder, "a folder"), (plain, "outside the BPF filesystem"),
                            (tmp_path, "a folder")):
            with pytest.raises(MapError) as e:
                bpfkit.open_pinned(path)
            explained(e.value, str(path), words, "not a pin", "m.pin(name)")
    finally:
        folder.rmdir()


def test_what_the_python_side_fuzzer_found_is_refused_in_words():
    """Each was a raw numpy, ctypes or internal error before (tests/fuzz_python.py's slice)."""
    with bpfkit.create_map("hash", key="u32", value="u64", max_entries=8, name="maps_fz") as m:
        for keys, values in (([1, 2], [None, 3]), ([1, 2], ["x" * 9, 3]), ([1], [float("nan")]),
                             ([1, 2], [[1, 2], 3]), ([2**40], [1])):
            with pytest.raises(bpfkit.core.errors.UsageError, match="update_batch.*u32.*u64") as e:
                m.update_batch(keys, values)
            assert e.value.hint
        with pytest.raises(bpfkit.BpfkitError, match="columns= renames") as e:
            m.frame(7)
        assert "not int 7" in e.value.what and e.value.hint
        assert len(m) == 0
    with bpfkit.create_map("sockmap", max_entries=2, name="maps_fz2") as socks:
        with pytest.raises(bpfkit.core.errors.MapError, match="is not a file descriptor"):
            socks[0] = 2**200
