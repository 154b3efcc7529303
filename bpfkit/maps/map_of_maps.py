"""Maps of maps (`BPF_ARRAY_OF_MAPS`, `BPF_HASH_OF_MAPS`): each entry holds a whole map.

The kernel speaks two languages here. User space *writes* an inner map by its file descriptor
(only a process that holds the map may put it in), but *reads back* the inner map's id (an fd
means nothing outside the process that opened it). So a slot is set with a bpfkit `Map`, and
read as an id; `frame()` names each inner map, and `contents()` opens the inner maps by id to
show what they hold, all in one DataFrame.
"""
from __future__ import annotations

import ctypes as ct
import os

import numpy as np
import pandas as pd

from .. import kernel
from ..errors import BpfkitError, MapError
from . import family, layout, snapshot
from .map import Map

# Column names, shared by frame() and contents().
OUTER_PREFIX = "outer_"
_MACRO = {"array_of_maps": 'BPF_ARRAY_OF_MAPS(name, "template", n)',
          "hash_of_maps": 'BPF_HASH_OF_MAPS(name, key_type, "template", n)'}


@family.register("array_of_maps", "hash_of_maps")
class MapOfMaps(Map):
    """An outer map: `outer[key] = prog["inner"]` puts a map in; `outer[key]` reads its id."""

    def __init__(self, program, name, fd, key_type, value_type):
        super().__init__(program, name, fd, key_type, value_type)
        # BCC declares the value as int (the fd written in); what comes back is a u32 id.
        self.value_type = ct.c_uint32
        self.value_dtype = np.dtype(np.uint32)
        self.value_buffer_size = 4

    # -- writing: a Map in, by its fd --------------------------------------------------------
    def update(self, key, value, flags: int = 0):
        fd = _inner_fd(self, value)
        k, v = self._key(key), ct.c_int(fd)
        err = kernel.libbpf().bpf_map_update_elem(self.fd, ct.byref(k), ct.byref(v), flags)
        if err:
            if -err == 22:  # EINVAL: the kernel compares the inner map with the template
                raise MapError(
                    f"The kernel refused {value.name!r} as an inner map of {self.name!r}: "
                    f"{os.strerror(-err)}.",
                    "an inner map must have the same type, key size, value size and flags as "
                    f"the template named in the C declaration of {self.name!r} (the string in "
                    f"{_MACRO[self.type]}), and an inner array the same "
                    f"max_entries too. Compare {value!r} with that template.") from None
            if -err == 9:  # EBADF
                raise MapError(f"{value.name!r} is not an open map any more.",
                               "load its program again and use the new map.") from None
            self._fail("update", -err, key)

    # -- reading: ids, names, contents -------------------------------------------------------
    def frame(self, columns=None, *, inner: bool = False, **names) -> pd.DataFrame:
        """One row per filled slot: the key, the inner map's id and its name.

        `inner=True` returns `contents()` instead: what the inner maps hold.
        """
        if inner:
            frame = self.contents()
        else:
            keys, ids = snapshot.read(self)
            data = layout.columns_of(keys, "", "key")
            data["inner_map_id"] = ids.astype(np.uint32)
            data["inner_map_name"] = pd.array([_map_name(i) for i in ids.tolist()], dtype=object)
            frame = pd.DataFrame(data)
        return layout.rename(frame, columns, **names) if (columns is not None or names) else frame

    def contents(self) -> pd.DataFrame:
        """Every inner map's entries in one frame, with the outer key as a column.

        Each inner map is opened by its id for the read and closed again at once.
        """
        keys, ids = snapshot.read(self)
        outer = layout.columns_of(keys, OUTER_PREFIX, OUTER_PREFIX + "key")
        parts = []
        for row, map_id in enumerate(ids.tolist()):
            try:
                with self.inner_by_id(map_id) as inner:
                    part = inner.frame()
                    name = inner.name
            except MapError:
                continue  # replaced or freed between the two reads
            for pos, (col, values) in enumerate(outer.items()):
                column = values[row:row + 1].repeat(len(part)) if isinstance(values, np.ndarray) \
                    else [values[row]] * len(part)
                part.insert(pos, col, column)
            part.insert(len(outer), "inner_map_id", np.full(len(part), map_id, dtype=np.uint32))
            part.insert(len(outer) + 1, "inner_map_name", [name] * len(part))
            parts.append(part)
        if not parts:
            return pd.DataFrame(columns=[*outer, "inner_map_id", "inner_map_name", "key", "value"])
        return pd.concat(parts, ignore_index=True)

    def inner(self, key) -> "InnerMap":
        """The map in slot `key`, opened by id: a Map of its own (close it, or use `with`)."""
        map_id = self[key]
        return self.inner_by_id(map_id)

    def inner_by_id(self, map_id: int) -> "InnerMap":
        return open_by_id(map_id, *_types_of(self.program, map_id))


