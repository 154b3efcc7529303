"""Sockmaps and sockhashes (`BPF_SOCKMAP`, `BPF_SOCKHASH`): maps whose entries are sockets.

As with program arrays, the kernel's interface is asymmetric. You *write* an entry with a
socket's file descriptor (only this process can name its socket that way), and you *read back*
the socket's cookie: a 64-bit number the kernel gives each socket once, for life, and that any
process can ask for with getsockopt(SO_COOKIE). The kernel hands the cookie out only if the map's
value is 8 bytes wide; BCC's own BPF_SOCKHASH/BPF_SOCKMAP declare a 4-byte value, and then every
lookup from user space fails with ENOSPC (the map still works inside the kernel).

So `frame()` shows one row per socket: its key (for a sockhash keyed by a 4-tuple, the
`local` and `remote` addresses as "127.0.0.1:40000"; for a sockmap the `index`) and its
`cookie`, and `frame(sockets=...)` joins the rows to the notebook's own sockets by cookie.

Key byte order: a key field named `<side>_ip4` (or `<side>_ip`) with a `<side>_port` becomes
the column `<side>`. The address is read in network byte order (as `skops->local_ip4` gives it:
the four bytes in wire order); the port in host byte order (convert `remote_port` with
`bpf_ntohl()` in C; `local_port` is host order already), or pass `ports="network"` to `frame()`
for a port kept as `bpf_htons()` gives it.

`TcpPair` makes the two local sockets a sockmap lesson redirects between.
"""
from __future__ import annotations

import errno
import os
import re
import socket
import sys

import numpy as np
import pandas as pd

from .. import kernel
from ..errors import AttachError, BpfkitError, MapError
from . import family, layout, snapshot
from .map import Map

# SO_COOKIE is 57 in the kernel's generic socket options (x86, arm64, riscv, ...), which
# Python's socket module may not name. parisc and sparc number it differently.
SO_COOKIE = getattr(socket, "SO_COOKIE", 57)
ATTACH_TYPES = {"msg_verdict": "sk_msg_verdict", "stream_parser": "sk_skb_stream_parser",
                "stream_verdict": "sk_skb_stream_verdict", "skb_verdict": "sk_skb_verdict"}


def socket_cookie(sock) -> int:
    """The kernel's cookie for `sock` (a socket object or fd): what a sockmap lookup returns."""
    if isinstance(sock, int):
        with socket.socket(fileno=os.dup(sock)) as s:
            return socket_cookie(s)
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), sys.byteorder)


def _endpoint(address) -> str:
    if not address:
        return ""
    host, port = address[:2]
    return f"{host}:{port}"


def sockets_frame(sockets) -> pd.DataFrame:
    """The notebook's own sockets: `socket` (its name), `local`, `remote` and `cookie`.

    `sockets` is a dict {name: socket} or a list of sockets (then named by position)."""
    items = sockets.items() if isinstance(sockets, dict) else enumerate(sockets)
    rows = []
    for name, sock in items:
        try:
            remote = sock.getpeername()
        except OSError:
            remote = None  # listening, or not connected
        rows.append({"socket": str(name), "local": _endpoint(sock.getsockname()),
                     "remote": _endpoint(remote), "cookie": socket_cookie(sock)})
    frame = pd.DataFrame(rows, columns=["socket", "local", "remote", "cookie"])
    frame["cookie"] = frame["cookie"].astype(np.uint64)
    return frame


def _ipv4(values: np.ndarray) -> list[str]:
    # The bytes as the map stores them are the address in wire order, on any CPU.
    raw = np.ascontiguousarray(values, dtype=np.uint32).view(np.uint8).reshape(-1, 4)
    return [".".join(map(str, row)) for row in raw.tolist()]


def _ports(values: np.ndarray, order: str) -> np.ndarray:
    values = np.asarray(values).astype(np.uint32)
    if order == "network" and sys.byteorder == "little":
        low = values & 0xFFFF
        return ((low >> 8) | ((low & 0xFF) << 8)).astype(np.uint32)
    return values


