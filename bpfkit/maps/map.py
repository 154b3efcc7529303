"""`Map`: one BPF map of a loaded program, seen from Python.

A typed face over the kernel object, in the spirit of cilium/ebpf's Map: dict-like access with
Python keys and values checked against the C types, iteration, and `frame()` for a whole
snapshot as a tidy DataFrame. All operations go to the kernel through libbpf by fd, so the same
class serves map types BCC's own Python cannot wrap (sockmap, sockhash, storage maps).
"""
from __future__ import annotations

import ctypes as ct
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .. import kernel
from ..errors import MapError, MapFull, ProgramClosed
from . import codec, layout, snapshot

# Map types whose keys always exist (a slot per index, preallocated and zeroed).
ARRAY_TYPES = {"array", "percpu_array", "prog_array", "perf_event_array", "cgroup_array",
               "array_of_maps", "devmap", "cpumap", "xskmap", "sockmap"}
PERCPU_TYPES = {"percpu_hash", "percpu_array", "lru_percpu_hash"}


def possible_cpus() -> int:
    """How many value slots the kernel returns per entry of a per-CPU map."""
    text = Path("/sys/devices/system/cpu/possible").read_text().strip()
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi or lo) - int(lo) + 1
    return count


class Map:
    """A live BPF map. Reads go to the kernel each time: nothing is cached."""

    def __init__(self, program, name: str, fd: int, key_type, value_type):
        self.program = program
        self.name = name
        self._fd = fd
        self.key_type = key_type
        self.value_type = value_type
        info = kernel.map_info_by_fd(fd)
        self.id: int = info["id"]
        self.type: str = info["type"]
        self.key_size: int = info["key_size"]
        self.value_size: int = info["value_size"]
        self.max_entries: int = info["max_entries"]
        self.flags: int = info["flags"]
        self.percpu = self.type in PERCPU_TYPES
        self.key_dtype = layout.dtype_of(key_type)
        if self.percpu:
            # The kernel hands back one value per possible CPU, each rounded up to 8 bytes.
            slot = -(-self.value_size // 8) * 8
            one = layout.dtype_of(value_type)
            self.cpus = possible_cpus()
            padded = np.dtype({"names": ["v"], "formats": [one], "offsets": [0], "itemsize": slot})
            self.value_dtype = np.dtype((padded, (self.cpus,)))
        else:
            self.value_dtype = layout.dtype_of(value_type)
        self.value_buffer_size = self.value_dtype.itemsize

    # -- plumbing --------------------------------------------------------------------------
    @property
    def fd(self) -> int:
        if self.program is not None and self.program.closed:
            raise ProgramClosed(
                f"Map {self.name!r} belonged to program {self.program.name!r}, which is closed "
                "(or was replaced when its cell ran again), so the map is gone from the kernel.",
                f"use the new program's map: prog[{self.name!r}] after loading it again.")
        return self._fd

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: a typo such as .fram() or .itmes().
        if name.startswith("_"):
            raise AttributeError(name)
        from ..errors import no_attribute
        raise no_attribute(self, name, dir(type(self)) + list(self.__dict__))

    def __repr__(self) -> str:
        return (f"<bpfkit.Map {self.name!r} {self.type} id={self.id} key={codec.c_name(self.key_type)} "
                f"value={codec.c_name(self.value_type)} max_entries={self.max_entries}>")

    def _key(self, key):
        return codec.to_c(self.key_type, key, "key")

    def _value(self, value):
        if self.percpu:
            # One value for every CPU, or one list with a value per CPU.
            per_cpu = value if isinstance(value, (list, tuple)) and len(value) == self.cpus \
                else [value] * self.cpus
            raw = bytearray(self.value_buffer_size)
            slot = self.value_dtype.base.itemsize
            for cpu, v in enumerate(per_cpu):
                one = bytes(codec.to_c(self.value_type, v, "value"))
                raw[cpu * slot:cpu * slot + len(one)] = one
            return ct.create_string_buffer(bytes(raw), len(raw))
        return codec.to_c(self.value_type, value, "value")

    def _decode_value(self, raw):
        record = np.frombuffer(bytes(raw), dtype=self.value_dtype, count=1)[0]
        if self.percpu:
            return [layout.to_python(r["v"]) for r in record]
        return layout.to_python(record)

    def _fail(self, op: str, err: int, key=None):
        if err == 7:  # E2BIG
            raise MapFull(
                f"Map {self.name!r} is full: it holds at most max_entries={self.max_entries} entries, "
                "and a new key needs a free one.",
                "delete entries you no longer need, update existing keys only, or give the map a "
                "larger max_entries in C (e.g. BPF_HASH(name, key_t, value_t, 10240)) and load again.")
        raise MapError(f"Could not {op} map {self.name!r}"
                       + (f" at key {key!r}" if key is not None else "")
                       + f": {os.strerror(err)}.",
                       _HINTS.get(err, ""))

    # -- dict-like access ------------------------------------------------------------------
    def __getitem__(self, key):
        k = self._key(key)
        buf = ct.create_string_buffer(self.value_buffer_size)
        err = kernel.libbpf().bpf_map_lookup_elem(self.fd, ct.byref(k), buf)
        if err:
            if -err == 2:
                raise KeyError(key)
            self._fail("read", -err, key)
        return self._decode_value(buf)

    def get(self, key, default=None):
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key, value):
        self.update(key, value)

    def update(self, key, value, flags: int = 0):
        k, v = self._key(key), self._value(value)
        err = kernel.libbpf().bpf_map_update_elem(self.fd, ct.byref(k), ct.byref(v), flags)
        if err:
            self._fail("update", -err, key)

    def __delitem__(self, key):
        k = self._key(key)
        err = kernel.libbpf().bpf_map_delete_elem(self.fd, ct.byref(k))
        if err:
            if -err == 2:
                raise KeyError(key)
            if -err == 22 and self.type in ARRAY_TYPES:
                raise MapError(f"Map {self.name!r} is an {self.type}: its slots always exist, "
                               "so they cannot be deleted.",
                               "set the slot to zero instead: m[index] = 0.")
            self._fail("delete from", -err, key)

    def __contains__(self, key) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def keys(self) -> list:
        keys, _ = snapshot.read(self)
        return [layout.to_python(k) for k in keys]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self) -> int:
        return len(snapshot.read(self)[0])

    def items(self) -> list[tuple]:
        keys, values = snapshot.read(self)
        if self.percpu:
            return [(layout.to_python(k), [layout.to_python(x["v"]) for x in v])
                    for k, v in zip(keys, values)]
        return [(layout.to_python(k), layout.to_python(v)) for k, v in zip(keys, values)]

    def values(self) -> list:
        return [v for _, v in self.items()]

    def clear(self) -> None:
        """Delete every entry (arrays: zero every slot)."""
        keys, _ = snapshot.read(self)
        zero = bytes(self.value_buffer_size)
        for k in keys:
            raw = ct.create_string_buffer(k.tobytes(), self.key_size)
            if self.type in ARRAY_TYPES:
                kernel.libbpf().bpf_map_update_elem(self.fd, raw, ct.create_string_buffer(zero, len(zero)), 0)
            else:
                kernel.libbpf().bpf_map_delete_elem(self.fd, raw)

    # -- whole-map snapshots ---------------------------------------------------------------
    def frame(self, columns=None, *, per_cpu: str = "long", method: str = "auto", **names) -> pd.DataFrame:
        """The map now, one row per entry: `key`/`value`, or the C field names of structs.

        `columns=` (a dict, or a list in column order) or keywords rename columns for a
        lesson: `frame(key="uid", value="count")`. A per-CPU map gives one row per (entry, cpu)
        with a `cpu` column; `per_cpu="wide"` gives one row per entry with a `value_cpu0`,
        `value_cpu1`, ... column per CPU, and `per_cpu="sum"` adds the CPUs up.
        `method` forces how the map is read ("batch", "iterate", "mmap"; see snapshot.read).
        """
        keys, values = snapshot.read(self, method=method)
        if self.percpu:
            return percpu_frame(keys, values, per_cpu, columns, names)
        frame = layout.to_frame(keys, values, copy=False)
        return layout.rename(frame, columns, **names) if (columns is not None or names) else frame

    def update_batch(self, keys, values, flags: int = 0) -> int:
        """Set many entries in one go (BPF_MAP_UPDATE_BATCH): `keys` and `values` are arrays
        (numpy or lists) in the map's types; a per-CPU map takes one value per entry for every
        CPU, or an (entries, cpus) array. Returns how many entries were written."""
        return snapshot.write(self, keys, values, flags)

    # -- memory-mapped arrays ------------------------------------------------------------
    @property
    def mmapable(self) -> bool:
        """An array made with BPF_F_MMAPABLE: user space can read it as plain memory."""
        return snapshot.is_mmapable(self)

    def view(self, writable: bool = False) -> np.ndarray:
        """The array's values as a live numpy array over the kernel's own memory.

        No system call per read: `view()[i]` is what the BPF program wrote last. Only arrays
        made with BPF_F_MMAPABLE can do this. After the program closes, a view still held
        reads zeros. `writable=True` lets user space write slots directly (no atomicity).
        """
        if not self.mmapable:
            raise MapError(
                f"Map {self.name!r} ({self.type}) is not memory-mappable, so it has no live view.",
                'only arrays can be, declared with the flag: BPF_F_TABLE("array", u32, u64, '
                f'{self.name}, N, BPF_F_MMAPABLE). Use .frame() to read any map.')
        return snapshot.mapping(self).array(writable)

    def _closing(self) -> None:
        """The program is closing: let go of anything that would keep the map alive."""
        current = getattr(self, "_mapping", None)
        if current is not None:
            current.release()


