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
    c.require(isinstance(prediction, dict),
              f"`prediction` is a {type(prediction).__name__}, not a dict of four numbers; did the "
              "exercise's cell run as given, with your numbers in place of its `None`s?",
              hint="Keep the dict of the exercise cell and its four keys; change only the values.",
              fix="prediction = {\"calls counted for web\": ..., \"calls counted for batch\": ..., "
                  "\"bytes counted for web\": ..., \"bytes counted for batch\": ...} with whole numbers.")
    missing = [q for q in QUESTIONS if not isinstance(prediction.get(q), int)]
    c.require(not missing,
              f"{len(missing)} of 4 predictions have no whole number yet ("
              + ", ".join(f"`{q}`" for q in missing) + "); what will each map count during the run "
              "the exercise describes?",
              hint="Each value is an int: a count of calls, or a count of bytes at egress.",
              fix="Replace each `None` in `prediction` by an int, e.g. `\"calls counted for web\": 3`.")
    c.require(bytes_program["bytes_out"].type == "cgroup_storage",
              f"`bytes_out` is a {bytes_program['bytes_out'].type} map, not cgroup storage; which "
              "cell declares the lesson's? The section 'A value per cgroup: cgroup storage' does.",
              hint="Run the `%%bpf cgroup_bytes` cell as the lesson gives it, then the cells after it.",
              fix="Run the `%%bpf cgroup_bytes` cell, then `egress = cgroup_bytes.load_func(\"count_egress\", "
                  "\"cgroup_skb\")` and `web.attach(egress, \"egress\")`, `batch.attach(egress, \"egress\")`.")
    attached = {name: len(cg.attached().get("inet_egress", [])) for name, cg in (("web", web), ("batch", batch))}
    c.require(attached == {"web": 1, "batch": 1},
              f"Programs attached at egress: web {attached['web']}, batch {attached['batch']}; the "
              "exercise expects `count_egress` once on each. Which cell attaches it? The one after "
              "'`count_egress` is not attached yet'.",
              hint="Run the cells of the section 'A value per cgroup: cgroup storage' again, in order.",
              fix="`web.attach(egress, \"egress\")` and `batch.attach(egress, \"egress\")`, once each.")
    got = moved_socket_run(calls_program, bytes_program, web, batch)
    said = {q: prediction[q] for q in QUESTIONS}
    calls_q = QUESTIONS[:2]
    if any(said[q] != got[q] for q in calls_q):
        c.expect(False,
                 f"getppid() calls: you predicted web {said[calls_q[0]]}, batch {said[calls_q[1]]}; the "
                 f"cgroup array counted web {got[calls_q[0]]}, batch {got[calls_q[1]]}. At which moment does "
                 "`check_current_task()` ask where the task is? The section 'A process moves: watch the "
                 "count switch lines' shows it.",
                 hint=f"The child makes {BEFORE_CALLS} calls before its move and {AFTER_CALLS} after it: "
                      "each call counts for the cgroup the task is in at that moment.",
                 fix=f"calls counted for web = {BEFORE_CALLS} (before the move), calls counted for batch = "
                     f"{AFTER_CALLS} (after it).")
    _check_bytes(c, said, got)
    if got != said and not c.result.problems:
        c.expect(False, f"The maps counted {got}; you predicted {said}. Which number differs, and why?")


def _check_bytes(c: Checker, said: dict, got: dict) -> None:
    """The bytes: first whether they were counted for the right cgroup, then how many."""
    bytes_q = QUESTIONS[2:]
    if all(said[q] == got[q] for q in bytes_q):
        return
    web_b, batch_b = bytes_q
    counted = [n for n, q in (("web", web_b), ("batch", batch_b)) if got[q]]
    predicted = [n for n, q in (("web", web_b), ("batch", batch_b)) if said[q]]
    saw = (f"Bytes: you predicted web {said[web_b]}, batch {said[batch_b]}; cgroup storage counted "
           f"web {got[web_b]}, batch {got[batch_b]}.")
    if predicted != counted:
        c.expect(False,
                 saw + f" The bytes went to {' and '.join(counted) or 'neither'}, not "
                 f"{' and '.join(predicted) or 'neither'}. At egress, whose cgroup does a packet count "
                 "for: the sender's now, or its socket's? In which cgroup was the socket made? The "
                 "section 'A value per cgroup: cgroup storage' says whose packets `count_egress` sees.",
                 hint="The child opened its socket while it was in `web`, and sent after its move. "
                      "Moving a process does not move the sockets it already has.",
                 fix=f"bytes counted for web = all {DATAGRAMS} packets' bytes, bytes counted for batch = 0.")
    else:
        c.expect(False,
                 saw + f" The cgroup is right, the size is not: {DATAGRAMS} datagrams of {PAYLOAD} bytes "
                 "of data were sent. What else does `skb->len` count at egress, which headers? The cell "
                 "'A child in `web`, pinned to CPU 0, …' says.",
                 hint="`skb->len` at egress is the whole IP packet: data, UDP header and IPv4 header.",
                 fix=f"{DATAGRAMS} * ({PAYLOAD} + 8 + 20) bytes: 8 of UDP header and 20 of IPv4 header "
                     "per packet.")
