"""Lesson 05 on the real kernel: a sock_ops program on a cgroup fills a sockhash, an sk_msg
program redirects between two local sockets; exact counts, cookies that match SO_COOKIE, and a
cgroup that is always cleaned up."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import cgroup
from bpfkit.access import kernel
from bpfkit.host import lifetime
from bpfkit.lab.cgroup import Cgroup
from bpfkit.core.errors import MapError
from bpfkit.lessons.l05_sockmap_sockhash import check_one_way
from bpfkit.host.sockets import addresses, join_sockets, socket_cookie, sockets_frame
from bpfkit.lab.traffic import TcpPair
from conftest import BPFTOOL, needs_bpftool, settled_snapshot
from notebook_runs import bpf_cell, cgroup_state, solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
LESSON = ROOT / "notebooks" / "05_sockmap_sockhash.ipynb"
SOLUTION = ROOT / "notebooks" / "solutions" / "05_sockmap_sockhash.ipynb"


@pytest.fixture
def redirect():
    """The lesson's program, its sk_msg attached to the sockhash, its sock_ops to a fresh
    cgroup: (program, cgroup)."""
    prog = bpfkit.load("sockmap_redirect")
    cg = None
    try:
        prog["sock_hash"].attach(prog.load_func("msg_redirect", "sk_msg"))
        cg = Cgroup("test-sockmap")
        cg.attach(prog.load_func("sockops_record", "sock_ops"), "sock_ops")
        yield prog, cg
    finally:
        if cg is not None:
            cg.close()
        prog.close()


def _pair_in(cg) -> TcpPair:
    with cg.inside():
        return TcpPair()


def _ip(address: str) -> int:
    """An IPv4 address as the u32 the kernel stores: its wire-order bytes read natively."""
    return int.from_bytes(socket.inet_aton(address), sys.byteorder)


def test_every_message_is_counted_redirected_and_arrives(redirect, no_leaks):
    prog, cg = redirect
    n, size = 50, 700
    with _pair_in(cg) as pair:
        assert pair.exchange(n, size) == {"client→server": n * size, "server→client": n * size}
        stats = join_sockets(addresses(prog["msg_stats"].frame()), pair.sockets).set_index("socket")
        assert sorted(stats.index) == ["client", "server"]
        for who in ("client", "server"):
            assert (stats.loc[who, "messages"], stats.loc[who, "bytes"],
                    stats.loc[who, "redirected"]) == (n, n * size, n)
        pair.exchange(3, 10, echo=False)  # one way only: the client's row grows, the server's not
        stats = join_sockets(addresses(prog["msg_stats"].frame()), pair.sockets).set_index("socket")
        assert stats.loc["client", "messages"] == n + 3 and stats.loc["client", "bytes"] == n * size + 30
        assert stats.loc["server", "messages"] == n


def test_sockhash_frame_has_the_sockets_addresses_and_cookies(redirect, no_leaks):
    prog, cg = redirect
    socks = prog["sock_hash"]
    assert socks.codec.family == "sockets" and (socks.key_size, socks.value_size) == (16, 8)
    with _pair_in(cg) as pair:
        frame = socks.frame(sockets=pair.sockets)
        assert list(frame.columns) == ["socket", "local", "remote", "cookie"]
        rows = frame.set_index("socket")
        for who, sock in pair.sockets.items():
            local, remote = sock.getsockname(), sock.getpeername()
            assert rows.loc[who, "local"] == f"127.0.0.1:{local[1]}"
            assert rows.loc[who, "remote"] == f"127.0.0.1:{remote[1]}"
            cookie = int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, 57, 8), sys.byteorder)
            assert rows.loc[who, "cookie"] == cookie == socket_cookie(sock) == socket_cookie(sock.fileno())
            # The documented byte order: addresses as the kernel keeps them, ports as numbers.
            key = {"local_ip4": _ip("127.0.0.1"), "remote_ip4": _ip("127.0.0.1"),
                   "local_port": local[1], "remote_port": remote[1]}
            assert socks[key] == cookie
        ours = sockets_frame(pair.sockets)
        assert len(frame.merge(ours, on=["socket", "local", "remote", "cookie"])) == 2
        assert rows.loc["client", "cookie"] != rows.loc["server", "cookie"]
    assert len(socks.frame()) == 0  # closed sockets leave the map by themselves


def test_sockets_made_outside_the_cgroup_are_not_touched(redirect, no_leaks):
    prog, cg = redirect
    with TcpPair() as pair:
        assert pair.exchange(20, 100) == {"client→server": 2000, "server→client": 2000}
    assert len(prog["sock_hash"].frame()) == 0
    assert len(prog["msg_stats"].frame()) == 0


def test_user_space_puts_sockets_in_and_reads_cookies_back(redirect, no_leaks):
    prog, _ = redirect
    socks = prog["sock_hash"]
    with TcpPair() as pair:
        key = {"local_ip4": 1, "remote_ip4": 2, "local_port": 3, "remote_port": 4}
        socks[key] = pair.client                       # written by socket (its fd)...
        assert socks[key] == socket_cookie(pair.client)  # ...read back as its cookie
        assert socks.frame()["local"].tolist() == [f"{socket.inet_ntoa((1).to_bytes(4, sys.byteorder))}:3"]
        del socks[key]
        assert key not in socks


def test_an_index_keyed_sockmap_reads_as_index_and_cookie(no_leaks):
    source = 'BPF_F_TABLE("sockmap", u32, u64, slots, 4, 0);'
    with bpfkit.load(source, name="sockmap_slots") as prog, TcpPair() as pair:
        slots = prog["slots"]
        assert slots.type == "sockmap"
        slots[2] = pair.server
        slots[0] = pair.client.fileno()
        frame = slots.frame(sockets=pair.sockets)
        assert frame.to_dict("list") == {"socket": ["client", "server"], "index": [0, 2],
                                         "cookie": [socket_cookie(pair.client),
                                                    socket_cookie(pair.server)]}


def test_bccs_four_byte_sockhash_says_why_it_cannot_be_read(no_leaks):
    source = "struct k { u32 a; }; BPF_SOCKHASH(h, struct k, 8);"
    with bpfkit.load(source, name="sockhash_int") as prog:
        h = prog["h"]
        assert h.value_size == 4
        with pytest.raises(MapError, match="8-byte cookie") as err:
            h.frame()
        assert "u64" in err.value.hint


@needs_bpftool
def test_bpftool_dumps_the_same_sockhash(redirect, no_leaks):
    prog, cg = redirect
    socks = prog["sock_hash"]
    with _pair_in(cg) as pair:
        out = subprocess.run([BPFTOOL, "map", "dump", "id", str(socks.id), "-j"],
                             capture_output=True, text=True, check=True).stdout
        dumped = set()
        for entry in json.loads(out):
            key = bytes(int(b, 16) for b in entry["key"])
            value = bytes(int(b, 16) for b in entry["value"])
            dumped.add((socket.inet_ntoa(key[:4]), int.from_bytes(key[8:12], sys.byteorder),
                        int.from_bytes(key[12:16], sys.byteorder),
                        int.from_bytes(value, sys.byteorder)))
        ours = {(f.split(":")[0], int(f.split(":")[1]), int(r.split(":")[1]), int(c))
                for f, r, c in socks.frame()[["local", "remote", "cookie"]].itertuples(index=False)}
        assert dumped == ours and len(ours) == 2
        assert {c for *_, c in dumped} == {socket_cookie(s) for s in pair.sockets.values()}


@pytest.mark.unit
def test_cgroup_mount_is_found_in_proc_mounts():
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
              if line.split()[2] == "cgroup2"]
    assert str(cgroup.mount()) == mounts[0]
    assert (cgroup.mount() / "cgroup.procs").is_file()


def test_cgroup_is_cleaned_up_when_a_block_fails_midway(no_leaks):
    home = cgroup.current()
    with bpfkit.load("sockmap_redirect") as prog:
        fn = prog.load_func("sockops_record", "sock_ops")
        fn_id = kernel.prog_info_by_fd(fn.fd)["id"]
        with pytest.raises(RuntimeError):
            with Cgroup("test-fail") as cg:
                cg.attach(fn, "sock_ops")
                assert cg.attached() == {"sock_ops": [fn_id]}
                assert ("bpfkit-test-fail", [("cgroup_sock_ops", fn_id)]) in \
                    [(Path(p).name, ids) for p, ids in cgroup_state()["attached"]]
                cg.enter()
                assert cgroup.current() == cg.path and cg.pids() == [os.getpid()]
                raise RuntimeError("a cell failed here")
        assert cgroup.current() == home
        assert not cg.path.exists() and cg.closed and cgroup.held() == {}
        assert "bpfkit-test-fail" not in cgroup_state()["bpfkit cgroups"]


def test_detach_leaves_the_cgroup_empty_of_programs(no_leaks):
    with bpfkit.load("sockmap_redirect") as prog, Cgroup("test-detach") as cg:
        cg.attach(prog.load_func("sockops_record", "sock_ops"), "sock_ops")
        assert list(cg.attached()) == ["sock_ops"]
        cg.detach()
        assert cg.attached() == {}
        with pytest.raises(bpfkit.core.errors.AttachError, match="program type"):
            cg.attach(prog.load_func("msg_redirect", "sk_msg"), "sock_ops")


def test_making_the_same_cgroup_again_replaces_the_first(no_leaks):
    with bpfkit.load("sockmap_redirect") as prog:
        first = Cgroup("test-again")
        first.attach(prog.load_func("sockops_record", "sock_ops"), "sock_ops")
        second = Cgroup("test-again")
        try:
            assert first.closed and not second.closed and second.path == first.path
            assert second.attached() == {} and cgroup.held() == {"bpfkit-test-again": second}
        finally:
            second.close()


def test_a_crashed_runs_cgroup_and_program_are_removed_later(no_leaks):
    before = settled_snapshot()
    script = textwrap.dedent("""
        import os, bpfkit
        from bpfkit.lab.cgroup import Cgroup
        prog = bpfkit.load("sockmap_redirect")
        cg = Cgroup("test-crash")
        cg.attach(prog.load_func("sockops_record", "sock_ops"), "sock_ops")
        print(cg.path, flush=True)
        os._exit(1)   # no clean-up at all, as if the kernel was killed
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    path = Path(out.stdout.strip())
    try:
        assert path.name == "bpfkit-test-crash" and path.is_dir(), out.stderr
        # The program outlived its process: the cgroup holds it.
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            leftover = kernel.attached_prog_ids(fd, kernel.ATTACH_TYPES["cgroup_sock_ops"])
        finally:
            os.close(fd)
        assert len(leftover) == 1 and leftover[0] in kernel.snapshot()["programs"] - before["programs"]
        assert "bpfkit-test-crash" in cgroup.cleanup_stale()
        assert not path.exists()
        assert leftover[0] not in settled_snapshot(before)["programs"]
    finally:
        if path.is_dir():
            path.rmdir()


