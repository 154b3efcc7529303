"""Reading a whole map into numpy arrays of keys and values: the one place that does it.

`.frame()`, `items()`, sampling and the benchmarks all come through `read()`, so the fast path
lives here once. Three ways to read, fastest first:

- `mmap`: an array made with BPF_F_MMAPABLE is mapped into this process; a read is a memory
  copy, with no system call at all.
- `batch`: BPF_MAP_LOOKUP_BATCH copies many entries per system call straight into numpy
  buffers laid out with the map's own dtypes (hash maps and arrays, kernel 5.6 and later).
- `iterate`: get_next_key then lookup, two system calls per entry. Slow, but every map
  type and kernel has it, so it is what `batch` falls back to when the kernel says no.

A live map can change while it is read. The batch path walks hash buckets with a cursor the
kernel gives back, so an entry is seen at most once; iteration restarts from the first key
when the key it stands on is deleted, so it drops the keys it has already seen.
"""
from __future__ import annotations

import ctypes as ct
import errno
import mmap as _mmap
import os

import numpy as np

from ..errors import MapError
from ..kernel import libbpf

BPF_F_MMAPABLE = 1 << 10
ENOTSUPP = 524  # the kernel's own "not supported" (not in errno), returned for map types without batch ops
# What a kernel or map type without batch operations answers: fall back to iteration.
BATCH_UNSUPPORTED = {errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP, errno.ENOSYS}
DEFAULT_BATCH = 1 << 16
METHODS = ("auto", "mmap", "batch", "iterate")


class _BatchOpts(ct.Structure):
    """libbpf's `struct bpf_map_batch_opts`."""
    _fields_ = [("sz", ct.c_size_t), ("elem_flags", ct.c_uint64), ("flags", ct.c_uint64)]


def _lib():
    lib = libbpf()
    if not getattr(lib, "_bpfkit_batch_typed", False):
        u32p = ct.POINTER(ct.c_uint32)
        for fn in ("bpf_map_lookup_batch", "bpf_map_lookup_and_delete_batch"):
            getattr(lib, fn).argtypes = [ct.c_int, ct.c_void_p, ct.c_void_p, ct.c_void_p,
                                         ct.c_void_p, u32p, ct.c_void_p]
        lib.bpf_map_update_batch.argtypes = [ct.c_int, ct.c_void_p, ct.c_void_p, u32p, ct.c_void_p]
        lib.bpf_map_delete_batch.argtypes = [ct.c_int, ct.c_void_p, u32p, ct.c_void_p]
        lib._bpfkit_batch_typed = True
    return lib


class BatchUnsupported(Exception):
    """The kernel has no batch lookup for this map (type): read it entry by entry instead."""


def is_mmapable(m) -> bool:
    return m.type == "array" and bool(m.flags & BPF_F_MMAPABLE)


