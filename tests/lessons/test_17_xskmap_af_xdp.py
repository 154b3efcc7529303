"""Lesson 17 on the real kernel: an xskmap hands one UDP port's frames to an AF_XDP socket
(bpfkit.lab.xsk), exact counts both ways, the XDP_PASS fallback of an empty slot, the exercise
check, and a socket that leaves nothing behind (fd, registration, the kernel's socket count)."""
from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

import bpfkit
from bpfkit.host import lifetime
from bpfkit.lab import net, xsk
from bpfkit.core.errors import Closed, KernelError, NotFound
from bpfkit.lessons.l17_xskmap_af_xdp import check_two_ports
from bpfkit.host.netns import inside
from notebook_runs import bpf_cell, solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
SENDER_MAC, SENDER_IP = "02:00:00:00:17:01", "192.0.2.1"




def assert_no_solution_code(words: str, stem: str) -> None:
    shown = [line for line in solution_only_lines(ROOT / "notebooks" / f"{stem}.ipynb") if line in words]
    assert not shown, f"the first try shows the solution's code {shown}: {words}"


def xdp_sockets(netns: str) -> int:
    """AF_XDP sockets open in `netns`: the XDP line of /proc/net/protocols (ss --xdp needs
    CONFIG_XDP_SOCKETS_DIAG, which some kernels are built without)."""
    with inside(netns):
        line = next(x for x in open("/proc/net/protocols") if x.startswith("XDP "))
    return int(line.split()[2])


def frames_to(host, port: int, n: int, text: bytes = b"hi") -> list[bytes]:
    return [xsk.udp_frame(SENDER_MAC, host.mac, SENDER_IP, host.address, 40000, port, text + b" %d" % i)
            for i in range(n)]


@pytest.fixture
def lab():
    with net.Lab("l17-test") as lab:
        yield lab


@pytest.mark.unit
def test_udp_frame_is_well_formed():
    frame = xsk.udp_frame("02:00:00:00:00:01", "02:00:00:00:00:02", "192.0.2.1", "192.0.2.2",
                          1234, 7000, b"abc")
    assert len(frame) == 14 + 20 + 8 + 3 and frame[12:14] == b"\x08\x00"
    assert xsk._checksum(frame[14:34]) == 0                    # a valid IPv4 header sums to 0xffff
    assert struct.unpack("!HHHH", frame[34:42]) == (1234, 7000, 11, 0) and frame[42:] == b"abc"


def test_one_port_to_the_socket_the_rest_to_the_stack(no_leaks, lab):
    k = lab.host("k", "192.0.2.17/24")
    prog = bpfkit.load("xsk_redirect", name="l17-test")
    lab.attach_xdp(prog, "eth0", "xdp_to_socket", netns=k.netns)
    sock = xsk.XskSocket("eth0", 0, netns=k.netns)
    xsks, verdicts = prog["xsks"], prog["verdicts"]
    assert xsks.type == "xskmap"
    xsks[0] = sock
    stack = {p: k.receiver(p) for p in (7000, 7001)}
    xsk.send_frames(k.port, frames_to(k, 7000, 5) + frames_to(k, 7001, 3))
    assert sock.wait_for(5) == 5 and stack[7001].wait_for(3) == 3
    assert stack[7000].count() == 0
    assert [f[42:] for f in sock.frames] == [b"hi %d" % i for i in range(5)]
    assert sock.frames[0][:6].hex(":") == k.mac and sock.frames[0][6:12].hex(":") == SENDER_MAC
    assert verdicts.frame().set_index(["port", "action"])["value"].to_dict() == {(7000, 4): 5, (7001, 2): 3}
    assert sock.statistics() == dict.fromkeys(xsk.STATISTICS, 0)

    # More frames than the ring has slots: chunks go back through the fill ring as they are read.
    for _ in range(3):
        xsk.send_frames(k.port, frames_to(k, 7000, 40))
        assert sock.wait_for(len(sock.frames) + 40) == len(sock.frames)
    assert sock.count == 125 and sock.statistics()["rx_dropped"] == 0

    # An empty slot: redirect_map falls back to XDP_PASS, and the stack gets the frames.
    del xsks[0]
    xsk.send_frames(k.port, frames_to(k, 7000, 2))
    assert stack[7000].wait_for(2) == 2 and sock.count == 125
    assert verdicts.frame().set_index(["port", "action"])["value"].to_dict()[(7000, 2)] == 2

    # Closing the socket takes it out of the map: the frames go to the stack again.
    xsks[0] = sock
    sock.close()
    xsk.send_frames(k.port, frames_to(k, 7000, 3))
    assert stack[7000].wait_for(5) == 5


def test_socket_closes_everything(no_leaks, lab):
    k = lab.host("k", "192.0.2.17/24")
    assert xdp_sockets(k.netns) == 0
    sock = xsk.XskSocket("eth0", 0, netns=k.netns)
    fd = sock.fileno()
    assert xdp_sockets(k.netns) == 1 and lifetime.get("socket", sock.key) is sock
    assert os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    with pytest.warns(UserWarning, match="one per queue"):  # the earlier one closes, and says so
        again = xsk.XskSocket("eth0", 0, netns=k.netns)
    assert sock.closed and not again.closed and xdp_sockets(k.netns) == 1
    bpfkit.close_all("socket")                             # the kind a socket registers as
    assert again.closed and xdp_sockets(k.netns) == 0 and lifetime.held("socket") == {}
    again.close()                                          # twice is fine
    with pytest.raises(Closed, match="closed"):
        again.fileno()