PER_CPU_LAYOUTS = ("long", "wide", "sum")


def percpu_frame(keys: np.ndarray, values: np.ndarray, per_cpu: str = "long", columns=None,
                 names: dict | None = None) -> pd.DataFrame:
    """A per-CPU snapshot as a frame: `long` (a row per entry and CPU, with a `cpu` column),
    `wide` (a row per entry, a value column per CPU) or `sum` (a row per entry, CPUs added)."""
    names = names or {}
    if per_cpu not in PER_CPU_LAYOUTS:
        raise ValueError(f"per_cpu must be one of {PER_CPU_LAYOUTS}, not {per_cpu!r}")
    per = values["v"]  # (entries, cpus)
    if per_cpu == "long":
        frame = _percpu_frame(keys, values)
    elif per_cpu == "sum":
        frame = layout.to_frame(keys, _sum_cpus(per), copy=False)
    else:
        first = layout.to_frame(keys, per[:, 0], copy=False)
        n_keys = len(layout.columns_of(keys, "", "key"))
        if columns is not None or names:  # rename the base names, then add the CPU suffix
            first = layout.rename(first, columns, **names)
            columns, names = None, {}
        data = {c: first[c] for c in first.columns[:n_keys]}
        value_cols = list(first.columns[n_keys:])
        for cpu in range(per.shape[1]):
            cols = layout.columns_of(per[:, cpu], "", "value").values()
            for base, column in zip(value_cols, cols):
                data[f"{base}_cpu{cpu}"] = column
        frame = pd.DataFrame(data, copy=False)
        frame.index = pd.RangeIndex(len(frame))
    return layout.rename(frame, columns, **names) if (columns is not None or names) else frame


