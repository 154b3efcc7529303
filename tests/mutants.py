"""A mutation fuzzer over the lessons' C programs (bpf/*.c).

Three parts:

* `mutate(source, rng)`: pure and kernel-free. One to three edits of the kinds learners make
  (delete a token, drop or duplicate a line, misspell a name, change a type or a number,
  remove a NULL check), each described in a few words. Deterministic for a seeded `rng`.
* `python tests/mutants.py worker`: reads JSON lines {"id", "source"} on stdin, loads each
  with `bpfkit.load(source, name="mutant")`, classifies the outcome (loaded / explained /
  raw / left) and writes one JSON line per mutant on its own private copy of stdout (BCC and
  clang write to fd 1 and fd 2 at the C level, so fd 1 is pointed at fd 2 first).
* `run(count, seed, workers=2)`: the driver. Mutants round-robin over the programs, fed to
  worker processes in parallel; a worker that dies (or hangs) mid-mutant records that mutant
  as "crashed" and is replaced for the rest.

    python tests/mutants.py run --count 200 --seed 1 --workers 2 --out /tmp/mutants.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROGRAMS_DIR = ROOT / "bpf"

# ---- the generator (pure: no bpfkit, no kernel) --------------------------------------------------

_TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<number>0[xX][0-9a-fA-F]+[uUlL]*|\d+(?:\.\d+)?[uUlL]*)
  | (?P<ident>[A-Za-z_]\w*)
  | (?P<punct>->|\+\+|--|<<=|>>=|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|\#\#|\.\.\.|\S)
""", re.X | re.S)

TYPES = ["u8", "u16", "u32", "u64", "int", "char", "long"]
KEYWORDS_NOT_TYPES = {"return", "if", "else", "for", "while", "sizeof", "struct"}
BIG_NUMBERS = ["65536", "1000000", "0x7fffffff", "4294967295", "4294967296", "0xffffffffffffffff"]
NEGATIVE_NUMBERS = ["-2", "-100", "-4096"]
LETTERS = "abcdefghijklmnopqrstuvwxyz_"


class Tok:
    __slots__ = ("kind", "text", "start", "end")

    def __init__(self, kind, text, start, end):
        self.kind, self.text, self.start, self.end = kind, text, start, end

    def __repr__(self):
        return f"Tok({self.kind}, {self.text!r}, {self.start})"


def tokens(source: str, comments: bool = False) -> list[Tok]:
    """C tokens with their spans; comments left out unless asked for."""
    out = []
    for m in _TOKEN.finditer(source):
        kind = m.lastgroup
        if kind == "comment" and not comments:
            continue
        out.append(Tok(kind, m.group(), m.start(), m.end()))
    return out


def line_of(source: str, pos: int) -> int:
    return source.count("\n", 0, pos) + 1


def _splice(source: str, start: int, end: int, new: str) -> str:
    return source[:start] + new + source[end:]


def _code_lines(source: str) -> list[int]:
    """Numbers (from 1) of the lines with code on them, not only blanks or comments."""
    rows = {line_of(source, t.start) for t in tokens(source)}
    return sorted(rows)


def edit_delete_token(source: str, rng: random.Random):
    toks = tokens(source)
    if not toks:
        return None
    t = rng.choice(toks)
    return _splice(source, t.start, t.end, ""), f"delete token {t.text!r} at line {line_of(source, t.start)}"


def _pick_line(source: str, rng: random.Random):
    """(a code line's number, the source's lines) or (None, None) when there is no code."""
    rows = _code_lines(source)
    if not rows:
        return None, None
    return rng.choice(rows), source.splitlines(keepends=True)


def edit_drop_line(source: str, rng: random.Random):
    row, lines = _pick_line(source, rng)
    if row is None:
        return None
    del lines[row - 1]
    return "".join(lines), f"drop line {row}"


def edit_duplicate_line(source: str, rng: random.Random):
    row, lines = _pick_line(source, rng)
    if row is None:
        return None
    line = lines[row - 1]
    lines.insert(row, line if line.endswith("\n") else line + "\n")
    if not line.endswith("\n"):
        lines[row - 1] = line + "\n"
    return "".join(lines), f"duplicate line {row}"


