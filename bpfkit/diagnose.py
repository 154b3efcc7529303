"""Turning what clang, BCC and the verifier print into a learner's error.

BCC prints compiler and verifier output on the process's C-level stderr (fd 2), which a
notebook never shows, and names the learner's code `/virtual/main.c`. `captured_stderr()`
catches that output; the functions below trim it to the lines that matter, point at the
learner's own file or cell, and add a hint in words.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
import tempfile

from .errors import BpfkitError, CompileError, LoadError, PrivilegeError, VerifierError

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


_DIAG = re.compile(r"^(\S+?):(\d+):(\d+): (fatal error|error|warning|note): (.*)$")
_MAIN = "/virtual/main.c"
_MAP_FAILED = re.compile(r"could not open bpf map: (\w+), error: (.*)$", re.M)


def title(where: str) -> str:
    """"your C code" -> "Your C code", at the start of a sentence; file names stay as they are."""
    return where[0].upper() + where[1:] if where.startswith(("your ", "the ")) else where


def _diagnostics(output: str) -> list[dict]:
    """clang's diagnostics, each with the code line it printed under it (if any)."""
    lines = output.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = _DIAG.match(line)
        if not m:
            continue
        code = lines[i + 1] if i + 1 < len(lines) and not _DIAG.match(lines[i + 1]) else None
        out.append({"file": m.group(1), "row": int(m.group(2)), "col": int(m.group(3)),
                    "level": m.group(4), "text": m.group(5), "code": code})
    return out


def _norm(text: str) -> str:
    return " ".join(text.split())


def _learner_rows(diags: list[dict], source_lines: list[str]) -> None:
    """Set d["line"]: the learner's own line number for each diagnostic in main.c.

    BCC rewrites the learner's code before clang sees it (it inserts a struct for each
    TRACEPOINT_PROBE, for instance), so clang's line numbers run ahead of the learner's. clang
    prints the offending line under each diagnostic: find that line in the learner's text,
    at or before clang's number; where the line is blank or ambiguous, use the shift learned
    from the diagnostics before it."""
    shift = 0
    for d in sorted((d for d in diags if d["file"] == _MAIN), key=lambda d: d["row"]):
        row, code = d["row"], d["code"]
        found = None
        if code is not None and _norm(code):
            same = [i for i, l in enumerate(source_lines, 1) if _norm(l) == _norm(code)]
            before = [i for i in same if i <= row]
            if before:
                found = max(before, key=lambda i: (row - i == shift, i))
            elif same:
                found = same[0]
        if found is None:
            guess = row - shift
            found = guess if 0 < guess <= len(source_lines) + 1 else None
        else:
            shift = row - found
        d["line"] = found


def compile_error(output: str, source: str, where: str, first_line: int = 1) -> BpfkitError:
    """The first errors of clang's output, placed in the learner's `where` (file or cell).

    `first_line` is the number the learner sees on the source's first line (2 in a %%bpf
    cell, whose first line is the magic)."""
    failed_map = _MAP_FAILED.search(output)
    if failed_map:
        return _map_error(*failed_map.groups(), where)
    lines = source.splitlines()
    diags = _diagnostics(output)
    _learner_rows(diags, lines)
    errors = [d for d in diags if d["level"] in ("error", "fatal error")]
    if not errors:
        tail = "\n".join(l for l in output.splitlines()
                         if l.strip() and "generated" not in l)[-2000:]
        return CompileError(f"{title(where)} did not compile.",
                            "read the compiler's words above; `python -m bpfkit doctor` checks the "
                            "headers BCC compiles against.", detail=tail)
    shown = []
    for d in errors[:3]:
        shown.append(_place(d, lines, where, first_line))
    detail = "\n".join(text for text, _ in shown)
    if len(errors) > 3:
        detail += f"\n(and {len(errors) - 3} more errors after these)"
    first = errors[0]
    headline = shown[0][1]
    hint = _compile_hint(first["text"])
    if first["file"] != _MAIN:
        hint = _header_hint(first["file"]) or hint
    return CompileError(f"{title(where)} did not compile: {headline}", hint, detail=detail)


