"""Lesson 01's exercise: count execve() per command name instead of per uid, exactly.

The check judges what the program does. It starts `true` a known number of times and reads the
map (each start counted under its own name). Then it races the program: a copy of its C code,
its tracepoint moved to getppid() and limited to a fresh uid, runs while two processes on two
CPUs call getppid() as fast as they can; every call must be counted (a per-CPU map's copies
summed). An atomic add and a per-CPU map both pass. What one run cannot show is read from the C
code: a two-step add on a shared entry that happened to lose nothing this time, and a new
name's first count, lost when two CPUs insert the same name at once (no check can make that
happen on demand).
"""
from __future__ import annotations

import re

from pandas.api.types import is_string_dtype, is_object_dtype

from ..core.errors import BpfkitError
from ..lab.children import hammer, unused_uid
from ..loader.program import load
from .breaking import Break
from .checker import Checker, exercise

PLAIN_INCREMENT = re.compile(r"\.\s*increment\s*\(")          # not .atomic_increment(
ATOMIC_INCREMENT = re.compile(r"\.\s*atomic_increment\s*\(")
ATOMIC_ADD = re.compile(r"\b(__sync_fetch_and_add|__sync_add_and_fetch|__atomic_fetch_add|"
                        r"__atomic_add_fetch|lock_xadd)\s*\(")
TRY_INIT = re.compile(r"\.\s*lookup_or_try_init\s*\(")
PROBE = re.compile(r"TRACEPOINT_PROBE\s*\(\s*\w+\s*,\s*\w+\s*\)\s*\{")
RACE_CELL = "The cell 'Lookup-then-update is not atomic'"
FIX = ("Create the entry with `u64 zero = 0, *n = counter_table.lookup_or_try_init(&key, &zero);`, "
       "then `if (n) __sync_fetch_and_add(n, 1);`. Or declare the map `BPF_PERCPU_HASH(counter_table, "
       "struct key_t);` and add with `if (n) (*n)++;` after the same lookup_or_try_init().")

INSERT_HINT = ("`increment()` and `atomic_increment()` insert a missing key with a plain update, which fails "
               "if another CPU inserted it first. `lookup_or_try_init()` inserts the entry or returns the one "
               "another CPU just inserted; add to what it returns.")


def _code(source: str) -> str:
    return re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.S)   # comments do not count


def race(program, map_name: str = "counter_table", calls_per_worker: int = 300_000,
         workers: int = 2) -> tuple[int, int] | None:
    """(calls made, calls counted) when a copy of `program`'s C code, its TRACEPOINT_PROBE
    moved to getppid() and limited to a fresh uid, counts `workers` processes (one per CPU)
    calling getppid() `calls_per_worker` times each. The count is every value of the copy's
    `map_name`, a per-CPU map's CPUs added up. None when the copy cannot be made or run (no
    TRACEPOINT_PROBE, or a body that needs its own tracepoint's fields)."""
    if not PROBE.search(program.source):
        return None
    uid = unused_uid()
    source = PROBE.sub(lambda m: "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n"
                       f"    if ((bpf_get_current_uid_gid() & 0xFFFFFFFF) != {uid}) return 0;",
                       program.source, count=1)
    try:
        with load(source, name=f"{program.name}_race_check") as copy:
            made = hammer(uid, calls_per_worker, workers)
            m = copy[map_name]
            frame = m.frame(per_cpu="sum") if m.per_cpu else m.frame()
            return made, int(frame[frame.columns[-1]].sum())
    except BpfkitError:
        return None


def how_it_adds(source: str, per_cpu: bool, raced: tuple[int, int] | None) -> list[tuple[str, str, str]]:
    """What is wrong with how `source` adds one, as (problem, hint, fix): what the race
    `raced` (made, counted) measured first, then what the code says one run cannot show."""
    code = _code(source)
    one_step = per_cpu or ATOMIC_ADD.search(code) or ATOMIC_INCREMENT.search(code)
    if raced and 0 < raced[0] - raced[1] <= 2 and one_step:   # two CPUs that insert one new name
        made, counted = raced                                   # at once lose at most one count
        return [(f"Under the check's race ({made:,} events for one key, from two CPUs at once) the map "
                 f"counted {counted:,}: {made - counted:,} lost. The add cannot lose one, so what of "
                 "the first count of a name new to the map, when both CPUs insert it at once? In "
                 "`counter_race`, which call makes the entry so that both CPUs get the one that won?",
                 INSERT_HINT, FIX)]
    if raced and raced[0] != raced[1]:
        made, counted = raced
        return [(f"Under the check's race ({made:,} events for one key, from two CPUs at once) the map "
                 f"counted {counted:,}: {made - counted:,} lost. {RACE_CELL} counted the same "
                 "events three ways: which one lost none, and what did it do differently?",
                 "A count is lost when two CPUs read the same old count and both write old + 1. "
                 "Either make the add one indivisible instruction (an atomic add), or give each CPU "
                 "its own copy of the count (a per-CPU map, whose copies user space adds up).", FIX)]
    problems = []
    shared_two_step = not per_cpu and not ATOMIC_ADD.search(code) and not ATOMIC_INCREMENT.search(code)
    if shared_two_step:
        seen = (f"This run counted all {raced[0]:,} of the check's racing events, but" if raced
                else "The check could not race a copy of this program, and")
        problems.append((f"{seen} the program adds in two steps (read the count, write count + 1) to an "
                         "entry every CPU shares: two CPUs that interleave them lose one start, on some "
                         f"runs and not others. {RACE_CELL} measured it: which way never lost a count?",
                         "`increment()` and `(*n)++` are both a read and a write. An atomic add, or a "
                         "per-CPU map (each CPU adds to its own copy), cannot lose one.", FIX))
    if PLAIN_INCREMENT.search(code) or ATOMIC_INCREMENT.search(code):
        used = "atomic_increment()" if ATOMIC_INCREMENT.search(code) else "increment()"
        problems.append((f"The program adds with `{used}`. For a name not yet in the map, it inserts the "
                         "first count with a plain update that fails when another CPU inserted that name "
                         "a moment before: that first count is lost (a race no check can make happen on "
                         f"demand). In `counter_race`, which call makes the entry so that both CPUs get "
                         "the one that won?",
                         INSERT_HINT, FIX))
    elif not TRY_INIT.search(code):
        problems.append(("How does a new name get its entry? If two CPUs insert the same new name at once, "
                         "one insert wins and the other's first count must not be lost. In `counter_race`, "
                         "which call makes the entry so that both CPUs get the one that won?",
                         INSERT_HINT, FIX))
    return problems[:1]


