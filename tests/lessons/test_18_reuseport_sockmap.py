"""Lesson 18 on the real kernel: an sk_reuseport program steers datagrams between the sockets of
a reuseport group through a reuseport_sockarray; a cgroup_skb program counts what each socket
received by cookie; a plain sockmap redirects messages by slot; exact counts throughout."""
from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab.cgroup import Cgroup
from bpfkit.lessons.l18_reuseport_sockmap import check_fallback
from bpfkit.host.sockets import join_sockets, socket_cookie
from bpfkit.lab.traffic import ReuseportGroup, TcpPair
from notebook_runs import bpf_cell, solution_only_lines

LESSON = "notebooks/18_reuseport_sockmap.ipynb"
SOLUTION = "notebooks/solutions/18_reuseport_sockmap.ipynb"
SO_ATTACH_REUSEPORT_EBPF = 52
ROOT = Path(__file__).resolve().parents[2]




def assert_no_solution_code(words: str, stem: str) -> None:
    shown = [line for line in solution_only_lines(ROOT / "notebooks" / f"{stem}.ipynb") if line in words]
    assert not shown, f"the first try shows the solution's code {shown}: {words}"


def _slots(group, order=None):
    """The group's sockets in a reuseport_sockarray, in `order` (their names) or s0, s1, ..."""
    slots = bpfkit.create_map("reuseport_sockarray", key="u32", value="u64", max_entries=4,
                              name="l18_test_slots")
    for i, name in enumerate(order or group.sockets):
        slots[i] = group.sockets[name]
    return slots


def test_group_sends_and_receives_exactly():
    with ReuseportGroup(3) as group:
        assert len({s.getsockname() for s in group.sockets.values()}) == 1
        assert group.send([0, 1, 2, 0]) == 4
        got = group.receive(expect=4)
        assert sum(got.values()) == 4          # the kernel's own hash spread them, none lost
        assert group.receive() == {"s0": 0, "s1": 0, "s2": 0}
    assert all(s.fileno() < 0 for s in group.sockets.values())


def test_program_steers_by_first_byte_and_counts_by_cookie(no_leaks):
    cg = Cgroup("l18-test")
    try:
        with cg.inside():
            group = ReuseportGroup(4)
        with group:
            slots = _slots(group)
            assert join_sockets(slots.frame(), group.sockets)["socket"].tolist() == ["s0", "s1", "s2", "s3"]
            prog = bpfkit.load("reuseport_pick", name="l18_test_pick", maps={"slots": slots})
            pick = prog.load_func("pick_socket", "sk_reuseport")
            group.sockets["s0"].setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, pick.fd)
            cg.attach(prog.load_func("count_received", "cgroup_skb"), "ingress")

            pattern = [0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0]
            group.send(pattern)
            assert group.receive(expect=15) == {"s0": 8, "s1": 4, "s2": 2, "s3": 1}
            assert prog["picked"].frame()["value"].tolist() == [8, 4, 2, 1]
            by_cookie = dict(zip(prog["received"].frame()["key"], prog["received"].frame()["value"]))
            assert by_cookie == {socket_cookie(group.sockets[n]): c
                                 for n, c in {"s0": 8, "s1": 4, "s2": 2, "s3": 1}.items()}

            del slots[3]                       # an empty slot: the lesson's program drops
            group.send([3] * 5)
            assert sum(group.receive().values()) == 0
            assert prog["dropped"].frame()["value"].tolist() == [0, 0, 0, 5]

            slots[3] = group.sockets["s3"]
            del slots[2]                       # s2 into slot 0, s0 into slot 2: a swap
            slots[0] = group.sockets["s2"]
            slots[2] = group.sockets["s0"]
            group.send([0] * 10)
            assert group.receive(expect=10) == {"s0": 0, "s1": 0, "s2": 10, "s3": 0}
            with pytest.raises(bpfkit.BpfkitError):
                slots[1] = group.sockets["s2"]   # a socket sits in one slot at a time
    finally:
        cg.close()


