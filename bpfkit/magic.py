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


# What skipped cells would have made: a name -> what the kernel refused ("hash maps"). A later cell
# that uses one of these names (while the notebook has no such variable) is skipped too, so a
# lesson marks only the cells that make something with `# needs:`, not every cell that reads it.
SKIPPED: dict[str, str] = {}


def needs(lines: list[str]) -> list[str]:
    """A cell whose first line is `# needs: arena map` (or `lsm program`, `kprobes`, several
    with commas) runs as it is where this kernel allows all of them, and is replaced by one line
    saying what the kernel refuses where it does not (a `%%bpf` cell too: the line goes before
    the magic's). What such a skipped cell would have made (its variables, the program a `%%bpf
    NAME` cell binds) is remembered, and a later cell that uses one of them is skipped the same
    way, naming the refusal: a lesson marks the cells that make a map or load a program, and
    the part that reads them after is skipped with them while the rest of the lesson runs.
    What a cell uses only under an `allowed()` answer of its own (`if arena_here: ...`) does not
    count: that cell runs, and its guard decides.
    An IPython input transformer, run before magics are read: it only reads state; the skip
    line it returns records the skipped names when it runs."""
    if not lines:
        return lines
    wanted = features.needs_of(lines[0])
    body = lines if wanted is None else lines[1:]
    if wanted is not None:
        try:
            refused = not all(features.allowed(f) for f in wanted)
        except Exception:  # an unknown feature: skipped() raises its error when the cell runs
            refused = True
        if refused:
            return [_skip_line(wanted, _names(body)[0], "")]
    if SKIPPED:
        ns = _ipython().user_ns if _ipython() is not None else {}
        made, used = _names(body, guards=lambda name: isinstance(ns.get(name), features.Allowed))
        # A name the cell assigns itself (a loop's variable) is its own, whatever a skipped cell
        # of the same name would have made.
        missing = [n for n in used - made if n in SKIPPED and n not in ns]
        if missing:
            return [_skip_line([], made, missing[0])]
    return body


def _skip_line(wanted: list[str], made: set[str], uses: str) -> str:
    return (f"__import__('bpfkit.magic').magic._skip({wanted!r}, {sorted(made)!r}, {uses!r})\n")


def _skip(wanted: list[str], made: list[str], uses: str) -> None:
    """What a skipped cell runs: its one line, and its names remembered as skipped."""
    if uses:
        refused = SKIPPED.get(uses, "what it needs")
        print(f"Skipped: this kernel refuses {refused}, which {uses} (from a skipped cell above) needs.")
    else:
        refused = features.skipped(wanted)
    for name in made:
        SKIPPED[name] = refused


def _names(lines: list[str], guards=lambda name: False) -> tuple[set[str], set[str]]:
    """(the names a cell assigns, the names it reads), from its Python (magics translated as
    IPython runs them); a `%%bpf NAME maps=a,b` cell makes NAME and reads a and b. Names read
    only in the body of an `if NAME:` whose NAME `guards` says is such an answer are not counted
    as read. A cell that is not Python is read as neither: it runs, and says what is wrong
    itself."""
    import ast
    import re
    text = "".join(lines)
    first, _, rest = text.partition("\n")
    if first.startswith(("%%bpf ", "%%bpfobject ")):
        args = shlex.split(first.split(None, 1)[1]) if len(first.split(None, 1)) > 1 else []
        read = {v for a in args if a.startswith("maps=") for v in a[5:].split(",") if v}
        read |= set(re.findall(r"\{([A-Za-z_]\w*)\}", first))
        return ({args[0]} if args else set()), read
    if first.startswith("%%"):
        text = rest
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        tree = ast.parse(TransformerManager().transform_cell(text))
    except Exception:  # not Python: the cell runs and its own error says why
        return set(), set()
    made, read = set(), set()
    nodes = [tree]
    while nodes:
        node = nodes.pop()
        if isinstance(node, (ast.If, ast.IfExp)) and isinstance(node.test, ast.Name) and guards(node.test.id):
            read.add(node.test.id)
            nodes += node.orelse if isinstance(node.orelse, list) else [node.orelse]
            continue
        if isinstance(node, ast.Name):
            (made if isinstance(node.ctx, ast.Store) else read).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            made.add(node.name)
        nodes += ast.iter_child_nodes(node)
    return made, read


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
