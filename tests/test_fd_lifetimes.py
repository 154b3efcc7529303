"""Closed from one thread while another uses it, an object's fd or memory is freed only after
that use (bpfkit.core.guard): no write lands in a map that got the closed fd's number, and no
send or poll runs on memory already freed. Each test repeats the race many times on the real
kernel; the ones that could crash run in a child process, whose exit status is the verdict."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import bpfkit
from bpfkit.core.errors import BpfkitError

ROOT = Path(__file__).resolve().parents[1]
MARK = 0xDEAD


def _write_until_refused(m, key: int, stop: threading.Event, wrote: list) -> None:
    while not stop.is_set():
        try:
            m[key] = MARK
            wrote.append(1)
        except BpfkitError:
            return   # closed: "was closed here" or "belonged to program ..., which is closed"


@pytest.fixture(autouse=True)
def switch_often():
    """Threads switch every microsecond instead of every 5 ms: the window between reading an
    fd and the system call that uses it is then hit within a few rounds (it was, before fds
    had one owner)."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


def _race(old_map, make_new, key: int):
    """Threads write `key` into `old_map` while this thread closes it (or its program) and
    at once makes a new map, which it returns."""
    stop, wrote = threading.Event(), []
    writers = [threading.Thread(target=_write_until_refused, args=(old_map, key, stop, wrote))
               for _ in range(3)]
    for writer in writers:
        writer.start()
    while len(wrote) < 3:
        time.sleep(0)
    new = make_new()
    stop.set()
    for writer in writers:
        writer.join(10)
        assert not writer.is_alive()
    return new


def test_writes_never_reach_a_map_that_took_a_closed_maps_fd_number():
    reused = 0
    for _ in range(60):
        old = bpfkit.create_map("hash", key="u32", value="u64", max_entries=8, name="fd_old")
        number = old.fd

        def close_and_make():
            old.close()
            return bpfkit.create_map("hash", key="u32", value="u64", max_entries=8, name="fd_new")

        new = _race(old, close_and_make, 7)
        try:
            reused += new.fd == number
            assert 7 not in new, "a write meant for the closed map landed in the new one"
        finally:
            new.close()
    assert reused, "the kernel never handed the closed number on: the race was not exercised"


def test_writes_never_reach_a_map_made_after_its_program_closed():
    source = "BPF_HASH(fd_counts, u32, u64, 8);\nTRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }\n"
    for _ in range(8):
        prog = bpfkit.load(source, name="fd_race")
        old = prog["fd_counts"]

        def close_and_make():
            prog.close()
            return bpfkit.create_map("hash", key="u32", value="u64", max_entries=8, name="fd_new")

        new = _race(old, close_and_make, 7)
        try:
            assert 7 not in new
        finally:
            new.close()
    with pytest.raises(bpfkit.core.errors.ProgramClosed, match="fd_counts"):
        old[7] = 1


def _child(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)


def test_a_user_ring_buffer_closed_under_a_sending_thread_never_crashes_the_process():
    child = _child("""
        import threading, time
        import bpfkit
        from bpfkit.loader import bpfobject
        sent = refused = 0
        for _ in range(25):
            obj = bpfobject.load("l19_uring")
            inbox = obj.ring("inbox")
            stop = threading.Event()
            def tx():
                global sent, refused
                while not stop.is_set():
                    try:
                        inbox.send(bytes(8))
                        sent += 1
                    except bpfkit.BpfkitError as e:
                        refused += 1
                        if isinstance(e, bpfkit.core.errors.Closed):
                            return
                        obj.run("drain")
            t = threading.Thread(target=tx)
            t.start()
            time.sleep(0.01)
            obj.close()
            stop.set()
            t.join(10)
            assert not t.is_alive()
        print("ok", sent, refused)
        """)
    assert child.returncode == 0 and "ok" in child.stdout, (child.returncode, child.stderr[-3000:])


def test_event_readers_polling_while_their_program_closes_never_crash_the_process():
    child = _child("""
        import threading, time
        import bpfkit
        from bpfkit.observe import events
        for kind in ("ring", "perf") * 4:
            prog = bpfkit.load("open_events")
            reader = events.ring(prog["ring_buf"], dropped=prog["ring_dropped"]) if kind == "ring" \\
                else events.perf(prog["perf_buf"], pages=1)
            stop = threading.Event()
            def poll():
                while not stop.is_set():
                    try:
                        reader.poll(1)
                    except bpfkit.core.errors.Closed:
                        return
            t = threading.Thread(target=poll)
            t.start()
            time.sleep(0.02)
            prog.close()
            stop.set()
            t.join(10)
            assert not t.is_alive()
        print("ok")
        """)
    assert child.returncode == 0 and "ok" in child.stdout, (child.returncode, child.stderr[-3000:])


def _until_closed(call, stop: threading.Event, unexpected: list) -> None:
    """Call `call()` until it is refused in words (a BpfkitError) or `stop` is set; anything
    else it raises is kept in `unexpected`."""
    while not stop.is_set():
        try:
            call()
        except BpfkitError:
            return
        except Exception as e:   # a raw error or a crash's Python face: the fault looked for
            unexpected.append(repr(e))
            return


def _closed_under(obj_close, call, running: float = 0.02) -> list:
    stop, unexpected = threading.Event(), []
    worker = threading.Thread(target=_until_closed, args=(call, stop, unexpected))
    worker.start()
    time.sleep(running)
    obj_close()
    stop.set()
    worker.join(10)
    assert not worker.is_alive()
    return unexpected


def test_a_lab_and_an_af_xdp_socket_closed_under_a_working_thread_refuse_in_words():
    from bpfkit.lab import net, xsk
    unexpected = []
    for _ in range(3):
        lab = net.Lab("fdrace")
        host = lab.host("fdr", "192.0.2.33/24")
        sock = xsk.XskSocket("eth0", 0, netns=host.netns)
        unexpected += _closed_under(sock.close, sock.receive)   # its rings unmapped under it?
        assert sock.closed and sock.receive() == []
        unexpected += _closed_under(lab.close, lambda: host.send_udp("192.0.2.34", 9))
        assert lab.closed and host.netns not in net.netns_names()
    assert not unexpected