def test_a_failing_script_leaves_nothing_at_exit(no_leaks):
    script = textwrap.dedent("""
        import bpfkit
        from bpfkit.lab.cgroup import Cgroup
        from bpfkit.lab.traffic import TcpPair
        prog = bpfkit.load("sockmap_redirect")
        prog["sock_hash"].attach(prog.load_func("msg_redirect", "sk_msg"))
        cg = Cgroup("test-atexit")
        cg.attach(prog.load_func("sockops_record", "sock_ops"), "sock_ops")
        cg.enter()
        pair = TcpPair()
        print(cg.path, flush=True)
        raise SystemExit("a cell failed inside the cgroup")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "a cell failed" in out.stderr
    path = Path(out.stdout.strip())
    assert path.name == "bpfkit-test-atexit" and not path.exists()  # removed at exit


def test_cleanup_leaves_cgroups_of_live_or_unknown_owners_alone():
    root = cgroup.mount()
    dead = subprocess.Popen(["true"])
    dead.wait()
    marks = {"bpfkit-test-alive": f"{os.getpid()}:{lifetime.start_time(os.getpid())}",
             "bpfkit-test-unmarked": None, "bpfkit-test-dead": f"{dead.pid}:1"}
    try:
        for name, mark in marks.items():
            (root / name).mkdir()
            if mark:
                os.setxattr(root / name, cgroup.OWNER_XATTR, mark.encode())
        removed = cgroup.cleanup_stale("bpfkit-test-")
        assert removed == ["bpfkit-test-dead"]
        assert (root / "bpfkit-test-alive").is_dir() and (root / "bpfkit-test-unmarked").is_dir()
    finally:
        for name in marks:
            if (root / name).is_dir():
                (root / name).rmdir()


def _run_exercise(text: str):
    prog = bpfkit.load(text, name="one_way")
    try:
        with Cgroup("test-exercise") as cg:
            prog["sock_hash"].attach(prog.load_func("msg_redirect", "sk_msg"))
            cg.attach(prog.load_func("sockops_record", "sock_ops"), "sock_ops")
            with _pair_in(cg) as pair:
                prog["config"][0] = pair.server_port
                return check_one_way(prog, pair, n=10, size=300)
    finally:
        prog.close()




def test_exercise_check_tells_starter_from_solution(no_leaks):
    starter = _run_exercise(bpf_cell(LESSON, "one_way"))
    said = str(starter)
    assert not starter.passed and "10 of the server's 10 replies took the shortcut" in said
    assert "Steps 1 and 2 of the exercise" in said and "Hint" not in said and "Fix" not in said
    assert not [line for line in solution_only_lines(LESSON) if line in said], said
    solved = _run_exercise(bpf_cell(SOLUTION, "one_way"))
    assert solved.passed, solved


def test_exercise_check_shows_the_code_from_the_third_try(no_leaks):
    tries = [str(_run_exercise(bpf_cell(LESSON, "one_way"))) for _ in range(3)]
    assert "Hint:" not in tries[0] and "config.lookup" not in tries[0]
    assert "Hint: Look up `config[0]`" in tries[1] and "Fix:" not in tries[1]
    assert "Fix: u32 index = 0; u32 *server_port = config.lookup(&index);" in tries[2]


def test_exercise_check_reports_lost_messages_instead_of_raising(no_leaks):
    dropping = bpf_cell(LESSON, "one_way").replace("    return SK_PASS;\n}", "    return SK_DROP;\n}")
    assert dropping != bpf_cell(LESSON, "one_way")
    result = _run_exercise(dropping)
    assert not result.passed and "could not send" in str(result)
