"""libbpf through ctypes: every prototype bpfkit calls, declared here once, at import.

ctypes guesses `int` for every argument it was not told about, which silently truncates a
64-bit pointer or flag: one table of prototypes, checked by a test, keeps that from creeping
back in. libbpf is a dependency of the distro's BCC, so it is there wherever BCC is. Every
call here is in libbpf 1.1 (Debian 12's, the oldest the kit supports); an older libbpf lacks
some, and `has(name)` tells the doctor which.

Calls fail one way: a failed call raises `OSError(errno, strerror)`, whether libbpf said so
with a negative errno (its int calls, in 1.x and in 0.x's 1.0 mode) or with NULL and errno (its
constructors). Each prototype says which (NEG, NULL; none for calls that cannot fail, such as
names, and for those whose NULL means "no more"), and one check, `errcheck` on the prototype,
turns the failure into the exception: callers never test a return value for an error, and
each door of the kit makes its learner's error from the OSError in one place.
"""
from __future__ import annotations

import ctypes as ct
import ctypes.util
import errno as _errno
import os
from contextlib import contextmanager

from ._libc import libc
from ..core.errors import SetupError

u32p = ct.POINTER(ct.c_uint32)
vp, cp, i32, u32, u64 = ct.c_void_p, ct.c_char_p, ct.c_int, ct.c_uint32, ct.c_uint64


class MapCreateOpts(ct.Structure):
    """`struct bpf_map_create_opts` as libbpf 0.7 laid it out; `sz` lets newer libbpfs
    accept it."""
    _fields_ = [("sz", ct.c_size_t), ("btf_fd", u32), ("btf_key_type_id", u32),
                ("btf_value_type_id", u32), ("btf_vmlinux_value_type_id", u32),
                ("inner_map_fd", u32), ("map_flags", u32), ("map_extra", u64),
                ("numa_node", u32), ("map_ifindex", u32)]


class BatchOpts(ct.Structure):
    """`struct bpf_map_batch_opts`."""
    _fields_ = [("sz", ct.c_size_t), ("elem_flags", u64), ("flags", u64)]


class TestRunOpts(ct.Structure):
    """`struct bpf_test_run_opts` (libbpf 0.7 and later)."""
    _fields_ = [
        ("sz", ct.c_size_t), ("data_in", vp), ("data_out", vp),
        ("data_size_in", u32), ("data_size_out", u32),
        ("ctx_in", vp), ("ctx_out", vp), ("ctx_size_in", u32), ("ctx_size_out", u32),
        ("retval", u32), ("repeat", ct.c_int), ("duration", u32),
        ("flags", u32), ("cpu", u32), ("batch_size", u32),
    ]


class ProgLoadOpts(ct.Structure):
    """`struct bpf_prog_load_opts` as libbpf 1.0 laid it out, up to the verifier's log: newer
    libbpfs accept it by its `sz`."""
    _fields_ = [("sz", ct.c_size_t), ("attempts", ct.c_int), ("expected_attach_type", u32),
                ("prog_btf_fd", u32), ("prog_flags", u32), ("prog_ifindex", u32),
                ("kern_version", u32), ("attach_btf_id", u32), ("attach_prog_fd", u32),
                ("attach_btf_obj_fd", u32), ("fd_array", vp), ("func_info", vp),
                ("func_info_cnt", u32), ("func_info_rec_size", u32), ("line_info", vp),
                ("line_info_cnt", u32), ("line_info_rec_size", u32), ("log_level", u32),
                ("log_size", u32), ("log_buf", vp)]


NEG = "negative errno"       # an int result below 0 is -errno
NULL = "NULL and errno"      # a NULL pointer is a failure, errno says which


def _negative(result, func, args):
    if result < 0:
        raise OSError(-result, os.strerror(-result))
    return result


def _null(result, func, args):
    if not result:
        err = ct.get_errno() or _errno.EINVAL  # libbpf 0.x left errno unset on a few NULLs
        raise OSError(err, os.strerror(err))
    return result


CHECKS = {NEG: _negative, NULL: _null}