def misspelling(word: str, rng: random.Random) -> str | None:
    """`word` with one letter dropped, two neighbours swapped or a letter inserted: still a
    C identifier, and different."""
    for _ in range(20):
        how = rng.choice(["drop", "swap", "insert"])
        i = rng.randrange(len(word) + (1 if how == "insert" else 0))
        if how == "drop":
            new = word[:i] + word[i + 1:]
        elif how == "swap":
            if len(word) < 2:
                continue
            i = min(i, len(word) - 2)
            new = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        else:
            new = word[:i] + rng.choice(LETTERS) + word[i:]
        if new != word and re.fullmatch(r"[A-Za-z_]\w*", new):
            return new
    return None


def edit_misspell(source: str, rng: random.Random):
    toks = [t for t in tokens(source) if t.kind == "ident" and len(t.text) >= 2]
    names = sorted({t.text for t in toks})
    if not names:
        return None
    name = rng.choice(names)
    new = misspelling(name, rng)
    if new is None:
        return None
    sites = [t for t in toks if t.text == name]
    if rng.random() < 0.5:
        text = source
        for t in reversed(sites):
            text = _splice(text, t.start, t.end, new)
        return text, f"misspell {name} -> {new} everywhere"
    t = rng.choice(sites)
    return _splice(source, t.start, t.end, new), \
        f"misspell {name} -> {new} at line {line_of(source, t.start)}"


def _type_sites(source: str) -> list[tuple[int, int, str]]:
    """(start, end, text) of every type name: the scalar types, and `struct NAME`."""
    toks = tokens(source)
    sites = []
    for i, t in enumerate(toks):
        if t.kind != "ident":
            continue
        if t.text in TYPES:
            sites.append((t.start, t.end, t.text))
        elif t.text == "struct" and i + 1 < len(toks) and toks[i + 1].kind == "ident":
            sites.append((t.start, toks[i + 1].end, source[t.start:toks[i + 1].end]))
    return sites


def edit_change_type(source: str, rng: random.Random):
    sites = _type_sites(source)
    if not sites:
        return None
    start, end, old = rng.choice(sites)
    structs = sorted({s for _, _, s in sites if s.startswith("struct ")} | {"struct foo"})
    choices = [t for t in TYPES + structs if re.sub(r"\s+", " ", t) != re.sub(r"\s+", " ", old)]
    new = rng.choice(choices)
    return _splice(source, start, end, new), f"change type {old} -> {new} at line {line_of(source, start)}"


def edit_change_number(source: str, rng: random.Random):
    sites = [t for t in tokens(source) if t.kind == "number"]
    if not sites:
        return None
    t = rng.choice(sites)
    for _ in range(10):
        kind = rng.choice(["zero", "one", "minus_one", "big", "negative"])
        new = {"zero": "0", "one": "1", "minus_one": "-1"}.get(kind) or \
            rng.choice(BIG_NUMBERS if kind == "big" else NEGATIVE_NUMBERS)
        if new != t.text:
            break
    return _splice(source, t.start, t.end, new), \
        f"change number {t.text} -> {new} at line {line_of(source, t.start)}"


# -- remove a NULL check ------------------------------------------------------------------------

def pointer_names(source: str) -> set[str]:
    """Names declared as pointers: `u64 *p`, `void *config`, `u64 start = 0, *n`, ..."""
    names = set(re.findall(r"(?:\b(?:u8|u16|u32|u64|s32|s64|int|char|long|void|__u32|__u64)"
                           r"|\bstruct\s+\w+|\w+_t)\s*\*\s*([A-Za-z_]\w*)\s*[=;,)]", source))
    names |= set(re.findall(r",\s*\*\s*([A-Za-z_]\w*)\s*[=;,]", source))
    return names


def _null_test(terms: list[Tok], pointers: set[str]) -> tuple[str, str] | None:
    """(pointer, "positive" | "negative") when the tokens are one NULL test of a pointer:
    p, p != 0, p != NULL, NULL != p (positive: true when p is usable); !p, p == 0, p == NULL,
    NULL == p (negative)."""
    texts = [t.text for t in terms]
    while len(texts) >= 2 and texts[0] == "(" and texts[-1] == ")":
        texts = texts[1:-1]
    nulls = {"0", "NULL"}
    if len(texts) == 1 and texts[0] in pointers:
        return texts[0], "positive"
    if len(texts) == 2 and texts[0] == "!" and texts[1] in pointers:
        return texts[1], "negative"
    if len(texts) == 3 and texts[1] in ("==", "!="):
        a, op, b = texts
        p = a if a in pointers and b in nulls else b if b in pointers and a in nulls else None
        if p:
            return p, "positive" if op == "!=" else "negative"
    return None


