"""Lesson 15 on the real kernel: task storage and a pid-keyed hash count the same getppid()
calls exactly, and only the hash keeps its entry once the process has exited; socket storage
counts each socket's packets and bytes exactly; inode storage works from user space, and its LSM
program counts each open of a tagged file where the kernel allows LSM programs; the exercise check fails on the starter and
passes on the solution."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab.cgroup import Cgroup
from bpfkit.core.errors import BpfkitError, KeyMissing
from bpfkit.lessons.l15_local_storage import check_exit_cleanup, exit_field_offsets, leader_first_run
from bpfkit.lab.children import Child
from conftest import skip_unless_allowed
from notebook_runs import bpf_cell

ROOT = Path(__file__).resolve().parents[2]
LESSON = ROOT / "notebooks" / "15_local_storage.ipynb"
SOLUTION = ROOT / "notebooks" / "solutions" / "15_local_storage.ipynb"
UDP_IPV4_HEADERS = 20 + 8


def test_a_child_makes_exactly_the_calls_asked_for(no_leaks):
    prog = bpfkit.load("task_calls")
    child = Child()
    try:
        assert str(child) == f"child {child.pid}"
        assert child.calls(0) == 0
        assert prog["by_pid"].get(child.pid) is None
        assert child.calls(4) == 4
        assert child.calls(2, in_thread=True) == 2
        assert prog["by_pid"][child.pid] == 6
    finally:
        assert child.close() == 0
        assert child.close() == 0          # twice is fine
        prog.close()


def test_task_storage_is_freed_with_the_task_and_the_hash_is_not(no_leaks):
    prog = bpfkit.load("task_calls")
    on_task, by_pid = prog["on_task"], prog["by_pid"]
    one, two = Child(), Child()
    try:
        one.calls(7)
        two.calls(3)
        one.calls(5, in_thread=True)       # another task of the same process
        assert (on_task[one], on_task[two]) == (7, 3)
        assert (by_pid[one.pid], by_pid[two.pid]) == (12, 3)
        assert on_task.frame(keys=[one, two])["value"].tolist() == [7, 3]
        with pytest.raises(BpfkitError, match="cannot be walked"):
            on_task.frame()
        on_task[two] = 100                # user space may write a live task's value
        assert on_task[two] == 100
        kept = os.pidfd_open(one.pid)
        try:
            one.close()
            assert on_task.get(kept) is None          # freed with the task
        finally:
            os.close(kept)
        with pytest.raises(KeyMissing, match="has exited"):
            on_task[one]
        assert by_pid[one.pid] == 12                  # the hash keeps a stale entry
    finally:
        one.close()
        two.close()
        prog.close()


def test_socket_storage_counts_each_sockets_bytes(no_leaks):
    prog = bpfkit.load("sock_bytes")
    sent = prog["sent"]
    cg = Cgroup("l15-test-sockets")
    inbox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    socks = []
    try:
        cg.attach(prog.load_func("count_sent", "cgroup_skb"), "egress")
        inbox.bind(("127.0.0.1", 0))
        with cg.inside():
            a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks = [a, b, out]
        for s in socks:
            s.connect(inbox.getsockname())
        for s, n, size in ((a, 5, 100), (b, 3, 1000), (out, 4, 200)):
            for _ in range(n):
                s.send(b"y" * size)
        assert sent[a] == {"packets": 5, "bytes": 5 * (100 + UDP_IPV4_HEADERS)}
        assert sent[b] == {"packets": 3, "bytes": 3 * (1000 + UDP_IPV4_HEADERS)}
        assert sent.get(out) is None                  # made outside the cgroup
        frame = sent.frame({"key": "socket"}, keys=[a, b, out])
        assert frame["socket"].tolist() == [a, b] and frame["packets"].tolist() == [5, 3]
        with pytest.raises(BpfkitError, match="cannot be walked"):
            sent.frame()
        a.close()
        with pytest.raises(BpfkitError, match="not an open socket"):
            sent[a]
    finally:
        for s in socks + [inbox]:
            s.close()
        cg.close()
        prog.close()


def test_an_lsm_program_counts_each_open_of_a_tagged_file_where_the_kernel_allows_it(no_leaks, tmp_path):
    """Where LSM programs load (Debian 13's kernel), inode_permission counts each open of a
    tagged file exactly, in any process, and makes nothing on other files; where they are refused
    (lockdown, or `bpf` not among the security modules), attaching says so in the kernel's words,
    attaches nothing, and the program's map is still there."""
    prog = bpfkit.load("inode_opens")
    try:
        def refused():
            here = bpfkit.allowed("lsm program")
            with pytest.raises(BpfkitError) as e:
                prog.attach_lsm("inode_permission")
            assert os.strerror(here.error.errno) in e.value.what, (here, e.value.what)
            assert prog.attached == {} and prog["checks"].type == "inode_storage"
        skip_unless_allowed("lsm program", refused)
        prog.attach_lsm("inode_permission")
        assert prog.attached == {"lsm__inode_permission": "lsm:inode_permission"}
        checks = prog["checks"]
        watched, other = tmp_path / "watched", tmp_path / "other"
        with open(watched, "w") as tagged, open(other, "w") as untagged:
            checks[tagged] = 0                      # opened before the tag: not counted
            for _ in range(7):
                open(watched).close()
                open(other).close()
            assert checks[tagged] == 7
            assert checks.get(untagged) is None     # no F_CREATE: nothing made on other files
            subprocess.run(["cat", str(watched), str(watched)], check=True)   # another process
            assert checks[tagged] == 9
            assert checks[str(watched)] == 10       # a path key opens the file: counted too
    finally:
        prog.close()


def test_inode_storage_works_from_user_space_on_any_kernel_that_has_it(no_leaks, tmp_path):
    skip_unless_allowed("inode_storage map")
    notes = bpfkit.create_map("inode_storage", value="u64")
    path = tmp_path / "tagged"
    path.write_text("x")
    try:
        with open(path) as f:
            notes[f] = 42
        assert notes[str(path)] == 42
        assert notes.frame(keys=[str(path)])["value"].tolist() == [42]
    finally:
        notes.close()


def load_cell(notebook, name):
    return bpfkit.load(bpf_cell(notebook, "exit_cleanup"), name=name, cflags=exit_field_offsets().split())


def test_exercise_check_fails_on_the_starter_and_passes_on_the_solution(no_leaks):
    starter = load_cell(LESSON, "l15_starter")
    try:
        result = check_exit_cleanup(starter)
        assert not result.passed
        assert any("stale entry" in p and "What runs in the kernel as a task exits?" in p
                   for p in result.problems), result
        assert "Hint" not in str(result) and "Fix" not in str(result)
    finally:
        starter.close()

    solution = bpf_cell(SOLUTION, "exit_cleanup")
    too_eager = solution.replace("if (*(int *)(signal + SIGNAL_LIVE) != 0)", "if (0)")
    assert too_eager != solution
    eager = bpfkit.load(too_eager, name="l15_eager", cflags=exit_field_offsets().split())
    try:
        result = check_exit_cleanup(eager)
        assert not result.passed
        assert any("one of its threads" in p or "A thread of child" in p for p in result.problems), result
    finally:
        eager.close()

    solved = load_cell(SOLUTION, "l15_solved")
    try:
        result = check_exit_cleanup(solved)
        assert result.passed, result
    finally:
        solved.close()


def test_a_hash_cleaned_when_the_leader_exits_is_refused(no_leaks):
    """The thread group leader is not always the last task of its process: threads can outlive it,
    and a program that deletes at the leader's exit lets them make an entry nobody deletes."""
    by_leader = bpf_cell(SOLUTION, "exit_cleanup").replace(
        "if (*(int *)(signal + SIGNAL_LIVE) != 0)",
        "u64 id = bpf_get_current_pid_tgid();\n    if ((u32)id != id >> 32)")
    prog = bpfkit.load(by_leader, name="l15_by_leader", cflags=exit_field_offsets().split())
    try:
        seen = leader_first_run(prog["by_pid"])
        assert seen["after the leader exited"] is None                  # deleted while a thread ran on
        assert seen["after the other thread's calls"] == 3              # made again by that thread
        assert seen["after it was reaped"] == 3                         # and never deleted
        result = check_exit_cleanup(prog)
        assert not result.passed
        assert any("main thread exited first" in p and "always the last" in p for p in result.problems), result
    finally:
        prog.close()
    solved = load_cell(SOLUTION, "l15_solved")
    try:
        seen = leader_first_run(solved["by_pid"])
        seen.pop("pid")
        assert seen == {"after the leader exited": 4, "after the other thread's calls": 7,
                        "after it was reaped": None}
    finally:
        solved.close()


def test_the_check_hints_on_the_second_try_and_shows_the_fix_on_the_third(no_leaks):
    starter = load_cell(LESSON, "l15_starter")
    try:
        tries = [check_exit_cleanup(starter) for _ in range(3)]
    finally:
        starter.close()
    assert [r.tries for r in tries] == [1, 2, 3]
    assert "Hint: " not in str(tries[0]) and "Fix: " not in str(tries[0])
    assert "Hint: " in str(tries[1]) and "sched:sched_process_exit" in str(tries[1]) and "Fix: " not in str(tries[1])
    assert "Fix: " in str(tries[2]) and "SIGNAL_LIVE" in str(tries[2])


def test_check_never_raises_on_a_program_without_the_hash(no_leaks):
    prog = bpfkit.load("BPF_HASH(counts, u32, u64, 4);", name="l15_nohash")
    try:
        result = check_exit_cleanup(prog)
        assert not result.passed and "by_pid" in result.problems[0]
    finally:
        prog.close()