def address_columns(columns: dict, ports: str = "host") -> dict:
    """Fold `<side>_ip4`/`<side>_port` key columns into one "ip:port" column per side."""
    out, used = {}, set()
    for name in columns:
        m = re.fullmatch(r"(.*?)_?ip4?", name)
        if not m or not m.group(1):
            continue
        side = m.group(1)
        port = next((p for p in (f"{side}_port", f"{side}port") if p in columns), None)
        if port is None:
            continue
        hosts = _ipv4(np.asarray(columns[name]))
        numbers = _ports(columns[port], ports).tolist()
        out[side] = pd.array([f"{h}:{p}" for h, p in zip(hosts, numbers)], dtype=object)
        used |= {name, port}
    rest = {n: c for n, c in columns.items() if n not in used}
    return {**out, **rest}


def addresses(frame: pd.DataFrame, ports: str = "host") -> pd.DataFrame:
    """A frame of any map keyed by a 4-tuple (a counter next to the sockhash, say) with its
    `<side>_ip4`/`<side>_port` columns folded into `local`, `remote` as "ip:port"."""
    return pd.DataFrame(address_columns({c: frame[c].to_numpy() for c in frame.columns}, ports))


def join_sockets(frame: pd.DataFrame, sockets) -> pd.DataFrame:
    """`frame` with a first column `socket` naming the rows that are the notebook's own
    sockets (None for the others): by `cookie` if the frame has one, else by local+remote."""
    ours = sockets_frame(sockets)
    if "cookie" in frame.columns:
        by = dict(zip(ours["cookie"].tolist(), ours["socket"]))
        names = [by.get(c) for c in frame["cookie"].tolist()]
    else:
        by = {(l, r): n for n, l, r in zip(ours["socket"], ours["local"], ours["remote"])}
        names = [by.get(k) for k in zip(frame["local"], frame["remote"])]
    out = frame.copy()
    out.insert(0, "socket", pd.array(names, dtype=object))
    return out