class InnerMap:
    """A map opened by its kernel id, read with its family's reader. It holds an fd, which
    keeps the map alive: close it, or use it in a `with` block."""

    closed = True

    @property
    def fd(self) -> int:
        if self.closed:
            raise MapError(f"Inner map {self.name!r} (id {self.id}) was closed here.",
                           "open it again with outer.inner(key).")
        return self._fd

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        self.close()

    def __repr__(self) -> str:
        return Map.__repr__(self).replace("<bpfkit.Map", "<bpfkit.InnerMap", 1)


_inner_classes: dict[type, type] = {}


def open_by_id(map_id: int, key_type=None, value_type=None) -> InnerMap:
    """The map with kernel id `map_id`, opened for reading and writing (close it after).

    Without C types (a map bpfkit did not load), keys and values read as unsigned ints of
    their size, or raw bytes."""
    fd = kernel.libbpf().bpf_map_get_fd_by_id(map_id)
    if fd < 0:
        raise MapError(f"There is no map with id {map_id} in the kernel (any more).",
                       "it was freed, or replaced in its slot: read the outer map again.")
    try:
        info = kernel.map_info_by_fd(fd)
        base = family._FAMILIES.get(info["type"], Map)
        cls = _inner_classes.get(base)
        if cls is None:
            cls = _inner_classes[base] = type(f"Inner{base.__name__}", (InnerMap, base), {})
        inner = cls(None, info["name"], fd, key_type or _int_type(info["key_size"]),
                    value_type or _int_type(info["value_size"]))
    except BaseException:
        os.close(fd)
        raise
    inner.closed = False
    return inner


def _inner_fd(outer: MapOfMaps, value) -> int:
    if isinstance(value, Map):
        return value.fd
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise MapError(
            f"A slot of {outer.name!r} holds a map, so it takes a Map, not the number {value}.",
            f"write {outer.name}[key] = prog[\"inner_map_name\"]. The kernel takes an inner map "
            "by fd and gives back its id: ids read from the outer map cannot be written back. "
            f"To copy a slot, use {outer.name}[1] = {outer.name}.inner(0).")
    raise MapError(f"A slot of {outer.name!r} holds a map; {type(value).__name__} is not one.",
                   f"write {outer.name}[key] = prog[\"inner_map_name\"].")


def _map_name(map_id: int) -> str | None:
    info = kernel.map_info(map_id)
    return None if info is None else info["name"]


def _types_of(program, map_id: int):
    """The C key and value types of the map with this id, when a loaded program declared it
    (so its frame has the declared columns); (None, None) for a map bpfkit did not load."""
    from ..program import loaded
    candidates = [program] if program is not None else []
    candidates += [p for p in loaded().values() if p is not program]
    for prog in candidates:
        if prog is None or prog.closed:
            continue
        try:
            for m in prog.maps.values():
                if m.id == map_id:
                    return m.key_type, m.value_type
        except BpfkitError:
            continue
    return None, None


def _int_type(size: int):
    """A stand-in C type for a map whose declaration we do not know: an int of that size, or
    raw bytes."""
    return {1: ct.c_uint8, 2: ct.c_uint16, 4: ct.c_uint32, 8: ct.c_uint64}.get(size, ct.c_ubyte * size)