def _match(toks: list[Tok], i: int) -> int:
    """Index of the bracket closing toks[i] (an opening one)."""
    pairs = {"(": ")", "{": "}", "[": "]"}
    want, depth = pairs[toks[i].text], 0
    for j in range(i, len(toks)):
        if toks[j].text == toks[i].text:
            depth += 1
        elif toks[j].text == want:
            depth -= 1
            if depth == 0:
                return j
    return len(toks) - 1


def _statement_end(toks: list[Tok], i: int) -> int:
    """Index of the last token of the statement starting at toks[i]."""
    if i >= len(toks):
        return len(toks) - 1
    if toks[i].text == "{":
        return _match(toks, i)
    if toks[i].text in ("if", "while", "for") and i + 1 < len(toks) and toks[i + 1].text == "(":
        close = _match(toks, i + 1)
        end = _statement_end(toks, close + 1)
        if toks[i].text == "if" and end + 1 < len(toks) and toks[end + 1].text == "else":
            end = _statement_end(toks, end + 2)
        return end
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].text in "([{":
            depth += 1
        elif toks[j].text in ")]}":
            depth -= 1
        elif toks[j].text == ";" and depth == 0:
            return j
    return len(toks) - 1


def null_checks(source: str) -> list[dict]:
    """Every NULL check of a pointer in an `if`, with the edit that removes it: dict(start,
    end, new, what, line)."""
    toks = tokens(source)
    pointers = pointer_names(source)
    found = []
    for i, t in enumerate(toks):
        if t.text != "if" or i + 1 >= len(toks) or toks[i + 1].text != "(":
            continue
        close = _match(toks, i + 1)
        cond = toks[i + 2:close]
        body_end = _statement_end(toks, close + 1)
        has_else = body_end + 1 < len(toks) and toks[body_end + 1].text == "else"
        else_end = _statement_end(toks, body_end + 2) if has_else else body_end
        shown = "if (" + source[cond[0].start:cond[-1].end] + ")" if cond else "if ()"
        line = line_of(source, t.start)
        # The whole condition is one test.
        test = _null_test(cond, pointers)
        if test and test[1] == "positive":
            # `if (p) BODY [else ELSE]` -> `BODY`: the body runs even when p is NULL.
            body = source[toks[close + 1].start:toks[body_end].end]
            found.append({"start": t.start, "end": toks[else_end].end, "new": body,
                          "what": shown, "line": line})
            continue
        if test and test[1] == "negative":
            # `if (!p) return 0;` -> nothing: no early way out for a NULL p.
            new = source[toks[body_end + 2].start:toks[else_end].end] if has_else else ""
            found.append({"start": t.start, "end": toks[else_end].end, "new": new,
                          "what": shown + (" " + source[toks[close + 1].start:toks[body_end].end]
                                           if not has_else else ""),
                          "line": line})
            continue
        # One test in a chain: `if (p == NULL || *p != x) return 0;`, `if (p && *p == x) ...`.
        depth, ops, parts, part = 0, set(), [], []
        for c in cond:
            if c.text in "([{":
                depth += 1
            elif c.text in ")]}":
                depth -= 1
            if depth == 0 and c.text in ("||", "&&"):
                ops.add(c.text)
                parts.append((part, c))
                part = []
            else:
                part.append(c)
        parts.append((part, None))
        if len(ops) != 1:
            continue
        op = ops.pop()
        wanted = "negative" if op == "||" else "positive"
        for k, (terms, after) in enumerate(parts):
            test = _null_test(terms, pointers) if terms else None
            if not test or test[1] != wanted:
                continue
            if after is not None:  # `p == NULL || rest` -> `rest`
                start, end = terms[0].start, parts[k + 1][0][0].start if parts[k + 1][0] else after.end
            else:  # `rest || p == NULL` -> `rest`
                start, end = parts[k - 1][1].start, terms[-1].end
                while start > 0 and source[start - 1] in " \t":
                    start -= 1
            text = source[terms[0].start:terms[-1].end]
            found.append({"start": start, "end": end, "new": "",
                          "what": f"{text} in {shown}", "line": line})
    return found


