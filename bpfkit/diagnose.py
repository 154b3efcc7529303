"""Turning what clang, BCC and LLVM print about a compile into a learner's error.

BCC prints compiler and verifier output on the process's C-level stderr (fd 2), which a
notebook never shows, and names the learner's code `/virtual/main.c`. `captured_stderr()`
catches that output (the check compile in `compiler` has its own); the functions below trim it
to the lines that matter, point at the learner's own file or cell, and add a hint in words.
The verifier's log has a module of its own, `verifier`.
"""
from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile

from . import atomic, maptypes
from .errors import BpfkitError, CompileError, LoadError

MAP_METHODS = ["lookup", "lookup_or_try_init", "update", "insert", "delete", "increment",
               "atomic_increment", "perf_submit", "ringbuf_output", "ringbuf_reserve",
               "ringbuf_submit", "ringbuf_discard", "call", "redirect_map", "push", "pop", "peek",
               "sock_hash_update", "sock_map_update", "msg_redirect_hash", "msg_redirect_map",
               "sk_redirect_hash", "sk_redirect_map", "get_stackid"]


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


_DIAG = re.compile(r"^(\S+?):(\d+):(\d+): (fatal error|error|warning|note): (.*)$")
_MAIN = "/virtual/main.c"
_GUTTER = re.compile(r"^\s*\d+ \| ?(.*)$")
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
        if code is not None:
            # clang 15 and later put the line's number in a gutter: "   14 |     u64 k = 0"
            gutter = _GUTTER.match(code)
            code = gutter.group(1) if gutter else code
        out.append({"file": m.group(1), "row": int(m.group(2)), "col": int(m.group(3)),
                    "level": m.group(4), "text": m.group(5), "code": code})
    return out


def norm(text: str) -> str:
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
    failed_map = _MAP_FAILED.search(output)
    if failed_map:
        return _map_error(*failed_map.groups(), where)
    if _LIBBPF_STYLE.search(source):
        return libbpf_style(source, where)
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
    own = lines[first["line"] - 1] if first.get("line") and first["line"] <= len(lines) else ""
    hint = _compile_hint(first["text"], source, own)
    if first["file"] != _MAIN:
        hint = _header_hint(first["file"]) or hint
    return CompileError(f"{title(where)} did not compile: {headline}", hint, detail=detail)


_LIBBPF_STYLE = re.compile(r'\bSEC\s*\(\s*"|__uint\s*\(\s*type\b|<bpf/bpf_helpers\.h>|"vmlinux\.h"')


def libbpf_style(source: str, where: str) -> CompileError:
    """C written for libbpf (SEC(...) sections, BTF-defined maps), which BCC does not read:
    what each of its pieces is in BCC's words."""
    steps = []
    for body, name in re.findall(r"struct\s*\{(.*?)\}\s*(\w+)\s+SEC\s*\(\s*\"\.maps\"\s*\)", source, re.S):
        steps.append(_bcc_map(name, dict(re.findall(r"__(?:uint|type)\s*\(\s*(\w+)\s*,\s*([^)]*?)\s*\)", body))))
    for section, fn in re.findall(r'SEC\s*\(\s*"([^"]+)"\s*\)\s*(?:static\s+)?(?:__always_inline\s+)?\w+\s+(\w+)\s*\(', source):
        steps.append(_bcc_function(section, fn))
    if re.search(r'SEC\s*\(\s*"license"\s*\)', source):
        steps.append('the license line (char LICENSE[] SEC("license") = ...): delete it; a BCC '
                     "program is GPL unless it says #define BPF_LICENSE ...")
    includes = re.findall(r'#include\s*[<"]((?:bpf/\w+|vmlinux)\.h)[>"]', source)
    if includes:
        steps.append(f"#include of {', '.join(sorted(set(includes)))}: delete them; BCC brings its "
                     "own helpers and compiles against this kernel's headers.")
    for helper, method in (("lookup", "lookup(&key)"), ("update", "update(&key, &value)"),
                           ("delete", "delete(&key)")):
        m = re.search(rf"bpf_map_{helper}_elem\s*\(\s*&(\w+)", source)
        if m:
            steps.append(f"bpf_map_{helper}_elem(&{m.group(1)}, ...): write {m.group(1)}.{method}.")
    return CompileError(
        f"{title(where)} is written for libbpf (SEC(...) sections, maps declared as "
        'struct { __uint(type, ...) } name SEC(".maps")), and BCC, which bpfkit compiles with, '
        "says those things its own way.",
        "rewrite each piece as listed above; the lessons' programs in bpf/ show every form.",
        detail="In BCC's words:\n" + "\n".join(f"  - {step}" for step in steps))


