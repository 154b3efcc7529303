"""LLVM's own fatal errors, which end the compiling process instead of coming back as clang
diagnostics: the BPF stack limit, a call with too many arguments, a copy LLVM cannot lower,
an atomic operation on a narrow value. Each is put as what to change in the learner's code.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ...core.errors import CompileError
from . import clang
from .shared import SAVED, describe_function, signed_division, tail, title

# LLVM's own fatal errors: "error: /virtual/main.c:25:36: in function NAME TYPE: MESSAGE"
_LLVM_FATAL = re.compile(r"^error: (?:(\S+?):(\d+):(\d+): )?in function (\S+) .*?\): (.+)$", re.M)
_C_SIZES = {"char": 1, "u8": 1, "__u8": 1, "s8": 1, "bool": 1, "u16": 2, "__u16": 2, "s16": 2,
            "short": 2, "u32": 4, "__u32": 4, "s32": 4, "int": 4, "float": 4, "u64": 8, "__u64": 8,
            "s64": 8, "long": 8, "double": 8}


@dataclass
class _Fatal:
    """What LLVM said, and where: the pieces every explanation below is made of."""
    output: str
    said: str
    function: str
    lines: list[str]
    where: str
    first_line: int

    def at(self, row: int) -> str:
        """" at line N of WHERE:\\n    the line\\n" for the learner's row."""
        return (f" at line {row + self.first_line - 1} of {self.where}:\n"
                f"    {self.lines[row - 1].strip()}\n")

    def error(self, what: str, hint: str) -> CompileError:
        return CompileError(f"{title(self.where)} did not compile: {what}LLVM said: {self.said} "
                            f"({SAVED})", hint)


def compiler_exited(output: str, source: str, where: str, first_line: int = 1) -> CompileError:
    """LLVM ended the (throwaway) compiling process with its own error instead of returning one:
    the BPF stack limit, a call with too many arguments, and others of that family."""
    m = _LLVM_FATAL.search(output)
    said = m.group(5).strip() if m else tail(output, 400)
    fatal = _Fatal(output, said, describe_function(m.group(4)) if m else "a function",
                   source.splitlines(), where, first_line)
    if "signed division" in said.lower():
        return signed_division(where, "ended the process")
    if "stack limit" in said:
        return _stack_limit(fatal)
    if "too many arg" in said:  # LLVM 14: "too many args to …", LLVM 19: "… too many arguments"
        return _too_many_arguments(fatal)
    if "memcpy" in said or "memset" in said:
        return fatal.error(
            f"{fatal.function} copies or clears memory of a size LLVM cannot turn into BPF "
            "instructions. ",
            "copy a fixed, small number of bytes (sizeof a struct or an array, not a variable "
            "length), or assign field by field; for memory outside the stack use "
            "bpf_probe_read_kernel(&dst, sizeof(dst), src).")
    if "atomic" in said.lower():
        return fatal.error(
            f"{fatal.function} uses an atomic operation (__sync_fetch_and_add, lock_xadd, ...) on "
            "a value that is not 32 or 64 bits wide. ",
            "make the value an atomic operation changes a u32 or a u64 (u8, u16 and char have "
            "no atomic add in BPF).")
    return _unexplained(fatal)


def _stack_limit(fatal: _Fatal) -> CompileError:
    big = _biggest_local_array(fatal.lines)
    place = ""
    if big:
        row, decl, size = big
        place = (f" The biggest local variable is {decl} ({size} bytes), at line "
                 f"{row + fatal.first_line - 1} of {fatal.where}:\n    {fatal.lines[row - 1].strip()}\n")
    return fatal.error(
        f"{fatal.function} keeps more than 512 bytes of local variables, and a BPF program's "
        f"stack holds 512 bytes in all.{place or ' '}",
        "keep big buffers in a map instead of on the stack: declare "
        "`struct buf_t { char data[600]; }; BPF_PERCPU_ARRAY(scratch, struct buf_t, 1);` and in "
        "the function write `u32 zero = 0; struct buf_t *b = scratch.lookup(&zero); "
        "if (!b) return 0;`, then use b->data.")


def _too_many_arguments(fatal: _Fatal) -> CompileError:
    row = _printk_with_too_many_values(fatal.lines)
    if "Constant<6>" in fatal.said or row:
        return fatal.error(
            "bpf_trace_printk prints at most three values, and this call passes more"
            f"{fatal.at(row) if row else '. '}",
            "print at most three values per call (split it into two calls), or put the values "
            "in a struct and send it to Python through a ring buffer (BPF_RINGBUF_OUTPUT), "
            "where you can print as many as you like.")
    return fatal.error(
        f"a call in {fatal.function} passes more than five arguments, and BPF calls take at "
        "most five. ",
        "pass fewer arguments: group several values into a struct and pass its address.")


def _unexplained(fatal: _Fatal) -> CompileError:
    diags = [d for d in clang.diagnostics(fatal.output) if d["level"] in ("error", "fatal error")]
    detail = ""
    if diags:
        clang.learner_rows(diags, fatal.lines)
        detail = clang.place(diags[0], fatal.lines, fatal.where, fatal.first_line)[0]
    return CompileError(
        f"{title(fatal.where)} did not compile: LLVM, BCC's compiler, stopped with its own error in "
        f"{fatal.function}: {fatal.said} ({SAVED})",
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
