"""Which Python class faces which kernel map type.

Most maps are served by `Map`. A family whose entries mean more than their bytes (program
arrays hold programs, maps of maps hold maps, sockmaps hold sockets, devmaps hold devices)
registers its own subclass here, so `prog["name"]` always returns the right reader.
"""
from __future__ import annotations

from .. import kernel
from .map import Map

_FAMILIES: dict[str, type[Map]] = {}


def register(*map_types: str):
    """Class decorator: serve these kernel map types (names as in `kernel.MAP_TYPES`)."""
    def decorate(cls):
        for t in map_types:
            _FAMILIES[t] = cls
        return cls
    return decorate


def wrap(program, name: str, fd: int, key_type, value_type) -> Map:
    kind = kernel.map_info_by_fd(fd)["type"]
    return _FAMILIES.get(kind, Map)(program, name, fd, key_type, value_type)
