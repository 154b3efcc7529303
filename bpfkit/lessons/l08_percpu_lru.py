"""Lesson 08's exercise (a flow table that keeps its hot flows and counts per CPU) and its check.

The check feeds the learner's program a stream of flows it makes itself, as a fresh uid the
program watches (`watched[0]`), with `calls_on_cpus`: first eight cold flows on CPU 0,
then rounds that alternate between the CPUs, each touching the three hot flows and adding one
new cold flow. It knows every count per CPU, so it can say exactly what is still wrong.
"""
from __future__ import annotations

import os
import sys

from ..lab.children import Child, on_cpu, unused_uid
from ..core.errors import UsageError
from ..maps.spec import possible_cpus
from .checker import Checker, exercise, learners

MAX_ENTRIES = 8
HOT = (7, 8, 9)                                   # touched in every round
WARM_UP = tuple(range(201, 201 + MAX_ENTRIES))    # the first flows: they fill a plain hash
ROUNDS = 20                                       # each adds one new cold flow: 209, 210, ...


def calls_on_cpus(uid: int, steps) -> dict[int, int]:
    """Exactly the system calls in `steps`, made in order by one child process running as
    `uid` (needs root), each step pinned to one CPU: `(cpu, n)` is n getppid() calls on that
    CPU; `(cpu, n, key)` is n getpgid(key) calls, for a program that reads its key from the
    call's argument (the answer does not matter: usually no process has that id).

    The lesson uses it to put a known number of events on each CPU. CPU numbers fold onto the
    CPUs this process may use (cpu % how many), so a plan for two CPUs still runs on one.
    Returns {cpu: calls made there}, by the CPU the calls really ran on."""
    plan = []
    for step in steps:
        cpu, n, *key = step
        if int(n) < 0 or len(key) > 1:
            raise UsageError(f"A step is (cpu, n) or (cpu, n, key) with n >= 0, not {step!r}.",
                             "for example [(0, 100), (1, 50)].")
        plan.append((on_cpu(cpu), int(n), int(key[0]) if key else None))
    made: dict[int, int] = {}
    with Child(uid=uid) as child:
        for cpu, n, key in plan:
            made[cpu] = made.get(cpu, 0) + child.calls(n, key=key, cpu=cpu)
    return made


def exercise_stream() -> list[tuple[int, int, int]]:
    """The check's stream as `calls_on_cpus` steps: (cpu, 1, flow)."""
    steps = [(0, 1, flow) for flow in WARM_UP]
    for r in range(ROUNDS):
        cpu = r % 2
        steps += [(cpu, 1, flow) for flow in HOT] + [(cpu, 1, WARM_UP[-1] + 1 + r)]
    return steps


def expected_hot_counts(cpus: int) -> dict[int, list[int]]:
    """Each hot flow's count on each of `cpus` CPUs (the map's width), as the CPUs this
    process may use fold the stream's CPUs 0 and 1 (see `calls_on_cpus`)."""
    usable = sorted(os.sched_getaffinity(0))
    per_cpu = [0] * cpus
    for r in range(ROUNDS):
        per_cpu[usable[(r % 2) % len(usable)]] += 1
    return {flow: list(per_cpu) for flow in HOT}


def _flows(numbers) -> str:
    numbers = sorted(numbers)
    return ", ".join(map(str, numbers)) if numbers else "none"


def _hot(missing, what: str = "evicted") -> str:
    """"Hot flow 7 was evicted" / "The hot flows 7, 8 were evicted"."""
    if len(missing) == 1:
        return f"Hot flow {missing[0]} was {what}"
    return f"The hot flows {_flows(missing)} were {what}"


def _counts(flows) -> tuple[dict | None, dict]:
    """(each flow's counts per CPU, None for a map without per-CPU values; each flow's total)."""
    if flows.per_cpu:
        frame = flows.frame(per_cpu="wide")
        got = {int(row[0]): [int(v) for v in row[1:]] for row in frame.itertuples(index=False)}
        return got, {k: sum(v) for k, v in got.items()}
    frame = flows.frame()
    return None, {int(k): int(v) for k, v in zip(frame["key"], frame["value"])}


DECLARE = 'BPF_TABLE("lru_percpu_hash", u32, u64, flows, 8);'
COUNT = "u64 zero = 0, *n = flows.lookup_or_try_init(&flow, &zero); if (n) (*n)++;"


