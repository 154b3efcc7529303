"""Lesson 16's exercise: spread one service's senders over two CPUs with a cpumap, by source port."""
from __future__ import annotations

from ..core import waiting
from .checker import Checker, exercise

# Source port -> datagrams sent from it: distinct counts, so the split per CPU tells the rule used.
SENDERS = {41000: 3, 41001: 5, 41002: 7, 41003: 11}
SERVICE_PORT = 9000


def expected_split() -> dict[int, int]:
    """Frames per CPU when even source ports go to CPU 0 and odd ones to CPU 1."""
    split = {0: 0, 1: 0}
    for port, n in SENDERS.items():
        split[port % 2] += n
    return split


@exercise("Spread senders over CPUs",
          "Every sender stays on one CPU, and the two CPUs share the senders: that is receive-side "
          "scaling done in software, what a cpumap is for.")
def check_cpu_spread(c: Checker, program, lab, address: str = "192.0.2.100") -> None:
    """Sends SENDERS' datagrams from host p to `address`:9000 and checks, through the program's
    `landed` counters (frames per CPU), that even source ports landed on CPU 0 and odd ones on 1."""
    from ..lab import net
    hosts = getattr(lab, "hosts", {})
    c.require("p" in hosts, "pass the lesson's lab, with its sender p.")
    p = hosts["p"]
    cpus, landed = program["cpus"], program["landed"]
    c.require(cpus.type == "cpumap", f"'cpus' is a {cpus.type} map: declare it with BPF_CPUMAP(cpus, 2).")
    c.require(landed.type == "array" and landed.max_entries >= 2,
              "keep `BPF_ARRAY(landed, u64, 2)` and the tracepoint that counts frames per CPU in it.")
    entries = dict(zip(cpus.frame()["index"].tolist(), cpus.frame()["qsize"].tolist()))
    c.expect(set(entries) >= {0, 1},
             f"the cpumap has queues for CPUs {sorted(entries)}: give both CPUs one, "
             "cpus[0] = cpus[1] = 192 (a frame sent to a CPU with no queue is dropped).")
    c.expect(net.xdp_prog_id(p.port) in program.program_ids(),
             f"your program is not the XDP program of {p.port}: "
             "lab.attach_xdp(<your program>, p.port, \"xdp_spread\").")
    if c.result.problems:
        return

    before = {cpu: landed[cpu] for cpu in (0, 1)}
    for port, n in SENDERS.items():
        p.send_udp(address, SERVICE_PORT, n, source_port=port)
    total = sum(SENDERS.values())
    got = {}

    def all_landed() -> bool:
        got.update({cpu: landed[cpu] - before[cpu] for cpu in (0, 1)})
        return sum(got.values()) >= total

    waiting.until(all_landed, 1.0)
    want = expected_split()
    sent = ", ".join(f"{n} from {port}" for port, n in SENDERS.items())
    c.require(sum(got.values()) == total,
              f"of {total} datagrams to port {SERVICE_PORT} ({sent}), {sum(got.values())} reached a "
              f"CPU's queue (CPU 0: {got[0]}, CPU 1: {got[1]}). Return cpus.redirect_map(cpu, 0) for "
              "every UDP frame to port 9000, with cpu 0 or 1.")
    if got == want:
        return
    if got == {0: want[1], 1: want[0]}:
        problem = "the split is the wrong way round: even source ports belong on CPU 0, odd ones on CPU 1."
    elif 0 in got.values():
        problem = ("every sender landed on one CPU: the CPU does not yet depend on the source port. "
                   "If you used udp->source, remember it is in network byte order: ntohs() first.")
    else:
        problem = "some senders landed on the wrong CPU: use the lowest bit of the source port."
    c.expect(False, f"CPU 0 got {got[0]} and CPU 1 got {got[1]} frames; even source ports on CPU 0 "
                    f"and odd ones on CPU 1 would give {want[0]} and {want[1]}. " + problem)
