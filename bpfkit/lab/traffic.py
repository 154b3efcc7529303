"""Traffic of known shape: what the socket lessons send, so their maps' numbers can be checked.

`TcpPair` is a connected pair of loopback TCP sockets that sends known messages and checks every
byte; `ReuseportGroup` a reuseport group of UDP sockets and a sender; `tcp_transfer` one bulk
transfer under a chosen congestion control; `udp_from` datagrams from chosen source addresses
out of a lab host.
"""
from __future__ import annotations

import ipaddress
import json
import socket

from ..core import waiting
from ..core.errors import UsageError, WorkloadError
from ..host.netns import inside
from ..host.sockets import endpoint

# -- a TCP connection on loopback -----------------------------------------------------------------

_LOST_HINT = ("an sk_msg program that returns SK_DROP, or redirects to the wrong socket (or to its "
              "egress, without BPF_F_INGRESS), loses messages. Return SK_PASS, and redirect to the "
              "peer's key with BPF_F_INGRESS.")


class TcpPair:
    """A TCP client on 127.0.0.1 and the server-side socket it is connected to.

    Make it inside a cgroup (`with cg.inside(): pair = TcpPair()`) for the cgroup's sock_ops
    program to see both ends established. `exchange()` sends known messages and checks that
    every byte arrives, in order, whichever path the kernel took."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 5.0):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.client = self.server = None
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((host, port))
            listener.listen(1)
            listener.settimeout(timeout)
            self.client = socket.create_connection(listener.getsockname(), timeout=timeout)
            self.server, _ = listener.accept()
            self.server.settimeout(timeout)
        except BaseException:
            self.close()
            raise
        finally:
            listener.close()

    @property
    def sockets(self) -> dict[str, socket.socket]:
        return {"client": self.client, "server": self.server}

    @property
    def server_port(self) -> int:
        return self.server.getsockname()[1]

    def exchange(self, n: int, size: int, *, echo: bool = True) -> dict[str, int]:
        """The client sends `n` messages of `size` bytes, one send() each; the server reads
        each one whole and (with `echo`) sends it back. Returns the bytes each side received;
        raises if a byte is missing or wrong."""
        got = {"client→server": 0, "server→client": 0}
        for i in range(n):
            message = bytes([i % 251]) * size
            self._send(self.client, message, i, "client")
            got["client→server"] += self._receive(self.server, message, i, "server")
            if echo:
                self._send(self.server, message, i, "server")
                got["server→client"] += self._receive(self.client, message, i, "client")
        return got

    @staticmethod
    def _send(sock, message: bytes, i: int, who: str) -> None:
        try:
            sock.sendall(message)
        except OSError as e:  # an sk_msg verdict of SK_DROP fails the send() with EACCES
            raise WorkloadError(f"The {who} could not send message {i}: {e.strerror or e}.",
                                _LOST_HINT) from None

    @staticmethod
    def _receive(sock, expected: bytes, i: int, who: str) -> int:
        buf = bytearray(len(expected))
        view, have = memoryview(buf), 0
        try:
            while have < len(expected):
                n = sock.recv_into(view[have:])
                if n == 0:
                    break
                have += n
        except socket.timeout:
            pass
        if bytes(buf[:have]) != expected:
            raise WorkloadError(
                  f"Message {i} did not arrive whole at the {who}: {have} of {len(expected)} bytes"
                  + (" (and they differ from what was sent)." if have else "."), _LOST_HINT)
        return have

    def close(self) -> None:
        for sock in (self.client, self.server):
            if sock is not None:
                sock.close()

    def __enter__(self) -> "TcpPair":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.client is None or self.client.fileno() < 0:
            return "<bpfkit TcpPair (closed)>"
        return f"<bpfkit TcpPair client {endpoint(self.client.getsockname())} ⇄ server " \
               f"{endpoint(self.server.getsockname())}>"


def udp_from(host, sources: dict[str, int], to: str, port: int = 9000) -> int:
    """Exactly `n` UDP datagrams to `to`:`port` from each source address in `sources`
    ({"10.1.2.3": 5, ...}, sent in that order), out of `host`, a `bpfkit.lab.net` lab host.

    Each socket is bound to its source address, so the frames carry it; an address the host
    lacks is first added to its eth0 as a /32 (which adds no route), so one host stands in for
    many machines behind one cable. The host needs a route to `to`, and a neighbour entry for
    it if no ARP frame should reach the wire (`host.neighbour(to, mac)`). Returns how many
    datagrams were sent."""
    for address in sources:
        try:
            ipaddress.IPv4Address(address)
        except ValueError:
            raise UsageError(f"{address!r} is not an IPv4 address.",
                             'give source addresses like "10.1.2.3".') from None
    shown = json.loads(host.run("ip", "-j", "-4", "addr", "show", "dev", host.dev).stdout or "[]")
    present = {a.get("local") for link in shown for a in link.get("addr_info", [])}
    for address in sources:
        if address not in present:
            host.run("ip", "addr", "add", f"{address}/32", "dev", host.dev)
    sent = 0
    for address, n in sources.items():
        with inside(host.netns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.bind((address, 0))
            for _ in range(n):
                sock.sendto(b"bpfkit", (to, port))
        sent += n
    return sent


# -- a reuseport group of UDP sockets (lesson 18) ---------------------------------------------------

class ReuseportGroup:
    """`n` UDP sockets bound to one port of 127.0.0.1 with SO_REUSEPORT (a reuseport group),
    named "s0", "s1", ..., and one sender socket with a fixed source port.

    Make it inside a cgroup (`with cg.inside(): group = ReuseportGroup(4)`) for the cgroup's
    programs to see its sockets. `send([0, 0, 3])` sends one datagram per number, the number
    as the payload's first byte; `receive()` reads what each socket got."""

    def __init__(self, n: int = 4, host: str = "127.0.0.1"):
        self.sockets: dict[str, socket.socket] = {}
        self.sender = None
        self.host, self.port = host, 0
        try:
            for i in range(n):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.sockets[f"s{i}"] = sock
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((host, self.port))
                sock.setblocking(False)
                self.port = sock.getsockname()[1]
            self.sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sender.bind((host, 0))
        except BaseException:
            self.close()
            raise

    def send(self, first_bytes) -> int:
        """One datagram per number in `first_bytes` (0-255), that number as its first byte."""
        n = 0
        for b in first_bytes:
            self.sender.sendto(bytes([b]) + b"bpfkit", (self.host, self.port))
            n += 1
        return n

    def receive(self, expect: int | None = None, timeout: float = 1.0) -> dict[str, int]:
        """Datagrams each socket received since the last call (read and counted). Waits until
        `expect` datagrams arrived in all (or `timeout` seconds); without `expect`, reads
        what is there, lets 10 ms pass, and reads again."""
        got = dict.fromkeys(self.sockets, 0)

        def read_all() -> bool:
            for name, sock in self.sockets.items():
                while True:
                    try:
                        sock.recv(2048)
                    except (BlockingIOError, InterruptedError):
                        break
                    got[name] += 1
            return expect is not None and sum(got.values()) >= expect

        waiting.until(read_all, 0.01 if expect is None else timeout, every=0.002)
        return got

    def close(self) -> None:
        for sock in [*self.sockets.values(), self.sender]:
            if sock is not None:
                sock.close()

    def __enter__(self) -> "ReuseportGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<bpfkit ReuseportGroup of {len(self.sockets)} UDP sockets on {self.host}:{self.port}>"


def tcp_transfer(nbytes: int, congestion: str, mss: int = 1000) -> dict:
    """Send `nbytes` over one loopback TCP connection whose sender chose the congestion control
    `congestion` (setsockopt TCP_CONGESTION) and segments of `mss` bytes (TCP_MAXSEG); a thread
    receives them. Returns {"congestion": what the socket reported (getsockopt TCP_CONGESTION),
    "sent": nbytes, "received": bytes the receiver counted}. Lesson 19."""
    import socket
    import threading
    server = socket.socket()
    sender = socket.socket()
    got = {}
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sender.connect(server.getsockname())
        reported = sender.getsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16)

        def receive():
            conn, _ = server.accept()
            with conn:
                n = 0
                while data := conn.recv(1 << 16):
                    n += len(data)
                got["received"] = n

        receiver = threading.Thread(target=receive, daemon=True)
        receiver.start()
        sender.sendall(b"x" * nbytes)
        sender.close()
        receiver.join(timeout=10)
    finally:
        sender.close()
        server.close()
    return {"congestion": reported.split(b"\0")[0].decode(), "sent": nbytes,
            "received": got.get("received", 0)}
