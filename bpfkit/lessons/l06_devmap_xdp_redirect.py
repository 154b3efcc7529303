"""Lesson 06's exercise: spread one UDP flow's packets over two interfaces by source port."""
from __future__ import annotations

import collections

from ..core import waiting
from .checker import Checker, exercise

SOURCE_PORTS = (41000, 41001, 41002, 41003)
PER_SOURCE = 5
SERVICE_PORT = 9000


@exercise("Balance by source port",
          "Each sender (source port) always lands on the same replica, and the two "
          "replicas share the load: what a load balancer needs.")
def check_source_port_balancing(c: Checker, program, lab, map_name: str = "tx_port") -> None:
    """Sends PER_SOURCE datagrams from each of SOURCE_PORTS on host a to port 9000 of the
    service, and checks that even source ports arrive at host b and odd ones at host c."""
    from ..lab import net
    c.require(all(h in getattr(lab, "hosts", {}) for h in "abc"),
              "pass the lesson's lab, with its hosts a, b and c.")
    a, b, cc = (lab.hosts[h] for h in "abc")
    tx = program[map_name]
    c.require(tx.type == "devmap", f"{map_name!r} is a {tx.type} map: declare it with "
              f"BPF_DEVMAP({map_name}, 4).")
    slots = dict(zip(tx.frame()["index"].tolist(), tx.frame()["ifindex"].tolist()))
    c.expect(slots.get(0) == b.port_ifindex and slots.get(1) == cc.port_ifindex,
             f"slot 0 must send to {b.port} and slot 1 to {cc.port}: "
             f"{map_name}[0] = b.port and {map_name}[1] = c.port (now: {slots}).")
    attached = net.xdp_prog_id(a.port)
    c.expect(attached in program.program_ids(),
             f"your program is not the XDP program of {a.port}: "
             f"lab.attach_xdp(<your program>, a.port, \"xdp_redirect\").")
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
    c.require(arrived == total, f"{arrived} of {total} datagrams arrived. Return "
              f"{map_name}.redirect_map(slot, 0) for every UDP frame to port {SERVICE_PORT}, "
              "with slot 0 or 1.")
    wrong = [(p, h) for h in got for p in SOURCE_PORTS
             if got[h][p] and (p % 2 == 0) != (h == "b")]
    c.expect(not wrong, "source port -> host: " + ", ".join(
        f"{p} -> {h}" for p in SOURCE_PORTS for h in got if got[h][p]) +
        ". Even source ports belong on b (slot 0), odd ones on c (slot 1): pick the slot "
        "from the lowest bit of the source port (ntohs(udp->source) is the port as a number).")
