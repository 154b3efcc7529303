"""`MapSpec`: what a map is, apart from the kernel object: its type, sizes and C types.

A codec turns Python values into a map's bytes and a snapshot's arrays into a DataFrame. It
needs to know the map's shape and nothing else, so it gets a MapSpec, which a test can build
by hand without root, a kernel or BCC.
"""
from __future__ import annotations

import ctypes as ct
from dataclasses import dataclass
from pathlib import Path

from ..core.maptypes import MapType


@dataclass(frozen=True)
class MapSpec:
    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int = 0
    flags: int = 0
    map_extra: int = 0
    key_type: object = None    # ctypes type of a key as the C code declared it (None: unknown)
    value_type: object = None  # ctypes type of one value (one CPU's, for a per-CPU map)
    cpus: int = 1              # value slots per entry of a per-CPU map


def raw_type(size: int):
    """A stand-in C type for bytes whose declaration we do not know: an unsigned int of that
    size, or an array of bytes (None for no bytes at all)."""
    if not size:
        return None
    return {1: ct.c_uint8, 2: ct.c_uint16, 4: ct.c_uint32, 8: ct.c_uint64}.get(size, ct.c_ubyte * size)


def possible_cpus() -> int:
    """How many value slots the kernel returns per entry of a per-CPU map."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count