def _bcc_map(name: str, fields: dict) -> str:
    kind = fields.get("type", "").removeprefix("BPF_MAP_TYPE_").lower()
    try:
        mt = maptypes.get(kind)
    except KeyError:
        return f"map {name}: declare it with a BCC macro such as BPF_HASH({name}, key_t, value_t, 1024)."
    key, value = fields.get("key", "u32"), fields.get("value", "u64")
    size = fields.get("max_entries", "1024")
    if mt.bcc is None:
        return (f"map {name} ({mt.name}): BCC cannot declare it; make it in Python with "
                f'{name} = bpfkit.create_map("{mt.name}", ...) and pass it with '
                f'load(..., maps={{"{name}": {name}}}).')
    macro = mt.bcc.split("(")[0]
    if macro == "BPF_TABLE":
        decl = f'BPF_TABLE("{mt.name}", {key}, {value}, {name}, {size})'
    elif mt.values == "events":
        decl = f"{macro}({name}, {max(1, _int(size) // 4096)})" if mt.name == "ringbuf" else f"{macro}({name})"
    elif mt.key == "stored":
        decl = f"{macro}({name}, {key}, {value}, {size})"
    else:
        decl = f"{macro}({name}, {value}, {size})"
    return f"map {name} ({mt.name}): {decl};"


def _int(text: str) -> int:
    """A size as libbpf programs write it: "4096" or "256 * 1024"."""
    if re.fullmatch(r"[\d\s*]+", text) and re.search(r"\d", text):
        return math.prod(int(n) for n in re.findall(r"\d+", text))
    return 4096


def _bcc_function(section: str, fn: str) -> str:
    parts = section.split("/")
    if parts[0] in ("tracepoint", "tp") and len(parts) == 3:
        return (f'SEC("{section}") {fn}(...): write TRACEPOINT_PROBE({parts[1]}, {parts[2]}) '
                "{ ... } and read the tracepoint's fields as args->name.")
    if parts[0] in ("raw_tracepoint", "raw_tp") and len(parts) == 2:
        return f'SEC("{section}") {fn}(...): write RAW_TRACEPOINT_PROBE({parts[1]}) {{ ... }}.'
    if parts[0] == "kprobe" and len(parts) == 2:
        return f'SEC("{section}") {fn}(...): write int kprobe__{parts[1]}(struct pt_regs *ctx) {{ ... }}.'
    return (f'SEC("{section}") {fn}(...): drop the SEC(...) and load the function yourself, '
            f'e.g. prog.load_func("{fn}", "xdp") for an XDP program.')


def compile_failed(outcome, source: str, where: str, first_line: int = 1) -> BpfkitError:
    """The error for a check compile (see `compiler`) that did not end well."""
    said = "\n".join(l for l in outcome.said.splitlines()
                     if not l.startswith("Failed to compile BPF module"))
    if outcome.how == "error":
        return compile_error(said, source, where, first_line)
    if outcome.how == "signal":
        return compiler_crashed(outcome.signal_name, said, where)
    if outcome.how == "exit":
        return compiler_exited(said, source, where, first_line)
    return CompileError(
        f"{title(where)} did not finish compiling: after {outcome.seconds:.0f} s bpfkit stopped the "
        "compiler (it ran in a separate process, so nothing else was lost).",
        "look for an #include of something that is not a C file (a pipe or a device waits "
        "forever) or a macro that expands without end; a normal program compiles in seconds.",
        detail=_tail(said))


def _tail(output: str, limit: int = 2000) -> str:
    return "\n".join(l for l in output.splitlines() if l.strip() and "generated" not in l)[-limit:]


# LLVM's own fatal errors: "error: /virtual/main.c:25:36: in function NAME TYPE: MESSAGE"
_LLVM_FATAL = re.compile(r"^error: (?:(\S+?):(\d+):(\d+): )?in function (\S+) .*?\): (.+)$", re.M)
_C_SIZES = {"char": 1, "u8": 1, "__u8": 1, "s8": 1, "bool": 1, "u16": 2, "__u16": 2, "s16": 2,
            "short": 2, "u32": 4, "__u32": 4, "s32": 4, "int": 4, "float": 4, "u64": 8, "__u64": 8,
            "s64": 8, "long": 8, "double": 8}


