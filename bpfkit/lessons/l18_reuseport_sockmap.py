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
    try:
        fn = program.load_func(fn_name, "sk_reuseport")
    except BpfkitError as e:
        c.require(False, f"{fn_name!r} did not load as an sk_reuseport program: {e.what}")
    first = next(iter(group.sockets.values()))
    first.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, fn.fd)
    names = {int(k): v for k, v in zip(slots.frame()["index"], socket_names(
        slots.frame()["cookie"].tolist(), group.sockets))}
    c.require(len(names) == len(slots.frame()) and 0 in names and 1 in names and empty in names,
              f"Fill every slot of the array with the group's sockets before the check "
              f"(slots[i] = socket); now it holds {names}.")
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
    c.expect(control.get(names[1], 0) == n,
             f"The {n} datagrams for slot 1 should all reach {names[1]}, the socket in slot 1; "
             f"the group received {control}. Keep bpf_sk_select_reuseport(reuse, slots, &slot, 0) "
             "for a filled slot.")
    arrived = sum(got.values())
    c.require(arrived == n,
              f"Of the {n} datagrams for the empty slot {empty}, {arrived} arrived ({got}); "
              f"{n - arrived} were dropped. bpf_sk_select_reuseport() fails for an empty slot "
              "(it returns a negative error): then select slot 0 and return SK_PASS instead "
              "of SK_DROP.")
    to_zero = got.get(names[0], 0)
    if to_zero != n:
        where = ", ".join(f"{k}: {v}" for k, v in got.items() if v)
        c.expect(False,
                 f"All {n} datagrams for the empty slot arrived, but at {where}, not at "
                 f"{names[0]}, the socket in slot 0. Returning SK_PASS without a selected socket "
                 "lets the kernel choose by its own hash of the addresses and ports (the same "
                 "socket for every datagram of one sender). The exercise asks for slot 0: "
                 "select it when the first selection fails.")
