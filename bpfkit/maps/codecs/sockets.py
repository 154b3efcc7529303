"""Maps whose values are sockets: sockmap, sockhash, reuseport_sockarray.

You *write* an entry with a socket's file descriptor (only this process can name its socket
that way), and you *read back* the socket's cookie (see bpfkit.host.sockets). The kernel hands the
cookie out only if the map's value is 8 bytes wide; BCC's own BPF_SOCKHASH and BPF_SOCKMAP
declare a 4-byte value, and then every lookup from user space fails (the map still works
inside the kernel).

So a frame shows one row per socket: its key (for a sockhash keyed by a 4-tuple, the `local`
and `remote` addresses as "127.0.0.1:40000"; for the arrays the `index`) and its `cookie`;
`frame(sockets={"client": c, ...})` adds a first column naming the notebook's own sockets.
"""
from __future__ import annotations

import numpy as np

from ...core.errors import MapError
from ...host.sockets import address_columns, socket_names
from ..spec import MapSpec
from .base import Lookups, Table
from .references import Reference


class Sockets(Reference):
    family = "sockets"
    what = "a socket"
    options = {"sockets": None, "ports": "host"}

    def check_readable(self, spec: MapSpec) -> None:
        if spec.value_size != 8:
            raise MapError(
                f"Map {spec.name!r} is {spec.type.a} with a {spec.value_size}-byte value. The "
                "kernel shows user space a socket as its 8-byte cookie, and refuses to squeeze it "
                f"into {spec.value_size} bytes (ENOSPC), so its entries cannot be read from here. "
                "The map itself works: programs in the kernel can still use it.",
                "declare the map with a u64 value to read it. BCC's BPF_SOCKHASH and BPF_SOCKMAP "
                "always use a 4-byte int; bpf/05_sockmap_sockhash/sockmap_redirect.c shows BPF_SOCKHASH_U64, which "
                "declares the same map with a u64 value.")

    def key_columns(self, spec: MapSpec, keys: np.ndarray, objects=None, *, ports: str = "host",
                    **options) -> dict:
        columns = super().key_columns(spec, keys, objects)
        return columns if spec.type.key == "index" else address_columns(columns, ports)

    def value_columns(self, spec: MapSpec, values: np.ndarray, lookups: Lookups, **options) -> dict:
        return {"cookie": np.asarray(values).astype(np.uint64).reshape(-1)}

    def table(self, spec: MapSpec, keys: np.ndarray, values: np.ndarray, *, objects=None,
              lookups: Lookups | None = None, sockets=None, ports: str = "host", **options) -> Table:
        table = super().table(spec, keys, values, objects=objects, lookups=lookups, ports=ports)
        if sockets is not None:
            table.keys = {"socket": socket_names(table.values["cookie"].tolist(), sockets),
                          **table.keys}
        return table
