"""XDP redirect targets: devmap and devmap_hash (network interfaces), cpumap (CPUs).

An XDP program returns `tx_port.redirect_map(slot, 0)` and the kernel sends the frame on to
what that slot holds: out of an interface, or to another CPU's network stack. A devmap entry
holds an interface as its ifindex, a number that only means something within one network
namespace: the kernel resolves it in the namespace of the process that writes the entry, and
a frame names it in this process's namespace, or in `netns=`. A devmap declared with
`struct bpf_devmap_val` (8 bytes) also holds a program run on each frame before it leaves;
a cpumap entry holds the size of the queue feeding that CPU, and the same kind of program.
"""
from __future__ import annotations

import ctypes as ct

import numpy as np
import pandas as pd

from ...core.errors import MapError
from ..spec import MapSpec
from .base import Codec, Lookups


class DevmapVal(ct.Structure):
    """`struct bpf_devmap_val`: a program fd when written, its id when read."""
    _fields_ = [("ifindex", ct.c_uint32), ("prog_id", ct.c_uint32)]


class CpumapVal(ct.Structure):
    """`struct bpf_cpumap_val`."""
    _fields_ = [("qsize", ct.c_uint32), ("prog_id", ct.c_uint32)]


class _Target(Codec):
    """A value that is one number (ifindex, queue size), optionally with a program."""

    field = ""
    with_program = None  # the 8-byte struct

    def value_type(self, spec: MapSpec):
        return self.with_program if spec.value_size == 8 else ct.c_uint32

    def encode_value(self, spec: MapSpec, value):
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) \
                and 0 < int(value) < 1 << 32:   # a larger one ctypes would cut down in silence
            return self.value_type(spec)(int(value))
        raise self.refused(spec, value)

    def refused(self, spec: MapSpec, value) -> MapError:
        raise NotImplementedError

    def value_columns(self, spec: MapSpec, values: np.ndarray, lookups: Lookups, **options) -> dict:
        if spec.value_size == 8:
            return {self.field: values[self.field].astype(np.uint32),
                    "prog_id": values["prog_id"].astype(np.uint32)}
        return {self.field: np.asarray(values).astype(np.uint32)}


class Devices(_Target):
    family = "devices"
    field = "ifindex"
    with_program = DevmapVal
    options = {"netns": None}

    def refused(self, spec: MapSpec, value) -> MapError:
        return MapError(f"A devmap entry is a network interface: a name or an ifindex, not {value!r}.",
                        f"write {spec.name}[slot] = \"eth0\", or an ifindex from socket.if_nametoindex().")

    def value_columns(self, spec: MapSpec, values: np.ndarray, lookups: Lookups, *,
                      netns: str | None = None, **options) -> dict:
        columns = super().value_columns(spec, values, lookups)
        names = {i: lookups.interface_name(i, netns) for i in set(columns["ifindex"].tolist()) if i}
        columns["name"] = pd.array([names.get(i) for i in columns["ifindex"].tolist()], dtype=object)
        if "prog_id" in columns:
            columns["prog_id"] = columns.pop("prog_id")  # last, after the interface's name
        return columns


class Cpus(_Target):
    family = "cpus"
    field = "qsize"
    with_program = CpumapVal

    def refused(self, spec: MapSpec, value) -> MapError:
        return MapError(f"A cpumap entry is the size of the queue that feeds that CPU, not {value!r}.",
                        f"write {spec.name}[cpu] = 192 (frames), or del {spec.name}[cpu] to stop using it.")
