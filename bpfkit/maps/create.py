"""Maps made from Python: `create_map()` for the types BCC cannot declare, `open_pinned()`, and
`map_types()`, the kernel's own list of map types, each tried for real.

BCC declares a map in C and makes it when the program loads. Seven types it cannot declare at
all (bloom_filter, devmap_hash, reuseport_sockarray, cgrp_storage, user_ringbuf, struct_ops,
arena), so bpfkit makes them from user space with libbpf's `bpf_map_create` and hands the
program their file descriptor: `bpfkit.load(source, maps={"seen": m})` (see program.py).
"""
from __future__ import annotations

import contextlib
import ctypes as ct
import errno
import os
import re
from pathlib import Path

import pandas as pd

from ..core import atomic, maptypes
from ..access import refusal
from ..access._libbpf import MapCreateOpts, lib
from ..core.errors import BpfkitError, MapError, UsageError, did_you_mean
from ..host import lifetime
from . import arguments, btf, convert, failures, pins
from .failures import reason
from .map import Map
from .spec import possible_cpus

NAME = re.compile(r"[A-Za-z0-9_.]{1,15}")
EXTRA = ("inner", "map_extra", "hashes", "struct_ops", "numa_node")
BPF_F_NUMA_NODE = 1 << 2


def create_map(type, *, key=None, value=None, max_entries: int | None = None,
               name: str | None = None, flags: int | None = None, **extra) -> Map:
    """A new map of `type` ("bloom_filter", "queue", "devmap_hash", ...), made from Python.

    `key` and `value` are C type names ("u32", "u64", "char[16]") or ctypes types; what is
    left out comes from the type's usual shape (see `bpfkit.map_types()`), so
    `create_map("queue", value="u32", max_entries=8)` is enough. Extras: `inner=` a Map that
    is the template of a map of maps; `hashes=` (or `map_extra=`) a bloom filter's number of
    hash functions; `struct_ops=` the kernel ops table of a struct_ops map; `numa_node=` the
    memory node to take the map's memory from (it sets BPF_F_NUMA_NODE).

    The map is this process's: it lives until `m.close()`, `bpfkit.close_all()` or exit
    (longer if a loaded program uses it, or it is pinned).
    """
    try:
        mt = maptypes.get(type)
    except KeyError:
        raise MapError(f"There is no map type {type!r}.",
                       (did_you_mean(str(type), maptypes.BY_NAME) + " " if did_you_mean(str(type), maptypes.BY_NAME)
                        else "") + "bpfkit.map_types() lists them all.") from None
    unknown = set(extra) - set(EXTRA)
    if unknown:
        raise MapError(f"create_map() does not take {sorted(unknown)[0]}=.",
                       f"its extra settings are {', '.join(f'{e}=' for e in EXTRA)}.")
    example = mt.example
    if mt.key == "none" and key is not None:
        raise MapError(f"{mt.a.capitalize()} has no keys, so create_map() takes no key=.",
                       "give only its value type: create_map(\"%s\", value=\"u64\")." % mt.name)
    key_type = convert.ctype(key if key is not None else example.key, "key")
    value_type = convert.ctype(value if value is not None else example.value, "value")
    max_entries, flags, map_extra, numa_node = _numbers(mt, key_type, value_type, max_entries,
                                                        flags, extra)
    name = name or mt.name[:15]
    if not NAME.fullmatch(name):
        raise MapError(f"{name!r} cannot name a map: the kernel takes 1 to 15 letters, digits, '_' "
                       "or '.'.", "pass a shorter name=, such as name=\"seen\".")
    try:
        lifetime.free_dead()  # what a killed notebook left (pins, cgroups, labs...) goes before we make more
        with atomic.step():  # Stop between the fd and its registration would leak the map
            fd = _create(mt, name, key_type, value_type, max_entries, flags, map_extra,
                         inner=extra.get("inner"), struct_ops=extra.get("struct_ops"),
                         numa_node=numa_node)
            try:
                return Map(fd, name=name, key_type=key_type, value_type=value_type, owns_fd=True)
            except BaseException:
                os.close(fd)
                raise
    except OSError as e:   # the kit's own files (its records, BTF) at the open-file limit
        if e.errno in (errno.EMFILE, errno.ENFILE):
            raise failures.too_many_files(e.errno, f"make {mt.a}") from None
        raise