def read(m, *, method: str = "auto", batch_size: int | None = None,
         stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All (key, value) entries of map `m` now, as two structured arrays of equal length.

    `method` forces one way of reading ("mmap", "batch", "iterate"); "auto" picks the fastest
    the map allows. `batch_size` is the number of entries asked for per system call. `stats`,
    a dict, receives how the read went (method, calls, ENOSPC retries, why it fell back).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    stats = {} if stats is None else stats
    stats.update(method=None, calls=0, enospc=0, fallback=None)
    replay = getattr(m, "_replay", None)
    if replay is not None:  # sampling builds one frame from many ticks through m.frame()
        stats["method"] = "replay"
        return replay
    if method == "mmap" or (method == "auto" and is_mmapable(m)):
        if not is_mmapable(m):
            raise MapError(f"Map {m.name!r} ({m.type}) cannot be memory-mapped: only arrays made "
                           "with BPF_F_MMAPABLE can.",
                           'declare it with BPF_F_TABLE("array", u32, u64, name, N, BPF_F_MMAPABLE).')
        stats["method"] = "mmap"
        return _read_mmap(m)
    if method == "batch" or (method == "auto" and not getattr(m, "_no_batch", False)):
        try:
            stats["method"] = "batch"
            return _read_batch(m, batch_size or DEFAULT_BATCH, stats)
        except BatchUnsupported as e:
            if method == "batch":
                raise MapError(f"The kernel has no batch lookup for map {m.name!r} ({m.type}): {e}.",
                               'read it with method="iterate" (or "auto").') from None
            m._no_batch = True  # remembered: don't ask again for this map
            stats["fallback"] = str(e)
    stats["method"] = "iterate"
    return _read_iterate(m, stats)


def _buffers(m, capacity: int) -> tuple[np.ndarray, np.ndarray]:
    return np.empty(capacity, dtype=m.key_dtype), np.empty(capacity, dtype=m.value_dtype)


def _grow(arr: np.ndarray, n: int, capacity: int) -> np.ndarray:
    bigger = np.empty((capacity,) + arr.shape[1:], dtype=arr.dtype)  # per-CPU values are 2-D
    bigger[:n] = arr[:n]
    return bigger


def _trim(keys: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n entries; copied out when they use little of the buffer, so a small result
    does not keep a buffer sized for max_entries alive."""
    if n < len(keys) // 2:
        return keys[:n].copy(), values[:n].copy()
    return keys[:n], values[:n]


def _first_capacity(m) -> int:
    # Arrays hold exactly max_entries; a hash usually holds fewer, and grows the buffer if not.
    if m.type in ("array", "percpu_array"):
        return max(m.max_entries, 1)
    return max(min(m.max_entries, 1 << 20), 1)


def _read_batch(m, batch: int, stats: dict) -> tuple[np.ndarray, np.ndarray]:
    lib = _lib()
    fd = m.fd
    if m.key_dtype.itemsize != m.key_size or m.value_dtype.itemsize != m.value_buffer_size:
        raise BatchUnsupported("its key or value layout does not match the kernel's sizes")
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
        ret = lib.bpf_map_lookup_batch(fd, None if first else in_batch, out_batch,
                                       keys.ctypes.data + n * ksize, values.ctypes.data + n * vsize,
                                       ct.byref(count), None)
        stats["calls"] += 1
        err = -ret if ret < 0 else 0
        if err not in (0, errno.ENOENT, errno.ENOSPC):
            if first and err in BATCH_UNSUPPORTED:
                raise BatchUnsupported(os.strerror(err) if err != ENOTSUPP else "ENOTSUPP")
            raise MapError(f"Could not read map {m.name!r} in batches: {os.strerror(err)}.",
                           "read it with m.frame(method='iterate') and report this.")
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
    return _trim(keys, values, n)


def _read_iterate(m, stats: dict) -> tuple[np.ndarray, np.ndarray]:
    lib = _lib()
    fd = m.fd
    key_size = m.key_size
    capacity = _first_capacity(m)
    keys, values = _buffers(m, capacity)
    kview = keys.view(np.uint8).reshape(capacity, -1) if key_size else None
    prev = ct.create_string_buffer(max(key_size, 1))
    cur = ct.create_string_buffer(max(key_size, 1))
    seen: set[bytes] = set()
    n, first = 0, True
    # A hash map restarts from its first key when the key we stand on was deleted: bound the
    # walk so a map that churns faster than we read still ends.
    steps_left = 4 * max(m.max_entries, 1) + 1024
    while steps_left > 0:
        steps_left -= 1
        err = lib.bpf_map_get_next_key(fd, None if first else prev, cur)
        stats["calls"] += 1
        if err:
            break
        first = False
        ct.memmove(prev, cur, key_size)
        raw = cur.raw[:key_size]
        if raw in seen:
            continue
        if n == capacity:
            capacity *= 2
            keys, values = _grow(keys, n, capacity), _grow(values, n, capacity)
            kview = keys.view(np.uint8).reshape(capacity, -1)
        if lib.bpf_map_lookup_elem(fd, cur, values.ctypes.data + n * m.value_buffer_size) == 0:
            ct.memmove(kview[n].ctypes.data, cur, key_size)
            seen.add(raw)
            n += 1  # an entry deleted between the two calls is skipped
        stats["calls"] += 1
    return _trim(keys, values, n)


# -- writing many entries at once ---------------------------------------------------------------

def as_values(m, values) -> np.ndarray:
    """`values` in the map's value layout. For a per-CPU map, an (n, cpus) array sets each
    CPU's value, and an (n,) array gives every CPU the same value."""
    if not m.percpu:
        return np.ascontiguousarray(values, dtype=m.value_dtype)
    base = m.value_dtype.base["v"]
    given = np.asarray(values, dtype=base)
    if given.ndim == 1:
        given = given[:, None]
    out = np.zeros(len(given), dtype=m.value_dtype)
    out["v"] = given
    return out


def write(m, keys, values, flags: int = 0) -> int:
    """Set many entries with BPF_MAP_UPDATE_BATCH (one system call per chunk); returns how
    many were written. `flags` is BPF_ANY (0), BPF_NOEXIST (1) or BPF_EXIST (2) for every entry."""
    keys = np.ascontiguousarray(keys, dtype=m.key_dtype)
    values = as_values(m, values)
    if len(keys) != len(values):
        raise ValueError(f"{len(keys)} keys but {len(values)} values")
    lib = _lib()
    opts = _BatchOpts(ct.sizeof(_BatchOpts), flags, 0)
    done, chunk = 0, 1 << 18
    count = ct.c_uint32()
    while done < len(keys):
        count.value = min(chunk, len(keys) - done)
        ret = lib.bpf_map_update_batch(m.fd, keys.ctypes.data + done * m.key_size,
                                       values.ctypes.data + done * m.value_buffer_size,
                                       ct.byref(count), ct.byref(opts))
        done += count.value
        if ret < 0:
            if -ret in BATCH_UNSUPPORTED and done == 0:
                for k, v in zip(keys.view(np.uint8).reshape(len(keys), -1),
                                values.view(np.uint8).reshape(len(values), -1)):
                    err = lib.bpf_map_update_elem(m.fd, k.ctypes.data, v.ctypes.data, flags)
                    if err:
                        m._fail("update", -err)
                    done += 1
                return done
            m._fail(f"update (after {done} of {len(keys)} entries)", -ret)
    return done


# -- memory-mapped arrays -----------------------------------------------------------------------

_libc = ct.CDLL(None, use_errno=True)
_libc.mmap.restype = ct.c_void_p
_libc.mmap.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int, ct.c_int, ct.c_int, ct.c_long]
_libc.munmap.argtypes = [ct.c_void_p, ct.c_size_t]
_MAP_FAILED = ct.c_void_p(-1).value
# Not exported by Python's mmap module; 0x10 on every Linux architecture bpfkit runs on.
_MAP_FIXED = getattr(_mmap, "MAP_FIXED", 0x10)


class Mapping:
    """An mmapable array's memory in this process, shared with the kernel.

    The mapping holds a reference to the map, so while it exists the map outlives its
    program. `release()` (called when the program closes) puts anonymous zeroed memory at
    the same address instead: views a learner still holds then read zeros, never crash, and
    the kernel frees the map. The address range is unmapped when the last view is gone."""

    def __init__(self, m):
        self.elem_size = -(-m.value_size // 8) * 8
        self.entries = m.max_entries
        page = _mmap.PAGESIZE
        self.length = -(-max(self.entries * self.elem_size, 1) // page) * page
        self.writable = True
        addr = _libc.mmap(None, self.length, _mmap.PROT_READ | _mmap.PROT_WRITE, _mmap.MAP_SHARED, m.fd, 0)
        if addr in (None, _MAP_FAILED):  # e.g. BPF_F_RDONLY: map it read-only
            self.writable = False
            addr = _libc.mmap(None, self.length, _mmap.PROT_READ, _mmap.MAP_SHARED, m.fd, 0)
        if addr in (None, _MAP_FAILED):
            err = ct.get_errno()
            raise MapError(f"Could not memory-map array {m.name!r}: {os.strerror(err)}.",
                           'read it with m.frame(method="batch").')
        self.addr = addr
        self.live = True
        self._value_dtype = m.value_dtype

    def array(self, writable: bool = False) -> np.ndarray:
        """A numpy view of every slot, live: it shows the kernel's values as they change."""
        if writable and not self.writable:
            raise MapError("This array is read-only from user space (BPF_F_RDONLY).", "")
        raw = (ct.c_char * self.length).from_address(self.addr)
        raw._mapping = self  # each view keeps the mapping (and so the address range) alive
        view = np.ndarray(shape=(self.entries,), dtype=self._value_dtype, buffer=raw,
                          strides=(self.elem_size,))
        view.flags.writeable = bool(writable and self.live)
        return view

    def release(self) -> None:
        if not self.live:
            return
        self.live = False
        addr = _libc.mmap(self.addr, self.length, _mmap.PROT_READ | _mmap.PROT_WRITE,
                          _MAP_FIXED | _mmap.MAP_PRIVATE | _mmap.MAP_ANONYMOUS, -1, 0)
        if addr != self.addr:  # could not swap: drop the range (views must not be used)
            _libc.munmap(self.addr, self.length)
            self.addr = None

    def __del__(self):
        if getattr(self, "addr", None) is not None:
            _libc.munmap(self.addr, self.length)
            self.addr = None


def mapping(m) -> Mapping:
    """The map's Mapping, made on first use and kept while the program is open."""
    current = getattr(m, "_mapping", None)
    if current is None or not current.live:
        m.fd  # raises ProgramClosed if the map is gone
        current = m._mapping = Mapping(m)
    return current


def _read_mmap(m) -> tuple[np.ndarray, np.ndarray]:
    view = mapping(m).array()
    keys = np.arange(m.max_entries, dtype=np.uint32).view(m.key_dtype)
    return keys, np.array(view)  # a copy: a snapshot must not change under the learner