def _empty(c: Checker, program, flows, map_name: str) -> None:
    """Why the table is empty (increment() never inserts into a per-CPU or LRU map), and stop."""
    said = f"The table is empty after {len(exercise_stream())} getpgid() calls"
    if ".increment(" in program.source and flows.type != "hash":
        c.require(False,
                  f"{said}, and your program counts with `increment()` into {flows.map_type.a}. Into "
                  "which map types does `increment()` insert a key it does not find? The cell under "
                  "'A trap: increment() on a per-CPU map' shows it.",
                  hint="`increment()` adds one only to an entry that exists, and inserts a missing key "
                       "only into a plain `BPF_HASH`. Another BCC map method inserts a new key with a "
                       "starting value and returns a pointer to the value.",
                  fix=f"Replace `{map_name}.increment(flow);` with `{COUNT}` (the pointer is this "
                      "CPU's copy; check it for NULL).")
    c.require(False,
              f"{said}. Does the program still read the flow from `args->pid`, check `watched[0]` "
              "against the caller's uid, and create an entry for each new flow?",
              hint="Compare your program with the starter's first lines: the check sets `watched[0]` "
                   "to the uid that makes the calls, and each call's flow is `args->pid`.",
              fix=f"Keep the starter's lines up to `u32 flow = args->pid;`, then count with `{COUNT}`.")


def _hot_flows_kept(c: Checker, flows, totals: dict, map_name: str) -> None:
    """Stop the check, saying why, when a hot flow is not in the table at the end."""
    missing = [f for f in HOT if f not in totals]
    them = "it" if len(missing) == 1 else "them"
    if missing and flows.type in ("lru_hash", "lru_percpu_hash"):
        if flows.max_entries < MAX_ENTRIES:
            c.require(False,
                      f"{_hot(missing)} from an LRU of {flows.max_entries} entries. How many entries "
                      "does a round need: the 3 hot flows and a new one, and what does the kernel "
                      "keep aside per CPU? The lesson's 'Going further' says why an LRU may hold "
                      "fewer keys than its size.",
                      hint=f"Give the table the {MAX_ENTRIES} entries the task allows.",
                      fix=f"`{DECLARE}`")
        c.require(False,
                  f"{_hot(missing)}, though every round used {them}. Does the program look up every "
                  "flow it sees? The section 'LRU maps: a table that makes room' says what marks an "
                  "entry as recently used.",
                  hint="Only a lookup from the BPF program marks an LRU entry as used; a flow whose "
                       "calls skip the lookup looks cold to the kernel.",
                  fix=f"For every call: `{COUNT}`")
    if missing:
        kept = [f for f in WARM_UP if f in totals]
        c.require(False,
                  f"{_hot(missing, 'not in the table at the end')}, though every round used {them}. "
                  f"`{map_name}` is {flows.map_type.a}: it filled up with the first flows "
                  f"({_flows(kept)}) and then refused every new key, hot or not. Which map type "
                  "makes room for a new key by dropping one not used recently? The section 'LRU "
                  "maps: a table that makes room' shows one.",
                  hint="An LRU hash evicts by itself. BCC has no macro for it: `BPF_TABLE` declares "
                       "a map by its kernel type name. Will `increment()` still insert into it?",
                  fix=f"Declare `{DECLARE}` and count with `{COUNT}`")


@exercise("A flow table that keeps its hot flows, counted per CPU",
          "An LRU hash with per-CPU values: new flows get in, the hot ones stay because "
          "they are used again and again, and each CPU counts in its own copy without atomics. "
          "increment() would never have inserted a flow into it: lookup_or_try_init() does.")