def edit_remove_null_check(source: str, rng: random.Random):
    checks = null_checks(source)
    if not checks:
        return None
    c = rng.choice(checks)
    what = " ".join(c["what"].split())
    return _splice(source, c["start"], c["end"], c["new"]), f"remove NULL check {what} at line {c['line']}"


SEPARATOR = "; then "  # between the edits of one mutant's description

EDITS = {
    "delete_token": edit_delete_token,
    "drop_line": edit_drop_line,
    "duplicate_line": edit_duplicate_line,
    "misspell": edit_misspell,
    "change_type": edit_change_type,
    "change_number": edit_change_number,
    "remove_null_check": edit_remove_null_check,
}


def mutate(source: str, rng: random.Random, kinds: list[str] | None = None,
           edits: int | None = None) -> tuple[str, str]:
    """(mutant, description): `source` with 1 to 3 (or `edits`) random edits of the `kinds`
    given (default: all of EDITS), each picked at random; an edit that does not apply to the
    text (no NULL check left, say) gives way to another kind."""
    kinds = list(kinds or EDITS)
    text, said = source, []
    for _ in range(edits if edits is not None else rng.randint(1, 3)):
        order = kinds[:]
        rng.shuffle(order)
        for kind in order:
            done = EDITS[kind](text, rng)
            if done is not None and done[0] != text:
                text = done[0]
                said.append(done[1])
                break
    return text, SEPARATOR.join(said) or "no edit applied"


def programs(directory: Path = PROGRAMS_DIR) -> dict[str, str]:
    """{name: C text} of every lesson program BCC builds, in name order (`*.bpf.c` files are
    libbpf's, built with clang by bpfkit.loader.bpfobject)."""
    return {p.stem: p.read_text() for p in sorted(directory.rglob("*.c")) if not p.name.endswith(".bpf.c")}


def mutants(count: int, seed: int, sources: dict[str, str] | None = None) -> list[dict]:
    """`count` mutants, round-robin over the programs; mutant i depends only on (seed, i)."""
    sources = sources or programs()
    names = list(sources)
    out = []
    for i in range(count):
        name = names[i % len(names)]
        text, desc = mutate(sources[name], random.Random(f"{seed}:{i}"))
        out.append({"id": i, "program": name, "desc": desc, "source": text})
    return out


# ---- the worker --------------------------------------------------------------------------------

def _last_frame(exc: BaseException) -> str:
    import traceback
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    f = frames[-1]
    return f"{f.filename}:{f.lineno} in {f.name}: {f.line}"


def _held(pid: int) -> dict[str, list[int]]:
    from bpfkit.access import kernel
    return {k: sorted(v) for k, v in kernel.held_by(pid).items() if v}


def worker_main() -> None:
    """Load each mutant read on stdin; one JSON result line each on the original stdout."""
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # BCC and clang print on fd 1 at the C level: keep that off the result channel
    import warnings
    import bpfkit
    from bpfkit.core.errors import BpfkitError
    pid = os.getpid()
    baseline = _held(pid)
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        result = {"id": job["id"]}
        started = time.monotonic()
        _test_hooks(job)
        try:
            program = bpfkit.load(job["source"], name="mutant")
        except BpfkitError as e:
            ok = bool(str(e.what or "").strip()) and bool(str(e.hint or "").strip())
            result.update(outcome="explained" if ok else "raw", type=type(e).__name__,
                          message=str(e.what), hint=str(e.hint or ""))
            if not ok:
                result["frame"] = _last_frame(e)
                result["message"] = f"{type(e).__name__} without a {'what' if not e.what else 'hint'}: {e.what}"
        except BaseException as e:  # noqa: BLE001 - the point is to see everything
            if isinstance(e, KeyboardInterrupt):
                raise
            result.update(outcome="raw", type=type(e).__name__, message=str(e)[:2000],
                          frame=_last_frame(e))
        else:
            result.update(outcome="loaded", functions=sorted(fn.decode() if isinstance(fn, bytes) else fn
                                                             for fn in program.bpf.funcs))
            try:
                program.close()
            except BaseException as e:  # noqa: BLE001
                result.update(outcome="raw", type=type(e).__name__,
                              message=f"close() failed: {e}"[:2000], frame=_last_frame(e))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                bpfkit.close_all()
            except BaseException as e:  # noqa: BLE001
                result.update(outcome="raw", type=type(e).__name__,
                              message=f"close_all() failed: {e}"[:2000], frame=_last_frame(e))
        if caught:
            result["warnings"] = [str(w.message)[:500] for w in caught]
        held = {}
        for _ in range(20):  # closes are synchronous; allow a moment anyway
            now = _held(pid)
            held = {k: sorted(set(v) - set(baseline.get(k, ()))) for k, v in now.items()}
            held = {k: v for k, v in held.items() if v}
            if not held:
                break
            time.sleep(0.05)
        if held:
            result["held"] = held
            result["held_info"] = _describe_held(held)
            if result["outcome"] in ("loaded", "explained"):
                result["was"] = result["outcome"]
                result["outcome"] = "left"
        result["seconds"] = round(time.monotonic() - started, 3)
        results.write(json.dumps(result) + "\n")
        if held:
            break  # this process holds what it should not: the driver starts a fresh worker


