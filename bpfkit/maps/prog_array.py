"""Program arrays (`BPF_PROG_ARRAY`): slots that hold BPF programs, the targets of tail calls.

The kernel's interface is asymmetric, and the reader keeps it visible: you *write* a slot with a
program's file descriptor (only this process can name a program that way), and you *read back*
the program's id, the kernel-wide name that bpftool shows. An empty slot has no entry (a lookup
says ENOENT), and a tail call into it falls through to the next instruction of the caller.
So `frame()` shows slot, program_id and program_name, and writing accepts what a lesson has in
hand: a function BCC loaded, its fd, or the name of a function in the same C program.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .. import kernel
from ..errors import MapError
from . import family, layout
from .map import Map


@family.register("prog_array")
class ProgArray(Map):
    """A program array: slot -> program. Reads give program ids, writes take programs."""

    # -- writing: a program goes in by fd ---------------------------------------------------
    def _program_fd(self, program) -> int:
        if isinstance(program, (bool, np.bool_)):
            raise MapError(f"A slot of {self.name!r} holds a program, not {program!r}.",
                           _WRITE_HINT)
        if isinstance(program, (int, np.integer)):
            return int(program)
        if isinstance(program, str):
            return self._load_by_name(program).fd
        fd = getattr(program, "fd", None)
        if isinstance(fd, int):
            return fd
        raise MapError(f"A slot of {self.name!r} holds a program; {type(program).__name__} is not one.",
                       _WRITE_HINT)

    def _load_by_name(self, fn_name: str):
        """Load `fn_name` from the map's own C program, with the type of the program's
        already-loaded functions: a tail call only reaches programs of the caller's type."""
        if self.program is None:
            raise MapError(f"Map {self.name!r} does not belong to a bpfkit program, so a "
                           f"function name ({fn_name!r}) cannot be loaded for it.", _WRITE_HINT)
        loaded = self.program.bpf.funcs
        if fn_name.encode() in loaded:
            return loaded[fn_name.encode()]
        types = {kernel.prog_info_by_fd(fn.fd)["type"] for fn in loaded.values()}
        if len(types) != 1:
            raise MapError(
                f"Cannot tell which program type to load {fn_name!r} as: the program has "
                + (f"functions of types {sorted(types)} loaded." if types else "no function loaded yet."),
                "load it yourself with the caller's type and store that: "
                f"m[slot] = prog.load_func({fn_name!r}, BPF.TRACEPOINT) (or BPF.XDP, ...).")
        prog_type = kernel.PROG_TYPES.index(types.pop())
        return self.program.load_func(fn_name, prog_type)

    def __setitem__(self, slot, program):
        self.update(slot, program)

    def update(self, slot, program, flags: int = 0):
        """Put `program` (a loaded function, its fd, or a function name) into `slot`."""
        super().update(slot, self._program_fd(program), flags)

    def clear(self) -> None:
        """Empty every slot: later tail calls through this array fall through."""
        for slot in self.keys():
            try:
                del self[slot]
            except KeyError:
                pass  # emptied meanwhile

    def _fail(self, op: str, err: int, key=None):
        if err == 7:  # E2BIG: the index is past the end
            raise MapError(f"{self.name!r} has slots 0..{self.max_entries - 1}; {key!r} is past the end.",
                           "use a smaller slot, or declare more: BPF_PROG_ARRAY(name, N).")
        if op == "update" and err in (9, 22):  # EBADF, EINVAL
            raise MapError(
                f"The kernel refused to put that program into slot {key!r} of {self.name!r}: "
                f"{os.strerror(err)}.",
                "a slot takes a BPF program of the same program type as the program that makes "
                "the tail call: prog.load_func('name', BPF.TRACEPOINT) for a TRACEPOINT_PROBE "
                "caller, BPF.XDP for an XDP one. A plain number is taken as a file descriptor.")
        super()._fail(op, err, key)

    # -- reading: the kernel answers with program ids ---------------------------------------
    def program_info(self, slot) -> dict | None:
        """The kernel's info about the program in `slot` (id, name, type), or None if empty."""
        prog_id = self.get(slot)
        if prog_id is None:
            return None
        return kernel.prog_info(prog_id) or {"id": prog_id, "name": "", "type": ""}

    def frame(self, columns=None, *, empty: bool = False, **names) -> pd.DataFrame:
        """The filled slots now: slot, program_id, program_name (one row each, in slot order).

        `empty=True` lists every slot, the empty ones with program_id 0 and no name.
        """
        ids = dict(self.items())
        slots = range(self.max_entries) if empty else sorted(ids)
        info = {i: kernel.prog_info(i) for i in set(ids.values())}
        frame = pd.DataFrame({
            "slot": np.array(list(slots), dtype=np.uint32),
            "program_id": np.array([ids.get(s, 0) for s in slots], dtype=np.uint32),
            "program_name": pd.array([(info.get(ids[s]) or {}).get("name", "") if s in ids else ""
                                      for s in slots], dtype=object),
        })
        return layout.rename(frame, columns, **names) if (columns is not None or names) else frame


_WRITE_HINT = ("store a loaded function, its fd, or the name of a function in the same C program: "
               "m[0] = prog.load_func('handler', BPF.TRACEPOINT), m[0] = fn.fd, or m[0] = 'handler'.")
