"""A small network to teach with: network namespaces cabled to this machine by veth pairs.

A lesson about XDP needs frames to move between interfaces, and must not touch the machine's
real network. `Lab` builds hosts: each host is a network namespace (`bpfkit-<name>`) with one
interface, `eth0`, whose other end (`bpfkit-<name>-port`) sits in the root namespace, where
the notebook runs. The ports are where XDP programs attach, so attaching, filling a devmap with
their ifindexes and naming them all happen here, without entering a namespace; only the hosts'
sockets live inside, and `Host.socket()` makes them there (a socket keeps the namespace it was
made in).

Everything a Lab makes goes again at `close()` (also at `with` exit, on interpreter exit, and
when a lab of the same name is made again), and `cleanup_stale()` removes what a crashed run
left, by the fixed prefix. A lab writes its names to /run/bpfkit/ so that a lab another live
process owns is never taken for a leftover.
"""
from __future__ import annotations

import collections
import ctypes as ct
import json
import os
import re
import socket
import subprocess
from contextlib import nullcontext

from ..access import _bcc
from ..core import atomic, waiting
from ..core.guard import Guard, Guarded, held
from ..host import lifetime
from ..access._libbpf import lib
from ..core.errors import AttachError, BpfkitError, Closed, InUse, SetupError, UsageError
from ..host.lifetime import PREFIX
from ..host.netns import NETNS_DIR, inside

XDP_MODES = {"skb": 2, "generic": 2, "native": 4, "drv": 4, "hw": 8}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
    except FileNotFoundError:
        raise SetupError("The `ip` command is missing.",
                         "install iproute2 (sudo apt-get install iproute2).") from None
    if check and done.returncode != 0:
        raise SetupError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}",
                         "network namespaces and veth pairs need root; run `python -m bpfkit doctor`.")
    return done


def netns_names() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def link_names() -> list[str]:
    """Interface names in this (the root) namespace."""
    return sorted(os.listdir("/sys/class/net"))


def xdp_prog_id(dev: str, mode: str = "skb") -> int | None:
    """The id of the XDP program attached to interface `dev` (here) in `mode`, or None."""
    prog_id = ct.c_uint32()
    try:
        lib.bpf_xdp_query_id(socket.if_nametoindex(dev), XDP_MODES[mode], ct.byref(prog_id))
    except OSError:
        return None
    return prog_id.value or None


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError:
        pass  # e.g. IPv6 disabled on this machine: nothing to quieten


def _undo(name: str) -> None:
    """A namespace or cable a dead process claimed (lifetime.free_dead); an XDP program on the
    cable goes with it."""
    if not name.startswith(PREFIX):
        return
    if name in netns_names():
        _ip("netns", "del", name, check=False)
    elif name in link_names():
        _ip("link", "del", name, check=False)


lifetime.undoer("netdev", _undo)


def cleanup_stale() -> list[str]:
    """Remove `bpfkit-*` namespaces and interfaces an earlier run left behind (a crashed kernel,
    a killed test). Those of labs still open in this or another live process stay. Returns
    what was removed."""
    keep = set(lifetime.owners("netdev"))
    for lab in lifetime.held("lab").values():
        keep |= lab.names()
    removed = []
    for link in link_names():
        if link.startswith(PREFIX) and link not in keep:
            if _ip("link", "del", link, check=False).returncode == 0:
                removed.append(link)
    for ns in netns_names():
        if ns.startswith(PREFIX) and ns not in keep:
            if _ip("netns", "del", ns, check=False).returncode == 0:
                removed.append(ns)
    lifetime.forget_orphans("netdev", lifetime.orphans("netdev") - keep)
    return removed


def wait_until(condition, timeout: float = 2.0, every: float = 0.005) -> bool:
    """Poll `condition()` until it is true or `timeout` seconds pass; returns the last value.
    Frames cross veth pairs in softirq context, a moment after `sendto()` returns."""
    return bool(waiting.until(condition, timeout, every))


# -- hosts ---------------------------------------------------------------------------------
class Receiver:
    """A UDP socket bound in a host, counting the datagrams that reach it, by source port."""

    def __init__(self, sock: socket.socket, port: int):
        self.sock = sock
        self.port = port
        self.by_source: collections.Counter = collections.Counter()

    def count(self) -> int:
        """Datagrams received so far (reads what is waiting, without blocking)."""
        while True:
            try:
                _, (_, source_port) = self.sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return sum(self.by_source.values())
            self.by_source[source_port] += 1

    def wait_for(self, total: int, timeout: float = 2.0) -> int:
        """Wait until `total` datagrams have arrived (or `timeout` seconds); the count then."""
        waiting.until(lambda: self.count() >= total, timeout)
        return self.count()

    def __repr__(self) -> str:
        return f"<Receiver udp/{self.port}: {self.count()} datagrams>"


