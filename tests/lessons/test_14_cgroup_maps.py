"""Lesson 14 on the real kernel: a cgroup array decides "in that cgroup?" for each getppid()
call, cgroup storage (plain and per-CPU) counts each cgroup's egress packets, cgrp_storage
counts calls per cgroup; exact numbers from child processes moved into the lesson's cgroups.
The exercise's check fails on wrong predictions with words, passes on the right ones."""
from __future__ import annotations

import os
import socket

import pytest

import bpfkit
from bpfkit.lab.cgroup import Cgroup
from bpfkit.lessons.l14_cgroup_maps import (check_moved_socket, cgroup_field_offsets,
                                            moved_socket_run)
from bpfkit.core.errors import MapError
from bpfkit.maps.btf import vmlinux_field_offset
from bpfkit.lab.children import Child

RIGHT = {"calls counted for web": 10, "calls counted for batch": 6,
         "bytes counted for web": 4 * 128, "bytes counted for batch": 0}


@pytest.fixture
def cgroups():
    web, batch = Cgroup("l14-test-web"), Cgroup("l14-test-batch")
    try:
        yield web, batch
    finally:
        web.close()
        batch.close()
    assert not web.path.exists() and not batch.path.exists()


def calls_in(cg, n, cpu=None):
    with Child(cpu=cpu) as child:
        if cg is not None:
            child.join(cg)
        child.calls(n)


def lesson_programs(web, batch):
    calls = bpfkit.load("cgroup_calls", name="l14_test_calls")
    calls["groups"][0] = web
    calls["groups"][1] = batch
    traffic = bpfkit.load("cgroup_bytes", name="l14_test_bytes")
    fn = traffic.load_func("count_egress", "cgroup_skb")
    web.attach(fn, "egress")
    batch.attach(fn, "egress")
    return calls, traffic


def test_a_child_does_exactly_what_it_is_told():
    child = Child(cpu=0)
    try:
        assert os.path.exists(f"/proc/{child.pid}")
        assert child.calls(3) == 3
        assert child.socket() == 1
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
            rx.bind(("127.0.0.1", 0))
            rx.settimeout(2)
            assert child.send(2, 50, rx.getsockname()) == 2
            assert [len(rx.recv(1000)) for _ in range(2)] == [50, 50]
    finally:
        child.close()
    child.close()  # twice is fine
    assert not os.path.exists(f"/proc/{child.pid}")
    with pytest.raises(bpfkit.BpfkitError, match="has exited"):
        child.calls(1)


def test_cgroup_array_counts_only_calls_under_each_cgroup(no_leaks, cgroups):
    web, batch = cgroups
    prog = bpfkit.load("cgroup_calls", name="l14_test_calls")
    calls_in(web, 5)                                 # slots still empty: nothing counted
    assert prog["calls"].counts().tolist() == [0, 0]
    prog["groups"][0] = web
    prog["groups"][1] = batch
    calls_in(web, 30)
    calls_in(batch, 20)
    calls_in(None, 50)
    assert prog["calls"].counts().tolist() == [30, 20]
    with pytest.raises(bpfkit.BpfkitError, match="cannot read back"):
        prog["groups"].frame()


def test_a_moved_task_counts_for_its_new_cgroup(no_leaks, cgroups):
    web, batch = cgroups
    prog = bpfkit.load("cgroup_calls", name="l14_test_calls")
    prog["groups"][0] = web
    prog["groups"][1] = batch
    with Child() as child:
        child.join(web)
        child.calls(7)
        child.join(batch)
        assert batch.pids() == [child.pid] and web.pids() == []
        child.calls(4)
    assert prog["calls"].counts().tolist() == [7, 4]


