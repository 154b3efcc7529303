"""`%%bpf NAME`: a notebook cell of C code becomes a loaded program bound to NAME.

Running the cell again replaces the previous program of that name, so a learner can edit and
re-run freely without programs piling up in the kernel; a cell that fails leaves the previous
program as it was. bpfkit's errors are shown as their
plain message, without a traceback: the traceback is bpfkit's, not the learner's.
"""
from __future__ import annotations

import shlex

from .loader import features
from .core.errors import BpfkitError, NotFound, UsageError
from .loader.program import load


def bpf(line: str, cell: str):
    """%%bpf NAME [maps=VAR,VAR...] [-- clang flags]: load the cell's C text as program NAME.

    `maps=seen,newcomers` hands the program the Maps in those notebook variables (made with
    bpfkit.create_map), under the same names in the C code."""
    ip = _ipython()
    args = shlex.split(line)
    if not args or not args[0].isidentifier():
        raise UsageError("%%bpf needs a name for the program, a Python identifier.",
                         "write %%bpf counter on the cell's first line, then use `counter` "
                         "in later cells: counter['counter_table'].frame().")
    name, rest = args[0], [a for a in args[1:] if a != "--"]
    given = [a for a in rest if a.startswith("maps=")]
    cflags = [a for a in rest if not a.startswith("maps=")]
    maps = {}
    for var in ",".join(a[len("maps="):] for a in given).split(","):
        if not var:
            continue
        if var not in ip.user_ns:
            raise NotFound(f"%%bpf {name} maps={var}: there is no variable {var!r} in the notebook.",
                           f'make the map in a cell above: {var} = bpfkit.create_map("queue", value="u32").')
        maps[var] = ip.user_ns[var]
    # load() closes the program of the same name once the new one runs; if the new one fails,
    # the old one (and the variable) stay as they were. Line 1 of the cell is the magic itself.
    program = load(cell, name=name, cflags=cflags, where=f"the %%bpf {name} cell", first_line=2,
                   maps=maps)
    ip.user_ns[name] = program
    return None


def _show_bpfkit_error(shell, etype, value, tb, tb_offset=None):
    """Show a bpfkit error as its message alone: what happened, and what to do.

    The traceback would run through bpfkit and BCC, not through the learner's code; `%tb`
    still shows it for whoever wants it."""
    import sys
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    try:
        stb = shell.InteractiveTB.get_exception_only(etype, value)
        shell._showtraceback(etype, value, stb)
    except Exception:  # an IPython without these internals: its own short form
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset, exception_only=True)
    return None


def needs(lines: list[str]) -> list[str]:
    """A cell whose first line is `# needs: arena map` (or `lsm program`, `kprobes`, several
    with commas) runs as it is where this kernel allows all of them, and is replaced by one line
    saying what the kernel refuses where it does not: a lesson marks each cell of a part that
    needs a feature some kernels refuse, and the rest of the lesson runs (a `%%bpf` cell too:
    the line goes before the magic's). An IPython input transformer, run before magics are read."""
    wanted = features.needs_of(lines[0]) if lines else None
    if wanted is None:
        return lines
    try:
        if all(features.allowed(f) for f in wanted):
            return lines[1:]
    except Exception:  # an unknown feature: skipped() raises its error when the cell runs
        pass
    return [f"__import__('bpfkit.loader.features').loader.features.skipped({wanted!r})\n"]


def _ipython():
    from IPython import get_ipython
    return get_ipython()


def bpfobject(line: str, cell: str):
    """`%%bpfobject NAME`: a libbpf-style C cell (lesson 19). The loader, and its clang and
    libbpf checks, are imported at the first such cell, not by every lesson's `%load_ext bpfkit`."""
    from .loader.bpfobject import bpfobject as cell_magic
    return cell_magic(line, cell)


def load_ipython_extension(ip) -> None:
    ip.register_magic_function(bpf, magic_kind="cell", magic_name="bpf")
    ip.register_magic_function(bpfobject, magic_kind="cell", magic_name="bpfobject")
    if needs not in ip.input_transformers_cleanup:
        ip.input_transformers_cleanup.append(needs)
    ip.set_custom_exc((BpfkitError,), _show_bpfkit_error)