def compiler_exited(output: str, source: str, where: str, first_line: int = 1) -> CompileError:
    """LLVM ended the (throwaway) compiling process with its own error instead of returning one:
    the BPF stack limit, a call with too many arguments, and others of that family."""
    m = _LLVM_FATAL.search(output)
    said = m.group(5).strip() if m else _tail(output, 400)
    function = describe_function(m.group(4)) if m else "a function"
    saved = "bpfkit compiled it in a separate process first, so nothing else was lost."
    lines = source.splitlines()
    if "signed division" in said.lower():
        return _signed_division(where, "ended the process")
    if "stack limit" in said:
        big = _biggest_local_array(lines)
        place = ""
        if big:
            row, decl, size = big
            place = (f" The biggest local variable is {decl} ({size} bytes), at line "
                     f"{row + first_line - 1} of {where}:\n    {lines[row - 1].strip()}\n")
        return CompileError(
            f"{title(where)} did not compile: {function} keeps more than 512 bytes of local "
            f"variables, and a BPF program's stack holds 512 bytes in all.{place or ' '}"
            f"LLVM said: {said} ({saved})",
            "keep big buffers in a map instead of on the stack: declare "
            "`struct buf_t { char data[600]; }; BPF_PERCPU_ARRAY(scratch, struct buf_t, 1);` and in "
            "the function write `u32 zero = 0; struct buf_t *b = scratch.lookup(&zero); "
            "if (!b) return 0;`, then use b->data.")
    if "too many arg" in said:  # LLVM 14: "too many args to …", LLVM 19: "… too many arguments"
        row = _printk_with_too_many_values(lines)
        place = (f" at line {row + first_line - 1} of {where}:\n    {lines[row - 1].strip()}\n"
                 if row else ". ")
        if "Constant<6>" in said or row:
            return CompileError(
                f"{title(where)} did not compile: bpf_trace_printk prints at most three values, "
                f"and this call passes more{place}LLVM said: {said} ({saved})",
                "print at most three values per call (split it into two calls), or put the values "
                "in a struct and send it to Python through a ring buffer (BPF_RINGBUF_OUTPUT), "
                "where you can print as many as you like.")
        return CompileError(
            f"{title(where)} did not compile: a call in {function} passes more than five "
            f"arguments, and BPF calls take at most five. LLVM said: {said} ({saved})",
            "pass fewer arguments: group several values into a struct and pass its address.")
    if "memcpy" in said or "memset" in said:
        return CompileError(
            f"{title(where)} did not compile: {function} copies or clears memory of a size LLVM "
            f"cannot turn into BPF instructions. LLVM said: {said} ({saved})",
            "copy a fixed, small number of bytes (sizeof a struct or an array, not a variable "
            "length), or assign field by field; for memory outside the stack use "
            "bpf_probe_read_kernel(&dst, sizeof(dst), src).")
    if "atomic" in said.lower():
        return CompileError(
            f"{title(where)} did not compile: {function} uses an atomic operation "
            f"(__sync_fetch_and_add, lock_xadd, ...) on a value that is not 32 or 64 bits wide. "
            f"LLVM said: {said} ({saved})",
            "make the value an atomic operation changes a u32 or a u64 (u8, u16 and char have "
            "no atomic add in BPF).")
    diags = [d for d in _diagnostics(output) if d["level"] in ("error", "fatal error")]
    detail = ""
    if diags:
        _learner_rows(diags, lines)
        detail = _place(diags[0], lines, where, first_line)[0]
    return CompileError(
        f"{title(where)} did not compile: LLVM, BCC's compiler, stopped with its own error in "
        f"{function}: {said} ({saved})",
        "the C is valid but LLVM cannot turn it into BPF instructions: simplify the code in that "
        "function (BPF has no floating point, no calls through pointers and a 512-byte stack).",
        detail=detail)


