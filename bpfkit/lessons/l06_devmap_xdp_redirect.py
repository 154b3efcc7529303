"""Lesson 06's exercise: spread one UDP flow's packets over two interfaces by source port."""
from __future__ import annotations

import collections

from ..core import waiting
from .breaking import Break
from .checker import Checker, exercise

SOURCE_PORTS = (41000, 41001, 41002, 41003)
PER_SOURCE = 5
SERVICE_PORT = 9000


def _check_setup(c: Checker, program, lab, map_name: str):
    """The lab's hosts, the devmap's slots and the attachment: what must hold before sending.
    Returns hosts a, b, c."""
    from ..lab import net
    c.require(all(h in getattr(lab, "hosts", {}) for h in "abc"),
              "The check got no lab with hosts a, b and c; it expected the lesson's `lab`. Did the "
              "cells under 'A network of our own' run in this kernel?",
              hint="Run the lesson from the top, then pass its `lab` to the check.",
              fix="check_source_port_balancing(balance, lab)")
    a, b, cc = (lab.hosts[h] for h in "abc")
    tx = program[map_name]
    c.require(tx.type == "devmap",
              f"`{map_name}` is a `{tx.type}` map; the check expected a devmap, whose slots hold "
              "interfaces. Which declaration makes one? The cell 'The program' says.",
              hint=f"Declare `{map_name}` with `BPF_DEVMAP`, 4 slots, as the starter does.",
              fix=f"BPF_DEVMAP({map_name}, 4);")
    slots = dict(zip(tx.frame()["index"].tolist(), tx.frame()["ifindex"].tolist()))
    names = {b.port_ifindex: b.port, cc.port_ifindex: cc.port, None: "nothing"}
    held = [names.get(slots.get(i), f"ifindex {slots.get(i)}") for i in (0, 1)]
    c.expect(slots.get(0) == b.port_ifindex and slots.get(1) == cc.port_ifindex,
             f"slot 0 holds {held[0]} and slot 1 {held[1]}; the check expected {b.port} and "
             f"{cc.port}. "
             "Which port goes in which slot? The cell 'Fill the devmap' shows how a slot is written.",
             hint=f"From Python, write b's port into slot 0 of `{map_name}` and c's into slot 1.",
             fix=f"{map_name}[0] = b.port and {map_name}[1] = c.port.")
    attached = net.xdp_prog_id(a.port)
    c.expect(attached in program.program_ids(),
             f"your program is not the XDP program of {a.port}: the check saw "
             + (f"program id {attached} there" if attached else "no XDP program there")
             + ", and expected your program. Did the cell after your program run after your "
             "last change? It attaches your program in place of the lesson's.",
             hint="Run the program cell, then the check cell: `lab.attach_xdp` replaces whatever "
                  f"runs on {a.port}.",
             fix="lab.attach_xdp(<your program>, a.port, \"xdp_redirect\").")
    return a, b, cc


@exercise("Balance by source port",
          "Each sender (source port) always lands on the same replica, and the two "
          "replicas share the load: what a load balancer needs.")
def check_source_port_balancing(c: Checker, program, lab, map_name: str = "tx_port") -> None:
    """Sends PER_SOURCE datagrams from each of SOURCE_PORTS on host a to port 9000 of the
    service, and checks that even source ports arrive at host b and odd ones at host c."""
    a, b, cc = _check_setup(c, program, lab, map_name)
    if c.result.problems:
        return

    receivers = {"b": b.receiver(SERVICE_PORT), "c": cc.receiver(SERVICE_PORT)}
    for r in receivers.values():
        r.count()  # take in whatever was still waiting
    before = {h: collections.Counter(r.by_source) for h, r in receivers.items()}
    for port in SOURCE_PORTS:
        a.send_udp(b.address, SERVICE_PORT, PER_SOURCE, source_port=port)
    total = len(SOURCE_PORTS) * PER_SOURCE
    waiting.until(lambda: sum(r.count() - sum(before[h].values()) for h, r in receivers.items())
                  >= total, 1.0)
    got = {h: {p: r.by_source[p] - before[h][p] for p in SOURCE_PORTS} for h, r in receivers.items()}
    arrived = sum(sum(v.values()) for v in got.values())
    c.require(arrived == total,
              f"{arrived} of {total} datagrams arrived at b or c; the check expected all {total}. "
              f"Is every UDP frame to port {SERVICE_PORT} sent to slot 0 or 1? The cell 'An empty "
              "slot drops the frame' says what happens to the others.",
              hint="Only slots 0 and 1 hold an interface: the slot you compute must be 0 or 1 for "
                   "every frame, and the program must return the redirect.",
              fix=f"Return {map_name}.redirect_map(slot, 0) for every UDP frame to port "
                  f"{SERVICE_PORT}, with slot 0 or 1.")
    wrong = [(p, h) for h in got for p in SOURCE_PORTS
             if got[h][p] and (p % 2 == 0) != (h == "b")]
    c.expect(not wrong,
             "source port -> host: " + ", ".join(
                 f"{p} -> {h}" for p in SOURCE_PORTS for h in got if got[h][p]) +
             "; the check expected even source ports on b (slot 0) and odd ones on c (slot 1). "
             "Which field chooses the slot, and in which byte order does the UDP header hold it? "
             "Question 3 of the exercise asks what the lowest bit of the raw field tells; the cell "
             "'The program' shows how the lesson's program reads a port.",
             hint="Take the slot from the lowest bit of the source port as a number: the header "
                  "holds it in network byte order, so convert it first, as the lesson's program "
                  "does for the destination port.",
             fix="u32 slot = ntohs(udp->source) & 1;")


# Break it: the bound before the UDP header is read. Every packet read needs one.
NO_PACKET_BOUND = Break(
    __name__, "Read the UDP header without checking it fits", program="devmap_redirect",
    old="if ((void *)(udp + 1) > data_end)", new="if (0)",
    function="xdp_redirect", prog_type="xdp",
    question="How does the verifier know that the bytes of the UDP header are inside the packet?",
    hint="Each earlier header is read only after a comparison with `data_end`: what does that "
         "comparison prove to the verifier?",
    why={"verifier": "A packet pointer may be read only below a bound the program has compared "
                     "with `data_end`; without the comparison the verifier cannot prove the UDP "
                     "header is inside the packet and refuses ('invalid access to packet').",
         "compiler": "The compiler refused the change itself: read its message.",
         "loads": "This verifier accepted the read: tell the kit's developers."})
