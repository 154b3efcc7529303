"""Lesson 18's exercise: never drop a datagram for an empty slot.

The lesson's sk_reuseport program drops a datagram whose slot of the reuseport_sockarray is
empty. The learner's program must hand those datagrams to the socket in slot 0 instead, while
datagrams for a filled slot still go to that slot's socket.
"""
from __future__ import annotations

import socket

from ..core.errors import BpfkitError
from ..host.sockets import socket_names
from .checker import Checker, exercise

SO_ATTACH_REUSEPORT_EBPF = 52  # include/uapi/asm-generic/socket.h


@exercise("Fall back to slot 0",
          "Datagrams for an empty slot now reach the socket in slot 0, and none is lost.")
def check_fallback(c: Checker, program, group, slots, n: int = 10, empty: int = 2,
                   fn_name: str = "pick_socket") -> None:
    """Attaches the learner's `fn_name` to `group` (a ReuseportGroup whose sockets fill
    `slots`), empties slot `empty` for the check, sends `n` datagrams for slot 1 and `n` for
    the empty slot, and restores the slot."""
    names = _attached(c, program, group, slots, empty, fn_name)
    group.receive()                      # nothing left over from earlier cells
    kept = group.sockets[names[empty]]
    del slots[empty]
    try:
        group.send([1] * n)
        control = group.receive(expect=n)
        group.send([empty] * n)
        got = group.receive(expect=n, timeout=0.3)
    finally:
        slots[empty] = kept
    _judge(c, names, control, got, n, empty)


def _attached(c: Checker, program, group, slots, empty: int, fn_name: str) -> dict[int, str]:
    """The learner's `fn_name` loaded and attached to `group`; {slot: socket name} of a full array."""
    try:
        fn = program.load_func(fn_name, "sk_reuseport")
    except BpfkitError as e:
        c.require(False, f"`{fn_name}` did not load as an sk_reuseport program: {e.what} Which "
                  "line do the kernel's words point at? The cell 'The program' has a "
                  f"`{fn_name}` that loads.",
                  hint=f"Keep the function's name `{fn_name}` and its argument "
                       "`struct sk_reuseport_md *reuse`; change only what happens after the "
                       "first selection fails.",
                  fix="Start again from the exercise's cell as it was, and add the fallback "
                      "just before `return SK_DROP;`.")
    first = next(iter(group.sockets.values()))
    first.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, fn.fd)
    names = {int(k): v for k, v in zip(slots.frame()["index"], socket_names(
        slots.frame()["cookie"].tolist(), group.sockets))}
    c.require(len(names) == len(slots.frame()) and 0 in names and 1 in names and empty in names,
              f"The array holds {names}; the check expected one of the group's sockets in every "
              "slot. Did a cell empty a slot and not fill it again? The cell 'The reuseport "
              "socket array' fills it.",
              hint="Run the cell that puts socket `s<i>` in slot `i` again, or `in_order()` from "
                   "'Rewrite the array while it runs'.",
              fix="`in_order()`, or `slots[i] = group.sockets[f\"s{i}\"]` for each empty slot `i`")
    return names


def _judge(c: Checker, names: dict[int, str], control: dict, got: dict, n: int, empty: int) -> None:
    """Slot 1's datagrams at slot 1's socket; the empty slot's all arrived, at slot 0's socket."""
    c.expect(control.get(names[1], 0) == n,
             f"{control.get(names[1], 0)} of the {n} datagrams for slot 1 reached {names[1]}, "
             f"the socket in slot 1 (the group received {control}); a filled slot should still "
             "get all its datagrams. What does your program do when the first selection "
             "succeeds? The cell 'The program' says what `bpf_sk_select_reuseport` returns.",
             hint="The first `bpf_sk_select_reuseport` on the datagram's own slot, and its "
                  "`return SK_PASS`, stay as they were: the fallback runs only after it fails.",
             fix="Keep `if (bpf_sk_select_reuseport(reuse, slots, &slot, 0) == 0) { ...; return "
                 "SK_PASS; }` first, and the fallback after it.")
    arrived = sum(got.values())
    c.require(arrived == n,
              f"Of the {n} datagrams for the empty slot {empty}, {arrived} arrived ({got}) and "
              f"{n - arrived} were dropped; the exercise expects all {n} to arrive. What does "
              "your program return after `bpf_sk_select_reuseport` fails? The cell 'An empty "
              "slot' showed where such datagrams went.",
              hint="A failed selection selects nothing, and the program may select again, with "
                   "another key, before it returns: which slot does the exercise name?",
              fix="Before `return SK_DROP;`: `u32 zero = 0; if (bpf_sk_select_reuseport(reuse, "
                  "slots, &zero, 0) == 0) return SK_PASS;`")
    to_zero = got.get(names[0], 0)
    if to_zero != n:
        where = ", ".join(f"{k}: {v}" for k, v in got.items() if v)
        c.expect(False,
                 f"All {n} datagrams for the empty slot arrived, but at {where}, not at "
                 f"{names[0]}, the socket in slot 0. Who chose that socket, your program or the "
                 "kernel? Question 2 of the exercise asks what a bare `SK_PASS` does.",
                 hint="Returning `SK_PASS` without a selected socket lets the kernel choose by "
                      "its own hash of the addresses and ports (the same socket for every "
                      "datagram of one sender). The exercise asks for slot 0: select it when the "
                      "first selection fails.",
                 fix="`u32 zero = 0; if (bpf_sk_select_reuseport(reuse, slots, &zero, 0) == 0) "
                     "return SK_PASS;`, then `return SK_DROP;` for an empty slot 0 too.")
