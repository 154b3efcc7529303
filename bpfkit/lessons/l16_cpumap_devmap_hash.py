"""Lesson 16's exercise: forward by ifindex through a devmap_hash, as the kernel's xdp_fwd does.

The learner's XDP program on host p's port looks the UDP destination port up in `route` (port ->
the ifindex to send the frame out of) and redirects through `ifaces`, a devmap_hash the learner
fills, keyed by the interfaces' own ifindexes. The check writes `route` itself (ROUTES: two
ports to q's port, one to r's), sends a known number of datagrams to each port and counts what
q and r receive.
"""
from __future__ import annotations

from ..core import waiting
from .checker import Checker, exercise

# Destination port -> (receiving host, datagrams sent to it). 9053 and 9081 both leave by q's port:
# one devmap_hash entry serves both. 9099 has no route: the program passes it, nobody receives it.
ROUTES = {9053: ("q", 4), 9080: ("r", 6), 9081: ("q", 3)}
NO_ROUTE = (9099, 2)


def expected_received() -> dict[str, int]:
    """Datagrams q and r receive when every routed frame leaves by its route's interface."""
    got = {"q": 0, "r": 0}
    for host, n in ROUTES.values():
        got[host] += n
    return got


@exercise("Forward by ifindex",
          "One devmap_hash entry per interface, keyed by the interface's own ifindex, serves every "
          "route through it, however large the ifindexes are: the shape of the kernel's xdp_fwd.")
def check_ifindex_forward(c: Checker, program, ifaces, lab, address: str = "192.0.2.100") -> None:
    """Fills `program`'s `route` with ROUTES (to the ifindexes of hosts q and r), sends ROUTES'
    datagrams and NO_ROUTE's from host p to `address`, and checks that each host received the
    frames routed to it: through `ifaces`, a devmap_hash keyed by ifindex."""
    from ..lab import net
    hosts = getattr(lab, "hosts", {})
    c.require({"p", "q", "r"} <= set(hosts),
              f"The lab passed has hosts {sorted(hosts)}, not p, q and r; is it the lesson's `lab`?",
              hint="Pass the `lab` made by the cell 'A network of our own'.",
              fix="check_ifindex_forward(fwd, ifaces, lab)")
    p = hosts["p"]
    c.require(getattr(ifaces, "type", None) == "devmap_hash",
              f"`ifaces` is a {getattr(ifaces, 'type', type(ifaces).__name__)} map, not a devmap_hash; "
              "which cell makes it? The one before `%%bpf fwd`.",
              hint="Run the exercise's cells in order: `ifaces` first, then `%%bpf fwd maps=ifaces`.",
              fix='ifaces = bpfkit.create_map("devmap_hash", key="u32", value="u32", max_entries=4, '
                  'name="l16_ifaces")')
    try:
        route = program["route"]
    except Exception:
        route = None
    c.require(route is not None and route.type == "hash",
              "The program has no hash map `route`; the starter declares it and the check fills it. "
              "Did the `%%bpf fwd` cell lose or rename it?",
              hint="Keep the starter's `BPF_HASH(route, ...)` line as it is.",
              fix="BPF_HASH(route, u32, u32, 8);")
    c.require(net.xdp_prog_id(p.port) in program.program_ids(),
              f"The XDP program on {p.port} is not this one's `xdp_fwd`; was the attach cell run "
              "after the last change to `%%bpf fwd`?",
              hint="Run the cell after `%%bpf fwd` again: it attaches the program you just loaded.",
              fix='lab.attach_xdp(fwd, p.port, "xdp_fwd")')

    _check_ifaces(c, ifaces, hosts)
    got, got_port, stray_got = _send(route, hosts, address)
    _tell_arrivals(c, hosts, got, got_port, stray_got)