def _biggest_local_array(lines: list[str]) -> tuple[int, str, int] | None:
    """(line, declaration, bytes) of the largest fixed-size array declared in the code."""
    best = None
    for row, line in enumerate(lines, 1):
        for t, name, count in re.findall(r"\b(unsigned\s+\w+|\w+)\s+(\w+)\s*\[\s*(\d+)\s*\]", line):
            size = _C_SIZES.get(t.split()[-1], 1) * int(count)
            if best is None or size > best[2]:
                best = (row, f"{t} {name}[{count}]", size)
    return best


def _printk_with_too_many_values(lines: list[str]) -> int | None:
    """The first line calling bpf_trace_printk with more than three values after the format."""
    for row, line in enumerate(lines, 1):
        m = re.search(r"bpf_trace_printk\s*\((.*)\)", line)
        if m and _top_level_commas(m.group(1)) > 3:
            return row
    return None


def _top_level_commas(text: str) -> int:
    depth, quoted, count = 0, False, 0
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted:
            depth += ch in "([{"
            depth -= ch in ")]}"
            count += ch == "," and depth == 0
    return count


def compiler_crashed(signal_name: str, output: str, where: str) -> CompileError:
    """BCC's compiler died (in a throwaway process) instead of reporting an error."""
    if "signed division" in output.lower():
        return _signed_division(where, f"stopped with {signal_name}")
    return CompileError(
        f"{title(where)} did not compile: BCC's compiler crashed on it ({signal_name}) instead of "
        "reporting an error. bpfkit compiled it in a separate process first, so nothing else was lost.",
        "the code has a mistake BCC cannot explain: look for a stray character around the map "
        "declarations (such as `*BPF_HASH(...)`) or a macro used the wrong way; comment out parts "
        "of the program to find the line.")


def pass_a_pointer(line: str) -> str:
    """The hint for a map's key or value passed by value, with the learner's own names."""
    call = re.search(r"(\w+)\.(lookup|update|insert|delete)\s*\(\s*(\w+)", line)
    if call:
        name, method, key = call.groups()
        more = ", &value" if method in ("update", "insert") else ""
        example = f"write {name}.{method}(&{key}{more}), not {name}.{method}({key}{more})"
    else:
        example = "e.g. counter_table.lookup(&key), not counter_table.lookup(key)"
    return f"pass a pointer, the address of a variable: {example}."


def _signed_division(where: str, how: str) -> CompileError:
    # LLVM 14 (Debian 12) aborts on it; LLVM 19 (Debian 13) calls exit(1): the same mistake
    return CompileError(
        f"{title(where)} did not compile: it divides (or takes a remainder of) a signed number, "
        f"and the BPF instruction set of this compiler has only unsigned division. BCC's "
        f"compiler {how}; bpfkit compiled it in a separate process first, so nothing else was lost.",
        "make both sides of every / and % unsigned: copy the value into a u64 (or u32) first, "
        "e.g. `u64 bytes = args->ret; ... bytes / 1024`, after checking it is not negative.")


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
        from .errors import nearest
        close = nearest(method, MAP_METHODS, n=1)
        suggestion = f"use {table}.{close[0]}(...)" if close else "check the method's name"
        return (f"{table} is a map, and maps have no method {method!r}: {suggestion}. "
                f"Map methods are {', '.join(MAP_METHODS[:7])}, ...")
    m = re.search(r"no member named '(\w+)' in 'struct tracepoint__(\w+?)__(\w+)'", text)
    if m:
        from . import system
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
        from .errors import did_you_mean
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
    from .maps import btf
    helpers = [f"bpf_{n.removeprefix('BPF_FUNC_')}" for n in (btf.vmlinux_enum("bpf_func_id") or {})
               if n != "BPF_FUNC_unspec"]
    defined = re.findall(r"\b(\w+)\s*\([^;{]*\)\s*\{", source)
    return sorted(set(helpers + _BCC_FUNCTIONS + defined))


def describe_function(fn: str) -> str:
    """A program's function as the learner wrote it: TRACEPOINT_PROBE(syscalls, sys_enter_execve)."""
    if fn.startswith("tracepoint__"):
        category, _, event = fn[len("tracepoint__"):].partition("__")
        return f"TRACEPOINT_PROBE({category}, {event})"
    if fn.startswith("raw_tracepoint__"):
        return f"RAW_TRACEPOINT_PROBE({fn[len('raw_tracepoint__'):]})"
    return f"function {fn}()"
