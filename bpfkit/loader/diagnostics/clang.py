"""clang's diagnostics ("file:row:col: error: text", the code line under it) put at the
learner's own line of their file or cell, with a hint in words.

BCC names the learner's code `/virtual/main.c` and rewrites it before clang sees it; clang
compiling libbpf-style C (`bpfkit.loader.bpfobject`) names a file of the kit's cache. Both read
clang's lines with `DIAGNOSTIC`.
"""
from __future__ import annotations

import re

from ...core.errors import BpfkitError, CompileError
from .libbpf_c import is_libbpf_c, libbpf_style
from .maps import map_error
from .shared import norm, pass_a_pointer, tail, title

# "file:row:col: level: text"; a file's name may hold spaces (a cache under a home folder)
DIAGNOSTIC = re.compile(r"^(.*?):(\d+):(\d+): (fatal error|error|warning|note): (.*)$")
MAIN = "/virtual/main.c"
_GUTTER = re.compile(r"^\s*\d+ \| ?(.*)$")

MAP_METHODS = ["lookup", "lookup_or_try_init", "update", "insert", "delete", "increment",
               "atomic_increment", "perf_submit", "ringbuf_output", "ringbuf_reserve",
               "ringbuf_submit", "ringbuf_discard", "call", "redirect_map", "push", "pop", "peek",
               "sock_hash_update", "sock_map_update", "msg_redirect_hash", "msg_redirect_map",
               "sk_redirect_hash", "sk_redirect_map", "get_stackid"]


def diagnostics(output: str) -> list[dict]:
    """clang's diagnostics, each with the code line it printed under it (if any)."""
    lines = output.splitlines()
    out = []
    for i, line in enumerate(lines):
        m = DIAGNOSTIC.match(line)
        if not m:
            continue
        code = lines[i + 1] if i + 1 < len(lines) and not DIAGNOSTIC.match(lines[i + 1]) else None
        if code is not None:
            # clang 15 and later put the line's number in a gutter: "   14 |     u64 k = 0"
            gutter = _GUTTER.match(code)
            code = gutter.group(1) if gutter else code
        out.append({"file": m.group(1), "row": int(m.group(2)), "col": int(m.group(3)),
                    "level": m.group(4), "text": m.group(5), "code": code})
    return out


def errors_in(output: str, source_lines: list[str]) -> list[dict]:
    """clang's errors (not its warnings or notes), each at the learner's own line."""
    diags = diagnostics(output)
    learner_rows(diags, source_lines)
    return [d for d in diags if d["level"] in ("error", "fatal error")]


def learner_rows(diags: list[dict], source_lines: list[str]) -> None:
    """Set d["line"]: the learner's own line number for each diagnostic in main.c.

    BCC rewrites the learner's code before clang sees it (it inserts a struct for each
    TRACEPOINT_PROBE, for instance), so clang's line numbers run ahead of the learner's. clang
    prints the offending line under each diagnostic: find that line in the learner's text,
    at or before clang's number; where the line is blank or ambiguous, use the shift learned
    from the diagnostics before it."""
    shift = 0
    for d in sorted((d for d in diags if d["file"] == MAIN), key=lambda d: d["row"]):
        row, code = d["row"], d["code"]
        found = None
        if code is not None and norm(code):
            same = [i for i, l in enumerate(source_lines, 1) if norm(l) == norm(code)]
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
    failed_map = map_error(output, where, source)
    if failed_map:
        return failed_map
    if is_libbpf_c(source):
        return libbpf_style(source, where)
    lines = source.splitlines()
    found = errors_in(output, lines)
    if not found:
        return CompileError(f"{title(where)} did not compile.",
                            "read the compiler's words above; `python -m bpfkit doctor` checks the "
                            "headers BCC compiles against.", detail=tail(output))
    shown = [place(d, lines, where, first_line) for d in found[:3]]
    detail = "\n".join(text for text, _ in shown)
    if len(found) > 3:
        detail += f"\n(and {len(found) - 3} more errors after these)"
    first = found[0]
    own = lines[first["line"] - 1] if first.get("line") and first["line"] <= len(lines) else ""
    hint = _compile_hint(first["text"], source, own)
    if first["file"] != MAIN:
        hint = _header_hint(first["file"]) or hint
    return CompileError(f"{title(where)} did not compile: {shown[0][1]}", hint, detail=detail)