def _check_ifaces(c: Checker, ifaces, hosts) -> None:
    """Every interface a route names has an entry in `ifaces`, under its own ifindex."""
    want_ifindex = {hosts[h].port_ifindex: hosts[h].port for h in ("q", "r")}
    held = ifaces.frame()
    held = dict(zip(held["key"].tolist(), held["ifindex"].tolist())) if len(held) else {}
    named = {k: i for k, i in held.items() if i in want_ifindex}
    mismatched = {k: i for k, i in named.items() if k != i}
    missing = [i for i in want_ifindex if held.get(i) != i]
    if mismatched:
        k, i = next(iter(mismatched.items()))
        c.expect(False,
                 f"`ifaces` holds key {k} -> {want_ifindex[i]} (ifindex {i}); the program finds "
                 f"{want_ifindex[i]} in `route` as the number {i}. Which key does `bpf_redirect_map` "
                 "look up? The section 'Part 2, devmap_hash: a device by key' says what a key is.",
                 hint="Key each interface by its own ifindex (`q.port_ifindex`): the key is the "
                      "number `route` gives the program.",
                 fix="ifaces[q.port_ifindex] = q.port and ifaces[r.port_ifindex] = r.port")
    elif missing:
        c.expect(False,
                 f"`ifaces` has keys {sorted(held) or 'none'}; the check's routes send frames out of "
                 + " and ".join(f"{want_ifindex[i]} (ifindex {i})" for i in want_ifindex)
                 + f", and {len(missing)} of them have no entry. What happens to a frame redirected to "
                 "a key with no entry? The section 'A CPU with no entry' shows it for a cpumap.",
                 hint="One entry per interface, whatever number of routes leave by it; the key is the "
                      "interface's ifindex.",
                 fix="ifaces[q.port_ifindex] = q.port and ifaces[r.port_ifindex] = r.port")



def _send(route, hosts, address: str):
    """Fill `route`, send ROUTES' and NO_ROUTE's datagrams from p; what q and r received (per
    host, per port) and how many of NO_ROUTE's reached either."""
    p = hosts["p"]
    route.clear()
    for port, (host, _) in ROUTES.items():
        route[port] = hosts[host].port_ifindex
    receivers = {port: hosts[host].receiver(port) for port, (host, _) in ROUTES.items()}
    stray = hosts["q"].receiver(NO_ROUTE[0]), hosts["r"].receiver(NO_ROUTE[0])
    start = {port: rc.count() for port, rc in receivers.items()}
    stray_start = sum(rc.count() for rc in stray)
    for port, (_, n) in ROUTES.items():
        p.send_udp(address, port, n)
    p.send_udp(address, NO_ROUTE[0], NO_ROUTE[1])
    total = sum(n for _, n in ROUTES.values())

    def arrived() -> dict[int, int]:
        return {port: rc.count() - start[port] for port, rc in receivers.items()}

    waiting.until(lambda: sum(arrived().values()) >= total, 1.0)
    got_port = arrived()
    got = {"q": 0, "r": 0}
    for port, n in got_port.items():
        got[ROUTES[port][0]] += n
    stray_got = sum(rc.count() for rc in stray) - stray_start
    return got, got_port, stray_got


def _tell_arrivals(c: Checker, hosts, got: dict, got_port: dict, stray_got: int) -> None:
    want = expected_received()
    if got == want and stray_got == 0:
        return
    sent = ", ".join(f"{n} to port {port} (route: {hosts[h].port})" for port, (h, n) in ROUTES.items())
    saw = (f"Of {sent}, q received {got['q']} and r {got['r']}; the routes say q {want['q']} and "
           f"r {want['r']}.")
    if sum(got.values()) == 0 and not c.result.found:
        c.expect(False,
                 saw + " `ifaces` is right, so the frames never reached it: what does `xdp_fwd` "
                 "return for a routed frame? The program of 'Part 2, devmap_hash: a device by key' "
                 "returns something else.",
                 hint="A frame leaves by a devmap_hash entry when the program returns the "
                      "redirect helper's answer for that map and key.",
                 fix="In `xdp_fwd`, for a routed frame: `return bpf_redirect_map(ifaces, *ifindex, 0);`")
    elif sum(got.values()) == 0:
        c.expect(False, saw + " Nothing arrived: the frames had no `ifaces` entry to leave by (above).",
                 hint="Fill `ifaces` first; then check that `xdp_fwd` redirects through it.",
                 fix="ifaces[q.port_ifindex] = q.port, ifaces[r.port_ifindex] = r.port, and in "
                     "`xdp_fwd`: `return bpf_redirect_map(ifaces, *ifindex, 0);`")
    elif got != want:
        c.expect(False,
                 saw + " Per port: " + ", ".join(f"{port}: {n}" for port, n in got_port.items())
                 + ". Which key does the program hand `bpf_redirect_map` for each frame?",
                 hint="The key is the ifindex `route` gives for the frame's destination port.",
                 fix="`return bpf_redirect_map(ifaces, *ifindex, 0);` after the `route` lookup.")
    if stray_got:
        c.expect(False,
                 f"{stray_got} datagrams to port {NO_ROUTE[0]}, which has no route, reached q or r; "
                 "what should the program do with a frame `route` has no entry for?",
                 hint="A frame with no route goes on to this machine's stack, as in the starter.",
                 fix="`if (!ifindex) return XDP_PASS;`")