def _test_hooks(job: dict) -> None:
    """What the driver's own tests ask a worker to do besides the load, to show that a death
    and a leftover are seen: die by a signal, or keep a real map's fd past close_all()."""
    if job.get("_test_signal"):
        os.kill(os.getpid(), getattr(signal, job["_test_signal"]))
        time.sleep(5)
    if job.get("_test_leak"):
        from bpfkit.access._libbpf import lib
        fd = lib.bpf_map_create(2, b"mutants_leak", 4, 8, 1, None)  # an array nobody will close
        if fd < 0:
            raise OSError(-fd, "bpf_map_create failed in the leak hook")


def _describe_held(held: dict) -> dict:
    from bpfkit.access import kernel
    out = {}
    for kind, ids in held.items():
        info = {"programs": kernel.prog_info, "maps": kernel.map_info, "links": kernel.link_info}[kind]
        out[kind] = [info(i) for i in ids]
    return out


def why_main() -> None:
    """BCC alone on the C text read from stdin, in this process, compiler output on stderr:
    what a crashed worker could not report."""
    os.dup2(2, 1)
    from bpfkit.access import _bcc
    Quiet = _bcc.quiet_bpf_class()
    try:
        Quiet(text=sys.stdin.read().encode()).cleanup()
    except Exception as e:  # noqa: BLE001
        print(f"python: {type(e).__name__}: {e}", file=sys.stderr)


# ---- the driver --------------------------------------------------------------------------------

