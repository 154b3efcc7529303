"""The data codec, which every family builds on: values are plain bytes the C code defines.

Keys are encoded by their kind (an index, a stored key, a file descriptor, or none), so the
key half of every codec is this one. A family that holds something else in its values
(programs, maps, devices, sockets) overrides the value half only.
"""
from __future__ import annotations

import ctypes as ct
from dataclasses import dataclass, field

import numpy as np

from ...core.errors import MapError
from .. import convert, layout
from ..spec import MapSpec, raw_type

NO_KEY = np.dtype([])  # keyless maps: a snapshot's key array has zero-byte records


@dataclass
class Table:
    """A snapshot as named columns, before renaming: `keys` and `values` map a column name to
    one array (or list) per row. `entry`, when set, gives for each row the snapshot entry it
    came from (a per-CPU map's long layout makes a row per CPU)."""
    keys: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    entry: np.ndarray | None = None

    def __len__(self) -> int:
        for column in (*self.keys.values(), *self.values.values()):
            return len(column)
        return 0 if self.entry is None else len(self.entry)


class Lookups:
    """What a codec may ask the kernel to name things. Map passes the real kernel's; tests
    pass their own."""

    def program_name(self, prog_id: int) -> str | None:
        return None

    def map_name(self, map_id: int) -> str | None:
        return None

    def interface_name(self, ifindex: int, netns: str | None = None) -> str | None:
        return None


class Codec:
    """Plain data: values are the C type the program declared, read and written as they are."""

    family = "data"
    # frame() options this family reads, with their defaults (Map.frame refuses the others).
    options: dict = {}

    # -- layouts -----------------------------------------------------------------------------
    def key_type(self, spec: MapSpec):
        if spec.type.key == "none":
            return None
        if spec.type.key == "fd":
            return ct.c_int
        return spec.key_type or raw_type(spec.key_size)

    def value_type(self, spec: MapSpec):
        """The C type of one value as user space reads and writes it."""
        return spec.value_type or raw_type(spec.value_size)

    def key_dtype(self, spec: MapSpec) -> np.dtype:
        kt = self.key_type(spec)
        return NO_KEY if kt is None else layout.dtype_of(kt)

    def value_dtype(self, spec: MapSpec) -> np.dtype:
        vt = self.value_type(spec)
        return NO_KEY if vt is None else layout.dtype_of(vt)

    # -- one entry -------------------------------------------------------------------------
    def encode_key(self, spec: MapSpec, key):
        """The key as C bytes (a ctypes object), or None for a keyless map. An "fd" key has
        been turned into its file descriptor number already (see Map)."""
        kt = self.key_type(spec)
        if kt is None:
            return None
        return convert.to_c(kt, key, "key")

    def encode_value(self, spec: MapSpec, value):
        return convert.to_c(self.value_type(spec), value, "value")

    def decode_key(self, spec: MapSpec, record):
        return layout.to_python(record)

    def decode_value(self, spec: MapSpec, record):
        return layout.to_python(record)

    # -- a whole snapshot ------------------------------------------------------------------
    def check_readable(self, spec: MapSpec) -> None:
        """Raise a MapError saying why user space cannot read this map's values, if it cannot."""
        mt = spec.type
        if mt.readable:
            return
        what, hint = _UNREADABLE.get(mt.values, _UNREADABLE["data"])
        raise MapError(f"Map {spec.name!r} is {mt.a}: {what}", hint)

    def key_columns(self, spec: MapSpec, keys: np.ndarray, objects=None, **options) -> dict:
        kind = spec.type.key
        if kind == "none":
            return {}
        if kind == "fd":
            return {"key": list(objects) if objects is not None else keys}
        if kind == "index":
            return {"index": keys}
        return layout.columns_of(keys, "", "key")

    def value_columns(self, spec: MapSpec, values: np.ndarray, lookups: Lookups, **options) -> dict:
        return layout.columns_of(values, "", "value")

    def table(self, spec: MapSpec, keys: np.ndarray, values: np.ndarray, *, objects=None,
              lookups: Lookups | None = None, **options) -> Table:
        lookups = lookups or Lookups()
        return Table(self.key_columns(spec, keys, objects, **options),
                     self.value_columns(spec, values, lookups, **options))


_UNREADABLE = {  # what a map's values are, when user space cannot read them, and what to do
    "events": ("a stream of records that user space reads in order, not entries to look up.",
               "read the records with bpfkit.observe.events.ring(prog[name]) or bpfkit.observe.events.perf(prog[name])."),
    "perf_event": ("its slots hold perf events (one per CPU), which user space cannot read back.",
                   "read the events with bpfkit.observe.events.perf(prog[name])."),
    "cgroup": ("its slots hold cgroups, which user space writes by file descriptor and cannot "
               "read back.", "ask a program that uses it (bpf_current_task_under_cgroup) instead."),
    "xsk_socket": ("its slots hold AF_XDP sockets, which user space writes by file descriptor and "
                   "cannot read back.", "count what reaches each socket instead."),
    "memory": ("pages of memory shared with programs, not entries to look up.",
               "map its pages into this process (mmap) to see them."),
    "data": ("it cannot list what it holds, only answer whether a value may be in it.",
             "ask about one value at a time: `value in m`."),
}