def test_sockmap_redirects_by_slot(no_leaks):
    socks = bpfkit.create_map("sockmap", key="u32", value="u64", max_entries=4, name="l18_test_socks")
    prog = bpfkit.load("sockmap_slots", name="l18_test_slots", maps={"socks": socks})
    socks.attach(prog.load_func("steer_msg", "sk_msg"))
    with TcpPair() as A, TcpPair() as B:
        ends = {"A.client": A.client, "A.server": A.server, "B.client": B.client, "B.server": B.server}
        for i, sock in enumerate(ends.values()):
            socks[i] = sock
        assert join_sockets(socks.frame(), ends)["socket"].tolist() == list(ends)
        for slot, n in ((1, 5), (3, 3), (2, 2)):
            for _ in range(n):
                A.client.sendall(bytes([slot]) * 100)
        time.sleep(0.02)
        got = {}
        for name, sock in ends.items():
            sock.setblocking(False)
            total = 0
            try:
                while chunk := sock.recv(65536):
                    total += len(chunk)
            except BlockingIOError:
                pass
            got[name] = total // 100
        assert got == {"A.client": 0, "A.server": 5, "B.client": 2, "B.server": 3}
        assert prog["sent_to"].frame()["value"].tolist() == [0, 5, 2, 3]
    prog.close()
    socks.close()


@pytest.mark.parametrize("notebook, expect", [(LESSON, False), (SOLUTION, True)])
def test_exercise_check(notebook, expect, no_leaks):
    with ReuseportGroup(4) as group:
        slots = _slots(group)
        prog = bpfkit.load(bpf_cell(notebook, "fallback"), name="l18_test_fallback",
                           maps={"slots": slots})
        result = check_fallback(prog, group, slots)
        assert result.passed is expect, result
        if not expect:                          # the first try asks, and shows no code
            assert result.tries == 1
            assert "10 were dropped" in result.problems[0] and "'An empty slot'" in result.problems[0]
            assert "Hint" not in str(result)
            assert_no_solution_code(str(result), "18_reuseport_sockmap")
            second, third = check_fallback(prog, group, slots), check_fallback(prog, group, slots)
            assert "Hint:" in str(second) and "Fix:" not in str(second)
            assert_no_solution_code(str(second), "18_reuseport_sockmap")
            assert third.tries == 3 and "Fix:" in str(third) and "&zero" in str(third)
        # the slot the check emptied is back
        assert join_sockets(slots.frame(), group.sockets)["socket"].tolist() == ["s0", "s1", "s2", "s3"]


@pytest.mark.parametrize("hash_choice_in_slot_0", [False, True])
def test_exercise_check_explains_the_kernels_own_choice(hash_choice_in_slot_0, no_leaks):
    """SK_PASS without a selection: every datagram arrives, but where the kernel's own hash of
    the addresses and ports says (one socket for the group's one sender, the same with a program
    attached or none). The check passes only where that socket is the one in slot 0, and
    otherwise says the kernel chose."""
    source = bpf_cell(LESSON, "fallback").replace("return SK_DROP;", "return SK_PASS;")
    with ReuseportGroup(4) as group:
        group.send([0] * 10)                    # no program yet: the kernel's hash alone
        got = group.receive(expect=10)
        chosen = [name for name, count in got.items() if count]
        assert len(chosen) == 1 and got[chosen[0]] == 10, got
        others = [name for name in group.sockets if name != chosen[0]]
        order = chosen + others if hash_choice_in_slot_0 else others + chosen
        slots = _slots(group, order)
        prog = bpfkit.load(source, name="l18_test_fallback", maps={"slots": slots})
        result = check_fallback(prog, group, slots)
        assert result.passed is hash_choice_in_slot_0, result
        if not hash_choice_in_slot_0:
            assert "Who chose that socket" in str(result) and "dropped" not in str(result)
            assert f"at {chosen[0]}: 10" in str(result), result
            assert_no_solution_code(str(result), "18_reuseport_sockmap")
            again = check_fallback(prog, group, slots)     # the 2nd try says why: the hint
            assert "kernel choose by its own hash" in str(again) and "Fix" not in str(again)