def check_flow_table(c: Checker, program, map_name: str = "flows") -> None:
    """Lesson 08's exercise: `map_name` keeps the hot flows of a stream of more flows than it
    holds, with exact counts per CPU, and never more than 8 entries."""
    flows = program[map_name]
    watched = program["watched"]
    c.expect(flows.max_entries <= MAX_ENTRIES,
             f"`{map_name}` has room for {flows.max_entries} flows; the task allows at most "
             f"{MAX_ENTRIES}. Which of the exercise's three requirements does that break?",
             hint="The size is the last argument of the map's declaration; the point is a table "
                  "smaller than the stream.",
             fix=f"Declare it with {MAX_ENTRIES} entries: `{DECLARE}`")
    uid = unused_uid()
    watched[0] = uid           # first watch our uid only, then start from an empty table
    flows.clear()
    try:
        calls_on_cpus(uid, exercise_stream())
    finally:
        watched[0] = 0
    got, totals = _counts(flows)
    if not totals:
        _empty(c, program, flows, map_name)
    c.expect(len(totals) <= MAX_ENTRIES,
             f"The table holds {len(totals)} flows at the end; at most {MAX_ENTRIES} were asked for. "
             "What is its `max_entries`?",
             hint="A map never holds more keys than its `max_entries`, the last argument of its "
                  "declaration.",
             fix=f"`{DECLARE}`")
    _hot_flows_kept(c, flows, totals, map_name)
    if not flows.per_cpu:
        hot_totals = {f: totals[f] for f in HOT}
        c.require(False,
                  f"The hot flows are kept ({hot_totals}), but `{map_name}` is {flows.map_type.a}: "
                  "one value per flow, shared by all CPUs. The task wants each CPU's count "
                  "separately, without atomic adds. Which LRU map type has a value per CPU? The "
                  "section 'Per-CPU maps: a copy of the value on every CPU' shows the idea.",
                  hint="Per-CPU map types have `percpu` in their names, and a plain add to one CPU's "
                       "copy needs no atomic here.",
                  fix=f"`{DECLARE}`")
    want = expected_hot_counts(flows.cpus)
    for flow in HOT:
        c.expect(got[flow] == want[flow],
                 f"Flow {flow} has the counts {got[flow]} (CPU 0 first); the stream used it "
                 f"{want[flow]} times on those CPUs. Does the program add exactly one per call, to "
                 "this CPU's copy?",
                 hint="Count through the pointer `lookup_or_try_init()` returns: one, once per call.",
                 fix=f"`{COUNT}`")



TOTAL_FIX = "return int(np.frombuffer(raw, dtype=np.uint64).sum())"   # from the third try on


@exercise("Add up a per-CPU value yourself",
          "One copy per possible CPU, each in 8 bytes: the sum frame(per_cpu=\"sum\") shows.")
def check_per_cpu_total(c: Checker, total, per_cpu_map) -> None:
    """`total(raw)` adds up the u64 copies of a per-CPU value as `Map.raw(key)` hands them over.
    Checked first on made-up bytes whose copies tell a 4-byte reading, or one that stops at the
    online CPUs, from the right one; then on every key of `per_cpu_map` against `frame()`."""
    c.require(callable(total), f"`total` is a {type(total).__name__}, where the check expected a "
              "function of the raw bytes. Did the cell that defines it run?",
              fix="def total(raw): ...")
    cpus = possible_cpus()
    copies = [(cpu + 1) << 33 for cpu in range(cpus)]   # too big for 4 bytes; one in every copy
    made = b"".join(v.to_bytes(8, sys.byteorder) for v in copies)
    got, error = learners(total, made)
    c.require(error is None, f"On {len(made)} bytes (the {cpus} copies {copies[:2]}…), your `total` "
              f"raised {error}. How many bytes does each copy take? 'Read it: a row per key and "
              "CPU' and `calls.raw` say.",
              hint="`len(raw)` is `bpfkit.possible_cpus()` times one copy's width.",
              fix=TOTAL_FIX)
    c.require(got == sum(copies),
              f"For {cpus} copies holding {copies[:2]}… ({len(made)} bytes), your `total` returned "
              f"{got}; the copies add up to {sum(copies)}. How many copies does `raw` hold, how wide "
              "is each, and does it hold the CPUs that are offline too?",
              hint="Each copy is a u64 in the machine's byte order, padded to 8 bytes, one per "
              "possible CPU (`bpfkit.possible_cpus()`), not per online CPU.",
              fix=TOTAL_FIX)
    summed = per_cpu_map.frame(per_cpu="sum")
    for key, value in zip(summed.iloc[:, 0].tolist(), summed.iloc[:, -1].tolist()):
        mine, error = learners(total, per_cpu_map.raw(key))
        if not c.expect(mine == value, f"For key {key} of `{per_cpu_map.name}`, your `total` says "
                        f"{mine if error is None else error}; `frame(per_cpu=\"sum\")` says {value}. "
                        "What differs between the made-up bytes and the map's?"):
            return