def test_the_lesson_says_what_this_kernel_lists_of_its_xdp_sockets(no_leaks, lab):
    """ss --xdp lists the socket exactly where the kernel was built with its diagnostics: the
    sentence agrees with the kernel's own config, and /proc/net/protocols counts it everywhere."""
    import gzip
    from bpfkit.lessons.l17_xskmap_af_xdp import xdp_sockets_listed
    k = lab.host("k", "192.0.2.17/24")
    with xsk.XskSocket("eth0", 0, netns=k.netns):
        said = xdp_sockets_listed(k.netns)
    assert said.startswith("/proc/net/protocols counts 1 AF_XDP socket here; "), said
    try:
        config = gzip.open("/proc/config.gz", "rt").read()
    except OSError:
        pytest.skip(f"this kernel does not show its config; the lesson said: {said}")
    diag = any(f"CONFIG_XDP_SOCKETS_DIAG={v}" in config for v in "ym")
    assert said.endswith("`ss --xdp` lists 1.") == diag, (diag, said)


def test_failed_or_interrupted_setup_leaves_nothing(no_leaks, lab, monkeypatch):
    k = lab.host("k", "192.0.2.17/24")
    with pytest.raises(KernelError, match="queue 5"):
        xsk.XskSocket("eth0", 5, netns=k.netns)            # a veth here has one queue
    with pytest.raises(NotFound, match="no interface"):
        xsk.XskSocket("nosuch0", 0, netns=k.netns)
    real = xsk.libc

    class StopAtBind:                                      # Stop pressed just before bind()
        def __getattr__(self, name):
            return getattr(real, name)

        def bind(self, *args):
            raise KeyboardInterrupt

    monkeypatch.setattr(xsk, "libc", StopAtBind())
    with pytest.raises(KeyboardInterrupt):
        xsk.XskSocket("eth0", 0, netns=k.netns)
    monkeypatch.setattr(xsk, "libc", real)
    assert xdp_sockets(k.netns) == 0 and lifetime.held("socket") == {}
    sock = xsk.XskSocket("eth0", 0, netns=k.netns)         # the queue is free again
    assert not sock.closed


def exercise_source(path: str) -> str:
    return bpf_cell(path, "xsk_two_ports")


def test_exercise_check(no_leaks, lab):
    """The starter (from the lesson) fails, saying what is wrong; the solution passes."""
    k = lab.host("k", "192.0.2.17/24")
    sock = xsk.XskSocket("eth0", 0, netns=k.netns)
    for notebook, solved in (("notebooks/17_xskmap_af_xdp.ipynb", False),
                             ("notebooks/solutions/17_xskmap_af_xdp.ipynb", True)):
        prog = bpfkit.load(exercise_source(notebook), name="l17-exercise")   # replaces the earlier
        with inside(k.netns):
            attached = net.xdp_prog_id("eth0")
        if attached is None:                               # the first try: asks, shows no code
            not_attached = check_two_ports(prog, lab, sock, host="k")
            assert not not_attached and not_attached.tries == 1
            assert "is not the one you passed" in str(not_attached) and "Fix" not in str(not_attached)
            assert_no_solution_code(str(not_attached), "17_xskmap_af_xdp")
        lab.attach_xdp(prog, "eth0", "xdp_to_socket", netns=k.netns)
        prog["xsks"][0] = sock
        before = sock.count
        result = check_two_ports(prog, lab, sock, host="k")
        assert result.passed == solved, result
        if not solved:
            assert len(result.problems) == 1
            assert "port 7001, 0 reached the AF_XDP socket and 4 the stack" in result.problems[0]
            assert "'The program'" in result.problems[0]
            assert_no_solution_code(result.problems[0], "17_xskmap_af_xdp")
        assert sock.count - before == (8 if solved else 4)


def test_the_exercise_check_shows_the_fix_on_the_third_try(no_leaks, lab):
    """The starter's port 7001 problem: a question first, a hint on the 2nd try, the code on the 3rd."""
    k = lab.host("k", "192.0.2.17/24")
    sock = xsk.XskSocket("eth0", 0, netns=k.netns)
    prog = bpfkit.load(exercise_source("notebooks/17_xskmap_af_xdp.ipynb"), name="l17-exercise")
    lab.attach_xdp(prog, "eth0", "xdp_to_socket", netns=k.netns)
    prog["xsks"][0] = sock
    first, second, third = (check_two_ports(prog, lab, sock, host="k") for _ in range(3))
    assert [r.tries for r in (first, second, third)] == [1, 2, 3]
    assert_no_solution_code(str(first), "17_xskmap_af_xdp")
    assert "Hint:" not in str(first) and "Hint:" in str(second) and "Fix:" not in str(second)
    assert_no_solution_code(str(second), "17_xskmap_af_xdp")
    assert "Fix:" in str(third) and "port == 7000 || port == 7001" in str(third)