def _numbers(mt, key_type, value_type, max_entries, flags, extra) -> tuple:
    """create_map's whole-number arguments, each checked against the C type the kernel takes
    it as (ctypes would cut a larger one down without a word), the type's usual ones filled in."""
    example = mt.example
    if max_entries is None:
        max_entries = example.max_entries if example.max_entries is not None else possible_cpus()
    call = f"create_map({mt.name!r})"
    max_entries = arguments.whole(max_entries, "max_entries", call)
    flags = arguments.whole(example.flags if flags is None else flags, "flags", call)
    map_extra = arguments.whole(extra.get("map_extra", extra.get("hashes", example.map_extra)),
                                "map_extra" if "map_extra" in extra else "hashes", call, arguments.U64)
    for role, ctype in (("key", key_type), ("value", value_type)):
        if ctype is not None:
            arguments.whole(ct.sizeof(ctype), f"the {role} size of {role}=", call,
                            hint=f"give the {role} a C type of fewer than 4 GiB.")
    numa_node = extra.get("numa_node")
    if numa_node is not None:
        numa_node = arguments.whole(numa_node, "numa_node", call,
                                    hint="pass a node this machine has: 0 on most machines "
                                         "(`ls /sys/devices/system/node` lists them).")
        nodes = Path("/sys/devices/system/node")
        if nodes.is_dir() and not (nodes / f"node{numa_node}").is_dir():
            have = sorted(p.name[4:] for p in nodes.glob("node[0-9]*"))
            raise UsageError(f"numa_node={numa_node}: this machine has no memory node "
                             f"{numa_node}; its nodes are {', '.join(have) or 'none'}.",
                             "leave numa_node= out (the kernel picks the node of the CPU that "
                             "makes the map), or pass one of those.")
        flags |= BPF_F_NUMA_NODE
    return max_entries, flags, map_extra, numa_node


def _create(mt, name: str, key_type, value_type, max_entries: int, flags: int, map_extra: int,
            *, inner=None, struct_ops=None, numa_node=None) -> int:
    """bpf_map_create with what this map type needs besides its sizes; the new fd."""
    opts = MapCreateOpts(sz=ct.sizeof(MapCreateOpts), map_flags=flags, map_extra=map_extra,
                         numa_node=numa_node or 0)
    key_size = ct.sizeof(key_type) if key_type is not None else 0
    value_size = ct.sizeof(value_type) if value_type is not None else 0
    types = None
    try:
        if mt.values == "map":
            if not isinstance(inner, Map):
                raise MapError(f"{mt.a.capitalize()} needs a template for its inner maps.",
                               f"pass one: create_map(\"{mt.name}\", inner=bpfkit.create_map(\"array\", "
                               "value=\"u64\", max_entries=8)); every map put in must look like it.")
            opts.inner_map_fd = inner.fd
        if mt.example.btf:
            types = btf.Types(key_type, value_type)
            opts.btf_fd, opts.btf_key_type_id, opts.btf_value_type_id = types.fd, types.key_id, types.value_id
        if mt.example.vmlinux_value:
            types = btf.Types(ct.c_int, None)  # the kernel wants a BTF fd next to its own type
            opts.btf_fd = types.fd
            opts.btf_vmlinux_value_type_id, value_size = btf.vmlinux_struct_ops(
                struct_ops or mt.example.vmlinux_value)
        fake = refusal.used("map", mt.name)   # the test switch: as if the kernel said so
        try:
            if fake:
                raise OSError(fake, refusal.strerror(fake))
            return lib.bpf_map_create(mt.number, name.encode(), key_size, value_size, max_entries,
                                      ct.byref(opts))
        except OSError as e:
            err = e.errno
    finally:
        if types is not None:
            types.close()
    raise _refused(mt, err, key_size, value_size, max_entries, flags, lacking=bool(fake))