def _percpu_frame(keys: np.ndarray, values: np.ndarray) -> pd.DataFrame:
    """Per-CPU maps: one row per (entry, cpu), with a `cpu` column."""
    n, cpus = len(keys), values.shape[1] if values.ndim > 1 else 0
    flat_keys = np.repeat(keys, cpus)
    flat_values = values["v"].reshape(-1) if n else values["v"].reshape(0)
    frame = layout.to_frame(flat_keys, flat_values, copy=False)
    frame.insert(len(layout.columns_of(keys, "", "key")), "cpu", np.tile(np.arange(cpus), n))
    return frame


def _sum_cpus(per: np.ndarray) -> np.ndarray:
    """Add up each numeric field over the CPU axis (axis 1); other fields keep CPU 0's."""
    dt = per.dtype
    if dt.names is None:
        if dt.kind in "iuf":
            return per.sum(axis=1, dtype=dt)  # wraps around like the C type would
        return per[:, 0]
    out = np.empty(per.shape[:1], dtype=dt)
    for name in dt.names:
        out[name] = _sum_cpus(per[name])
    return out


_HINTS = {
    1: "loading and changing maps needs root or CAP_BPF: run as root.",
    13: "the map may be read-only from user space (BPF_F_RDONLY).",
    22: "the key or value does not fit this map type (EINVAL).",
    17: "the key already exists and the update asked for a new one only (BPF_NOEXIST).",
}
