"""Reading a whole map into numpy arrays of keys and values: the one place that does it.

`Map.snapshot()` comes here, and through it `.frame()`, `items()`, sampling and the
benchmarks, so the fast path lives here once. The ways to read, fastest first:

- `mmap`: an array made with BPF_F_MMAPABLE is mapped into this process; a read is a memory
  copy, with no system call at all.
- `batch`: BPF_MAP_LOOKUP_BATCH copies many entries per system call straight into numpy
  buffers laid out with the map's own dtypes (hash maps and arrays, kernel 5.6 and later).
- `iterate`: get_next_key then lookup, two system calls per entry. Slow, but every map type
  that can be walked has it, so it is what `batch` falls back to when the kernel says no.
- `keys`: a lookup for each key the caller names: the only way into local storage (keyed by
  a socket, task or cgroup), and a quick way to read a few entries of a big map.
- `peek`: a queue or stack shows user space only its next value.

A live map can change while it is read. The batch path walks hash buckets with a cursor the
kernel gives back, so an entry is seen at most once; iteration restarts from the first key
when the key it stands on is deleted, so it drops the keys it has already seen.
"""
from __future__ import annotations

import ctypes as ct
import errno
from dataclasses import dataclass

import numpy as np

from ..access._libbpf import BatchOpts, lib
from ..core.errors import MapError, UsageError
from .failures import ENOTSUPP, reason

# What a kernel or map type without batch operations answers: fall back to iteration.
BATCH_UNSUPPORTED = {errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP, errno.ENOSYS}
DEFAULT_BATCH = 1 << 16
METHODS = ("auto", "mmap", "batch", "iterate")


@dataclass
class Snapshot:
    """The entries of a map at one moment: `keys` and `values` arrays in the map's own layout
    (row i of one is entry i of the other), and, for maps keyed by kernel objects, the Python
    `objects` the keys were given as. Unpacks as `keys, values = m.snapshot()`."""
    keys: np.ndarray
    values: np.ndarray
    objects: list | None = None
    method: str = ""

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self):
        return iter((self.keys, self.values))

    @staticmethod
    def concat(snapshots: list["Snapshot"]) -> "Snapshot":
        """One snapshot holding the entries of several, in order (for sampling over time)."""
        objects = None
        if any(s.objects is not None for s in snapshots):
            objects = [o for s in snapshots for o in (s.objects or [None] * len(s))]
        return Snapshot(np.concatenate([s.keys for s in snapshots]),
                        np.concatenate([s.values for s in snapshots]), objects,
                        snapshots[0].method if snapshots else "")

    def with_every_slot(self, slots: int) -> "Snapshot":
        """Every index 0..slots-1, the ones missing here (empty slots) as zeros."""
        keys = np.arange(slots, dtype=np.uint32).astype(self.keys.dtype)
        values = np.zeros((slots,) + self.values.shape[1:], dtype=self.values.dtype)
        present = self.keys.astype(np.int64)
        values[present[present < slots]] = self.values[present < slots]
        return Snapshot(keys, values, None, self.method)


def read(m, *, method: str = "auto", batch_size: int | None = None,
         stats: dict | None = None) -> Snapshot:
    """All (key, value) entries of map `m` now.

    `method` forces one way of reading ("mmap", "batch", "iterate"); "auto" picks the fastest
    the map allows. `batch_size` is the number of entries asked for per system call. `stats`,
    a dict, receives how the read went (method, calls, ENOSPC retries, why it fell back).
    """
    if method not in METHODS:
        raise UsageError(f"method= is one of {', '.join(map(repr, METHODS))}, not {method!r}.",
                         'leave it out: method="auto" picks the fastest this map allows.')
    stats = {} if stats is None else stats
    stats.update(method=None, calls=0, enospc=0, fallback=None)
    if method == "mmap" or (method == "auto" and m.mmapable):
        if not m.mmapable:
            raise MapError(f"Map {m.name!r} ({m.type}) cannot be memory-mapped: only arrays made "
                           "with BPF_F_MMAPABLE can.",
                           'declare it with BPF_F_TABLE("array", u32, u64, name, N, BPF_F_MMAPABLE).')
        stats["method"] = "mmap"
        return _read_mmap(m)
    if method == "batch" or (method == "auto" and m.batch_ok):
        try:
            stats["method"] = "batch"
            return _read_batch(m, batch_size or DEFAULT_BATCH, stats)
        except BatchUnsupported as e:
            if method == "batch":
                raise MapError(f"The kernel has no batch lookup for map {m.name!r} ({m.type}): {e}.",
                               'read it with method="iterate" (or "auto").') from None
            m.batch_ok = False  # remembered: don't ask again for this map
            stats["fallback"] = str(e)
    stats["method"] = "iterate"
    return _read_iterate(m, stats)