def _refused(mt, err: int, key_size: int, value_size: int, max_entries: int, flags: int,
             lacking: bool = False):
    shape = (f"key {key_size} bytes, value {value_size} bytes, max_entries {max_entries}, "
             f"flags {flags:#x}")
    if err in (errno.EMFILE, errno.ENFILE):
        return failures.too_many_files(err, f"make {mt.a}")
    if err in (errno.E2BIG, errno.ENOMEM):
        return MapError(f"The kernel refused to create {mt.a} this big ({shape}): {reason(err)}.",
                        "ask for fewer entries or a smaller value.", errno=err)

    def wrong_shape():
        ex = mt.example
        usual = (f"key={convert.c_name(convert.ctype(ex.key)) if ex.key else None}, value="
                 f"{convert.c_name(convert.ctype(ex.value)) if ex.value else None}, max_entries="
                 f"{ex.max_entries if ex.max_entries is not None else 'one per CPU'}, flags={ex.flags:#x}")
        return MapError(f"The kernel refused to create {mt.a} with {shape}: {reason(err)}.",
                        f"{mt.a} is usually made with {usual}; leave out what you do not need "
                        "to change. bpfkit.map_types() shows which types this kernel has.", errno=err)

    # EINVAL is a wrong shape for a type this kernel knows, and the answer to a type it does not
    # (`lacking`: the test switch's EINVAL stands for a kernel without the type).
    if err == errno.EINVAL and not lacking:
        known = btf.vmlinux_enum("bpf_map_type")
        if known is None or f"BPF_MAP_TYPE_{mt.name.upper()}" in known:
            return wrong_shape()
    return refusal.explain(err, f"{mt.name} maps", since=mt.since, fallback=wrong_shape)


def open_pinned(path) -> Map:
    """The map pinned at `path` (a path in bpffs, or a name under /sys/fs/bpf), opened: its
    keys and values read as unsigned ints of their size, or bytes. Close it, or use `with`."""
    with atomic.step():
        fd = pins.open_fd(path)
        try:
            return Map(fd, owns_fd=True)
        except BaseException:
            os.close(fd)
            raise


def map_types() -> pd.DataFrame:
    """Every map type this kernel defines, one row each, each tried for real: a small map of
    the type is made and closed again at once. Columns: type, number, supported (made here),
    error (why not), bcc_declares, bcc (the macro), key, per_cpu, values, readable (by user
    space), ops (what user space may do), since (kernel release), purpose, lesson (the
    notebook that teaches it).

    The kernel's own list comes from its BTF (`enum bpf_map_type`); a type newer than bpfkit
    is listed with what little is known of it."""
    known = btf.vmlinux_enum("bpf_map_type")
    if known is None:
        numbers = [t.number for t in maptypes.TABLE]
    else:
        numbers = sorted({v for k, v in known.items() if v > 0 and not k.startswith("__")})
    rows = []
    for number in numbers:
        mt = maptypes.get(number)
        supported, error = _try(mt)
        rows.append({"type": mt.name, "number": mt.number, "supported": supported, "error": error,
                     "bcc_declares": mt.bcc_declares, "bcc": mt.bcc or "", "key": mt.key,
                     "per_cpu": mt.per_cpu, "values": mt.values, "readable": mt.readable,
                     "ops": " ".join(o for o in maptypes.OPS if o in mt.ops), "since": mt.since,
                     "purpose": mt.purpose, "lesson": mt.lesson})
    return pd.DataFrame(rows)


def _try(mt) -> tuple[bool, str]:
    """(made here, why not): a refusal of any kind is an answer, never an exception, so one
    type this kernel forbids leaves the rest of the table (and every lesson that reads it)."""
    if mt.number not in maptypes.BY_NUMBER:
        return False, "a type newer than bpfkit: not tried"
    return refusal.attempt(lambda: make_and_close(mt))


def make_and_close(mt) -> None:
    """A small map of type `mt` made and closed: the kernel's refusal, if any, raised."""
    with contextlib.ExitStack() as probe:
        probe.enter_context(refusal.probing())   # a probe's map: no lesson's use
        extra = {}
        if mt.example.inner:   # any inner type will do: the first this kernel makes
            template = _inner_template()
            extra["inner"] = template
            probe.callback(template.close)
        create_map(mt, name="probe", **extra).close()


def _inner_template() -> Map:
    """A small map to stand for a map of maps' inner maps in a probe: an array, or a hash where
    the kernel refuses arrays, so a probe of array_of_maps answers for that type alone."""
    try:
        return create_map("array", name="probe_inner")
    except BpfkitError:
        return create_map("hash", name="probe_inner")