def compiler_crashed(signal_name: str, output: str, where: str) -> CompileError:
    """BCC's compiler died (in a throwaway process) instead of reporting an error."""
    if "signed division" in output.lower():
        return CompileError(
            f"{title(where)} did not compile: it divides (or takes a remainder of) a signed number, "
            "and the BPF instruction set of this compiler has only unsigned division. BCC's "
            f"compiler stopped with {signal_name}; bpfkit compiled it in a separate process first, "
            "so nothing else was lost.",
            "make both sides of every / and % unsigned: copy the value into a u64 (or u32) first, "
            "e.g. `u64 bytes = args->ret; ... bytes / 1024`, after checking it is not negative.")
    return CompileError(
        f"{title(where)} did not compile: BCC's compiler crashed on it ({signal_name}) instead of "
        "reporting an error. bpfkit compiled it in a separate process first, so nothing else was lost.",
        "the code has a mistake BCC cannot explain: look for a stray character around the map "
        "declarations (such as `*BPF_HASH(...)`) or a macro used the wrong way; comment out parts "
        "of the program to find the line.")


def _place(d: dict, lines: list[str], where: str, first_line: int) -> tuple[str, str]:
    """(the error with its line and a caret under the column, a one-line summary)."""
    text = _plain(d["text"])
    if d["file"] != _MAIN:
        header = d["file"].replace("/virtual/", "BCC's built-in ")
        return (f"in {header}, line {d['row']}: {text}", f"{text} (in {header}, line {d['row']})")
    row = d.get("line")
    if row is None or row > len(lines):
        return (f"{where}, at the end: {text}", f"at the end: {text}")
    code = lines[row - 1]
    col = min(max(d["col"], 1), len(code) + 1)
    caret = "".join("\t" if ch == "\t" else " " for ch in code[:col - 1]) + "^"
    shown_row = row + first_line - 1
    return (f"{where}, line {shown_row}, column {col}: {text}\n    {code}\n    {caret}",
            f"line {shown_row}, column {col}: {text}")


def _header_hint(path: str) -> str:
    from . import system
    version, release = system.headers_version(), system.kernel_release()
    if path.startswith("/virtual/"):
        return ""
    if version not in (None, "unknown", release):
        return (f"the error is inside the kernel headers, which describe kernel {version} while "
                f"this machine runs {release}: install {system.headers_package()} if your "
                "distribution has it, or avoid the kernel structs that changed.")
    return "the error is inside a header file: check the #include lines and what your code passes to them."


def _map_error(name: str, why: str, where: str) -> LoadError:
    why = why.strip()
    low = why.lower()
    if "argument list too long" in low or "cannot allocate memory" in low:
        hint = (f"map {name!r} asks for more entries or bigger values than the kernel allows or has "
                "memory for: lower its max_entries (the last argument of BPF_HASH/BPF_ARRAY).")
    elif "operation not permitted" in low:
        from . import system
        hint = system.privilege_hint()
    else:
        hint = (f"check how {name!r} is declared: max_entries must be at least 1, and the key and "
                "value types must suit the map type (e.g. an array's key is a u32 index).")
    return LoadError(f"The kernel refused to create map {name!r} declared in {where}: {why}.", hint)


def _plain(text: str) -> str:
    text = re.sub(r"; did you mean '[^']*'\?", "", text)
    m = re.match(r"no member named '(\w+)' in 'struct (\w+)_table_t'$", text)
    if m:
        return f"the map {m.group(2)} has no method {m.group(1)!r}"
    return text


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


