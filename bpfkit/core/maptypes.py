"""Every kernel map type in one table: what its key is, what its values hold, what user space may
do with it, and whether BCC can declare it.

The kernel numbers map types in `enum bpf_map_type` (include/uapi/linux/bpf.h), 1 to 33 on
6.18, ARENA last. Whatever in bpfkit asks "is this an array?", "per CPU?", "can Python read
it?" asks this table, so that a new type is one new row, not a hunt through the code. The
facts were read from the kernel's map implementations and checked on this kit's machines;
`bpfkit.map_types()` probes the running kernel for the ones it really has.

Columns:
- `key`: "stored" (a hash-like map keeps the keys you give it), "index" (slots 0..N-1 that
  always exist), "none" (queue, stack, bloom filter, buffers: no key at all), or "fd" (local
  storage: the key is a file descriptor of the kernel object the value belongs to; `fd_of`
  says which object).
- `values`: "data" (plain bytes you define), references to kernel objects ("program", "map",
  "socket", "device", "cpu", "cgroup", "xsk_socket", "perf_event"), "stack" (instruction
  addresses), "events" (a stream, read with bpfkit.observe.events), "kernel_struct" (a kernel ops
  table), "memory" (pages shared with user space).
- `ops`: what user space may do through the bpf() system call: lookup, update, delete,
  iterate (walk the keys), push/pop/peek (queue and stack), add/test (bloom filter), mmap,
  attach (programs attached to the map itself), events (a stream of records).
- `bcc`: the BCC macro that declares it, or None where BCC cannot (make it with
  `bpfkit.create_map` and pass it to `bpfkit.load(..., maps=...)`).
- `since`: the kernel release that added it.
- `lesson`: the stem of the lesson that teaches it, from `bpfkit.core.catalogue`.
"""
from __future__ import annotations

import ctypes as ct
from dataclasses import dataclass, field

from . import catalogue

# Map flags (BPF_F_* in include/uapi/linux/bpf.h) the kit uses.
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_ZERO_SEED = 1 << 6   # hash maps and bloom filters hash with seed 0: the same answers every run
BPF_F_MMAPABLE = 1 << 10

KEY_KINDS = ("stored", "index", "none", "fd")
OPS = ("lookup", "update", "delete", "iterate", "push", "pop", "peek", "add", "test", "mmap",
       "attach", "events")


class LpmKey4(ct.Structure):
    """An LPM trie key for IPv4: how many leading bits count, then the address."""
    _fields_ = [("prefixlen", ct.c_uint32), ("addr", ct.c_uint8 * 4)]


class CgroupStorageKey(ct.Structure):
    """`struct bpf_cgroup_storage_key`: which cgroup (its inode number) and attach type."""
    _fields_ = [("cgroup_inode_id", ct.c_uint64), ("attach_type", ct.c_uint32)]


@dataclass(frozen=True)
class Example:
    """A small map of the type, as `create_map` makes it when told no more, and as
    `map_types()` probes the kernel with. Types are C names ("u32") or ctypes; `max_entries`
    None means one per possible CPU."""
    key: object = "u32"
    value: object = "u64"
    max_entries: int | None = 16
    flags: int = 0
    map_extra: int = 0
    btf: bool = False              # the kernel wants BTF for key and value (local storage)
    inner: bool = False            # needs an inner map as a template (maps of maps)
    vmlinux_value: str = ""        # value is this kernel struct_ops type, from the kernel's BTF


@dataclass(frozen=True)
class MapType:
    number: int
    name: str
    key: str
    values: str
    ops: frozenset
    bcc: str | None
    since: str
    purpose: str
    per_cpu: bool = False
    fd_of: str = ""
    example: Example = field(default_factory=Example)
    lesson: str = ""               # the notebook that teaches it, e.g. "01_hash_map_counter"

    @property
    def readable(self) -> bool:
        """Can user space read values (by key, or the head of a queue)?"""
        return "lookup" in self.ops or "peek" in self.ops

    @property
    def bcc_declares(self) -> bool:
        return self.bcc is not None

    @property
    def slots(self) -> bool:
        """Keys 0..max_entries-1 that exist from the start (arrays and their relatives)."""
        return self.key == "index"

    @property
    def a(self) -> str:
        """The name with its article, for sentences: "an array", "a hash", "an lru_hash",
        "an sk_storage" (letters are spoken by their names: "ess-kay")."""
        spoken_vowel = self.name[0] in "aeio" or self.name.startswith(("lpm", "lru", "sk_", "xsk"))
        return f"{'an' if spoken_vowel else 'a'} {self.name}"

    def __str__(self) -> str:
        return self.name