@exercise("Count programs started, per command name, exactly",
          "The key is the command name, read at sched_process_exec once the new program has "
          "replaced the old one; lookup_or_try_init() makes each new name's entry once, and the add "
          "cannot lose a count (an atomic add, or a per-CPU map's own copy per CPU): no start is "
          "lost, on any number of CPUs.")
def check_comm_counter(c: Checker, program, expected: dict[str, int],
                       map_name: str = "counter_table") -> None:
    """`expected`: command name -> how many times the learner ran it since loading."""
    m = program[map_name]
    for problem, hint, fix in how_it_adds(program.source, m.per_cpu, race(program, map_name)):
        c.expect(False, problem, hint=hint, fix=fix)
    frame = m.frame(per_cpu="sum") if m.per_cpu else m.frame()
    names = [col for col in frame.columns if is_string_dtype(frame[col]) or is_object_dtype(frame[col])]
    c.require(names, f"The map's key is still a number (columns {list(frame.columns)}), so the check "
              "cannot find `true` in it. What must the key hold to count per command name, and "
              "which helper fills it? The exercise's first paragraph names both.",
              hint="A struct key with one `char comm[16]` field: `frame()` shows it as a column of text.",
              fix="`struct key_t { char comm[16]; };`, `BPF_HASH(counter_table, struct key_t);`, and in "
                  "the probe `struct key_t key = {}; bpf_get_current_comm(&key.comm, sizeof(key.comm));`.")
    counts = dict(zip(frame[names[0]], frame[frame.columns[-1]]))
    c.require(any(counts.values()), "The map has command names but every count is 0. What does the "
              "program add per event? The cell 'The program' shows a count going up.",
              hint="After the entry is found or made, add one to it.", fix=FIX)
    for comm, n in expected.items():
        got = counts.get(comm[:15], 0)
        c.expect(got >= n, f"{comm!r} started {n} times but the map counts {got} for it. Whose name "
                 "does the process carry when your program runs? Question 1 of the exercise compares "
                 "the two hooks.",
                 hint="At `syscalls:sys_enter_execve` the process still runs its old program (a shell, "
                      "Python) and carries its old name.",
                 fix="Attach to the tracepoint that fires after the new program replaced the old one: "
                     "`TRACEPOINT_PROBE(sched, sched_process_exec)`.")


def lost_updates(calls_per_worker: int = 500_000, workers: int = 2) -> dict:
    """How many counts the seed's lookup-then-update loses under load, next to exact counting.

    Loads bpf/counter_race.c (three counters of the same getppid() calls), hammers it from
    `workers` CPUs as a fresh uid, and returns {"generated", "atomic", "increment", "racy",
    "lost"}: "atomic" equals "generated"; "racy" (the seed's way) and "increment" (BCC's
    increment()) fall short, and "lost" is how many the seed's way lost."""
    uid = unused_uid()
    with load("counter_race") as prog:
        generated = hammer(uid, calls_per_worker, workers)
        counts = {t: prog[f"{t}_table"].get(uid, 0) for t in ("atomic", "increment", "racy")}
    return {"generated": generated, **counts, "lost": generated - counts["racy"]}


# Break it: the note's own typo, the key handed over by value. Which of the compiler and the
# verifier stops it depends on the toolchain (clang 15 and later make an integer passed as a
# pointer an error), so the outcome is found by trying.
KEY_BY_VALUE = Break(
    __name__, "Hand lookup() the key instead of its address", program="counter",
    old="counter_table.lookup(&uid)", new="counter_table.lookup(uid)",
    question="What does a map lookup take as its key: the key, or where the key is? What would the "
             "verifier see arrive in that argument?",
    hint="The verifier's log names each argument's type: `fp` is a pointer into the program's "
         "stack, `scalar` a plain number.",
    why={"verifier": "The lookup helper takes a pointer to the key. A number in its place reaches "
                     "the verifier as a `scalar` where it expects a pointer (`expected=fp`), and it "
                     "refuses the program before it ever runs.",
         "compiler": "This clang treats an integer passed where a pointer is expected as an error "
                     "(clang 15 and later do), so the mistake stops before the kernel sees it; "
                     "older compilers only warn, and then the verifier refuses it.",
         "loads": "Nothing should accept a number as a pointer: tell the kit's developers."})
