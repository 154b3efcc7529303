"""The child process the lessons drive (`bpfkit.lab.children.Child`): each step makes what it says and
answers how many calls it made, a watch holds its pid for the step only, and whether it is closed,
interrupted in a step or left to close_all(), it leaves no process and no cgroup behind."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from bpfkit.host import lifetime
from bpfkit.lab.cgroup import Cgroup
from bpfkit.lab.children import Child, hammer, on_cpu, private_uids
from bpfkit.core.errors import BpfkitError



def gone(pid: int) -> bool:
    return not os.path.exists(f"/proc/{pid}")


def test_each_step_answers_how_many_calls_it_made(tmp_path):
    data = tmp_path / "data"
    data.write_bytes(b"x" * 100)
    with Child(cpu=1) as child:
        assert os.sched_getaffinity(child.pid) == {on_cpu(1)}
        assert child.calls(3) == 3
        assert child.calls(2, key=2**30) == 2          # getpgid() of nobody: made all the same
        assert child.calls(4, in_thread=True) == 4
        assert child.open(["/dev/null", "/no/such/file"]) == 2
        assert child.read(data, [60, 40]) == 2
        assert child.socket() == 1
    assert child.returncode == 0 and gone(child.pid)


def test_a_step_that_fails_says_so_and_the_child_goes_on(tmp_path):
    (tmp_path / "short").write_bytes(b"x" * 10)
    with Child() as child:
        with pytest.raises(BpfkitError, match="'read' step: EOFError"):
            child.read(tmp_path / "short", [100])
        with pytest.raises(BpfkitError, match="'send' step"):
            child.send(1, 10, ("127.0.0.1", 9))       # no socket yet
        assert child.calls(1) == 1
    with pytest.raises(BpfkitError, match="has exited"):
        child.calls(1)


def test_a_watch_holds_the_pid_during_the_step_only():
    watch, seen = [0], set()
    with Child(watch=watch) as child:
        assert watch[0] == 0
        child.open(["/dev/null"] * 3, every=0.05, during=lambda: seen.add(watch[0]))
        assert seen == {child.pid} and watch[0] == 0
        with pytest.raises(BpfkitError):
            child.read("/no/such/file", [1])            # fails while getting ready: no window
        assert watch[0] == 0


def test_an_interrupted_step_ends_the_child():
    watch = [0]
    child = Child(watch=watch)

    def interrupt():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        child.open(["/dev/null"] * 100, every=0.01, during=interrupt)
    assert gone(child.pid) and watch[0] == 0
    with pytest.raises(BpfkitError, match="has exited"):
        child.calls(1)


def test_a_child_runs_as_the_uid_asked_for():
    uid, = private_uids(1, skip=14)
    with Child(uid=uid) as child:
        status = Path(f"/proc/{child.pid}/status").read_text().splitlines()
        ids = {line.split(":")[0]: line.split()[1:] for line in status}
        assert ids["Uid"] == [str(uid)] * 4 and ids["Gid"] == [str(uid)] * 4
        assert ids["Groups"] == []
    assert hammer(uid, 1000, workers=2) == 2000


def test_a_closed_child_leaves_its_cgroups_removable():
    web, batch = Cgroup("children-test-web"), Cgroup("children-test-batch")
    try:
        child = Child()
        child.join(web)
        assert web.pids() == [child.pid]
        child.join(batch)
        assert batch.pids() == [child.pid] and web.pids() == []
        child.close()
        assert batch.pids() == [] and not web._homes and not batch._homes
    finally:
        web.close()
        batch.close()
    assert not web.path.exists() and not batch.path.exists()


def test_close_all_ends_a_child_before_it_removes_the_cgroup_it_is_in():
    web = Cgroup("children-test-close-all")
    child = Child()
    child.join(web)
    assert lifetime.held("child") == {child.pid: child}
    lifetime.close_all("child", "cgroup")        # a cgroup with a process in it cannot go
    assert gone(child.pid) and not web.path.exists()
    assert lifetime.held("child") == {}


def test_a_child_killed_from_outside_says_so():
    child = Child()
    child.process.kill()
    child.process.wait()
    with pytest.raises(BpfkitError, match=r"ended \(exit code -9\) during its 'calls' step"):
        child.calls(1)
    assert lifetime.held("child") == {}
