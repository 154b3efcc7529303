"""The notebook's own sockets next to what maps say of sockets: cookies and addresses.

The kernel names a socket to user space by its cookie, a 64-bit number it gives each socket
once, for life, and that any process can ask for with getsockopt(SO_COOKIE). Maps keyed by a
connection's 4-tuple store its addresses as the kernel keeps them. These turn both into
something a learner recognises: "127.0.0.1:40000", and the names of their own sockets.

Key byte order: a key field named `<side>_ip4` (or `<side>_ip`) with a `<side>_port` becomes
the column `<side>`. The address is read in network byte order (as `skops->local_ip4` gives it:
the four bytes in wire order); the port in host byte order (convert `remote_port` with
`bpf_ntohl()` in C; `local_port` is host order already), or pass `ports="network"` for a port
kept as `bpf_htons()` gives it.
"""
from __future__ import annotations

import os
import re
import socket
import sys

import numpy as np
import pandas as pd

from ..core.errors import UsageError


# SO_COOKIE is 57 in the kernel's generic socket options (x86, arm64, riscv, ...), which
# Python's socket module may not name. parisc and sparc number it differently.
SO_COOKIE = getattr(socket, "SO_COOKIE", 57)
PORT_ORDERS = ("host", "network")


def socket_cookie(sock) -> int:
    """The kernel's cookie for `sock` (a socket object or fd): what a sockmap lookup returns."""
    if isinstance(sock, int):
        with socket.socket(fileno=os.dup(sock)) as s:
            return socket_cookie(s)
    return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_COOKIE, 8), sys.byteorder)


def endpoint(address) -> str:
    """("127.0.0.1", 40000) -> "127.0.0.1:40000"; "" for no address."""
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
        rows.append({"socket": str(name), "local": endpoint(sock.getsockname()),
                     "remote": endpoint(remote), "cookie": socket_cookie(sock)})
    frame = pd.DataFrame(rows, columns=["socket", "local", "remote", "cookie"])
    frame["cookie"] = frame["cookie"].astype(np.uint64)
    return frame


def _ipv4(values: np.ndarray) -> list[str]:
    # The bytes as the map stores them are the address in wire order, on any CPU.
    raw = np.ascontiguousarray(values, dtype=np.uint32).view(np.uint8).reshape(-1, 4)
    return [".".join(map(str, row)) for row in raw.tolist()]


def _ports(values: np.ndarray, order: str) -> np.ndarray:
    if order not in PORT_ORDERS:
        raise UsageError(f"frame(ports=...) is one of {PORT_ORDERS}, not {order!r}.",
                         'ports="host" shows port numbers as people write them; "network" as the '
                         "map stores them.")
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


def socket_names(cookies, sockets) -> pd.array:
    """The name of each cookie's socket among the notebook's `sockets` (None for others)."""
    ours = sockets_frame(sockets)
    by = dict(zip(ours["cookie"].tolist(), ours["socket"]))
    return pd.array([by.get(c) for c in cookies], dtype=object)


def join_sockets(frame: pd.DataFrame, sockets) -> pd.DataFrame:
    """`frame` with a first column `socket` naming the rows that are the notebook's own
    sockets (None for the others): by `cookie` if the frame has one, else by local+remote."""
    if "cookie" in frame.columns:
        names = socket_names(frame["cookie"].tolist(), sockets)
    else:
        ours = sockets_frame(sockets)
        by = {(l, r): n for n, l, r in zip(ours["socket"], ours["local"], ours["remote"])}
        names = pd.array([by.get(k) for k in zip(frame["local"], frame["remote"])], dtype=object)
    out = frame.copy()
    out.insert(0, "socket", names)
    return out
