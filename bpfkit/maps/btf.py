"""The little BTF (BPF Type Format) that making some maps from Python takes.

Local storage maps (socket, task, inode and cgroup storage) must tell the kernel the C types
of their key and value as BTF, and a struct_ops map names a struct of the kernel's own BTF.
BCC writes BTF for the maps it declares; for a map made from Python, `Types` builds a
tiny BTF object from the ctypes of its key and value, and `vmlinux_*()` read the kernel's.
"""
from __future__ import annotations

import ctypes as ct
import functools

from ..access._libbpf import lib, quiet
from ..core.errors import MapError

BTF_KIND_STRUCT, BTF_KIND_ENUM, BTF_KIND_FUNC = 4, 6, 12
BTF_INT_SIGNED = 1


class Types:
    """A BTF object loaded into the kernel, holding a key and a value type: pass `fd`,
    `key_id`, `value_id` to map creation, then `close()` (the map keeps what it needs)."""

    def __init__(self, key_type, value_type):
        try:
            self._btf = lib.btf__new_empty()
        except OSError:
            raise MapError("libbpf could not make a BTF object.",
                           "this is a bpfkit bug: please report it.") from None
        self._byte = None
        try:
            self.key_id = self._add(key_type) if key_type is not None else 0
            self.value_id = self._add(value_type) if value_type is not None else 0
            with quiet():
                _check("load the map's types (BTF) into the kernel", lib.btf__load_into_kernel,
                       self._btf)
            self.fd = _check("find the map's types (BTF) in the kernel", lib.btf__fd, self._btf)
        except BaseException:
            self.close()
            raise

    def _add(self, ctype) -> int:
        if issubclass(ctype, ct.Structure):
            members = [(name, self._add(t), getattr(ctype, name).offset)
                       for name, t, *_ in ctype._fields_]
            tid = _check("describe a struct", lib.btf__add_struct, self._btf, ctype.__name__.encode(),
                         ct.sizeof(ctype))
            for name, member, offset in members:
                _check("describe a struct field", lib.btf__add_field, self._btf, name.encode(), member,
                       offset * 8, 0)
            return tid
        if issubclass(ctype, ct.Array):
            return _check("describe an array", lib.btf__add_array, self._btf, self._index(),
                          self._add(ctype._type_), ctype._length_)
        size = ct.sizeof(ctype)
        if size in (1, 2, 4, 8) and ctype not in (ct.c_float, ct.c_double):
            signed = ctype is not ct.c_char and ctype(-1).value == -1
            return _check("describe an int", lib.btf__add_int, self._btf,
                          f"{'s' if signed else 'u'}{size * 8}".encode(), size,
                          BTF_INT_SIGNED if signed else 0)
        return _check("describe bytes", lib.btf__add_array, self._btf, self._index(), self._u8(), size)

    def _u8(self) -> int:
        if self._byte is None:
            self._byte = _check("describe a byte", lib.btf__add_int, self._btf, b"u8", 1, 0)
        return self._byte

    def _index(self) -> int:
        return self._add(ct.c_int32)

    def close(self) -> None:
        if self._btf:
            lib.btf__free(self._btf)  # closes the fd too
            self._btf = None


def _check(what: str, fn, *args) -> int:
    """libbpf's `fn(*args)`, its refusal made the learner's error: the one place for BTF calls."""
    try:
        return fn(*args)
    except OSError as e:
        raise MapError(f"libbpf could not {what}: {e.strerror}.",
                       "the map's key and value types must be plain C types (ints, arrays, "
                       "structs).", errno=e.errno) from None


class _Vmlinux:
    """The kernel's own BTF (/sys/kernel/btf/vmlinux), loaded once and freed at `close()`."""

    def __init__(self):
        try:
            with quiet():
                self.btf = lib.btf__load_vmlinux_btf()
        except OSError:
            raise MapError("This kernel has no BTF (/sys/kernel/btf/vmlinux), which describes its "
                           "own types.", "use a kernel built with CONFIG_DEBUG_INFO_BTF=y.") from None

    def find(self, name: str, kind: int) -> int:
        """The type id of `name`, or 0 where the kernel has none."""
        try:
            return lib.btf__find_by_name_kind(self.btf, name.encode(), kind)
        except OSError:   # ENOENT
            return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        lib.btf__free(self.btf)