class BatchUnsupported(Exception):
    """The kernel has no batch lookup for this map (type): read it entry by entry instead."""


def _buffers(m, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty(capacity, dtype=m.key_dtype), np.empty(capacity, dtype=m.value_dtype)


def _grow(arr: np.ndarray, n: int, capacity: int) -> np.ndarray:
    bigger = np.empty((capacity,) + arr.shape[1:], dtype=arr.dtype)  # per-CPU values are 2-D
    bigger[:n] = arr[:n]
    return bigger


def _trim(keys: np.ndarray, values: np.ndarray, n: int, method: str) -> Snapshot:
    """The first n entries; copied out when they use little of the buffer, so a small result
    does not keep a buffer sized for max_entries alive."""
    if n < len(keys) // 2:
        return Snapshot(keys[:n].copy(), values[:n].copy(), method=method)
    return Snapshot(keys[:n], values[:n], method=method)


def _first_capacity(m) -> int:
    # Arrays hold exactly max_entries; a hash usually holds fewer, and grows the buffer if not.
    if m.map_type.slots:
        return max(m.max_entries, 1)
    return max(min(m.max_entries, 1 << 20), 1)


def _require_batch_layout(m) -> None:
    if m.key_dtype.itemsize != m.key_size or m.value_dtype.itemsize != m.value_buffer_size:
        raise BatchUnsupported("its key or value layout does not match the kernel's sizes")


def _lookup_batch(fd: int, in_batch, out_batch, keys_at: int, values_at: int, count) -> int:
    """One BPF_MAP_LOOKUP_BATCH into the buffers at `keys_at`/`values_at`: the kernel's errno
    (0 when it went on, ENOENT at the end), `count` set to the entries it wrote. Both the
    whole-map read and a learner's one call (`one_batch`) go through here."""
    try:
        lib.bpf_map_lookup_batch(fd, in_batch, out_batch, keys_at, values_at, ct.byref(count), None)
        return 0
    except OSError as e:
        return e.errno


def _read_batch(m, batch: int, stats: dict) -> Snapshot:
    fd = m.fd
    _require_batch_layout(m)
    ksize, vsize = m.key_size, m.value_buffer_size
    capacity = _first_capacity(m)
    keys, values = _buffers(m, capacity)
    # The kernel's cursor: a bucket number for hash maps, a key for the others. It is read
    # from in_batch and written to out_batch, two separate buffers, so a partial batch
    # resumes exactly where the kernel stopped.
    cursor = max(ksize, 8)
    in_batch, out_batch = ct.create_string_buffer(cursor), ct.create_string_buffer(cursor)
    count = ct.c_uint32()
    batch = max(int(batch), 1)
    n, first = 0, True
    while True:
        room = capacity - n
        if room == 0:  # more entries than max_entries: the map changed while we read
            capacity = capacity * 2
            keys, values = _grow(keys, n, capacity), _grow(values, n, capacity)
            room = capacity - n
        count.value = min(batch, room)
        err = _lookup_batch(fd, None if first else in_batch, out_batch,
                            keys.ctypes.data + n * ksize, values.ctypes.data + n * vsize, count)
        stats["calls"] += 1
        if err not in (0, errno.ENOENT, errno.ENOSPC):
            if first and err in BATCH_UNSUPPORTED:
                raise BatchUnsupported(reason(err))
            raise m.failure("batch", err)
        if err == errno.ENOSPC and count.value == 0:
            # One hash bucket holds more entries than we asked for (BCC issue 5273):
            # ask for more at once from the same cursor.
            stats["enospc"] += 1
            if batch < room:
                batch = min(batch * 2, room)
            else:
                capacity = capacity + max(batch, 64)
                keys, values = _grow(keys, n, capacity), _grow(values, n, capacity)
                batch *= 2
            continue
        n += count.value
        if err == errno.ENOENT:
            break  # the walk reached the end of the map
        if count.value == 0 and not first and in_batch.raw == out_batch.raw:
            break  # no progress and no end: never loop forever on a confused kernel
        ct.memmove(in_batch, out_batch, cursor)
        first = False
    return _trim(keys, values, n, "batch")


def one_batch(m, cursor: bytes | None, count: int):
    """(keys, values, next cursor or None at the end) of one BPF_MAP_LOOKUP_BATCH call: `Map.
    lookup_batch`, for a learner's own loop. Values are decoded as `frame()` decodes them."""
    _require_batch_layout(m)
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count < 1 << 32:
        raise UsageError(f"count is how many entries to ask for, 1 to 4294967295 (the kernel "
                         f"takes a u32), not {count!r}.",
                         "for example lookup_batch(cursor, count=64).")
    size = max(m.key_size, 8)
    if cursor is not None and (not isinstance(cursor, bytes) or len(cursor) != size):
        raise UsageError(f"The cursor is the bytes the previous lookup_batch() returned "
                         f"({size} bytes), or None to start; got {cursor!r:.60}.",
                         "pass the third thing the last call returned.")
    keys, values = _buffers(m, count)
    in_batch = ct.create_string_buffer(cursor or b"", size)
    out_batch = ct.create_string_buffer(size)
    got = ct.c_uint32(count)
    err = _lookup_batch(m.fd, None if cursor is None else in_batch, out_batch,
                        keys.ctypes.data, values.ctypes.data, got)
    if err == errno.ENOSPC and got.value == 0:
        raise MapError(f"One bucket of {m.name!r} holds more than {count} entries, and the kernel "
                       "hands a hash map's bucket over whole (ENOSPC).",
                       "ask for more at once from the same cursor: a bigger count.", errno=err)
    if err not in (0, errno.ENOENT):
        if cursor is None and err in BATCH_UNSUPPORTED:
            raise BatchUnsupported(reason(err))
        raise m.failure("batch", err)
    n = got.value
    return keys[:n].copy(), values[:n].copy(), None if err == errno.ENOENT else out_batch.raw


def _read_iterate(m, stats: dict) -> Snapshot:
    fd = m.fd
    key_size = m.key_size
    capacity = _first_capacity(m)
    keys, values = _buffers(m, capacity)
    kview = keys.view(np.uint8).reshape(capacity, -1)
    prev = ct.create_string_buffer(max(key_size, 1))
    cur = ct.create_string_buffer(max(key_size, 1))
    seen: set[bytes] = set()
    n, first = 0, True
    # A hash map restarts from its first key when the key we stand on was deleted: bound the
    # walk so a map that churns faster than we read still ends.
    steps_left = 4 * max(m.max_entries, 1) + 1024
    while steps_left > 0:
        steps_left -= 1
        stats["calls"] += 1
        try:
            lib.bpf_map_get_next_key(fd, None if first else prev, cur)
        except OSError as e:
            if first and e.errno != errno.ENOENT:
                raise m.failure("iterate", e.errno) from None
            break  # the end of the map, or a walk cut short by a change: what was read stands
        first = False
        ct.memmove(prev, cur, key_size)
        raw = cur.raw[:key_size]
        if raw in seen:
            continue
        if n == capacity:
            capacity *= 2
            keys, values = _grow(keys, n, capacity), _grow(values, n, capacity)
            kview = keys.view(np.uint8).reshape(capacity, -1)
        try:
            lib.bpf_map_lookup_elem(fd, cur, values.ctypes.data + n * m.value_buffer_size)
            found = True
        except OSError:
            found = False
        if found:
            ct.memmove(kview[n].ctypes.data, cur, key_size)
            seen.add(raw)
            n += 1  # an entry deleted between the two calls, or an empty slot, is skipped
        stats["calls"] += 1
    return _trim(keys, values, n, "iterate")


def _read_mmap(m) -> Snapshot:
    view = m.mapping().array()
    keys = np.arange(m.max_entries, dtype=np.uint32).view(m.key_dtype)
    return Snapshot(keys, np.array(view), method="mmap")  # a copy: a snapshot must not change


def read_keys(m, keys: np.ndarray, objects=None) -> Snapshot:
    """The entries for the given keys (an array in the map's key layout), one lookup each;
    keys the map does not hold are left out. `objects` name the keys in the frame."""
    values = np.empty(len(keys), dtype=m.value_dtype)
    found = np.zeros(len(keys), dtype=bool)
    fd = m.fd
    for i in range(len(keys)):
        found[i] = m._call("lookup", lib.bpf_map_lookup_elem, fd, keys[i:i + 1].ctypes.data,
                           values.ctypes.data + i * m.value_buffer_size, absent_ok=True,
                           key=objects[i] if objects is not None else keys[i].item())
    kept = None if objects is None else [o for o, f in zip(objects, found) if f]
    return Snapshot(keys[found], values[found], kept, "keys")


def peek(m) -> Snapshot:
    """A queue's or stack's next value, without taking it: one entry, or none when empty."""
    values = np.empty(1, dtype=m.value_dtype)
    n = int(m._call("peek", lib.bpf_map_lookup_elem, m.fd, None, values.ctypes.data, absent_ok=True))
    return Snapshot(np.zeros(n, dtype=m.key_dtype), values[:n], method="peek")


# -- writing and deleting many entries at once ----------------------------------------------------

def write(m, keys: np.ndarray, values: np.ndarray, flags: int = 0) -> int:
    """Set many entries with BPF_MAP_UPDATE_BATCH (one system call per chunk), or one by one
    where the map type has no batch update; returns how many were written. `flags` is
    BPF_ANY (0), BPF_NOEXIST (1) or BPF_EXIST (2) for every entry."""
    opts = BatchOpts(ct.sizeof(BatchOpts), flags, 0)
    done, chunk = 0, 1 << 18
    count = ct.c_uint32()
    while done < len(keys):
        count.value = min(chunk, len(keys) - done)
        try:
            lib.bpf_map_update_batch(m.fd, keys.ctypes.data + done * m.key_size,
                                     values.ctypes.data + done * m.value_buffer_size,
                                     ct.byref(count), ct.byref(opts))
            done += count.value
        except OSError as e:
            done += count.value
            if e.errno in BATCH_UNSUPPORTED and done == 0:
                return _write_each(m, keys, values, flags)
            raise m.failure("update", e.errno, f"(after {done} of {len(keys)} entries)") from None
    return done


def _write_each(m, keys: np.ndarray, values: np.ndarray, flags: int) -> int:
    for i in range(len(keys)):
        m._call("update", lib.bpf_map_update_elem, m.fd, keys[i:i + 1].ctypes.data,
                 values[i:i + 1].ctypes.data, flags, key=keys[i].item())
    return len(keys)


def delete(m, keys: np.ndarray) -> int:
    """Delete these keys (BPF_MAP_DELETE_BATCH, or one by one where the map type has no batch
    delete); keys gone meanwhile are skipped. Returns how many were deleted."""
    if not len(keys):
        return 0
    count = ct.c_uint32(len(keys))
    try:
        lib.bpf_map_delete_batch(m.fd, keys.ctypes.data, ct.byref(count), None)
        return count.value
    except OSError:
        pass
    done = 0
    for i in range(len(keys)):  # no batch delete, or a key went meanwhile (ENOENT stops a batch)
        done += m._call("delete", lib.bpf_map_delete_elem, m.fd, keys[i:i + 1].ctypes.data,
                        key=keys[i].item(), absent_ok=True)
    return done
