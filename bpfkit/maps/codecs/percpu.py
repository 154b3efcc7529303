"""Per-CPU maps (percpu_hash, percpu_array, lru_percpu_hash, percpu_cgroup_storage): a value per CPU.

A program on CPU 3 only ever touches CPU 3's copy of the value, so counting needs no atomic
instruction and never loses an update. User space sees every CPU's copy at once: the kernel
hands back one value per possible CPU, each rounded up to 8 bytes. A frame shows them in one
of three layouts (`per_cpu=`): "long", a row per entry and CPU with a `cpu` column (best for
plots by CPU); "wide", a row per entry with a `value_cpu0`, `value_cpu1`, ... column per CPU;
"sum", a row per entry with the CPUs added up (what a counter's total is).
"""
from __future__ import annotations

import ctypes as ct
from dataclasses import dataclass

import numpy as np

from ...core.errors import KeyTypeError, UsageError
from .. import convert, layout
from ..spec import MapSpec
from .base import Codec, Lookups, Table

LAYOUTS = ("long", "wide", "sum")


@dataclass
class PerCpuColumn:
    """One value column of the wide layout: a column per CPU, named `<name>_cpu<N>` once the
    frame is built (after renaming, so `value="n"` gives n_cpu0, n_cpu1, ...)."""
    per_cpu: list

    def __len__(self) -> int:
        return len(self.per_cpu[0]) if self.per_cpu else 0


class PerCpu(Codec):
    family = "per_cpu"
    options = {"per_cpu": "long"}

    def one_value_dtype(self, spec: MapSpec) -> np.dtype:
        return layout.dtype_of(self.value_type(spec))

    def value_dtype(self, spec: MapSpec) -> np.dtype:
        slot = layout.round_up(spec.value_size)
        padded = np.dtype({"names": ["v"], "formats": [self.one_value_dtype(spec)], "offsets": [0],
                           "itemsize": slot})
        return np.dtype((padded, (spec.cpus,)))

    def encode_value(self, spec: MapSpec, value):
        """One value for every CPU, or a list with one value per CPU. A list as long as there
        are CPUs is one value per CPU only if each item is a value itself: `(3, 4)` for a
        struct of two fields is one struct, on any number of CPUs."""
        ctype = self.value_type(spec)
        if isinstance(value, np.ndarray) and value.ndim:
            value = value.tolist()
        per_cpu = None
        if isinstance(value, (list, tuple)) and len(value) == spec.cpus:
            try:
                per_cpu = [convert.to_c(ctype, v, "value") for v in value]
            except KeyTypeError:
                per_cpu = None
        if per_cpu is None:
            try:
                per_cpu = [convert.to_c(ctype, value, "value")] * spec.cpus
            except KeyTypeError as one_value_error:
                if not isinstance(value, (list, tuple)):
                    raise
                raise self._wrong_length(spec, ctype, value, one_value_error) from None
        slot = layout.round_up(spec.value_size)
        raw = bytearray(slot * spec.cpus)
        for cpu, one in enumerate(per_cpu):
            raw[cpu * slot:cpu * slot + ct.sizeof(one)] = bytes(one)
        return ct.create_string_buffer(bytes(raw), len(raw))

    @staticmethod
    def _wrong_length(spec: MapSpec, ctype, value, one_value_error) -> KeyTypeError:
        """A list that is neither one value nor one per CPU: most often a count of CPUs taken
        from os.cpu_count() (online CPUs), where the kernel wants every possible CPU."""
        if len(value) == spec.cpus:   # one per CPU, but an item does not fit: say which
            for cpu, item in enumerate(value):
                try:
                    convert.to_c(ctype, item, "value")
                except KeyTypeError as e:
                    return KeyTypeError(f"CPU {cpu}'s value in the list for {spec.name!r}: {e.what}",
                                        e.hint)
            return one_value_error
        return KeyTypeError(
            f"Map {spec.name!r} is {spec.type.a}: a list writes one value per possible CPU, "
            f"{spec.cpus} here, and this list has {len(value)}.",
            f"give a list of {spec.cpus} values (bpfkit.possible_cpus() counts them, which may be "
            f"more than os.cpu_count()), or one value ({convert.c_name(ctype)}) for every CPU.")

    def decode_value(self, spec: MapSpec, record):
        return [layout.to_python(r["v"]) for r in record]

    def values_array(self, spec: MapSpec, values) -> np.ndarray:
        """`values` in the map's layout: an (n, cpus) array sets each CPU's value, an (n,)
        array gives every CPU the same one."""
        given = np.asarray(values, dtype=self.one_value_dtype(spec))
        if given.ndim == 1:
            given = given[:, None]
        if given.ndim != 2 or given.shape[1] not in (1, spec.cpus):
            raise KeyTypeError(
                f"Map {spec.name!r} is {spec.type.a}: each entry takes one value per possible "
                f"CPU, {spec.cpus} here, and these values have the shape {given.shape}.",
                f"pass an (entries, {spec.cpus}) array, or one value per entry for every CPU.")
        out = np.zeros(len(given), dtype=self.value_dtype(spec))
        out["v"] = given
        return out

    def table(self, spec: MapSpec, keys: np.ndarray, values: np.ndarray, *, objects=None,
              lookups: Lookups | None = None, per_cpu: str = "long", **options) -> Table:
        if per_cpu not in LAYOUTS:
            raise UsageError(f"per_cpu= is one of {', '.join(map(repr, LAYOUTS))}, not {per_cpu!r}.",
                             'per_cpu="sum" adds the CPUs up, "wide" gives a column per CPU.')
        per = values["v"]  # (entries, cpus)
        key_cols = self.key_columns(spec, keys, objects)
        if per_cpu == "sum":
            return Table(key_cols, layout.columns_of(sum_cpus(per), "", "value"))
        if per_cpu == "wide":
            columns = [layout.columns_of(per[:, cpu], "", "value") for cpu in range(spec.cpus)]
            return Table(key_cols, {name: PerCpuColumn([c[name] for c in columns])
                                    for name in columns[0]})
        n = len(keys)
        entry = np.repeat(np.arange(n), spec.cpus)
        key_cols = {name: _take(column, entry) for name, column in key_cols.items()}
        key_cols["cpu"] = np.tile(np.arange(spec.cpus), n)
        flat = per.reshape(-1) if n else per.reshape(0)
        return Table(key_cols, layout.columns_of(flat, "", "value"), entry)


def _take(column, rows: np.ndarray):
    if isinstance(column, np.ndarray):
        return column[rows]
    return [column[i] for i in rows.tolist()]


def sum_cpus(per: np.ndarray) -> np.ndarray:
    """Add up each numeric field over the CPU axis (axis 1); other fields keep CPU 0's."""
    dt = per.dtype
    if dt.names is None:
        if dt.kind in "iuf":
            return per.sum(axis=1, dtype=dt)  # wraps around like the C type would
        return per[:, 0]
    out = np.empty(per.shape[:1], dtype=dt)
    for name in dt.names:
        out[name] = sum_cpus(per[name])
    return out