class _Worker:
    def __init__(self, index: int):
        self.index = index
        self.stderr = tempfile.TemporaryFile()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        env.pop("PYTHONHASHSEED", None)
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, cwd=str(ROOT), env=env)
        self.buffer = b""
        self.job: dict | None = None
        self.sent_at = 0.0
        self.err_offset = 0

    def send(self, job: dict) -> None:
        self.job = job
        self.sent_at = time.monotonic()
        self.err_offset = self.stderr.seek(0, os.SEEK_END)
        wire = {k: v for k, v in job.items() if k not in ("program", "desc")}
        self.proc.stdin.write((json.dumps(wire) + "\n").encode())
        self.proc.stdin.flush()

    def stderr_tail(self, limit: int = 2000) -> str:
        self.stderr.seek(self.err_offset)
        return self.stderr.read().decode("utf-8", "replace")[-limit:]

    def status(self) -> str:
        code = self.proc.wait()
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exited with status {code}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def postmortem(source: str, timeout: float = 60) -> dict:
    """Compile `source` with BCC alone in a fresh process (no bpfkit in the way) to see what a
    crashing compile prints and how it ends."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "why"], input=source.encode(),
                              capture_output=True, timeout=timeout, cwd=str(ROOT), env=env)
    except subprocess.TimeoutExpired:
        return {"status": f"no end after {timeout:.0f} s", "said": ""}
    code = done.returncode
    status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
    said = done.stderr.decode("utf-8", "replace")
    keep = [l for l in said.splitlines() if re.search(r"error|fatal|LLVM|Assertion|abort|python:", l, re.I)]
    return {"status": status, "said": "\n".join(keep[-8:])[-1500:] or said[-800:]}


OUTCOMES = ("loaded", "explained", "raw", "crashed", "left")


def run(count: int, seed: int, workers: int = 2, deadline: float | None = None,
        timeout: float = 90.0, sources: dict[str, str] | None = None,
        examples: int = 5, postmortems: int = 40, jobs: list[dict] | None = None) -> dict:
    """Load `count` mutants (seeded by `seed`) in `workers` parallel worker processes.

    `deadline`: seconds from now after which no new mutant is started (those are counted as
    "unrun"). `timeout`: seconds one mutant may take before its worker is killed and the
    mutant recorded as "crashed". `jobs` (dicts with id, program, desc, source) replaces the
    generated mutants (`count` and `seed` are then unused). Returns the counts, examples of each non-clean outcome, and
    every result (`results`, in id order, each bad one with its full source)."""
    start = time.monotonic()
    jobs = mutants(count, seed, sources) if jobs is None else jobs
    count = len(jobs)
    queue = list(reversed(jobs))
    done: dict[int, dict] = {}
    pool = [_Worker(i) for i in range(max(1, min(workers, count or 1)))]
    selector = selectors.DefaultSelector()
    restarts = 0

    def register(w):
        selector.register(w.proc.stdout, selectors.EVENT_READ, w)

    def replace(w):
        nonlocal restarts
        selector.unregister(w.proc.stdout)
        w.stop()
        restarts += 1
        fresh = _Worker(w.index)
        pool[pool.index(w)] = fresh
        register(fresh)

    def finish(w, result):
        job = w.job
        result.update(program=job["program"], desc=job["desc"])
        if result["outcome"] not in ("loaded", "explained"):
            result["source"] = job["source"]
        done[job["id"]] = result
        w.job = None

    for w in pool:
        register(w)
    try:
        while True:
            stop_feeding = deadline is not None and time.monotonic() - start > deadline
            for w in pool:
                if w.job is None and queue and not stop_feeding:
                    try:
                        w.send(queue.pop())
                    except BrokenPipeError:  # died while idle (it should not): start another
                        queue.append(w.job)
                        w.job = None
                        replace(w)
            busy = [w for w in pool if w.job is not None]
            if not busy:
                break
            for key, _ in selector.select(timeout=0.5):
                w = key.data
                if w.job is None:
                    continue
                chunk = os.read(w.proc.stdout.fileno(), 1 << 16)
                if chunk:
                    w.buffer += chunk
                    while b"\n" in w.buffer and w.job is not None:
                        line, w.buffer = w.buffer.split(b"\n", 1)
                        result = json.loads(line)
                        finish(w, result)
                        if result["outcome"] == "left":
                            replace(w)  # it exits after reporting what it still holds
                    continue
                # EOF: the worker died in the middle of this mutant.
                status = w.status()
                finish(w, {"id": w.job["id"], "outcome": "crashed", "status": status,
                           "message": f"worker {status}", "stderr": w.stderr_tail(),
                           "seconds": round(time.monotonic() - w.sent_at, 3)})
                replace(w)
            for w in pool:
                if w.job is not None and time.monotonic() - w.sent_at > timeout:
                    w.proc.kill()
                    w.proc.wait()
                    finish(w, {"id": w.job["id"], "outcome": "crashed",
                               "status": f"no answer in {timeout:.0f} s: killed",
                               "message": f"worker hung for {timeout:.0f} s (killed)",
                               "stderr": w.stderr_tail(), "seconds": round(timeout, 3)})
                    replace(w)
    finally:
        for w in pool:
            try:
                selector.unregister(w.proc.stdout)
            except (KeyError, ValueError):
                pass
            w.stop()
        selector.close()

    results = [done[i] for i in sorted(done)]
    for r in [r for r in results if r["outcome"] == "crashed"][:postmortems]:
        pm = postmortem(r["source"])
        r["bcc_alone"] = pm
        r["message"] = f"worker {r['status']}; BCC alone {pm['status']}" + \
            (f": {pm['said']}" if pm["said"] else "")
    counts = {"mutants": len(results), **{k: 0 for k in OUTCOMES}}
    for r in results:
        counts[r["outcome"]] += 1
    counts["unrun"] = count - len(results)
    shown: dict[str, list] = {}
    for outcome in ("crashed", "raw", "left"):
        seen = {}
        for r in results:
            if r["outcome"] != outcome:
                continue
            sig = signature(r)
            seen.setdefault(sig, {"kind": sig, "count": 0, "program": r["program"], "desc": r["desc"],
                                  "message": _example_message(r), "id": r["id"]})
            seen[sig]["count"] += 1
        shown[outcome] = sorted(seen.values(), key=lambda e: -e["count"])[:examples * 4]
    return {"counts": counts, "seed": seed, "seconds": round(time.monotonic() - start, 1),
            "restarts": restarts, "examples": shown, "results": results,
            "explained_by_type": _tally(r.get("type") for r in results if r["outcome"] == "explained")}


def _tally(items) -> dict:
    out: dict = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _example_message(r: dict) -> str:
    if r["outcome"] == "left":
        return f"after close_all() the worker still holds {r.get('held')} ({r.get('was')}): " \
               f"{r.get('held_info')}"
    if r["outcome"] == "raw":
        return f"{r.get('type')}: {r.get('message', '')[:400]} [{r.get('frame', '')}]"
    return r.get("message", "")[:800]


def signature(r: dict) -> str:
    """What makes two bad outcomes the same kind of problem."""
    if r["outcome"] == "crashed":
        said = (r.get("bcc_alone") or {}).get("said", "") or r.get("stderr", "")
        first = next((l for l in said.splitlines() if re.search(r"error|LLVM|fatal", l, re.I)), "")
        first = re.sub(r"(main\.c|<unknown>):\d+(:\d+)?", r"\1", first)
        first = re.sub(r"\bin function \w+", "in function F", first)
        first = re.sub(r"'[^']*'|\b\d+\b", "X", first)
        return f"{r['status']}: {first[:160]}"
    if r["outcome"] == "raw":
        frame = re.sub(r":\d+ in", " in", r.get("frame", "").split(": ", 1)[0])
        return f"{r.get('type')} at {frame}"
    return "holds " + ",".join(sorted(r.get("held", {})))


def table(report: dict) -> str:
    c = report["counts"]
    lines = [f"seed {report['seed']}: {c['mutants']} mutants in {report['seconds']} s "
             f"({report['restarts']} worker restarts)" + (f", {c['unrun']} not run (deadline)" if c["unrun"] else ""),
             "  " + "  ".join(f"{k}={c[k]}" for k in OUTCOMES)]
    if report.get("explained_by_type"):
        lines.append("  explained as: " + ", ".join(f"{k} {v}" for k, v in report["explained_by_type"].items()))
    for outcome, found in report["examples"].items():
        for e in found:
            lines.append(f"  [{outcome} x{e['count']}] {e['program']}.c, mutant {e['id']}: {e['desc']}")
            lines.append("      " + e["message"].replace("\n", "\n      ")[:1200])
    return "\n".join(lines)


def _cli() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker_main()
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "why":
        why_main()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="load mutants and print what happened")
    r.add_argument("--count", type=int, default=200)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--workers", type=int, default=2)
    r.add_argument("--deadline", type=float, default=None, help="seconds; no new mutant after")
    r.add_argument("--timeout", type=float, default=90.0, help="seconds one mutant may take")
    r.add_argument("--out", type=Path, default=None, help="write every result (JSON) here")
    s = sub.add_parser("show", help="print mutant(s) of a seed without loading them")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("ids", type=int, nargs="+")
    args = parser.parse_args()
    if args.command == "show":
        jobs = mutants(max(args.ids) + 1, args.seed)
        for i in args.ids:
            print(f"== mutant {i} of {jobs[i]['program']}.c: {jobs[i]['desc']}\n{jobs[i]['source']}")
        return 0
    sys.path.insert(0, str(HERE))
    import conftest  # the suite's own view of what is in the kernel
    before = conftest.kernel_state()
    report = run(args.count, args.seed, args.workers, args.deadline, args.timeout)
    left = conftest.leftovers(before)
    report["kernel_left"] = left
    print(table(report))
    print("kernel-wide leftovers: " + (json.dumps(left) if left else "none"))
    if args.out:
        bad = [r for r in report["results"] if r["outcome"] not in ("loaded", "explained")]
        args.out.write_text(json.dumps({**report, "bad": bad}, indent=1, default=str))
        print(f"details in {args.out}")
    c = report["counts"]
    return 1 if c["crashed"] or c["raw"] or c["left"] or c["unrun"] or left else 0


if __name__ == "__main__":
    sys.exit(_cli())
