"""The few C library calls Python's standard library lacks, declared once, at import.

`mmap` at a fixed address (to swap a mapping for zeroed memory without moving it), `setns`
and `unshare` before Python 3.12, and `mount` for tracefs and the compiler's short kallsyms.
Each returns -1 (mmap: MAP_FAILED) and sets errno on failure, and each raises that as
`OSError(errno, strerror)` here, through `errcheck`, as libbpf's calls do (`_libbpf`): callers
never test a return value. vasprintf and free, called inside libbpf's print callback where an
exception cannot go, are left unchecked.

libseccomp (a dependency of systemd, so on every distribution we support) lets the check
compile refuse the bpf() syscall by name, without a syscall number of one architecture;
`seccomp` is None where the library is missing.
"""
from __future__ import annotations

import ctypes as ct
import ctypes.util
import os

MAP_FAILED = ct.c_void_p(-1).value


def _failed(result, func, args):
    """errcheck: -1 (or MAP_FAILED, or NULL, from mmap) is errno's failure, raised."""
    if result == -1 or (func.restype is ct.c_void_p and result in (None, MAP_FAILED)):
        err = ct.get_errno()
        raise OSError(err, os.strerror(err))
    return result


libc = ct.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
libc.mmap.restype = ct.c_void_p
libc.mmap.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int, ct.c_int, ct.c_int, ct.c_long]
libc.munmap.restype = ct.c_int
libc.munmap.argtypes = [ct.c_void_p, ct.c_size_t]
libc.setns.restype = ct.c_int
libc.setns.argtypes = [ct.c_int, ct.c_int]
libc.mount.restype = ct.c_int
libc.mount.argtypes = [ct.c_char_p, ct.c_char_p, ct.c_char_p, ct.c_ulong, ct.c_void_p]
libc.unshare.restype = ct.c_int
libc.unshare.argtypes = [ct.c_int]
libc.mmap.errcheck = libc.munmap.errcheck = libc.setns.errcheck = _failed
libc.mount.errcheck = libc.unshare.errcheck = _failed
# libbpf's messages come as a format and a va_list (which reaches C as a pointer on x86-64 and
# arm64 alike): vasprintf makes the whole text, however long, and free gives its memory back.
libc.vasprintf.restype = ct.c_int
libc.vasprintf.argtypes = [ct.POINTER(ct.c_void_p), ct.c_char_p, ct.c_void_p]
libc.free.restype = None
libc.free.argtypes = [ct.c_void_p]

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19


class ScmpArgCmp(ct.Structure):
    """libseccomp's struct scmp_arg_cmp: argument `arg` compared with `op` to `datum_a`."""
    _fields_ = [("arg", ct.c_uint), ("op", ct.c_int), ("datum_a", ct.c_uint64),
                ("datum_b", ct.c_uint64)]


SCMP_CMP_EQ = 4


def _seccomp():
    try:
        lib = ct.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    except OSError:
        return None
    lib.seccomp_init.restype = ct.c_void_p
    lib.seccomp_init.argtypes = [ct.c_uint32]
    lib.seccomp_syscall_resolve_name.restype = ct.c_int
    lib.seccomp_syscall_resolve_name.argtypes = [ct.c_char_p]
    lib.seccomp_rule_add_array.restype = ct.c_int
    lib.seccomp_rule_add_array.argtypes = [ct.c_void_p, ct.c_uint32, ct.c_int, ct.c_uint,
                                           ct.POINTER(ScmpArgCmp)]
    lib.seccomp_load.restype = ct.c_int
    lib.seccomp_load.argtypes = [ct.c_void_p]
    lib.seccomp_release.restype = None
    lib.seccomp_release.argtypes = [ct.c_void_p]
    return lib


seccomp = _seccomp()
SCMP_ACT_ALLOW = 0x7FFF0000


def SCMP_ACT_ERRNO(err: int) -> int:  # noqa: N802 - libseccomp's own name
    return 0x00050000 | (err & 0x0000FFFF)

# AF_XDP sockets (bpfkit/lab/xsk.py): Python's socket.bind() knows no AF_XDP address, so libc's.
libc.bind.restype = ct.c_int
libc.bind.argtypes = [ct.c_int, ct.c_void_p, ct.c_uint32]
libc.bind.errcheck = _failed
