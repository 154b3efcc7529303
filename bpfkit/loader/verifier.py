"""What the verifier's log means, in the learner's words and at the learner's line.

BCC prints the kernel's verifier log on stderr when a function is refused (`diagnostics` collects
it); libbpf hands it to `bpfobject` between its "PROG LOAD LOG" lines. The log quotes source
lines ("; code @ file:row"): BCC's rewritten C with BCC's line numbers, or the learner's own file
compiled by clang. The functions below find the learner's own line, recognise the refusals
learners meet most (a loop the verifier cannot bound, a key passed by value, a GPL-only helper,
a missing NULL check, a callback left out) and say what to do, in the words of the C the learner
wrote (`style`: "bcc" or "libbpf").
"""
from __future__ import annotations

import errno
import os
import re

from ..access import refusal
from ..core.errors import LoadError, VerifierError
from .diagnostics import describe_function, norm, pass_a_pointer

# a source line the log quotes: "; u64 c = *p; @ main.c:28" (BCC) or "@ count.bpf.c:12" (clang)
_QUOTED = re.compile(r"^; (.*) @ [^\s:]+:(\d+)$")

_VERIFIER_HINTS = [
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


def load_error(output: str, function: str, source: str, where: str, errno_: int,
               first_line: int = 1, license: str = "GPL", prog_type: str = "", style: str = "bcc"):
    """The kernel refused `function` (loaded as a `prog_type` program): a VerifierError with the
    log's key lines, or why else. A refusal with no verifier log is the kernel's answer to the
    program type itself (forbidden, or absent), so it names the type. In libbpf `style` the
    message's first line is the verifier's reason (the learner reads a libbpf refusal there)."""
    described = describe_function(function)
    as_type = f" as {'an' if prog_type[:1] in 'aeiouxl' else 'a'} {prog_type} program" if prog_type else ""
    lines = source.splitlines()
    if errno_ in (errno.EPERM, errno.EACCES) and "processed" not in output:
        return refusal.explain(errno_, f"loading {described}{as_type}")
    log = [l for l in output.splitlines() if l.strip() and not l.startswith("HINT:")]
    if prog_type and not log and errno_ in refusal.ABSENT:
        return refusal.explain(errno_, f"{prog_type} programs (loading {described})")
    if not any(re.match(r"^\d+: ", l) for l in log):
        return _refused_without_a_log(described, function, lines, where, first_line, errno_, log)
    reason = next((l for l in reversed(log) if not l.startswith("processed") and not re.match(r"^\d+: ", l)
                   and not l.startswith(";") and not l.startswith("bpf:")), log[-1])
    row, place = _refused_line(log, lines, where, first_line)
    key_lines = [k for k in (_own_line_number(l, lines, log, first_line)
                             for l in log if not l.startswith("bpf:")) if k][-6:]
    detail = "Last lines of the verifier's log:\n" + "\n".join(key_lines)
    helper = next((m.group(1) for l in reversed(log) for m in [re.search(r"call (\w+)#\d+", l)] if m), None)
    if any(words in reason for words in _LOOP_WORDS):
        return _loop_error(described, function, row, lines, where, first_line, reason, detail)
    own = lines[row - 1] if row else ""
    known = _helper_refused(described, reason, helper, own, place, license, detail, style)
    if known is not None:
        known.errno = errno_
        return known
    hint = next((h for key, h in _VERIFIER_HINTS if key in output),
                "read the verifier's last lines above: they name the instruction it refused and why.")
    if "map_value_or_null" in reason:
        hint = null_check_hint(lines, row, style)
    loop = _enclosing_loop(lines, row) if row else None
    if loop and re.search(r"invalid (read|write|access)|out of bound|outside of|unbounded", reason):
        hint = (f"this is inside the loop at line {loop[0] + first_line - 1}: the verifier follows "
                "it round by round, and on some round an index or pointer leaves the memory it "
                "may touch. Check it against the size in the loop's condition "
                "(e.g. `n < sizeof(buf) && buf[n] != 0`).")
    if style == "libbpf":
        # the reason leads: "...: R0 invalid mem access ..., at line N of WHERE:\n    code"
        return VerifierError(f"The verifier refused {described}: {reason}"
                             + ("," + place.rstrip() if place else "."),
                             hint, detail=detail, errno=errno_)
    return VerifierError(f"The verifier refused {described}{place or '. '}It says: {reason}",
                         hint, detail=detail)


def null_check_hint(lines: list[str], row: int | None, style: str = "bcc") -> str:
    """The hint for a map lookup's result used unchecked, naming the learner's own pointer (the
    one the nearest lookup above the refused line set)."""
    lookup = None
    for line in reversed(lines[:row or len(lines)]):
        lookup = re.search(r"(\w+)\s*=\s*(?:\([^)]*\)\s*)?(bpf_map_lookup_elem|\w+\.lookup)\s*\(", line)
        if lookup:
            break
    p, call = (lookup.group(1), lookup.group(2)) if lookup else (
        "p", "bpf_map_lookup_elem" if style == "libbpf" else "lookup")
    call = "bpf_map_lookup_elem()" if call == "bpf_map_lookup_elem" else "lookup()"
    return (f"the program uses a map lookup's result without checking it: {call} returns NULL "
            f"when the key is missing, so write `if ({p}) {{ ... }}` (or `if (!{p}) return 0;`) "
            f"before using *{p}.")


def _refused_without_a_log(described: str, function: str, lines: list[str], where: str,
                           first_line: int, errno_: int, log: list[str]):
    if errno_ == errno.E2BIG:  # BCC prints no log for E2BIG: the verifier's "too large"
        return _loop_error(described, function, None, lines, where, first_line,
                           "BPF program is too large: following every path through it took "
                           "more than a million instructions")
    return LoadError(f"The kernel refused to load {described}: {os.strerror(errno_)}.",
                     "run `python -m bpfkit doctor`; the kernel's words were: "
                     + (" ".join(log[-3:]) or "none"), errno=errno_)


def _refused_line(log: list[str], lines: list[str], where: str, first_line: int) -> tuple[int | None, str]:
    """(the learner's row of the last source line the log quotes, or None; that line as a
    message shows it: " at line N of WHERE:\n    code\n", or "" when the log quotes none)."""
    last_source = next((m for l in reversed(log) for m in [_QUOTED.match(l)] if m and m.group(1).strip()),
                       None)
    if not last_source:
        return None, ""
    text, num = last_source.groups()
    row = _source_row(text, int(num), lines, log)
    if row:
        return row, f" at line {row + first_line - 1} of {where}:\n    {lines[row - 1].strip()}\n"
    return row, f" at:\n    {text.strip()}\n"


def _helper_refused(described: str, reason: str, helper: str | None, line: str, place: str,
                    license: str, detail: str, style: str = "bcc") -> VerifierError | None:
    """A helper refused for the program's license, handed a number where it takes a callback,
    or handed a map's address or a number where it takes a map or a pointer (`line`: the
    learner's line the log names)."""
    callback = re.match(r"R([1-5]) type=\w+ expected=func", reason)
    if callback:
        return _callback_missing(described, reason, helper, int(callback.group(1)), place, detail)
    if "GPL" in reason and style == "libbpf":
        said = (f"declares the license {license!r}, which is not GPL-compatible" if license
                else 'declares no license (no SEC("license") line)')
        return VerifierError(
            f"{described[0].upper() + described[1:]} calls {helper or 'a helper'}, which only "
            f"GPL-licensed programs may call, and the code {said}"
            f"{(',' + place) if place else '. '}The verifier says: {reason}",
            ('add the line char LICENSE[] SEC("license") = "GPL"; at the end of the code '
             '("Dual BSD/GPL" is GPL-compatible too)' if not license else
             'change the license line to char LICENSE[] SEC("license") = "GPL";')
            + f", or do without {helper or 'that helper'}.", detail=detail)
    if "GPL" in reason:
        return VerifierError(
            f"The verifier refused {described}: it calls {helper or 'a helper'}, which only "
            f"programs with a GPL-compatible license may call, and this program's license is "
            f"{license!r}{place or '. '}It says: {reason}",
            "delete the `#define BPF_LICENSE ...` line (a BCC program is GPL by default) or set "
            f"it to GPL or \"Dual BSD/GPL\"; or do without {helper or 'that helper'}.", detail=detail)
    if re.match(r"R1 type=\w+ expected=map_ptr", reason) and helper:
        named = re.search(r"\(\s*&\s*(\w+)", line)
        name = named.group(1) if named else "counts"
        method = _BCC_METHODS.get(helper, "lookup(&key)")
        return VerifierError(
            f"The verifier refused {described}: the map it hands {helper} is not a map"
            f"{(',' + place) if place else '. '}It says: {reason}",
            f"a map declared with one of BCC's macros is not a map in C: &{name} is only an "
            f"address. Call the helper through the map, as a method, which BCC turns into "
            f"{helper} with the real map: {name}.{method}.", detail=detail)
    pointer = re.match(r"R([1-5]) type=(?:scalar|inv)\b.*expected=", reason)
    if pointer and helper:
        arg = int(pointer.group(1))
        what = _MAP_HELPER_ARGS.get((helper, arg), f"argument {arg}")
        return VerifierError(
            f"The verifier refused {described}: it passes {what} of {helper} as a number, where "
            f"the helper takes a pointer{(',' + place) if place else '. '}It says: {reason}",
            pass_a_pointer(line), detail=detail)
    return None


# The callback each helper that takes one calls, as a C declaration (the kernel's documentation
# of each helper, `man bpf-helpers`).
_CALLBACKS = {
    "bpf_user_ringbuf_drain": "static long on_message(struct bpf_dynptr *dynptr, void *ctx)",
    "bpf_loop": "static long on_round(__u32 index, void *ctx)",
    "bpf_for_each_map_elem": "static long on_elem(struct bpf_map *map, void *key, void *value, void *ctx)",
    "bpf_find_vma": "static long on_vma(struct task_struct *task, struct vm_area_struct *vma, void *ctx)",
    "bpf_timer_set_callback": "static int on_timer(void *map, int *key, void *value)",
}


def _callback_missing(described: str, reason: str, helper: str | None, arg: int, place: str,
                      detail: str) -> VerifierError:
    """A helper that calls back a function of the program was handed no function (NULL, or a
    number) in argument `arg`."""
    declared = _CALLBACKS.get(helper or "", "static long callback(...)")
    fn = re.search(r"(\w+)\(", declared).group(1)
    return VerifierError(
        f"{described[0].upper() + described[1:]} passes no function as argument {arg} of "
        f"{helper or 'a helper'}, which calls a callback function there"
        f"{(',' + place) if place else '. '}The verifier says: {reason}",
        f"write the callback as a function of its own, `{declared} {{ ...; return 0; }}`, "
        f"above the code that calls {helper or 'the helper'}, and pass its name as argument "
        f"{arg}: {helper or 'helper'}(..., {fn}, ...), not NULL.", detail=detail)


_LOOP_WORDS = ("jumps is too complex", "back-edge", "infinite loop", "program is too large",
               "loop is not bounded", "too many states")
# The BCC map method each helper with a map argument is written as (BCC's rewriter makes the
# helper call, with the real map, out of the method).
_BCC_METHODS = {
    "bpf_map_lookup_elem": "lookup(&key)", "bpf_map_update_elem": "update(&key, &value)",
    "bpf_map_delete_elem": "delete(&key)", "bpf_map_push_elem": "push(&value, 0)",
    "bpf_map_pop_elem": "pop(&value)", "bpf_map_peek_elem": "peek(&value)",
    "bpf_task_storage_get": "task_storage_get(task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE)",
    "bpf_sk_storage_get": "sk_storage_get(sk, 0, BPF_SK_STORAGE_GET_F_CREATE)",
    "bpf_inode_storage_get": "inode_storage_get(inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE)",
    "bpf_redirect_map": "redirect_map(index, 0)", "bpf_tail_call": "call(ctx, index)",
    "bpf_perf_event_output": "perf_submit(ctx, &event, sizeof(event))",
    "bpf_ringbuf_output": "ringbuf_output(&event, sizeof(event), 0)",
    "bpf_ringbuf_reserve": "ringbuf_reserve(sizeof(struct event))",
    "bpf_get_stackid": "get_stackid(ctx, 0)",
    "bpf_current_task_under_cgroup": "check_current_task(index)",
}
_MAP_HELPER_ARGS = {("bpf_map_lookup_elem", 2): "the key", ("bpf_map_update_elem", 2): "the key",
                    ("bpf_map_update_elem", 3): "the value", ("bpf_map_delete_elem", 2): "the key"}


def _loop_error(described: str, function: str, row: int | None, lines: list[str], where: str,
                first_line: int, reason: str, detail: str = "") -> VerifierError:
    """The verifier gave up on a loop: say so, and point at the loop in the learner's code."""
    loop = _enclosing_loop(lines, row) if row else None
    if loop is None:
        body = _function_rows(lines, function)
        loop = next((l for l in _loops(lines) if body is None or body[0] <= l[0] <= body[1]), None)
    place = (f": it cannot tell that the loop at line {loop[0] + first_line - 1} of {where} ends"
             f":\n    {lines[loop[0] - 1].strip()}\n" if loop else
             ": it cannot tell that the program ends (a loop it cannot bound, most often). ")
    return VerifierError(
        f"The verifier refused {described}{place}It says: {reason}",
        "give the loop a bound the verifier can see: a constant limit "
        "(`for (int i = 0; i < 64 && x > 1; i++)`), `#pragma unroll` before a loop with a "
        "constant count, or, on kernels 5.17 and later, bpf_loop(count, callback, &ctx, 0), "
        "which the verifier checks once instead of round by round.", detail=detail)


_LOOP_HEAD = re.compile(r"\b(for|while)\s*\(|\bdo\s*(\{|$)")


def _loops(lines: list[str]) -> list[tuple[int, int]]:
    """(first row, last row) of each loop in the code, by its braces (a body without braces is
    taken to be the next line)."""
    found = []
    for row, line in enumerate(lines, 1):
        if _LOOP_HEAD.search(_code_only(line)):
            found.append((row, _block_end(lines, row)))
    return found


def _code_only(line: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"|//.*$', "", line)


def _block_end(lines: list[str], row: int) -> int:
    depth, opened = 0, False
    for r in range(row, len(lines) + 1):
        code = _code_only(lines[r - 1])
        depth += code.count("{") - code.count("}")
        opened = opened or "{" in code
        if opened and depth <= 0:
            return r
        if not opened and r > row and code.strip():
            return r  # a body without braces: one statement
    return len(lines)


def _enclosing_loop(lines: list[str], row: int) -> tuple[int, int] | None:
    inside = [l for l in _loops(lines) if l[0] <= row <= l[1]]
    return max(inside) if inside else None  # the innermost: the one that starts last


def _function_rows(lines: list[str], function: str) -> tuple[int, int] | None:
    """The rows of `function`'s definition in the learner's code, if it can be found."""
    if function.startswith("tracepoint__"):
        category, _, event = function[len("tracepoint__"):].partition("__")
        head = re.compile(rf"TRACEPOINT_PROBE\s*\(\s*{category}\s*,\s*{event}\s*\)")
    elif function.startswith("raw_tracepoint__"):
        head = re.compile(rf"RAW_TRACEPOINT_PROBE\s*\(\s*{function[len('raw_tracepoint__'):]}\s*\)")
    else:
        head = re.compile(rf"\b{re.escape(function)}\s*\(")
    for row, line in enumerate(lines, 1):
        if head.search(line):
            return row, _block_end(lines, row)
    return None


def _own_line_number(log_line: str, lines: list[str], log: list[str], first_line: int) -> str:
    """"; u64 c = *p; @ main.c:28" (BCC's line) -> "; u64 c = *p;  (line 5)" (the learner's)."""
    quoted = _QUOTED.match(log_line)
    if not quoted:
        return log_line
    text, num = quoted.groups()
    if not text.strip():
        return ""
    row = _source_row(text, int(num), lines, log)
    # the learner's own text: BCC's rewrite of it (bpf_pseudo_fd and all) means nothing to them
    return f"; {lines[row - 1].strip()}  (line {row + first_line - 1})" if row else f"; {text}"


def _rewritten_row(text: str, row: int, lines: list[str]) -> int | None:
    """The learner's line for a line BCC rewrote (`counter_table.lookup(k)` became
    `bpf_map_lookup_elem((void *)bpf_pseudo_fd(1, -1), k)`): undo the map-method rewrite on
    both sides, then take the same line, or failing that the most alike one at or before
    `row` (how much BCC rewrites differs between its versions; this does not depend on it)."""
    def plain(line: str) -> str:
        line = re.sub(r"bpf_map_(lookup|update|delete)_elem\s*\(\s*\(void\s*\*\)\s*"
                      r"bpf_pseudo_fd\(1,\s*-?\d+\),\s*", r"MAP.\1(", line)
        line = re.sub(r"\b\w+\.(lookup|update|insert|delete)\s*\(",
                      lambda m: "MAP." + m.group(1).replace("insert", "update") + "(", line)
        return norm(line)
    want = plain(text)
    candidates = [i for i in range(1, min(row, len(lines)) + 1) if lines[i - 1].strip()] or \
        [i for i in range(1, len(lines) + 1) if lines[i - 1].strip()]
    same = [i for i in candidates if plain(lines[i - 1]) == want]
    if same:
        return same[-1]
    import difflib
    scored = [(difflib.SequenceMatcher(None, plain(lines[i - 1]), want).ratio(), i) for i in candidates]
    best = max(scored, default=(0, None))
    return best[1] if best[0] >= 0.6 else None


def _source_row(text: str, row: int, lines: list[str], log: list[str]) -> int | None:
    """The learner's line that the verifier quotes as `text` at BCC's line `row`.

    BCC's rewriting only ever adds lines, so it is a line with the same text at or before
    `row`; when several match (two `return 0;`), take the one whose shift agrees with the
    nearest quoted line that matches exactly one line of the learner's code."""
    same = [i for i, l in enumerate(lines, 1) if norm(l) == norm(text)]
    if not same:
        return _rewritten_row(text, row, lines)
    before = [i for i in same if i <= row]
    if len(before) <= 1:
        return before[0] if before else (same[0] if same else None)
    shifts = []
    for l in log:
        if m := _QUOTED.match(l):
            quoted, num = m.groups()
            match = [i for i, own in enumerate(lines, 1) if norm(own) == norm(quoted)]
            if len(match) == 1 and match[0] <= int(num) <= row:
                shifts.append((int(num), int(num) - match[0]))
    if shifts:
        shift = max(shifts)[1]
        if row - shift in before:
            return row - shift
    return max(before)
