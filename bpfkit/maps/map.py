"""`Map`: one BPF map seen from Python, whatever its type.

In the spirit of cilium/ebpf's Map: one class over the table of map types (`maptypes`), which
owns the file descriptor, every bpf() system call, the snapshot of a whole map and the errors.
What differs between families (programs in a program array, sockets in a sockmap, a value per
CPU) is a pure codec (`maps.codecs`), chosen by the map's type. What user space may do with a
map type comes from the table too: `push()` on a hash, or `del` on an array, is refused in
words before any system call.

A Map comes from a loaded program (`prog["counts"]`), from `bpfkit.create_map(...)`, from a
pin (`bpfkit.open_pinned(...)`), or from a map of maps (`outer.inner(key)`). The last three
own their file descriptor and are registered for `bpfkit.close_all()`.
"""
from __future__ import annotations

import contextlib
import ctypes as ct
import errno
import os
import socket
import weakref

import numpy as np
import pandas as pd

from ..core import atomic, maptypes
from ..core.guard import Fd, Guard, Shared, held
from ..access import kernel
from ..host import lifetime
from ..access._libbpf import lib
from ..core.errors import KeyMissing, MapError, ProgramClosed, UsageError, no_attribute
from . import arguments, buckets, convert, failures, frames, objects, pins, snapshot
from .codecs import OPTIONS, Lookups, for_type, option_types
from .memory import Mapping
from .spec import MapSpec, possible_cpus
from .snapshot import Snapshot

BPF_EXIST = 2
_NO_DEFAULT = object()  # pop() and peek() without a default raise on an empty map
# frame()'s keyword options: sample() and live() pass them on, and any other keyword is refused
FRAME_OPTIONS = ("columns", "method", "keys", "per_cpu", "empty", "netns", "sockets", "ports",
                 "snapshot", "extra")


class KernelLookups(Lookups):
    """Names of kernel objects, asked of the kernel itself."""

    def program_name(self, prog_id: int) -> str | None:
        info = kernel.prog_info(prog_id)
        return None if info is None else info["name"]

    def map_name(self, map_id: int) -> str | None:
        info = kernel.map_info(map_id)
        return None if info is None else info["name"]

    def interface_name(self, ifindex: int, netns: str | None = None) -> str | None:
        from ..host.netns import inside
        with inside(netns) if netns else contextlib.nullcontext():
            try:
                return socket.if_indextoname(ifindex)
            except OSError:
                return None