def describe_function(fn: str) -> str:
    """A program's function as the learner wrote it: TRACEPOINT_PROBE(syscalls, sys_enter_execve)."""
    if fn.startswith("tracepoint__"):
        category, _, event = fn[len("tracepoint__"):].partition("__")
        return f"TRACEPOINT_PROBE({category}, {event})"
    if fn.startswith("raw_tracepoint__"):
        return f"RAW_TRACEPOINT_PROBE({fn[len('raw_tracepoint__'):]})"
    return f"function {fn}()"


def load_error(output: str, function: str, source: str, where: str, errno_: int,
               first_line: int = 1):
    """The kernel refused `function`: a VerifierError with the log's key lines, or why else."""
    described = describe_function(function)
    if errno_ in (errno.EPERM, errno.EACCES) and "processed" not in output:
        from . import system
        return PrivilegeError(f"The kernel refused to load {described}: {os.strerror(errno_)}. "
                              + system.privilege_problem(),
                              system.privilege_hint())
    log = [l for l in output.splitlines() if l.strip() and not l.startswith("HINT:")]
    if not any(re.match(r"^\d+: ", l) for l in log):
        return LoadError(f"The kernel refused to load {described}: {os.strerror(errno_)}.",
                         "run `python -m bpfkit doctor`; the kernel's words were: "
                         + (" ".join(log[-3:]) or "none"))
    reason = next((l for l in reversed(log) if not l.startswith("processed") and not re.match(r"^\d+: ", l)
                   and not l.startswith(";") and not l.startswith("bpf:")), log[-1])
    last_source = next((l for l in reversed(log) if l.startswith("; ") and "@ main.c:" in l), None)
    place = ""
    if last_source:
        text, _, num = last_source[2:].rpartition(" @ main.c:")
        lines = source.splitlines()
        row = _source_row(text, int(num) if num.isdigit() else 0, lines, log)
        if row:
            place = f" at line {row + first_line - 1} of {where}:\n    {lines[row - 1].strip()}\n"
        else:
            place = f" at:\n    {text.strip()}\n"
    hint = next((h for key, h in _VERIFIER_HINTS if key in output),
                "read the verifier's last lines above: they name the instruction it refused and why.")
    key_lines = [_own_line_number(l, source.splitlines(), log, first_line)
                 for l in log if not l.startswith("bpf:")][-6:]
    return VerifierError(f"The verifier refused {described}{place or '. '}It says: {reason}",
                         hint, detail="Last lines of the verifier's log:\n" + "\n".join(key_lines))


def _own_line_number(log_line: str, lines: list[str], log: list[str], first_line: int) -> str:
    """"; u64 c = *p; @ main.c:28" (BCC's numbering) -> "; u64 c = *p;  (line 5)"."""
    if not (log_line.startswith("; ") and " @ main.c:" in log_line):
        return log_line
    text, _, num = log_line[2:].rpartition(" @ main.c:")
    row = _source_row(text, int(num) if num.isdigit() else 0, lines, log)
    return f"; {text}  (line {row + first_line - 1})" if row else f"; {text}"


def _source_row(text: str, row: int, lines: list[str], log: list[str]) -> int | None:
    """The learner's line that the verifier quotes as `text` at BCC's line `row`.

    BCC's rewriting only ever adds lines, so it is a line with the same text at or before
    `row`; when several match (two `return 0;`), take the one whose shift agrees with the
    nearest quoted line that matches exactly one line of the learner's code."""
    same = [i for i, l in enumerate(lines, 1) if _norm(l) == _norm(text)]
    before = [i for i in same if i <= row]
    if len(before) <= 1:
        return before[0] if before else (same[0] if same else None)
    shifts = []
    for l in log:
        if l.startswith("; ") and " @ main.c:" in l:
            quoted, _, num = l[2:].rpartition(" @ main.c:")
            match = [i for i, own in enumerate(lines, 1) if _norm(own) == _norm(quoted)]
            if num.isdigit() and len(match) == 1 and match[0] <= int(num) <= row:
                shifts.append((int(num), int(num) - match[0]))
    if shifts:
        shift = max(shifts)[1]
        if row - shift in before:
            return row - shift
    return max(before)