class Host:
    """A network namespace with one interface, `eth0`, cabled to `port` in the root namespace."""

    def __init__(self, lab: "Lab", name: str, netns: str, port: str):
        self.lab = lab
        self.name = name
        self.netns = netns
        self.port = port
        self.dev = "eth0"
        self.address: str | None = None
        self._receivers: dict[int, Receiver] = {}

    @property
    def _guard(self):
        return self.lab._guard   # a host's calls hold its lab: closed meanwhile, the lab waits

    @property
    def port_ifindex(self) -> int:
        """The root-side port's ifindex: what a devmap in the root namespace stores."""
        return socket.if_nametoindex(self.port)

    @property
    @held
    def mac(self) -> str:
        info = json.loads(_ip("-n", self.netns, "-j", "link", "show", self.dev).stdout)
        return info[0]["address"]

    @held
    def neighbour(self, address: str, mac: str) -> None:
        """A permanent ARP entry: frames to `address` go to `mac` with no ARP exchange first
        (so the only frames on the wire are the ones a lesson sends)."""
        _ip("-n", self.netns, "neigh", "replace", address, "lladdr", mac, "dev", self.dev,
            "nud", "permanent")

    @held
    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM) -> socket.socket:
        """A socket that lives in this host's namespace (closed when the lab closes)."""
        with inside(self.netns):
            sock = socket.socket(family, type)
        self.lab._sockets.append(sock)
        return sock

    @held
    def receiver(self, port: int) -> Receiver:
        """The UDP receiver on `port` in this host, made on first use."""
        if port not in self._receivers:
            sock = self.socket()
            # As much room as the machine allows (net.core.rmem_max): a lesson sends a burst and
            # counts after it. A few hundred small datagrams fit; more must be counted as they come.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind(("0.0.0.0", port))
            sock.setblocking(False)
            self._receivers[port] = Receiver(sock, port)
        return self._receivers[port]

    @held
    def send_udp(self, address: str, port: int, n: int = 1, *, source_port: int = 0,
                 payload: bytes = b"bpfkit") -> int:
        """Send `n` UDP datagrams from this host to `address:port`; returns n."""
        sock = self.socket()
        try:
            if source_port:
                sock.bind(("0.0.0.0", source_port))
            for _ in range(n):
                sock.sendto(payload, (address, port))
        finally:
            sock.close()
            self.lab._sockets.remove(sock)
        return n

    @held
    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command in this host's namespace (`ip netns exec`)."""
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True,
                              text=True, check=check)

    def __repr__(self) -> str:
        return (f"<Host {self.name}: netns {self.netns}, {self.dev} {self.address or '(no address)'}"
                f", cabled to {self.port}>")


