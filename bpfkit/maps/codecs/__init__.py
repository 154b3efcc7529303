"""Codecs: one per family of map types, each pure. A codec knows how one family's keys and values
look from Python: how to encode a Python key or value into the map's bytes, how to decode one
entry, and how to turn the numpy arrays of a snapshot into named columns.

A codec does no system call and keeps no state: `Map` owns the file descriptor, every bpf()
call, the snapshot, the errors and the renaming of columns. What a codec needs from the
kernel to name things (a program's name for its id, an interface's for its ifindex) comes in
through `Lookups`, so every codec is tested on synthetic arrays without root.

Key columns follow one rule for every family, by the map type's key kind (see maptypes):
- "index" (arrays and their relatives): one column, `index`;
- "stored": `key` for a scalar key, or the C field names of a struct key (`pid`, `comm`);
- "fd" (local storage): `key`, holding the objects the values were looked up for;
- "none" (queue, stack, bloom filter): no key column.
"""
from __future__ import annotations

from ...core import maptypes
from .base import Codec, Lookups, Table  # noqa: F401
from .percpu import PerCpu, PerCpuColumn  # noqa: F401
from .references import InnerMaps, Programs, WriteOnly
from .devices import Cpus, Devices
from .sockets import Sockets

_BY_VALUES = {
    "data": Codec(), "stack": Codec(), "kernel_struct": Codec(), "memory": Codec(),
    "program": Programs(), "map": InnerMaps(), "device": Devices(), "cpu": Cpus(),
    "socket": Sockets(), "cgroup": WriteOnly(), "xsk_socket": WriteOnly(),
    "perf_event": WriteOnly(), "events": WriteOnly(),
}
_PER_CPU = PerCpu()
# Every frame() option some family reads, with its default.
OPTIONS = {k: v for codec in (*_BY_VALUES.values(), _PER_CPU) for k, v in codec.options.items()}


def for_type(map_type) -> Codec:
    """The codec of a map type (a MapType, its name or number)."""
    mt = maptypes.get(map_type)
    if mt.per_cpu:
        return _PER_CPU
    return _BY_VALUES.get(mt.values, _BY_VALUES["data"])


def option_types(option: str) -> list[str]:
    """The map types whose frame() reads `option` (for saying where an option applies)."""
    return [t.name for t in maptypes.TABLE if option in for_type(t).options]
