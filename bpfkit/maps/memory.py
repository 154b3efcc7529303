"""An mmapable array's memory, mapped into this process and shared with the kernel.

An array made with BPF_F_MMAPABLE can be read as plain memory: `view()[i]` is what a program
wrote last, with no system call at all. The mapping holds a reference to the map, so while it
exists the map outlives its program. `release()` (called when the program closes) puts
anonymous zeroed memory at the same address instead: views a learner still holds then read
zeros, never crash, and the kernel frees the map. The address range is unmapped when the last
view is gone.
"""
from __future__ import annotations

import contextlib
import ctypes as ct
import mmap

import numpy as np

from ..access._libc import libc
from ..core.errors import MapError
from .layout import round_up

# Not exported by Python's mmap module; 0x10 on every Linux architecture bpfkit runs on.
MAP_FIXED = getattr(mmap, "MAP_FIXED", 0x10)


class Mapping:
    def __init__(self, fd: int, name: str, value_size: int, entries: int, value_dtype: np.dtype):
        self.elem_size = round_up(value_size)
        self.entries = entries
        page = mmap.PAGESIZE
        self.length = round_up(max(entries * self.elem_size, 1), page)
        self.writable = True
        try:
            try:
                addr = libc.mmap(None, self.length, mmap.PROT_READ | mmap.PROT_WRITE,
                                 mmap.MAP_SHARED, fd, 0)
            except OSError:  # e.g. BPF_F_RDONLY: map it read-only
                self.writable = False
                addr = libc.mmap(None, self.length, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        except OSError as e:
            raise MapError(f"Could not memory-map array {name!r}: {e.strerror}.",
                           'read it with m.frame(method="batch").', errno=e.errno) from None
        self.addr = addr
        self.live = True
        self._value_dtype = value_dtype

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
        try:
            addr = libc.mmap(self.addr, self.length, mmap.PROT_READ | mmap.PROT_WRITE,
                             MAP_FIXED | mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        except OSError:
            addr = None
        if addr != self.addr:  # could not swap: drop the range (views must not be used)
            with contextlib.suppress(OSError):
                libc.munmap(self.addr, self.length)
            self.addr = None

    def __del__(self):
        if getattr(self, "addr", None) is not None:
            with contextlib.suppress(OSError):
                libc.munmap(self.addr, self.length)
            self.addr = None
