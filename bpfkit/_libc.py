"""The few C library calls Python's standard library lacks, declared once, at import.

`mmap` at a fixed address (to swap a mapping for zeroed memory without moving it), `setns`
before Python 3.12, and `mount` for tracefs. Each returns -1 and sets errno on failure.
"""
from __future__ import annotations

import ctypes as ct
import ctypes.util

libc = ct.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
libc.mmap.restype = ct.c_void_p
libc.mmap.argtypes = [ct.c_void_p, ct.c_size_t, ct.c_int, ct.c_int, ct.c_int, ct.c_long]
libc.munmap.restype = ct.c_int
libc.munmap.argtypes = [ct.c_void_p, ct.c_size_t]
libc.setns.restype = ct.c_int
libc.setns.argtypes = [ct.c_int, ct.c_int]
libc.mount.restype = ct.c_int
libc.mount.argtypes = [ct.c_char_p, ct.c_char_p, ct.c_char_p, ct.c_ulong, ct.c_void_p]

MAP_FAILED = ct.c_void_p(-1).value