# name: (result type, argument types[, how it fails]). ctypes' default result, int, is spelled
# out anyway. Without a third item the call cannot fail (or its NULL means "none").
PROTOTYPES = {
    # objects by id, and what the kernel says of them
    "bpf_prog_get_next_id": (i32, [u32, u32p], NEG),
    "bpf_map_get_next_id": (i32, [u32, u32p], NEG),
    "bpf_link_get_next_id": (i32, [u32, u32p], NEG),
    "bpf_prog_get_fd_by_id": (i32, [u32], NEG),
    "bpf_map_get_fd_by_id": (i32, [u32], NEG),
    "bpf_link_get_fd_by_id": (i32, [u32], NEG),
    "bpf_obj_get_info_by_fd": (i32, [i32, vp, u32p], NEG),
    "bpf_enable_stats": (i32, [i32], NEG),   # statistics on while its fd is open (Linux 5.8)
    # one entry at a time
    "bpf_map_lookup_elem": (i32, [i32, vp, vp], NEG),
    "bpf_map_lookup_elem_flags": (i32, [i32, vp, vp, u64], NEG),
    "bpf_map_lookup_and_delete_elem": (i32, [i32, vp, vp], NEG),
    "bpf_map_update_elem": (i32, [i32, vp, vp, u64], NEG),
    "bpf_map_delete_elem": (i32, [i32, vp], NEG),
    "bpf_map_get_next_key": (i32, [i32, vp, vp], NEG),
    # many entries per system call
    "bpf_map_lookup_batch": (i32, [i32, vp, vp, vp, vp, u32p, vp], NEG),
    "bpf_map_lookup_and_delete_batch": (i32, [i32, vp, vp, vp, vp, u32p, vp], NEG),
    "bpf_map_update_batch": (i32, [i32, vp, vp, u32p, vp], NEG),
    "bpf_map_delete_batch": (i32, [i32, vp, u32p, vp], NEG),
    # making maps, pinning them in bpffs
    "bpf_map_create": (i32, [i32, cp, u32, u32, u32, ct.POINTER(MapCreateOpts)], NEG),
    "bpf_obj_pin": (i32, [i32, cp], NEG),
    "bpf_obj_get": (i32, [cp], NEG),
    # attaching to cgroups and sockmaps, XDP, running a program on a test packet
    "bpf_prog_attach": (i32, [i32, i32, i32, ct.c_uint], NEG),
    "bpf_prog_detach2": (i32, [i32, i32, i32], NEG),
    "bpf_prog_query": (i32, [i32, i32, u32, u32p, u32p, u32p], NEG),
    "bpf_xdp_query_id": (i32, [i32, i32, u32p], NEG),
    "bpf_prog_test_run_opts": (i32, [i32, ct.POINTER(TestRunOpts)], NEG),
    # a minimal program of one type, loaded to learn whether this kernel allows the type
    "bpf_prog_load": (i32, [i32, cp, cp, vp, ct.c_size_t, ct.POINTER(ProgLoadOpts)], NEG),
    # BTF: the type information storage maps need for their values, and the kernel's own
    "btf__new_empty": (vp, [], NULL),
    "btf__free": (None, [vp]),
    "btf__add_int": (i32, [vp, cp, ct.c_size_t, i32], NEG),
    "btf__add_array": (i32, [vp, i32, i32, u32], NEG),
    "btf__add_struct": (i32, [vp, cp, u32], NEG),
    "btf__add_field": (i32, [vp, cp, i32, u32, u32], NEG),
    "btf__load_into_kernel": (i32, [vp], NEG),
    "btf__fd": (i32, [vp], NEG),
    "btf__load_vmlinux_btf": (vp, [], NULL),
    "btf__find_by_name_kind": (i32, [vp, cp, u32], NEG),
    "btf__resolve_size": (ct.c_ssize_t, [vp, u32], NEG),
    "btf__type_by_id": (vp, [vp, u32]),
    "btf__name_by_offset": (cp, [vp, u32]),
    "libbpf_set_print": (vp, [vp]),
    # objects compiled with clang (lesson 19, bpfkit.loader.bpfobject): open, load, attach, close
    "bpf_object__open_file": (vp, [cp, vp], NULL),
    "bpf_object__load": (i32, [vp], NEG),
    "bpf_object__close": (None, [vp]),
    "bpf_object__next_map": (vp, [vp, vp]),
    "bpf_object__next_program": (vp, [vp, vp]),
    "bpf_map__name": (cp, [vp]),
    "bpf_map__fd": (i32, [vp], NEG),
    "bpf_map__type": (i32, [vp]),
    "bpf_map__attach_struct_ops": (vp, [vp], NULL),
    "bpf_map__map_flags": (u32, [vp]),
    "bpf_map__set_map_flags": (i32, [vp, u32], NEG),
    "bpf_link__fd": (i32, [vp], NEG),
    "bpf_link_create": (i32, [i32, i32, i32, vp], NEG),
    "bpf_program__name": (cp, [vp]),
    "bpf_program__fd": (i32, [vp], NEG),
    "bpf_program__section_name": (cp, [vp]),
    "bpf_program__type": (i32, [vp]),
    "bpf_program__attach": (vp, [vp], NULL),
    "bpf_link__destroy": (i32, [vp], NEG),
    "libbpf_get_error": (ct.c_long, [vp]),
    # the user ring buffer: user space writes records a program drains
    "user_ring_buffer__new": (vp, [i32, vp], NULL),
    "user_ring_buffer__reserve": (vp, [vp, u32], NULL),
    "user_ring_buffer__submit": (None, [vp, vp]),
    "user_ring_buffer__discard": (None, [vp, vp]),
    "user_ring_buffer__free": (None, [vp]),
}


