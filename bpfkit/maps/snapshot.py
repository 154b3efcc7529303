"""Reading a whole map into numpy arrays of keys and values: the one place that does it.

`.frame()`, sampling and the benchmarks all come through `read()`, so any faster path
lands here once. This version walks the map with get_next_key and lookup, one pair of
syscalls per entry, writing straight into preallocated buffers.
"""
from __future__ import annotations

import ctypes as ct

import numpy as np

from ..kernel import libbpf


def read(m) -> tuple[np.ndarray, np.ndarray]:
    """All (key, value) entries of map `m` now, as two structured arrays of equal length."""
    lib = libbpf()
    key_size, value_size = m.key_size, m.value_buffer_size
    capacity = max(m.max_entries, 1)
    keys = np.empty(capacity, dtype=m.key_dtype)
    values = np.empty(capacity, dtype=m.value_dtype)
    kbuf = keys.view(np.uint8).reshape(capacity, -1) if key_size else None
    vbuf = values.view(np.uint8).reshape(capacity, -1)
    prev = ct.create_string_buffer(max(key_size, 1))
    cur = ct.create_string_buffer(max(key_size, 1))
    n, first = 0, True
    while n < capacity:
        err = lib.bpf_map_get_next_key(m.fd, None if first else prev, cur)
        if err:
            break
        first = False
        ct.memmove(kbuf[n].ctypes.data, cur, key_size)
        if lib.bpf_map_lookup_elem(m.fd, cur, vbuf[n].ctypes.data) == 0:
            n += 1  # an entry deleted between the two calls is skipped
        ct.memmove(prev, cur, key_size)
    return keys[:n], values[:n]
