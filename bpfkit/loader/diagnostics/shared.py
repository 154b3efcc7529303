"""What every source of compile diagnostics needs: BCC's stderr caught, and the small words
every message is made of (a sentence's first word, a function as the learner wrote it).

BCC prints compiler and verifier output on the process's C-level stderr (fd 2), which a
notebook never shows: `captured_stderr()` catches it (the check compile in `bpfkit.loader.compiler`
has its own).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

from ...core import atomic
from ...core.errors import CompileError

SAVED = "bpfkit compiled it in a separate process first, so nothing else was lost."


@contextlib.contextmanager
def captured_stderr():
    """Collect what C code writes to fd 2 while the block runs; yields a list that receives it.

    fd 2 belongs to the whole process: the swap happens inside a step (`atomic`), so two
    threads never swap it at once, and each puts back exactly what it found."""
    out: list[str] = []
    try:
        sys.stderr.flush()
    except Exception:
        pass
    with atomic.step(), tempfile.TemporaryFile(mode="w+b") as tmp:
        saved = os.dup(2)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def title(where: str) -> str:
    """"your C code" -> "Your C code", at the start of a sentence; file names stay as they are."""
    return where[0].upper() + where[1:] if where.startswith(("your ", "the ")) else where


def norm(text: str) -> str:
    return " ".join(text.split())


def tail(output: str, limit: int = 2000) -> str:
    """The compiler's last words, without blank lines and "N errors generated"."""
    return "\n".join(l for l in output.splitlines() if l.strip() and "generated" not in l)[-limit:]


def describe_function(fn: str) -> str:
    """A program's function as the learner wrote it: TRACEPOINT_PROBE(syscalls, sys_enter_execve)."""
    if fn.startswith("tracepoint__"):
        category, _, event = fn[len("tracepoint__"):].partition("__")
        return f"TRACEPOINT_PROBE({category}, {event})"
    if fn.startswith("raw_tracepoint__"):
        return f"RAW_TRACEPOINT_PROBE({fn[len('raw_tracepoint__'):]})"
    return f"function {fn}()"


def pass_a_pointer(line: str) -> str:
    """The hint for a map's key or value passed by value, with the learner's own names."""
    call = re.search(r"(\w+)\.(lookup|update|insert|delete)\s*\(\s*(\w+)", line)
    helper = re.search(r"bpf_map_(lookup|update|delete)_elem\s*\(\s*&?\s*(\w+)\s*,\s*(\w+)", line)
    if helper:  # libbpf C calls the helper itself
        method, name, key = helper.groups()
        more = ", &value, BPF_ANY" if method == "update" else ""
        call_of = f"bpf_map_{method}_elem(&{name}, "
        example = f"write {call_of}&{key}{more}), not {call_of}{key}{more})"
    elif call:
        name, method, key = call.groups()
        more = ", &value" if method in ("update", "insert") else ""
        example = f"write {name}.{method}(&{key}{more}), not {name}.{method}({key}{more})"
    else:
        example = "e.g. counter_table.lookup(&key), not counter_table.lookup(key)"
    return f"pass a pointer, the address of a variable: {example}."


def signed_division(where: str, how: str) -> CompileError:
    # LLVM 14 (Debian 12) aborts on it; LLVM 19 (Debian 13) calls exit(1): the same mistake
    return CompileError(
        f"{title(where)} did not compile: it divides (or takes a remainder of) a signed number, "
        f"and the BPF instruction set of this compiler has only unsigned division. BCC's "
        f"compiler {how}; {SAVED}",
        "make both sides of every / and % unsigned: copy the value into a u64 (or u32) first, "
        "e.g. `u64 bytes = args->ret; ... bytes / 1024`, after checking it is not negative.")
