"""Maps whose values are kernel objects: programs (prog_array), maps (array_of_maps,
hash_of_maps), and the write-only ones (cgroup_array, xskmap, perf_event_array).

The kernel's interface is asymmetric, and these codecs keep it visible: user space *writes* an
object by its file descriptor (only this process can name it that way) and *reads back* its
id, the kernel-wide number bpftool shows. So a frame shows the id, and the object's name next
to it. Map turns what a learner writes (a loaded function, a Map, a Cgroup) into the fd.
"""
from __future__ import annotations

import ctypes as ct

import numpy as np
import pandas as pd

from ...core.errors import MapError
from ..spec import MapSpec
from .base import Codec, Lookups


class Reference(Codec):
    """A value that is a kernel object: an fd when written, an id when read."""

    family = "references"
    what = "a kernel object"

    def value_type(self, spec: MapSpec):
        return ct.c_uint64 if spec.value_size == 8 else ct.c_uint32

    def encode_value(self, spec: MapSpec, value):
        ctype = self.value_type(spec)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or \
                not 0 <= int(value) < 1 << (8 * ct.sizeof(ctype)):  # ctypes would cut it down
            raise MapError(f"A slot of {spec.name!r} holds {self.what}, not {value!r}.",
                           f"write {self.what} (or its file descriptor) into it.")
        return ctype(int(value))


class WriteOnly(Reference):
    """cgroup_array, xskmap, perf_event_array: written by fd, never read back."""


class Programs(Reference):
    family = "programs"
    what = "a BPF program"

    def value_columns(self, spec: MapSpec, values: np.ndarray, lookups: Lookups, **options) -> dict:
        ids = np.asarray(values).astype(np.uint32)
        return {"program_id": ids,
                "program_name": _names(ids, lookups.program_name)}


class InnerMaps(Reference):
    family = "maps"
    what = "a map"

    def value_columns(self, spec: MapSpec, values: np.ndarray, lookups: Lookups, **options) -> dict:
        ids = np.asarray(values).astype(np.uint32)
        return {"inner_map_id": ids, "inner_map_name": _names(ids, lookups.map_name)}


def _names(ids: np.ndarray, name_of) -> pd.array:
    """A name per id (missing for 0, an empty slot, and for objects gone meanwhile), each id
    looked up once."""
    names = {i: name_of(i) for i in set(ids.tolist()) if i}
    return pd.array([names.get(i) for i in ids.tolist()], dtype=object)