class Lab(Guarded):
    """Hosts in network namespaces, their cables, and the XDP programs attached to the ports.

        with bpfkit.lab.net.Lab() as lab:
            a = lab.host("a", "192.0.2.1/24")
            lab.attach_xdp(prog, a.port, "xdp_redirect")

    Making a Lab with the name of one still open in this process closes that one first, so a
    notebook cell can be run again."""

    @atomic.whole
    def __init__(self, name: str = "lab"):
        self.name = name
        self.hosts: dict[str, Host] = {}
        # Its hosts' calls run inside this guard: a close from another thread removes the
        # namespaces and cables once no call on the lab or a host is in flight.
        self._guard = Guard(self._free, self._closed_error)
        self._sockets: list[socket.socket] = []
        self._xdp: dict[tuple[str | None, str], int] = {}  # (netns, dev) -> flags
        lifetime.free_dead()   # what a killed notebook left goes before the lab is made
        previous = lifetime.add("lab", name, self)
        if previous is not None:
            previous.close()

    def names(self) -> set[str]:
        return {n for h in self.hosts.values() for n in (h.netns, h.port)}

    @held
    def host(self, name: str, address: str | None = None, *, mac: str | None = None) -> Host:
        """A new host: namespace `bpfkit-<name>`, its `eth0` (with `address`, e.g.
        "192.0.2.1/24", and `mac` if given) cabled to port `bpfkit-<name>-port` here."""
        self._check_open()
        netns, port = f"{PREFIX}{name}", f"{PREFIX}{name}-port"
        if not re.fullmatch(r"[a-z0-9]+", name) or len(port) > 15:
            raise UsageError(f"A host name must be 1 to 3 lower-case letters or digits, not {name!r}.",
                             "interface names are at most 15 characters: bpfkit-<name>-port.")
        if name in self.hosts:
            return self.hosts[name]
        elsewhere = lifetime.owners("netdev")
        owner = elsewhere.get(netns) or elsewhere.get(port)
        if owner:
            raise InUse(f"Host {netns!r} belongs to a lab of another running process (pid {owner}).",
                        "close that lab, or give your hosts other names.")
        for other in lifetime.held("lab").values():
            if other is not self and netns in other.names():
                other.close()
        # Leftovers of a crashed run with the same names.
        _ip("link", "del", port, check=False)
        if netns in netns_names():
            _ip("netns", "del", netns)
        host = Host(self, name, netns, port)
        self.hosts[name] = host
        lifetime.claim("netdev", netns, port)
        _ip("netns", "add", netns)
        lifetime.made("netdev")
        with inside(netns):  # no IPv6 chatter: the only frames are those a lesson sends
            _write_sysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1")
            _write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1")
        _ip("link", "add", port, "type", "veth", "peer", "name", host.dev, "netns", netns)
        lifetime.made("netdev")
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{port}/disable_ipv6", "1")
        # Never route lab frames onwards from this machine, whatever its ip_forward says.
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{port}/forwarding", "0")
        _ip("-n", netns, "link", "set", "lo", "up")
        if mac:
            _ip("-n", netns, "link", "set", host.dev, "address", mac)
        if address:
            _ip("-n", netns, "addr", "add", address, "dev", host.dev)
            host.address = address.split("/")[0]
        _ip("-n", netns, "link", "set", host.dev, "up")
        _ip("link", "set", port, "up")
        return host

    # -- XDP -------------------------------------------------------------------------------
    @held
    @atomic.whole
    def attach_xdp(self, program, dev: str, fn_name: str, mode: str = "skb", *,
                   netns: str | None = None) -> None:
        """Attach `program`'s function `fn_name` as the XDP program of interface `dev` (in the
        root namespace, or in `netns`); detached again when the lab closes. `mode` "skb" is
        generic XDP, which works on any interface; "native" needs driver support."""
        self._check_open()
        if mode not in XDP_MODES:
            raise UsageError(f"Unknown XDP mode {mode!r}.", f"use one of {sorted(set(XDP_MODES))}.")
        flags = XDP_MODES[mode]
        fn = program.load_func(fn_name, "xdp")
        with inside(netns) if netns else nullcontext():
            try:
                _bcc.attach_xdp(dev, fn, flags)
            except Exception as e:
                raise AttachError(f"Could not attach {fn_name!r} as the XDP program of {dev!r}"
                                  + (f" in {netns}" if netns else "") + f": {e}",
                                  "check the interface name (`ip -o link`); an interface has one "
                                  "XDP program per mode: detach another mode's first.") from None
        self._xdp[(netns, dev)] = flags
        lifetime.made("xdp")

    @atomic.whole
    def detach_xdp(self, dev: str, *, netns: str | None = None) -> None:
        flags = self._xdp.pop((netns, dev), None)
        if flags is None:
            return
        with inside(netns) if netns else nullcontext():
            if dev in link_names() or netns:
                try:
                    _bcc.remove_xdp(dev, flags)
                except Exception:
                    pass  # the interface went already, and its XDP program with it

    # -- lifetime --------------------------------------------------------------------------

    def _closed_error(self):
        return Closed(f"Lab {self.name!r} is closed: its hosts are gone.",
                      "make a new one: lab = bpfkit.lab.net.Lab().")


    @atomic.whole
    def close(self) -> None:
        """Close the hosts' sockets, detach XDP programs, delete cables and namespaces."""
        if self._guard.close():
            lifetime.discard("lab", self.name, self)

    @atomic.whole
    def _free(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        for netns, dev in list(self._xdp):
            try:
                self.detach_xdp(dev, netns=netns)
            except BpfkitError:
                pass
        for host in self.hosts.values():
            _ip("link", "del", host.port, check=False)  # both ends of the cable, at once
        for host in self.hosts.values():
            _ip("netns", "del", host.netns, check=False)
        lifetime.release("netdev", *self.names())

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"hosts: {', '.join(self.hosts) or 'none'}"
        return f"<bpfkit.lab.net.Lab {self.name!r} ({state})>"