class _Missing:
    """Stands in for libbpf where it is not installed: any call explains what to install."""

    def __getattr__(self, name):
        raise SetupError("libbpf is not installed, and bpfkit reaches the kernel's BPF objects "
                         "through it.",
                         "install BCC from the distro (sudo apt-get install python3-bpfcc), which "
                         "brings libbpf with it.")


def _load():
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ct.CDLL(name, use_errno=True)
    except OSError:
        return _Missing()
    for fn, (restype, argtypes, *fails) in PROTOTYPES.items():
        try:
            f = getattr(lib, fn)
        except AttributeError:
            continue  # a libbpf older than 1.1: has() tells the doctor
        f.restype, f.argtypes = restype, argtypes
        if fails:
            f.errcheck = CHECKS[fails[0]]
    return lib


lib = _load()


def has(fn: str) -> bool:
    """Does this machine's libbpf have `fn`? (Declared above, so only names from PROTOTYPES.)"""
    if fn not in PROTOTYPES:
        raise KeyError(f"{fn} is not declared in bpfkit.access._libbpf.PROTOTYPES")
    return not isinstance(lib, _Missing) and hasattr(lib, fn)


# libbpf_print_fn_t: int (*)(enum libbpf_print_level, const char *format, va_list args)
PRINT_FN = ct.CFUNCTYPE(ct.c_int, ct.c_int, ct.c_char_p, ct.c_void_p)
LIBBPF_DEBUG = 2


@contextmanager
def messages():
    """What libbpf says during the block (its warnings and notes: a refused program's verifier
    log among them), as a list of texts. Whatever printer was set before comes back after: BCC
    sets its own on its first load, and it drops libbpf's warnings."""
    said: list[str] = []

    def keep(level: int, fmt: bytes, args) -> int:
        if level < LIBBPF_DEBUG:
            text = ct.c_void_p()
            if libc.vasprintf(ct.byref(text), fmt, args) >= 0 and text.value:
                said.append(ct.string_at(text.value).decode(errors="replace"))
                libc.free(text)
        return 0

    printer = PRINT_FN(keep)  # kept alive by this frame while libbpf may call it
    old = lib.libbpf_set_print(printer) if has("libbpf_set_print") else None
    try:
        yield said
    finally:
        if has("libbpf_set_print"):
            lib.libbpf_set_print(old)


@contextmanager
def quiet():
    """libbpf prints its own warnings (a refused BTF's log, say) to stderr; bpfkit explains
    failures itself, so they are silenced for the block."""
    old = lib.libbpf_set_print(None) if has("libbpf_set_print") else None
    try:
        yield
    finally:
        if has("libbpf_set_print"):
            lib.libbpf_set_print(old)