class Map:
    """A live BPF map. Reads go to the kernel each time: nothing is cached."""

    # Every Map made in this process, by kernel id: an inner map opened by its id gets the C
    # types the program that declared it gave (so its frame has the declared columns).
    _known: "weakref.WeakValueDictionary[int, Map]" = weakref.WeakValueDictionary()
    lookups = KernelLookups()

    def __init__(self, fd: int, *, name: str | None = None, key_type=None, value_type=None,
                 owner=None, owns_fd: bool = False):
        info = kernel.map_info_by_fd(fd)
        self.owner = owner
        self.owns_fd = owns_fd
        self._number = fd
        self.batch_ok = True
        self.id: int = info["id"]
        self.map_type = maptypes.get(info["type"])
        self.spec = MapSpec(name or info["name"], self.map_type, info["key_size"],
                            info["value_size"], info["max_entries"], info["flags"],
                            info["map_extra"], key_type, value_type,
                            possible_cpus() if self.map_type.per_cpu else 1)
        self.codec = for_type(self.map_type)
        self.key_dtype = self.codec.key_dtype(self.spec)
        self.value_dtype = self.codec.value_dtype(self.spec)
        self._mapping: Mapping | None = None
        self._attached: list[tuple[int, int]] = []  # (program fd, attach type), for detach()
        self._pin: pins.Pin | None = None
        if key_type is not None or value_type is not None:
            Map._known[self.id] = self
        # One owner of the fd: this Map when it opened it, else the program whose map it is
        # (the program's close frees it, once no call on any of its maps is in flight).
        if owns_fd:
            self._guard = Fd(fd, self._closed_error, f"map {self.spec.name}")
        elif owner is not None and hasattr(owner, "_guard"):
            self._guard = Shared(owner._guard, self._closed_error)
        else:
            self._guard = Guard(lambda: None, self._closed_error)
        if owns_fd:
            lifetime.add("map", self, self)

    # -- what the map is -------------------------------------------------------------------
    name = property(lambda self: self.spec.name)
    type = property(lambda self: self.map_type.name, doc="The kernel's name of the map type.")
    key_size = property(lambda self: self.spec.key_size)
    value_size = property(lambda self: self.spec.value_size)
    max_entries = property(lambda self: self.spec.max_entries)
    flags = property(lambda self: self.spec.flags)
    map_extra = property(lambda self: self.spec.map_extra,
                         doc="A bloom filter's number of hash functions (0: the kernel's 5).")
    per_cpu = property(lambda self: self.map_type.per_cpu)
    cpus = property(lambda self: self.spec.cpus, doc="Values per entry: one per possible CPU "
                                                   "for a per-CPU map, else 1.")
    key_type = property(lambda self: self.codec.key_type(self.spec))
    value_type = property(lambda self: self.codec.value_type(self.spec))
    value_buffer_size = property(lambda self: self.value_dtype.itemsize)

    @property
    def closed(self) -> bool:
        return self._guard.closed

    @property
    def fd(self) -> int:
        """The map's fd. A call that uses it runs inside the map's guard (every method here
        does): then no other thread's close can hand the number to another object meanwhile."""
        if self._guard.closed:
            raise self._closed_error()
        return self._number

    def _closed_error(self):
        if self.owner is not None and getattr(self.owner, "closed", False):
            return ProgramClosed(
                f"Map {self.name!r} belonged to program {self.owner.name!r}, which is closed "
                "(or was replaced when its cell ran again), so the map is gone from the kernel.",
                f"use the new program's map: prog[{self.name!r}] after loading it again.")
        return MapError(f"Map {self.name!r} (id {self.id}) was closed here.",
                        "make or open it again.")

    def fd_held(self):
        """The guard to hold while another object's call uses this map's fd (a map of maps
        storing it, a program array): `with m.fd_held(): ... m.fd ...`."""
        return self._guard

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: a typo such as .fram() or .itmes().
        if name.startswith("_"):
            raise AttributeError(name)
        raise no_attribute(self, name, dir(type(self)) + list(self.__dict__))

    @staticmethod
    def _type_name(ctype) -> str:
        return convert.c_name(ctype) if ctype is not None else "none"

    def __repr__(self) -> str:
        key, value = self._type_name(self.key_type), self._type_name(self.value_type)
        state = " (closed)" if self.closed else ""
        return (f"<bpfkit.Map {self.name!r} {self.type} id={self.id} key={key} value={value} "
                f"max_entries={self.max_entries}{state}>")

    def failure(self, op: str, err: int, key=None, value=None):
        """The learner's error for `op` refused with errno `err` (see maps.failures)."""
        if err == errno.ENOSPC:
            self.codec.check_readable(self.spec)  # a socket map too narrow to show cookies
        return failures.explain(self.spec, op, err, key, value, fd=self._number)

    def _call(self, op: str, fn, *args, key=None, value=None, absent_ok: bool = False) -> bool:
        """libbpf's `fn(*args)` for `op`, its refusal (an OSError) made the learner's error here,
        the one place for every single-entry call. With `absent_ok`, ENOENT (no such key, an
        empty queue) answers False instead. Called inside `with self._key(...)`, whose own
        `except OSError` (a key file that will not open) must never see a refusal."""
        try:
            fn(*args)
            return True
        except OSError as e:
            if absent_ok and e.errno == errno.ENOENT:
                return False
            raise self.failure(op, e.errno, key, value) from None

    def _require(self, op: str) -> None:
        """Refuse, in words, an operation this map type does not offer user space."""
        mt = self.map_type
        if op in mt.ops:
            if op in ("lookup", "iterate", "peek"):
                self.codec.check_readable(self.spec)
            return
        if op in ("lookup", "iterate") and not mt.readable:
            self.codec.check_readable(self.spec)
        raise failures.not_offered(self.spec, op)

    # -- keys and values as the kernel takes them ------------------------------------------
    @contextlib.contextmanager
    def _key(self, key):
        """A pointer to the key's bytes for the block (None for a keyless map)."""
        kind = self.map_type.key
        if kind == "none":
            yield None
        elif kind == "fd":
            with objects.fd_for(key, self.map_type.fd_of, self.name) as fd:
                yield ct.byref(self.codec.encode_key(self.spec, fd))
        else:
            yield ct.byref(self.codec.encode_key(self.spec, key))

    @contextlib.contextmanager
    def _value(self, value):
        function = getattr(self.owner, "function", None)
        # A kit object stored by its fd (an inner Map, a loaded function) is held for the
        # call: closed meanwhile by another thread, its number could name something else.
        hold = getattr(value, "fd_held", None)
        with hold() if callable(hold) else contextlib.nullcontext(), \
                objects.value_for(self.map_type, value, self.name, function) as number:
            yield ct.byref(self.codec.encode_value(self.spec, number))

    def _decode(self, buf) -> object:
        return self.codec.decode_value(self.spec, np.frombuffer(buf, self.value_dtype, 1)[0])

    # -- dict-like access ------------------------------------------------------------------
    @held
    def __getitem__(self, key):
        buf = self._lookup(key)
        if buf is None:
            raise self.failure("lookup", errno.ENOENT, key)
        return self._decode(buf)

    def _lookup(self, key):
        """The raw value for `key`, or None if the map has none."""
        self._require("lookup")
        buf = ct.create_string_buffer(self.value_buffer_size)
        with self._key(key) as k:
            found = self._call("lookup", lib.bpf_map_lookup_elem, self.fd, k, buf, key=key,
                               absent_ok=True)
        return buf if found else None

    @held
    def raw(self, key) -> bytes:
        """The value of `key` undecoded, as the kernel hands it to user space: for a per-CPU map
        one copy per possible CPU (not online: `bpfkit.possible_cpus()`), each padded to a
        multiple of 8 bytes. What a learner decodes by hand before trusting `frame()` to."""
        buf = self._lookup(key)
        if buf is None:
            raise self.failure("lookup", errno.ENOENT, key)
        return buf.raw

    @held
    def lookup_batch(self, cursor: bytes | None = None, count: int = 64):
        """One BPF_MAP_LOOKUP_BATCH call, as the kernel makes it: up to `count` entries from
        `cursor` (None: the map's start), returned as (keys, values, next cursor); the next
        cursor is None once the kernel says the walk reached the end. `frame()` loops over
        this call; a lesson has learners write that loop themselves."""
        try:
            return snapshot.one_batch(self, cursor, count)
        except snapshot.BatchUnsupported as e:
            raise MapError(f"The kernel has no batch lookup for {self.name!r} ({self.map_type.a} "
                           f"map): {e}.", "read it with frame(), items() or m[key]; "
                           "lookup_batch() is for hashes and arrays.") from None

    @held
    def get(self, key, default=None):
        try:
            buf = self._lookup(key)
        except KeyMissing:  # an object key that is gone (an exited process): so is its value
            return default
        return default if buf is None else self._decode(buf)

    def __setitem__(self, key, value):
        self.update(key, value)

    @held
    def update(self, key, value, flags: int = 0) -> None:
        """Set `key` to `value`. `flags`: BPF_ANY (0), BPF_NOEXIST (1), BPF_EXIST (2)."""
        self._require("update")
        flags = arguments.update_flags(flags)
        with self._key(key) as k, self._value(value) as v:
            self._call("update", lib.bpf_map_update_elem, self.fd, k, v, flags, key=key, value=value)

    @held
    def __delitem__(self, key):
        self._require("delete")
        with self._key(key) as k:
            self._call("delete", lib.bpf_map_delete_elem, self.fd, k, key=key)

    @held
    def __contains__(self, key) -> bool:
        """Is there a value for `key`? (A bloom filter: may `key` have been added? An LPM
        trie: does any stored prefix contain it? Both are what the kernel's lookup answers.)"""
        if "test" in self.map_type.ops:
            return self._test(key)
        try:
            return self._lookup(key) is not None
        except KeyMissing:
            return False

    @held
    def keys(self) -> list:
        return [self.codec.decode_key(self.spec, k) for k in self._walk().keys]

    def __iter__(self):
        return iter(self.keys())

    @held
    def __len__(self) -> int:
        return len(self._walk())

    def _walk(self) -> Snapshot:
        """Every entry, for keys(), items() and len(): only maps user space can walk."""
        self._require("iterate")
        return self.snapshot()

    def __bool__(self) -> bool:
        return True  # a Map stands for a kernel object, empty or not: `if m:` never reads it

    @held
    def items(self) -> list[tuple]:
        snap = self._walk()
        return [(self.codec.decode_key(self.spec, k), self.codec.decode_value(self.spec, v))
                for k, v in zip(snap.keys, snap.values)]

    def values(self) -> list:
        return [v for _, v in self.items()]

    @held
    def clear(self) -> None:
        """Empty the map: delete every entry (an array's slots are set to zero, a queue's
        values popped), in as few system calls as the map type allows."""
        mt = self.map_type
        if "pop" in mt.ops:
            self.drain()
            return
        self._require("iterate")
        if mt.slots and mt.values == "data":  # every slot exists: zero them all, no read needed
            keys = np.arange(self.max_entries, dtype=np.uint32).astype(self.key_dtype)
            snapshot.write(self, keys, np.zeros(len(keys), dtype=self.value_dtype))
        else:
            snapshot.delete(self, np.ascontiguousarray(snapshot.read(self).keys))

    # -- keyless maps: queue, stack, bloom filter ------------------------------------------
    @held
    def push(self, value, *, overwrite: bool = False) -> None:
        """Put `value` in a queue or stack. A full one refuses, unless `overwrite=True`, which
        drops the oldest value to make room (BPF_EXIST)."""
        self._require("push")
        with self._value(value) as v:
            self._call("push", lib.bpf_map_update_elem, self.fd, None, v,
                       BPF_EXIST if overwrite else 0, value=value)

    def _take(self, op: str, call) -> bytes | None:
        """One value's bytes, taken (pop) or looked at (peek); None when empty."""
        self._require(op)
        buf = ct.create_string_buffer(self.value_buffer_size)
        return buf.raw if self._call(op, call, self.fd, None, buf, absent_ok=True) else None

    def _one(self, op: str, call, default):
        raw = self._take(op, call)
        if raw is None:
            if default is _NO_DEFAULT:
                raise self.failure(op, errno.ENOENT)
            return default
        return self._decode(raw)

    @held
    def pop(self, default=_NO_DEFAULT):
        """Take the next value out of a queue (the oldest) or a stack (the newest). An empty
        one raises MapEmpty (an IndexError), or returns `default` when given."""
        return self._one("pop", lib.bpf_map_lookup_and_delete_elem, default)

    @held
    def peek(self, default=_NO_DEFAULT):
        """The value pop() would take, left in place."""
        return self._one("peek", lib.bpf_map_lookup_elem, default)

    @held
    def drain(self, columns=None, **misplaced) -> pd.DataFrame:
        """Take every value out, in the order pop() gives them: a frame with `order`
        (0 first) and the value columns, renamed as in frame()."""
        if misplaced:
            raise frames.keywords_refused("drain", misplaced, [], "drain({...})")
        taken = []
        while (raw := self._take("pop", lib.bpf_map_lookup_and_delete_elem)) is not None:
            taken.append(raw)
        values = np.frombuffer(b"".join(taken), dtype=self.value_dtype, count=len(taken))
        table = self.codec.table(self.spec, np.zeros(len(taken), dtype=self.key_dtype), values)
        table.keys = {"order": np.arange(len(taken))}
        return frames.build(table, columns=columns)

    @held
    def add(self, value) -> None:
        """Add `value` to a bloom filter; `value in m` then answers True (maybe present)."""
        self._require("add")
        with self._value(value) as v:
            self._call("add", lib.bpf_map_update_elem, self.fd, None, v, 0, value=value)

    def _test(self, value) -> bool:
        with self._value(value) as v:
            return self._call("test", lib.bpf_map_lookup_elem, self.fd, None, v, value=value,
                              absent_ok=True)

    # -- whole-map snapshots ---------------------------------------------------------------
    @held
    def snapshot(self, *, method: str = "auto", keys=None, batch_size: int | None = None,
                 stats: dict | None = None) -> Snapshot:
        """The map now, as numpy arrays of keys and values in the map's own layout (see
        `maps.snapshot`). `keys=` reads only those keys, one lookup each: the way into local
        storage, whose keys are sockets, tasks or cgroups."""
        mt = self.map_type
        if keys is not None:
            self._require("lookup")
            return self._read_keys(list(keys))
        if "peek" in mt.ops:
            self._require("peek")
            return snapshot.peek(self)
        self._require("iterate")
        return snapshot.read(self, method=method, batch_size=batch_size, stats=stats)

    def _read_keys(self, given: list) -> Snapshot:
        raw = np.zeros(len(given), dtype=self.key_dtype)
        with contextlib.ExitStack() as stack:
            for i, key in enumerate(given):
                ptr = stack.enter_context(self._key(key))
                ct.memmove(raw[i:i + 1].ctypes.data, ptr, self.key_dtype.itemsize)
            return snapshot.read_keys(self, raw, given if self.map_type.key == "fd" else None)

    @held
    def frame(self, columns=None, *, method: str = "auto", keys=None, per_cpu: str = "long",
              empty: bool = False, netns: str | None = None, sockets=None, ports: str = "host",
              snapshot: Snapshot | None = None, extra: dict | None = None,
              **misplaced) -> pd.DataFrame:
        """The map now, one row per entry.

        Key columns follow one rule for every map type: `index` for a map of slots (arrays,
        program arrays, devmaps, ...), `key` for a stored scalar key or the C field names of a
        struct key, `key` holding the objects given for local storage, none for a queue or
        stack (whose frame shows the next value). Value columns are `value`, the C field
        names of a struct, or what the family holds (`program_id`/`program_name`,
        `inner_map_id`/`inner_map_name`, `ifindex`/`name`, `cookie`).

        Options: `method` ("auto", "batch", "iterate", "mmap") forces how the map is read;
        `keys=[...]` reads only those keys; `per_cpu` ("long", "wide", "sum") lays out a
        per-CPU map; `empty=True` lists the empty slots of a map of slots too; `netns=` names
        a devmap's interfaces in that network namespace; `sockets={"name": sock}` and
        `ports="network"` are for socket maps. `snapshot=` frames one taken earlier (or
        several joined with Snapshot.concat) instead of reading the map, with `extra` columns
        (one value per entry, such as the time of a sample) in front.

        `columns` renames: a dict {old: new}, or a list of new names in column order:
        `frame({"key": "uid", "value": "count"})`. It is one argument rather than keywords so
        that any column can be renamed, even a field called like an option (`ports`, `keys`).
        """
        if misplaced:
            raise frames.keywords_refused("frame", misplaced, FRAME_OPTIONS, "frame({...})")
        given = {"per_cpu": per_cpu, "netns": netns, "sockets": sockets, "ports": ports}
        options = {}
        for option, value in given.items():
            if option in self.codec.options:
                options[option] = value
            elif value != OPTIONS[option]:
                raise MapError(f"frame({option}=...) is for {', '.join(option_types(option))} maps; "
                               f"{self.name!r} is {self.map_type.a}.",
                               f"leave {option}= out for this map.")
        if empty and not self.map_type.slots:
            raise MapError(f"frame(empty=True) lists the empty slots of an array-like map; "
                           f"{self.name!r} is {self.map_type.a}, whose keys are stored.",
                           "leave empty= out for this map.")
        snap = snapshot if snapshot is not None else self.snapshot(method=method, keys=keys)
        if empty:
            snap = snap.with_every_slot(self.max_entries)
        table = self.codec.table(self.spec, snap.keys, snap.values, objects=snap.objects,
                                 lookups=self.lookups, **options)
        return frames.build(table, extra=extra, columns=columns)

    @held
    def update_batch(self, keys, values, flags: int = 0) -> int:
        """Set many entries in one go (BPF_MAP_UPDATE_BATCH): `keys` and `values` are arrays
        (numpy or lists) in the map's types; a per-CPU map takes one value per entry for every
        CPU, or an (entries, cpus) array. Returns how many entries were written."""
        self._require("update")
        flags = arguments.update_flags(flags, "update_batch()")
        try:
            keys = np.ascontiguousarray(keys, dtype=self.key_dtype)
            if self.per_cpu:
                values = self.codec.values_array(self.spec, values)
            else:
                values = np.ascontiguousarray(values, dtype=self.value_dtype)
        except (TypeError, ValueError, OverflowError) as e:
            raise UsageError(f"update_batch() on {self.name!r} takes arrays of its key type "
                             f"({self._type_name(self.key_type)}) and value type "
                             f"({self._type_name(self.value_type)}); what it got does not "
                             f"convert: {e}.",
                             "give two lists (or numpy arrays) of equal length, of numbers in range "
                             "(or tuples with one item per struct field).") from None
        if len(keys) != len(values):
            raise UsageError(f"update_batch() got {len(keys)} keys but {len(values)} values.",
                             "give one value for each key.")
        return snapshot.write(self, keys, values, flags)

    # -- arrays as histograms --------------------------------------------------------------
    @held
    def counts(self, value: str | None = None) -> np.ndarray:
        """One number per slot of an array, in index order (a per-CPU array's CPUs added up).

        `value` names the field to use when the value is a struct."""
        if not (self.map_type.slots and self.map_type.values == "data"):
            raise MapError(f"counts() and histogram() read an array; {self.name!r} is {self.map_type.a}.",
                           "use .frame() for other maps.")
        frame = self.frame(per_cpu="sum") if self.per_cpu else self.frame()
        columns = [c for c in frame.columns if c != "index"]
        if value is None:
            if len(columns) != 1:
                raise MapError(f"Map {self.name!r} holds a struct ({', '.join(columns)}), so it is "
                               "not clear which field to count.",
                               f"name it: histogram(value={columns[0]!r}).")
            value = columns[0]
        elif value not in columns:
            raise MapError(f"Map {self.name!r} has no value field {value!r}.",
                           f"its fields are {columns}.")
        out = np.zeros(self.max_entries, dtype=np.int64)
        np.add.at(out, frame["index"].to_numpy(dtype=np.int64), frame[value].to_numpy(dtype=np.int64))
        return out

    @held
    def histogram(self, step: int | None = None, *, open_end: bool = False, trim: bool = False,
                  value: str | None = None) -> pd.DataFrame:
        """The array read as a histogram: columns bucket, low, high, range, count.

        By default slot i is a log2 bucket as `bpf_log2l()` fills it (slot 7: 64-127).
        With `step=1024` slot i holds i*step .. (i+1)*step-1 instead; `open_end=True` says the
        program clamps every bigger value into the last slot. `trim=True` drops the empty
        buckets before the first and after the last non-empty one (handy for plotting).
        """
        counts = self.counts(value)
        n = len(counts)
        slots = np.arange(n)
        if step is None:
            bounds = [buckets.log2_range(b) for b in slots]
            labels = buckets.log2_labels(n)
        else:
            if step <= 0:
                raise UsageError(f"step= is the width of one bucket, a positive number, not {step!r}.",
                                 "leave it out for log2 buckets, or give step=10 for buckets 0-9, 10-19, ...")
            bounds = [(int(b) * step, (int(b) + 1) * step - 1) for b in slots]
            labels = buckets.linear_labels(n, step, open_end)
        frame = pd.DataFrame({
            "bucket": slots.astype(np.uint32),
            "low": pd.array([lo for lo, _ in bounds], dtype="Int64"),
            "high": pd.array([hi for _, hi in bounds], dtype="Int64"),
            "range": labels,
            "count": counts,
        })
        if step is not None and open_end and n:
            frame.loc[n - 1, "high"] = pd.NA
        if trim:
            used = np.flatnonzero(counts)
            frame = frame.iloc[used[0]:used[-1] + 1] if len(used) else frame.iloc[0:0]
            frame = frame.reset_index(drop=True)
        return frame

    # -- maps of maps ----------------------------------------------------------------------
    @held
    def inner(self, key) -> "Map":
        """The map in slot `key` of a map of maps, opened by its id: a Map of its own, which
        keeps the inner map alive until it is closed (close it, or use `with`)."""
        self._require_values("map", "inner()")
        return Map.open_by_id(self[key])

    @held
    def contents(self) -> pd.DataFrame:
        """Every inner map's entries in one frame: the outer key (`outer_...` columns), the
        inner map's id and name, then the inner map's own columns. Each inner map is opened by
        its id for the read and closed again at once."""
        self._require_values("map", "contents()")
        snap = self.snapshot()
        outer = {f"outer_{name}": column for name, column
                 in self.codec.key_columns(self.spec, snap.keys).items()}
        parts = []
        for row, map_id in enumerate(snap.values.astype(np.uint32).tolist()):
            try:
                with Map.open_by_id(map_id) as inner:
                    part = inner.frame()
                    name = inner.name
            except MapError:
                continue  # replaced or freed between the two reads
            for pos, (col, values) in enumerate(outer.items()):
                part.insert(pos, col, [values[row]] * len(part))
            part.insert(len(outer), "inner_map_id", np.full(len(part), map_id, dtype=np.uint32))
            part.insert(len(outer) + 1, "inner_map_name", [name] * len(part))
            parts.append(part)
        if not parts:
            return pd.DataFrame(columns=[*outer, "inner_map_id", "inner_map_name"])
        return pd.concat(parts, ignore_index=True)

    def _require_values(self, kind: str, what: str) -> None:
        if self.map_type.values != kind:
            raise MapError(f"{what} is for maps that hold {kind}s; {self.name!r} is {self.map_type.a}.",
                           "see what each map type holds: bpfkit.map_types().")

    @classmethod
    def open_by_id(cls, map_id: int) -> "Map":
        """The map with kernel id `map_id`, opened for reading and writing (close it after).
        A map declared by a program loaded here keeps its C types; another map's keys and
        values read as unsigned ints of their size, or raw bytes."""
        map_id = arguments.whole(map_id, "map_id", "Map.open_by_id()")
        known = cls._known.get(map_id)
        spec = known.spec if known is not None else None
        with atomic.step():
            try:
                fd = lib.bpf_map_get_fd_by_id(map_id)
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    raise failures.too_many_files(e.errno, f"open the map with id {map_id}") from None
                raise MapError(f"There is no map with id {map_id} in the kernel (any more).",
                               "it was freed, or replaced in its slot: read the outer map "
                               "again.") from None
            try:
                return cls(fd, key_type=spec and spec.key_type,
                           value_type=spec and spec.value_type, owns_fd=True)
            except BaseException:
                os.close(fd)
                raise

    # -- programs attached to the map (sockmap, sockhash) ------------------------------------
    @held
    @atomic.whole
    def attach(self, fn, attach_type: str = "msg_verdict") -> None:
        """Attach a loaded sk_msg (or sk_skb) function to this map: it then runs for every
        socket put into the map *after* this call (attach first, then add sockets).

        `fn` is `prog.load_func("fn", "sk_msg")` (or "sk_skb" for the stream and skb attach types),
        or its fd. This is BCC's `BPF.attach_func(fn, map.fd, BPFAttachType.SK_MSG_VERDICT)`. Closing the
        program frees the map, and the kernel drops the attachment with it; `detach()` drops
        it earlier."""
        from ..core.errors import AttachError, did_you_mean
        self._require("attach")
        name = SOCKMAP_ATTACH.get(attach_type, attach_type)
        if name not in kernel.ATTACH_TYPES:
            hint = did_you_mean(str(attach_type), SOCKMAP_ATTACH)
            raise AttachError(f"Unknown sockmap attach type {attach_type!r}.",
                              (hint + " " if hint else "") + f"use one of {sorted(SOCKMAP_ATTACH)}.")
        kind = kernel.ATTACH_TYPES[name]
        prog_fd = fn if isinstance(fn, int) else fn.fd
        try:
            kernel.attach(prog_fd, self.fd, kind)
        except OSError as e:
            raise AttachError(
                f"Could not attach that program to {self.name!r} as {attach_type}: {e.strerror}.",
                "load it with the matching type: prog.load_func('fn', 'sk_msg') for "
                "msg_verdict, 'sk_skb' for the stream and skb ones.", errno=e.errno) from None
        self._attached.append((prog_fd, kind))

    @held
    def attached(self) -> list[int]:
        """Ids of the programs attached to this map (all attach types)."""
        self._require("attach")
        ids = []
        for kind in sorted({kernel.ATTACH_TYPES[n] for n in SOCKMAP_ATTACH.values()}):
            try:
                ids += kernel.attached_prog_ids(self.fd, kind)
            except OSError:
                pass  # kernels before 5.19 cannot list them
        return ids

    @atomic.whole
    def detach(self) -> None:
        """Detach what `attach()` attached (nothing to do once the map or its program is
        closed: the kernel released the attachments with the map)."""
        attached, self._attached = self._attached, []
        if self.closed:
            return
        with self._guard:
            for prog_fd, kind in attached:
                with contextlib.suppress(OSError):   # what detach() returned was never looked at
                    kernel.detach(prog_fd, self.fd, kind)

    # -- memory-mapped arrays --------------------------------------------------------------
    @property
    def mmapable(self) -> bool:
        """An array made with BPF_F_MMAPABLE: user space can read it as plain memory."""
        mt = self.map_type
        return "mmap" in mt.ops and mt.slots and bool(self.flags & maptypes.BPF_F_MMAPABLE)

    @held
    def mapping(self) -> Mapping:
        """The array's memory in this process, mapped on first use and kept while the map is."""
        if self._mapping is None or not self._mapping.live:
            self._mapping = Mapping(self.fd, self.name, self.value_size, self.max_entries,
                                    self.value_dtype)
        return self._mapping

    @held
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
        return self.mapping().array(writable)

    # -- lifetime --------------------------------------------------------------------------
    @held
    def pin(self, path) -> "pins.Pin":
        """Pin the map in the BPF filesystem (a name goes under /sys/fs/bpf): it then outlives
        its program, and another program or process can open it (`bpfkit.open_pinned`). The
        pin is removed by `unpin()`, `bpfkit.close_all()` or at exit."""
        self._pin = pins.Pin(self.fd, path, self.name)
        return self._pin

    def unpin(self) -> None:
        if self._pin is not None:
            self._pin.close()

    def release(self) -> None:
        """Let go of what keeps the map alive besides its fd (a memory mapping): its program
        is closing."""
        if self._mapping is not None:
            self._mapping.release()

    @atomic.whole
    def close(self) -> None:
        """Close a map this process opened or made (a program's maps close with the program).
        A call another thread is making on it finishes first; the fd is freed after it."""
        if not self.owns_fd or not self._guard.close():
            return
        self.release()
        lifetime.discard("map", self, self)

    def __enter__(self) -> "Map":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other) -> bool:
        return self is other


SOCKMAP_ATTACH = {"msg_verdict": "sk_msg_verdict", "stream_parser": "sk_skb_stream_parser",
                  "stream_verdict": "sk_skb_stream_verdict", "skb_verdict": "sk_skb_verdict"}
