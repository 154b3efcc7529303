"""Lesson 14's exercise (a process moves to another cgroup, its socket does not) and its check,
and the field offsets the lesson's cgrp_storage program needs.

The check runs its own workload in a fresh child (`children.Child`): the child makes a
UDP socket in cgroup `web` and 10 getppid() calls there, then moves to `batch`, sends 4
datagrams of 100 bytes on that same socket and makes 6 more getppid() calls. The learner
predicts what each map counts for each cgroup; the check compares with what the maps say.
"""
from __future__ import annotations

import socket

from ..lab.children import Child
from ..maps.btf import vmlinux_field_offset
from .checker import Checker, exercise

BEFORE_CALLS, AFTER_CALLS, DATAGRAMS, PAYLOAD = 10, 6, 4, 100
QUESTIONS = ("calls counted for web", "calls counted for batch",
             "bytes counted for web", "bytes counted for batch")


def cgroup_field_offsets() -> str:
    """The clang flags bpf/14_cgroup_maps/cgrp_calls.c needs: where task_struct.cgroups and
    css_set.dfl_cgrp are in the running kernel, e.g. "-DTASK_CGROUPS=2376 -DCSS_SET_DFL_CGRP=112"."""
    return (f"-DTASK_CGROUPS={vmlinux_field_offset('task_struct', 'cgroups')} "
            f"-DCSS_SET_DFL_CGRP={vmlinux_field_offset('css_set', 'dfl_cgrp')}")


def moved_socket_run(calls_program, bytes_program, web, batch) -> dict:
    """Run the exercise's workload once; what each map counted for each cgroup during it."""
    calls, bytes_out = calls_program["calls"], bytes_program["bytes_out"]
    ids = {name: cg.id for name, cg in (("web", web), ("batch", batch))}

    def stored() -> dict:
        frame = bytes_out.frame()
        return {name: int(frame.loc[frame["cgroup_inode_id"] == i, "value"].sum())
                for name, i in ids.items()}

    calls_before, bytes_before = [int(x) for x in calls.counts()], stored()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    child = Child()
    try:
        child.join(web)
        child.socket()
        child.calls(BEFORE_CALLS)
        child.join(batch)
        child.send(DATAGRAMS, PAYLOAD, receiver.getsockname())
        child.calls(AFTER_CALLS)
    finally:
        child.close()                    # reaped, and forgotten by web and batch
        receiver.close()
    calls_after, bytes_after = [int(x) for x in calls.counts()], stored()
    return {"calls counted for web": calls_after[0] - calls_before[0],
            "calls counted for batch": calls_after[1] - calls_before[1],
            "bytes counted for web": bytes_after["web"] - bytes_before["web"],
            "bytes counted for batch": bytes_after["batch"] - bytes_before["batch"]}


@exercise("A process moves, its socket stays",
          "getppid() is counted for the cgroup the task is in when it calls; a packet for the "
          "cgroup its socket was made in, whatever cgroup the sender is in now.")
def check_moved_socket(c: Checker, prediction: dict, calls_program, bytes_program, web, batch) -> None:
    """Lesson 14's exercise: the learner's `prediction` of what `calls` (cgroup_array) and
    `bytes_out` (cgroup storage) count for each cgroup when a process that made its socket in
    `web` moves to `batch` and sends there. The check runs that workload and compares."""
    c.require(isinstance(prediction, dict), "`prediction` should be a dict with the four numbers.")
    missing = [q for q in QUESTIONS if not isinstance(prediction.get(q), int)]
    c.require(not missing, "Fill in a whole number for: " + ", ".join(repr(q) for q in missing) + ".")
    c.require(bytes_program["bytes_out"].type == "cgroup_storage",
              "bytes_out should be the lesson's BPF_CGROUP_STORAGE map: run the %%bpf cgroup_bytes cell.")
    c.require(len(web.attached().get("inet_egress", [])) == 1 and
              len(batch.attached().get("inet_egress", [])) == 1,
              "count_egress should be attached at egress to both cgroups: run the cells of the "
              "cgroup storage section again.")
    got = moved_socket_run(calls_program, bytes_program, web, batch)
    if prediction["calls counted for web"] != got["calls counted for web"] or \
            prediction["calls counted for batch"] != got["calls counted for batch"]:
        c.expect(False, "The getppid() counts are not right. check_current_task() asks where the "
                 "task is at the moment of each call: count the calls made before and after the move.")
    if prediction["bytes counted for web"] + prediction["bytes counted for batch"] != \
            got["bytes counted for web"] + got["bytes counted for batch"]:
        c.expect(False, f"The bytes do not add up: {DATAGRAMS} datagrams of {PAYLOAD} bytes of data were "
                 "sent, and skb->len at egress counts the packet's headers too (IPv4: 20 bytes, UDP: 8).")
    elif prediction["bytes counted for web"] != got["bytes counted for web"]:
        c.expect(False, "The total is right, but not where it is counted. Which cgroup does a packet "
                 "belong to at egress: the sending process's, or its socket's? When was the socket made?")
    if got != {q: prediction[q] for q in QUESTIONS} and not c.result.problems:
        c.expect(False, f"The maps counted {got}, not what you predicted.")
