"""`%%bpf NAME`: a notebook cell of C code becomes a loaded program bound to NAME.

Running the cell again closes the previous program of that name first, so a learner can edit
and re-run freely without programs piling up in the kernel. bpfkit's errors are shown as their
plain message, without a traceback: the traceback is bpfkit's, not the learner's.
"""
from __future__ import annotations

import shlex

from .errors import BpfkitError
from .program import load


def bpf(line: str, cell: str):
    """%%bpf NAME [-- clang flags]: load the cell's C text as program NAME."""
    ip = _ipython()
    args = shlex.split(line)
    if not args or not args[0].isidentifier():
        raise BpfkitError("%%bpf needs a name for the program, a Python identifier.",
                          "write %%bpf counter on the cell's first line, then use `counter` "
                          "in later cells: counter['counter_table'].frame().")
    name, cflags = args[0], [a for a in args[1:] if a != "--"]
    old = ip.user_ns.get(name)
    if old is not None and hasattr(old, "close") and getattr(old, "name", None) == name:
        old.close()
    program = load(cell, name=name, cflags=cflags)
    program.where = f"the %%bpf {name} cell"
    ip.user_ns[name] = program
    return None


def _show_bpfkit_error(shell, etype, value, tb, tb_offset=None):
    """Show a bpfkit error as its message alone: what happened, and what to do."""
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset, exception_only=True)
    return None


def _ipython():
    from IPython import get_ipython
    return get_ipython()


def load_ipython_extension(ip) -> None:
    ip.register_magic_function(bpf, magic_kind="cell", magic_name="bpf")
    ip.set_custom_exc((BpfkitError,), _show_bpfkit_error)
