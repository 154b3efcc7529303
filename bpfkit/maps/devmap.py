"""Device maps (`BPF_DEVMAP`, and `devmap_hash`): where an XDP program's frames go out.

Each entry holds a network interface, stored as its ifindex. An XDP program returns
`tx_port.redirect_map(slot, 0)` and the kernel transmits the frame out of the interface in that
slot, without the frame ever climbing the network stack. An ifindex is only a number within
one network namespace: the kernel resolves it in the namespace of the process that writes the
entry, and `frame()` names it in the namespace this process is in (or in `netns=`).
"""
from __future__ import annotations

import ctypes as ct
import socket

import numpy as np
import pandas as pd

from ..errors import MapError
from . import family, layout, snapshot
from .map import Map


@family.register("devmap", "devmap_hash")
class DevMap(Map):
    """`tx_port[slot] = "eth1"` (a name, or an ifindex) sends that slot's frames out of eth1."""

    def __init__(self, program, name, fd, key_type, value_type):
        super().__init__(program, name, fd, key_type, value_type)
        # The value is the ifindex; a devmap made with struct bpf_devmap_val also carries the
        # id of a program run on each frame before it leaves.
        if self.value_size == 8:
            self.value_type = _DevmapVal
        else:
            self.value_type = ct.c_uint32
        self.value_dtype = layout.dtype_of(self.value_type)
        self.value_buffer_size = self.value_dtype.itemsize

    @property
    def key_column(self) -> str:
        return "slot" if self.type == "devmap" else "key"

    def _value(self, value):
        ifindex = self._ifindex(value)
        if self.value_size == 8:
            return _DevmapVal(ifindex, 0)
        return ct.c_uint32(ifindex)

    def _ifindex(self, value) -> int:
        if isinstance(value, str):
            try:
                return socket.if_nametoindex(value)
            except OSError:
                raise MapError(f"There is no interface named {value!r} in this network namespace.",
                               "list them with `ip -o link`; an interface inside another namespace "
                               "is only visible there.") from None
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
            return int(value)
        raise MapError(f"A devmap entry is a network interface: a name or an ifindex, not {value!r}.",
                       f"write {self.name}[slot] = \"eth0\", or an ifindex from socket.if_nametoindex().")

    def update(self, key, value, flags: int = 0):
        k, v = self._key(key), self._value(value)
        from ..kernel import libbpf
        err = libbpf().bpf_map_update_elem(self.fd, ct.byref(k), ct.byref(v), flags)
        if err:
            ifindex = self._ifindex(value)
            if -err in (19, 22) and not _exists(ifindex):  # the kernel says EINVAL (older: ENODEV)
                raise MapError(f"The kernel has no interface with ifindex {ifindex} "
                               "in this network namespace.",
                               "a devmap entry is resolved in the writer's namespace: write it from the "
                               "namespace the interface is in (bpfkit.net.inside(netns)).") from None
            if -err == 7:
                raise MapError(f"Slot {key!r} is outside {self.name!r}, which has "
                               f"{self.max_entries} slots (0 to {self.max_entries - 1}).",
                               "use a smaller slot, or a larger max_entries in BPF_DEVMAP(name, n).") from None
            self._fail("update", -err, key)

    def _decode_value(self, raw):
        record = np.frombuffer(bytes(raw), dtype=self.value_dtype, count=1)[0]
        return layout.to_python(record)

    def frame(self, columns=None, *, netns: str | None = None, **names) -> pd.DataFrame:
        """One row per filled slot: `slot` (`key` for a devmap_hash), `ifindex` and the
        interface's `name` here (None when no interface here has that ifindex), or in
        network namespace `netns`."""
        keys, values = snapshot.read(self)
        data = layout.columns_of(keys, "", self.key_column)
        if self.value_size == 8:
            data["ifindex"] = values["ifindex"].astype(np.uint32)
            data["prog_id"] = values["prog_id"].astype(np.uint32)
        else:
            data["ifindex"] = values.astype(np.uint32)
        data["name"] = pd.array(_names(data["ifindex"].tolist(), netns), dtype=object)
        frame = pd.DataFrame(data)
        if "prog_id" in frame:
            frame = frame[[c for c in frame.columns if c != "prog_id"] + ["prog_id"]]
        return layout.rename(frame, columns, **names) if (columns is not None or names) else frame


def _exists(ifindex: int) -> bool:
    try:
        socket.if_indextoname(ifindex)
    except OSError:
        return False
    return True


class _DevmapVal(ct.Structure):
    _fields_ = [("ifindex", ct.c_uint32), ("prog_id", ct.c_uint32)]


def _names(ifindexes: list[int], netns: str | None) -> list[str | None]:
    def lookup():
        out = []
        for i in ifindexes:
            try:
                out.append(socket.if_indextoname(i))
            except OSError:
                out.append(None)
        return out
    if netns is None:
        return lookup()
    from ..net import inside
    with inside(netns):
        return lookup()