def test_cgroup_storage_counts_bytes_and_packets_per_cgroup_and_cpu(no_leaks, cgroups):
    web, batch = cgroups
    _, traffic = lesson_programs(web, batch)
    ids = {web.id: "web", os.stat(batch.path).st_ino: "batch"}
    frame = traffic["bytes_out"].frame()
    assert sorted(ids[i] for i in frame["cgroup_inode_id"]) == ["batch", "web"]
    assert set(frame["attach_type"]) == {1} and frame["value"].tolist() == [0, 0]   # 1: egress
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        for cg, n, size, cpu in ((web, 10, 100, 0), (batch, 5, 1000, 1)):
            with Child(cpu=cpu) as child:
                child.join(cg)
                child.socket()
                child.send(n, size, rx.getsockname())
    got = {ids[i]: v for i, v in zip(traffic["bytes_out"].frame()["cgroup_inode_id"],
                                     traffic["bytes_out"].frame()["value"])}
    assert got == {"web": 10 * 128, "batch": 5 * 1028}
    per_cpu = traffic["packets_out"].frame()
    assert traffic["packets_out"].type == "percpu_cgroup_storage"
    summed = traffic["packets_out"].frame(per_cpu="sum")
    assert {ids[i]: v for i, v in zip(summed["cgroup_inode_id"], summed["value"])} == {"web": 10, "batch": 5}
    cpus = sorted(os.sched_getaffinity(0))
    web_row = per_cpu[(per_cpu["cgroup_inode_id"] == web.id) & (per_cpu["cpu"] == cpus[0])]
    assert web_row["value"].tolist() == [10]


def test_cgrp_storage_counts_calls_of_any_cgroup(no_leaks, cgroups):
    web, batch = cgroups
    assert vmlinux_field_offset("css_set", "dfl_cgrp") > 0
    with pytest.raises(MapError, match="has no field nope"):
        vmlinux_field_offset("css_set", "nope")
    per_cgroup = bpfkit.create_map("cgrp_storage", value="u64", name="per_cgroup")
    bpfkit.load("cgrp_calls", name="l14_test_cgrp", maps={"per_cgroup": per_cgroup},
                cflags=cgroup_field_offsets().split())
    calls_in(web, 30)
    calls_in(batch, 20)
    assert per_cgroup[web] == 30 and per_cgroup[batch] == 20
    per_cgroup[web] = 100                            # user space writes it too
    calls_in(web, 1)
    assert per_cgroup[web] == 101
    frame = per_cgroup.frame(keys=[web, batch])
    assert frame["value"].tolist() == [101, 20]


def test_exercise_check_says_what_is_wrong_and_passes_on_the_solution(no_leaks, cgroups):
    web, batch = cgroups
    calls, traffic = lesson_programs(web, batch)
    assert moved_socket_run(calls, traffic, web, batch) == RIGHT
    empty = check_moved_socket(dict.fromkeys(RIGHT), calls, traffic, web, batch)
    assert not empty and "4 of 4 predictions have no whole number" in str(empty)
    by_process = dict(RIGHT, **{"bytes counted for web": 0, "bytes counted for batch": 512})
    wrong = check_moved_socket(by_process, calls, traffic, web, batch)
    assert not wrong and "getppid" not in str(wrong)
    assert "The bytes went to web, not batch" in str(wrong) and "socket" in str(wrong)
    # the case: right calls, payload only, and in the wrong cgroup: the cgroup is named
    wrong_place = dict(RIGHT, **{"bytes counted for web": 0, "bytes counted for batch": 400})
    told = str(check_moved_socket(wrong_place, calls, traffic, web, batch))
    assert "predicted web 0, batch 400" in told and "counted web 512, batch 0" in told
    assert "went to web, not batch" in told and "headers" not in told
    payload_only = dict(RIGHT, **{"bytes counted for web": 400})
    told = str(check_moved_socket(payload_only, calls, traffic, web, batch))
    assert "headers" in told and "cgroup is right" in told
    calls_wrong = dict(RIGHT, **{"calls counted for web": 16, "calls counted for batch": 0})
    told = str(check_moved_socket(calls_wrong, calls, traffic, web, batch))
    assert "predicted web 16, batch 0" in told and "counted web 10, batch 6" in told
    assert "At which moment" in told
    assert check_moved_socket(RIGHT, calls, traffic, web, batch)


def test_exercise_check_hints_on_the_second_try_and_fixes_on_the_third(no_leaks, cgroups):
    web, batch = cgroups
    calls, traffic = lesson_programs(web, batch)
    wrong = dict(RIGHT, **{"bytes counted for web": 0, "bytes counted for batch": 512})
    tries = [check_moved_socket(wrong, calls, traffic, web, batch) for _ in range(3)]
    assert [r.tries for r in tries] == [1, 2, 3]
    assert "Hint" not in str(tries[0]) and "Fix" not in str(tries[0])
    assert "Hint: " in str(tries[1]) and "does not move the sockets" in str(tries[1]) and "Fix" not in str(tries[1])
    assert "Fix: bytes counted for web = all 4 packets" in str(tries[2])