def vmlinux_struct_ops(name: str) -> tuple[int, int]:
    """(type id, size) of the kernel's value type for struct_ops `name` ("tcp_congestion_ops"),
    as a struct_ops map wants them."""
    with _Vmlinux() as vm:
        tid = vm.find(f"bpf_struct_ops_{name}", BTF_KIND_STRUCT)
        if not tid:
            raise MapError(f"This kernel has no struct_ops type {name!r}.",
                           "pick one the kernel registers, e.g. tcp_congestion_ops.")
        return tid, _check(f"size the kernel's type of {name}", lib.btf__resolve_size, vm.btf, tid)


class _BtfType(ct.Structure):
    _fields_ = [("name_off", ct.c_uint32), ("info", ct.c_uint32), ("size", ct.c_uint32)]


class _BtfEnum(ct.Structure):
    _fields_ = [("name_off", ct.c_uint32), ("val", ct.c_int32)]


class _BtfMember(ct.Structure):
    _fields_ = [("name_off", ct.c_uint32), ("type", ct.c_uint32), ("offset", ct.c_uint32)]


def vmlinux_field_offset(struct: str, field: str) -> int:
    """The byte offset of `field` in the running kernel's `struct` ("task_struct", "cgroups"),
    from its BTF. BCC compiles against kernel headers that may be older than the kernel (the
    kit's machines run 6.18 with 6.1 headers), so a program that follows a kernel pointer gets
    the offset from here, as a -D flag."""
    with _Vmlinux() as vm:
        tid = vm.find(struct, BTF_KIND_STRUCT)
        if not tid:
            raise MapError(f"This kernel's BTF has no struct {struct}.", "check the name in its headers.")
        address = lib.btf__type_by_id(vm.btf, tid)
        t = _BtfType.from_address(address)
        members = (_BtfMember * (t.info & 0xFFFF)).from_address(address + ct.sizeof(_BtfType))
        bitfields = bool(t.info >> 31)  # kind_flag: offsets hold a bitfield's size above bit 24
        for m in members:
            if lib.btf__name_by_offset(vm.btf, m.name_off).decode() == field:
                return (m.offset & 0xFFFFFF if bitfields else m.offset) // 8
    raise MapError(f"struct {struct} has no field {field} in this kernel.", "check the name in its headers.")


@functools.cache
def vmlinux_function_id(name: str) -> int:
    """The BTF id of the kernel function `name` (what a tracing or LSM program attaches to), or 0
    where the kernel has no BTF or no such function. Read once per process: the running kernel's
    types do not change under it, and a probe of every helper asks 200 times."""
    try:
        vm = _Vmlinux()
    except MapError:
        return 0
    with vm:
        return vm.find(name, BTF_KIND_FUNC)


def vmlinux_enum(name: str) -> dict[str, int] | None:
    """The values of one of the kernel's enums ("bpf_map_type"), from its BTF; None when the
    kernel has no BTF. A copy of what was read once per process (see vmlinux_function_id)."""
    values = _vmlinux_enum(name)
    return None if values is None else dict(values)


@functools.cache
def _vmlinux_enum(name: str) -> dict[str, int] | None:
    try:
        vm = _Vmlinux()
    except MapError:
        return None
    with vm:
        tid = vm.find(name, BTF_KIND_ENUM)
        if not tid:
            return None
        t = _BtfType.from_address(lib.btf__type_by_id(vm.btf, tid))
        entries = (_BtfEnum * (t.info & 0xFFFF)).from_address(
            lib.btf__type_by_id(vm.btf, tid) + ct.sizeof(_BtfType))
        return {lib.btf__name_by_offset(vm.btf, e.name_off).decode(): e.val for e in entries}