def place(d: dict, lines: list[str], where: str, first_line: int) -> tuple[str, str]:
    """(the error with its line and a caret under the column, a one-line summary)."""
    text = _plain(d["text"])
    if d["file"] != MAIN:
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
    from ...access import system
    version, release = system.headers_version(), system.kernel_release()
    if path.startswith("/virtual/"):
        return ""
    if version not in (None, "unknown", release):
        return (f"the error is inside the kernel headers, which describe kernel {version} while "
                f"this machine runs {release}: install {system.headers_package()} if your "
                "distribution has it, or avoid the kernel structs that changed.")
    return "the error is inside a header file: check the #include lines and what your code passes to them."


def _plain(text: str) -> str:
    text = re.sub(r"\s*\[-W[\w,=-]*\]$", "", text)  # clang's flag name: nothing to a learner
    if "_table_t'" in text:  # clang's guess for a map method is a field of BCC's table struct
        text = re.sub(r"; did you mean '[^']*'\?", "", text)
    m = re.match(r"no member named '(\w+)' in 'struct (\w+)_table_t'$", text)
    if m:
        return f"the map {m.group(2)} has no method {m.group(1)!r}"
    return text


def _compile_hint(text: str, source: str = "", line: str = "") -> str:
    m = re.search(r"no member named '(\w+)' in 'struct (\w+)_table_t'", text)
    if m:
        method, table = m.groups()
        from ...core.errors import nearest
        close = nearest(method, MAP_METHODS, n=1)
        suggestion = f"use {table}.{close[0]}(...)" if close else "check the method's name"
        return (f"{table} is a map, and maps have no method {method!r}: {suggestion}. "
                f"Map methods are {', '.join(MAP_METHODS[:7])}, ...")
    m = re.search(r"no member named '(\w+)' in 'struct tracepoint__(\w+?)__(\w+)'", text)
    if m:
        from ...access import system
        field, category, event = m.groups()
        fields = system.tracepoint_fields(category, event)
        return (f"TRACEPOINT_PROBE({category}, {event}) has no field {field!r}"
                + (f": its args are {', '.join(fields)} (from {system.TRACEFS}/events/{category}/"
                   f"{event}/format)." if fields else "."))
    m = re.search(r"use of undeclared identifier '(\w+)'", text)
    if m:
        return (f"{m.group(1)!r} is not declared: check its spelling, and declare maps "
                "(BPF_HASH(...), BPF_ARRAY(...)) above the functions that use them.")
    if "integer to pointer conversion" in text:  # clang 16 and later: an error, not a warning
        storage = re.search(r"(\w+)\.get_local_storage\(", line)
        if storage:  # BCC declares this method as returning int; it returns the value's address
            return (f"BCC declares {storage.group(1)}.get_local_storage() as returning an int (it "
                    "returns a pointer to the value): cast it, as in "
                    f"u64 *value = (u64 *){storage.group(1)}.get_local_storage(0);")
        return pass_a_pointer(line)  # a key passed by value
    if "expected ';'" in text:
        return "add the missing ';' at the end of the statement before the place shown."
    # clang 14 says "implicit declaration of function 'f'", clang 19 "call to undeclared function 'f'"
    m = re.search(r"(?:implicit declaration of|call to undeclared) function '(\w+)'", text)
    if m:
        from ...core.errors import did_you_mean
        guess = did_you_mean(m.group(1), _callable_names(source))
        return ((guess + " " if guess else "") + f"{m.group(1)!r} is not a function BPF C has: "
                "check its spelling (the kernel's helpers start with bpf_, e.g. "
                "bpf_get_current_pid_tgid), or define it above the code that calls it.")
    return "fix the line shown, then run the cell again."


# Functions of BCC's own that are not kernel helpers (BCC's helpers.h defines them).
_BCC_FUNCTIONS = ["bpf_log2l", "bpf_log2", "bpf_num_cpus", "bpf_trace_printk", "bpf_usdt_readarg",
                  "bpf_usdt_readarg_p", "lock_xadd", "bpf_ntohs", "bpf_htons", "bpf_ntohl", "bpf_htonl"]


def _callable_names(source: str) -> list[str]:
    """What a learner's C may call: the kernel's helpers (from its BTF), BCC's own functions,
    and the functions the source defines."""
    from ...maps import btf
    helpers = [f"bpf_{n.removeprefix('BPF_FUNC_')}" for n in (btf.vmlinux_enum("bpf_func_id") or {})
               if n != "BPF_FUNC_unspec"]
    defined = re.findall(r"\b(\w+)\s*\([^;{]*\)\s*\{", source)
    return sorted(set(helpers + _BCC_FUNCTIONS + defined))