@family.register("sockmap", "sockhash")
class SockMap(Map):
    """A sockmap or sockhash: write sockets (objects or fds), read cookies."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self._attached: list[tuple[int, int]] = []  # (prog fd, attach type)

    # -- the 8-byte rule -------------------------------------------------------------------
    def _require_cookies(self) -> None:
        if self.value_size != 8:
            raise MapError(
                f"Map {self.name!r} is a {self.type} with a {self.value_size}-byte value. The kernel "
                "shows user space a socket as its 8-byte cookie, and refuses to squeeze it into "
                f"{self.value_size} bytes (ENOSPC), so its entries cannot be read from here. The map "
                "itself works: programs in the kernel can still use it.",
                "declare the map with a u64 value to read it. BCC's BPF_SOCKHASH and BPF_SOCKMAP "
                "always use a 4-byte int; bpf/sockmap_redirect.c shows BPF_SOCKHASH_U64, which "
                "declares the same map with a u64 value.")

    def _fail(self, op: str, err: int, key=None):
        if err == errno.ENOSPC:
            self._require_cookies()
        if op == "update" and err in (errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
            raise MapError(f"The kernel refused to put that socket into {self.name!r}: "
                           f"{os.strerror(err)}.",
                           "a sockmap takes a TCP socket that is connected (established) or "
                           "listening, or a UDP or Unix socket, given as the socket or its fd.")
        if op == "update" and err == errno.EBUSY:
            raise MapError(f"That socket is already in another map with its own programs: "
                           f"{os.strerror(err)}.",
                           "a socket can run only one sk_msg program: remove it from the other map.")
        super()._fail(op, err, key)

    # -- dict-like access: sockets in, cookies out -----------------------------------------
    def __getitem__(self, key) -> int:
        """The cookie of the socket at `key`."""
        self._require_cookies()
        return super().__getitem__(key)

    def update(self, key, sock, flags: int = 0):
        """Put `sock` (a socket object or its fd) at `key`."""
        fd = sock if isinstance(sock, (int, np.integer)) else sock.fileno()
        super().update(key, int(fd), flags)

    def items(self) -> list[tuple]:
        self._require_cookies()
        return super().items()

    def keys(self) -> list:
        self._require_cookies()  # else every lookup fails, and the map would look empty
        return super().keys()

    def __len__(self) -> int:
        return len(self.keys())

    def frame(self, columns=None, *, sockets=None, ports: str = "host", **names) -> pd.DataFrame:
        """The sockets in the map now: the key (`local`, `remote` for an address key; `index`
        for a sockmap) and `cookie`. `sockets={"client": c, ...}` adds a `socket` column naming
        the rows that are the notebook's own sockets (joined by cookie; None for others)."""
        self._require_cookies()
        keys, values = snapshot.read(self)
        if self.type == "sockmap":
            data = {"index": np.asarray(keys).astype(np.uint32)}
        else:
            data = address_columns(layout.columns_of(keys, "", "key"), ports)
        data["cookie"] = np.asarray(values).astype(np.uint64).reshape(-1)
        frame = pd.DataFrame(data)
        if sockets is not None:
            frame = join_sockets(frame, sockets)
        return layout.rename(frame, columns, **names) if (columns is not None or names) else frame

    # -- programs attached to the map ------------------------------------------------------
    def attach(self, fn, attach_type: str = "msg_verdict") -> None:
        """Attach a loaded sk_msg (or sk_skb) function to this map: it then runs for every
        socket put into the map *after* this call (attach first, then add sockets).

        This is BCC's `BPF.attach_func(fn, map.fd, BPFAttachType.SK_MSG_VERDICT)`. Closing the
        program frees the map, and the kernel drops the attachment with it; `detach()` drops
        it earlier."""
        name = ATTACH_TYPES.get(attach_type, attach_type)
        if name not in kernel.ATTACH_TYPES:
            raise AttachError(f"Unknown sockmap attach type {attach_type!r}.",
                              f"use one of {sorted(ATTACH_TYPES)}.")
        kind = kernel.ATTACH_TYPES[name]
        prog_fd = fn if isinstance(fn, int) else fn.fd
        err = kernel.libbpf().bpf_prog_attach(prog_fd, self.fd, kind, 0)
        if err:
            raise AttachError(
                f"Could not attach that program to {self.name!r} as {attach_type}: "
                f"{os.strerror(-err)}.",
                "load it with the matching type: prog.load_func('fn', BPF.SK_MSG) for "
                "msg_verdict, BPF.SK_SKB for the stream and skb ones.")
        self._attached.append((prog_fd, kind))

    def attached(self) -> list[int]:
        """Ids of the programs attached to this map (all attach types)."""
        ids = []
        for kind in sorted({kernel.ATTACH_TYPES[n] for n in ATTACH_TYPES.values()}):
            try:
                ids += kernel.attached_prog_ids(self.fd, kind)
            except OSError:
                pass  # kernels before 5.19 cannot list them
        return ids

    def detach(self) -> None:
        """Detach what `attach()` attached (nothing to do once the program is closed: the
        kernel released it with the map)."""
        attached, self._attached = self._attached, []
        if self.program is not None and self.program.closed:
            return
        for prog_fd, kind in attached:
            kernel.libbpf().bpf_prog_detach2(prog_fd, self.fd, kind)


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

    @property
    def client_port(self) -> int:
        return self.client.getsockname()[1]

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
            raise BpfkitError(f"The {who} could not send message {i}: {e.strerror or e}.",
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
            raise BpfkitError(
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
        return f"<bpfkit TcpPair client {_endpoint(self.client.getsockname())} ⇄ server " \
               f"{_endpoint(self.server.getsockname())}>"
