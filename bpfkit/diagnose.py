"""Turning what clang, BCC and the verifier print into a learner's error.

BCC prints compiler and verifier output on the process's C-level stderr (fd 2), which a
notebook never shows, and names the learner's code `/virtual/main.c`. `captured_stderr()`
catches that output; the functions below trim it to the lines that matter, point at the
learner's own file or cell, and add a hint in words.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections import Counter

from .errors import CompileError, LoadError, PrivilegeError, VerifierError

MAP_METHODS = ["lookup", "lookup_or_try_init", "update", "insert", "delete", "increment",
               "atomic_increment", "perf_submit", "ringbuf_output", "ringbuf_reserve",
               "ringbuf_submit", "ringbuf_discard", "call", "redirect_map", "push", "pop", "peek",
               "sock_hash_update", "sock_map_update", "msg_redirect_hash", "msg_redirect_map",
               "sk_redirect_hash", "sk_redirect_map", "get_stackid"]


@contextlib.contextmanager
def captured_stderr():
    """Collect what C code writes to fd 2 while the block runs; yields a list that receives it."""
    out: list[str] = []
    try:
        sys.stderr.flush()
    except Exception:
        pass
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


_DIAG = re.compile(r"^/virtual/main\.c:(\d+):(\d+): (error|warning|note): (.*)$")


def compile_error(output: str, source: str, where: str) -> CompileError:
    """The first errors of clang's output, placed in the learner's `where` (file or cell)."""
    lines = source.splitlines()
    errors = []
    for i, line in enumerate(output.splitlines()):
        m = _DIAG.match(line)
        if not m or m.group(3) != "error":
            continue
        row, col, text = int(m.group(1)), int(m.group(2)), m.group(4)
        code = lines[row - 1] if 0 < row <= len(lines) else ""
        caret = " " * (col - 1) + "^"
        errors.append((row, col, text, code, caret))
    if not errors:
        tail = "\n".join(l for l in output.splitlines() if l.strip() and "generated" not in l)[-2000:]
        return CompileError(f"The C code in {where} did not compile.",
                            "read the compiler's words above; `python -m bpfkit doctor` checks the "
                            "headers BCC compiles against.", detail=tail)
    row, col, text, code, caret = errors[0]
    detail = "\n".join(f"{where}, line {r}, column {c}: {t}\n    {src}\n    {car}"
                       for r, c, t, src, car in errors[:3])
    if len(errors) > 3:
        detail += f"\n(and {len(errors) - 3} more errors after these)"
    return CompileError(f"The C code in {where} did not compile: line {row}, column {col}: {_plain(text)}",
                        _compile_hint(text), detail=detail)


def _plain(text: str) -> str:
    return re.sub(r"; did you mean '[^']*'\?", "", text)


def _compile_hint(text: str) -> str:
    m = re.search(r"no member named '(\w+)' in 'struct (\w+)_table_t'", text)
    if m:
        method, table = m.groups()
        from .errors import nearest
        close = nearest(method, MAP_METHODS, n=1)
        suggestion = f"use {table}.{close[0]}(...)" if close else "check the method's name"
        return (f"{table} is a map, and maps have no method {method!r}: {suggestion}. "
                f"Map methods are {', '.join(MAP_METHODS[:7])}, ...")
    m = re.search(r"use of undeclared identifier '(\w+)'", text)
    if m:
        return (f"{m.group(1)!r} is not declared: check its spelling, and declare maps "
                "(BPF_HASH(...), BPF_ARRAY(...)) above the functions that use them.")
    if "expected ';'" in text:
        return "add the missing ';' at the end of the statement before the place shown."
    if "implicit declaration of function" in text:
        return "that function does not exist in BPF C: check its spelling (helpers start with bpf_)."
    return "fix the line shown, then run the cell again."


_VERIFIER_HINTS = [
    ("map_value_or_null", "the program uses a map lookup's result without checking it: "
     "lookup() returns NULL when the key is missing, so write `if (p) { ... }` before using *p."),
    ("invalid mem access 'scalar'", "the program dereferences a number as if it were a pointer; "
     "read kernel memory with bpf_probe_read_kernel() instead."),
    ("unreachable insn", "some code can never run; the verifier refuses dead code."),
    ("back-edge", "the program has a loop the verifier cannot prove ends: bound it with a constant."),
    ("infinite loop", "the program has a loop the verifier cannot prove ends: bound it with a constant."),
    ("invalid indirect read from stack", "a variable is passed to a helper before it was set: "
     "initialise it (= {} or = 0) first."),
    ("R0 !read_ok", "the function must return a value: add `return 0;`."),
    ("unknown func", "the program calls a helper this program type may not use."),
    ("program is too large", "the program exceeds the verifier's limit: split it with tail calls."),
    ("invalid access to map value", "an index into a map value is not bounded: check it "
     "against the size first."),
    ("invalid access to packet", "the program reads packet data without checking it against "
     "data_end first."),
]


def load_error(output: str, function: str, source: str, where: str, errno_: int):
    """The kernel refused `function`: a VerifierError with the log's key lines, or why else."""
    if errno_ == 1 and "processed" not in output:
        return PrivilegeError(f"The kernel refused to load {function!r}: operation not permitted.",
                              "run as root, or give this process CAP_BPF and CAP_PERFMON.")
    log = [l for l in output.splitlines() if l.strip() and not l.startswith("HINT:")]
    if not any(re.match(r"^\d+: ", l) for l in log):
        return LoadError(f"The kernel refused to load program {function!r}: {os.strerror(errno_)}.",
                         "run `python -m bpfkit doctor`; the kernel's words were: "
                         + (" ".join(log[-3:]) or "none"))
    offset = _line_offset(log, source)
    reason = next((l for l in reversed(log) if not l.startswith("processed") and not re.match(r"^\d+: ", l)
                   and not l.startswith(";") and not l.startswith("bpf:")), log[-1])
    last_source = next((l for l in reversed(log) if l.startswith("; ") and "@ main.c:" in l), None)
    place = ""
    if last_source:
        text, _, num = last_source[2:].rpartition(" @ main.c:")
        row = int(num) - offset if num.isdigit() else 0
        lines = source.splitlines()
        shown = lines[row - 1].strip() if 0 < row <= len(lines) else text.strip()
        place = f" at line {row} of {where}: {shown}" if 0 < row <= len(lines) else f" at: {text.strip()}"
    hint = next((h for key, h in _VERIFIER_HINTS if key in output),
                "read the verifier's last lines above: they name the instruction it refused and why.")
    key_lines = [l for l in log if not l.startswith("bpf:")][-6:]
    return VerifierError(f"The verifier refused program {function!r}{place}.\nIt says: {reason}",
                         hint, detail="Last lines of the verifier's log:\n" + "\n".join(key_lines))


def _line_offset(log: list[str], source: str) -> int:
    """BCC's rewriter adds lines before the learner's code; find how many from lines it kept."""
    own = {}
    for i, line in enumerate(source.splitlines(), 1):
        own.setdefault(line.strip(), i)
    votes = Counter()
    for l in log:
        if l.startswith("; ") and " @ main.c:" in l:
            text, _, num = l[2:].rpartition(" @ main.c:")
            if num.isdigit() and text.strip() in own:
                votes[int(num) - own[text.strip()]] += 1
    return votes.most_common(1)[0][0] if votes else 0