def _t(number, name, key, values, ops, bcc, since, purpose, **kw) -> MapType:
    ops = frozenset(ops.split())
    unknown = ops - set(OPS)
    assert key in KEY_KINDS and not unknown, (name, key, unknown)
    return MapType(number, name, key, values, ops, bcc, since, purpose,
                   lesson=catalogue.teaching(name).stem, **kw)


LOCAL_STORAGE = Example(key="int", value="u64", max_entries=0, flags=BPF_F_NO_PREALLOC, btf=True)
RING = Example(key=None, value=None, max_entries=16 * 4096)
FD_ARRAY = Example(key="u32", value="u32", max_entries=4)
SOCKETS = Example(key="u32", value="u64", max_entries=4)  # an 8-byte value: reads give cookies

TABLE = [
    _t(1, "hash", "stored", "data", "lookup update delete iterate", "BPF_HASH", "3.19",
       "key -> value, for anything keyed: counts per uid, per process, per flow"),
    _t(2, "array", "index", "data", "lookup update iterate mmap", "BPF_ARRAY", "3.19",
       "fixed slots 0..N-1, made zeroed: histograms, settings, counters"),
    _t(3, "prog_array", "index", "program", "lookup update delete iterate", "BPF_PROG_ARRAY",
       "4.2", "programs by slot: the targets of tail calls", example=FD_ARRAY),
    _t(4, "perf_event_array", "index", "perf_event", "update delete iterate events",
       "BPF_PERF_OUTPUT", "4.3", "a perf buffer per CPU: events to user space",
       example=Example(key="u32", value="u32", max_entries=None)),
    _t(5, "percpu_hash", "stored", "data", "lookup update delete iterate", "BPF_PERCPU_HASH",
       "4.6", "a hash with a value per CPU: counting without atomics", per_cpu=True),
    _t(6, "percpu_array", "index", "data", "lookup update iterate", "BPF_PERCPU_ARRAY", "4.6",
       "an array with a value per CPU: per-CPU counters and scratch space", per_cpu=True),
    _t(7, "stack_trace", "stored", "stack", "lookup delete iterate", "BPF_STACK_TRACE", "4.6",
       "stack traces by id, for profilers",
       example=Example(key="u32", value="u64[127]", max_entries=16)),
    _t(8, "cgroup_array", "index", "cgroup", "update delete iterate", "BPF_CGROUP_ARRAY", "4.8",
       "cgroups by slot: is this task under that cgroup?", example=FD_ARRAY),
    _t(9, "lru_hash", "stored", "data", "lookup update delete iterate",
       'BPF_TABLE("lru_hash", ...)', "4.10",
       "a hash that drops its least recently used key when full: connection tables"),
    _t(10, "lru_percpu_hash", "stored", "data", "lookup update delete iterate",
       'BPF_TABLE("lru_percpu_hash", ...)', "4.10", "an LRU hash with a value per CPU",
       per_cpu=True),
    _t(11, "lpm_trie", "stored", "data", "lookup update delete iterate", "BPF_LPM_TRIE", "4.11",
       "longest-prefix match: routing tables, address allow-lists",
       example=Example(key=LpmKey4, value="u64", max_entries=16, flags=BPF_F_NO_PREALLOC)),
    _t(12, "array_of_maps", "index", "map", "lookup update delete iterate", "BPF_ARRAY_OF_MAPS",
       "4.12", "maps by slot: swap a whole table at once",
       example=Example(key="u32", value="u32", max_entries=4, inner=True)),
    _t(13, "hash_of_maps", "stored", "map", "lookup update delete iterate", "BPF_HASH_OF_MAPS",
       "4.12", "maps by key: a table per user, per tenant",
       example=Example(key="u32", value="u32", max_entries=4, inner=True)),
    _t(14, "devmap", "index", "device", "lookup update delete iterate", "BPF_DEVMAP", "4.14",
       "network interfaces by slot: where XDP redirects frames", example=FD_ARRAY),
    _t(15, "sockmap", "index", "socket", "lookup update delete iterate attach", "BPF_SOCKMAP",
       "4.14", "sockets by slot: redirect messages between sockets", example=SOCKETS),
    _t(16, "cpumap", "index", "cpu", "lookup update delete iterate", "BPF_CPUMAP", "4.15",
       "CPUs by slot: XDP hands frames to another CPU",
       example=Example(key="u32", value="u32", max_entries=None)),
    _t(17, "xskmap", "index", "xsk_socket", "update delete iterate", "BPF_XSKMAP", "4.18",
       "AF_XDP sockets by slot: frames straight to user space", example=FD_ARRAY),
    _t(18, "sockhash", "stored", "socket", "lookup update delete iterate attach", "BPF_SOCKHASH",
       "4.18", "sockets by key (a 4-tuple): redirect messages between sockets",
       example=SOCKETS),
    _t(19, "cgroup_storage", "stored", "data", "lookup update iterate", "BPF_CGROUP_STORAGE",
       "4.19", "a value per (cgroup, attach type) of the program that uses it",
       example=Example(key=CgroupStorageKey, value="u64", max_entries=0)),
    _t(20, "reuseport_sockarray", "index", "socket", "lookup update delete iterate", None,
       "4.19", "sockets sharing a port (SO_REUSEPORT): a program picks which gets a packet",
       example=SOCKETS),
    _t(21, "percpu_cgroup_storage", "stored", "data", "lookup update iterate",
       "BPF_PERCPU_CGROUP_STORAGE", "4.20", "cgroup storage with a value per CPU", per_cpu=True,
       example=Example(key=CgroupStorageKey, value="u64", max_entries=0)),
    _t(22, "queue", "none", "data", "push pop peek", "BPF_QUEUE", "4.20",
       "first in, first out: a work list, values without keys",
       example=Example(key=None, value="u64", max_entries=16)),
    _t(23, "stack", "none", "data", "push pop peek", "BPF_STACK", "4.20",
       "last in, first out: values without keys",
       example=Example(key=None, value="u64", max_entries=16)),
    _t(24, "sk_storage", "fd", "data", "lookup update delete", "BPF_SK_STORAGE", "5.2",
       "a value attached to each socket, gone with the socket", fd_of="socket",
       example=LOCAL_STORAGE),
    _t(25, "devmap_hash", "stored", "device", "lookup update delete iterate", None, "5.4",
       "network interfaces by key (an ifindex, say): XDP redirect targets", example=FD_ARRAY),
    _t(26, "struct_ops", "index", "kernel_struct", "lookup iterate", None, "5.6",
       "a kernel ops table (TCP congestion control) whose functions are BPF programs",
       example=Example(key="u32", value=None, max_entries=1,
                       vmlinux_value="tcp_congestion_ops")),
    _t(27, "ringbuf", "none", "events", "events mmap", "BPF_RINGBUF_OUTPUT", "5.8",
       "one buffer shared by all CPUs: ordered events to user space", example=RING),
    _t(28, "inode_storage", "fd", "data", "lookup update delete", "BPF_INODE_STORAGE", "5.10",
       "a value attached to each file (inode), for LSM programs", fd_of="file",
       example=LOCAL_STORAGE),
    _t(29, "task_storage", "fd", "data", "lookup update delete", "BPF_TASK_STORAGE", "5.11",
       "a value attached to each task, gone when the task exits", fd_of="pidfd",
       example=LOCAL_STORAGE),
    _t(30, "bloom_filter", "none", "data", "add test", None, "5.16",
       "'seen before?' in little memory: no means no, yes means maybe",
       example=Example(key=None, value="u64", max_entries=1024, map_extra=3)),
    _t(31, "user_ringbuf", "none", "events", "events mmap", None, "6.1",
       "a ring buffer user space writes and a program drains", example=RING),
    _t(32, "cgrp_storage", "fd", "data", "lookup update delete", None, "6.2",
       "a value attached to each cgroup, gone with the cgroup", fd_of="cgroup",
       example=LOCAL_STORAGE),
    _t(33, "arena", "none", "memory", "mmap", None, "6.9",
       "pages shared by programs and user space, with pointers that work on both sides",
       example=Example(key=None, value=None, max_entries=1, flags=BPF_F_MMAPABLE)),
]

BY_NAME = {t.name: t for t in TABLE}
BY_NUMBER = {t.number: t for t in TABLE}


def get(kind) -> MapType:
    """The MapType for a name ("hash", "BPF_MAP_TYPE_HASH", "HASH") or a number. An unknown
    name raises KeyError; an unknown number (a kernel newer than this table) gets a row that
    says only its number."""
    if isinstance(kind, MapType):
        return kind
    if isinstance(kind, int) and not isinstance(kind, bool):
        return BY_NUMBER.get(kind) or MapType(kind, f"type {kind}", "stored", "data",
                                              frozenset(), None, "?", "a type newer than bpfkit")
    name = str(kind).lower().removeprefix("bpf_map_type_")
    if name not in BY_NAME:
        raise KeyError(kind)
    return BY_NAME[name]


def name_of(number: int) -> str:
    return get(number).name
