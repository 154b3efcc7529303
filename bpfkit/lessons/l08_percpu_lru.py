"""Lesson 08's exercise (a flow table that keeps its hot flows and counts per CPU) and its check.

The check feeds the learner's program a stream of flows it makes itself, as a fresh uid the
program watches (`watched[0]`), with `calls_on_cpus`: first eight cold flows on CPU 0,
then rounds that alternate between the CPUs, each touching the three hot flows and adding one
new cold flow. It knows every count per CPU, so it can say exactly what is still wrong.
"""
from __future__ import annotations

import os

from ..lab.children import Child, on_cpu, unused_uid
from ..core.errors import UsageError
from .checker import Checker, exercise

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


def _empty(program, flows, map_name: str) -> str:
    """Why the table is empty: increment() never inserts into a per-CPU or LRU map."""
    said = f"The table is empty after {len(exercise_stream())} getpgid() calls."
    if ".increment(" in program.source and flows.type != "hash":
        return said + (f" Your program counts with increment(), and {map_name!r} is {flows.map_type.a}: "
                       "BCC's increment() adds one to an entry that exists and inserts a missing "
                       "key only into a plain BPF_HASH; on a per-CPU or LRU map it never inserts, so "
                       "nothing is ever counted. Create the entry with lookup_or_try_init(&flow, &zero) "
                       "and add one through the pointer it returns (check it for NULL).")
    return said + (" Does the program still read the flow from args->pid, check watched[0] against "
                   "the caller's uid, and create an entry for each new flow?")


@exercise("A flow table that keeps its hot flows, counted per CPU",
          "An LRU hash with per-CPU values: new flows always get in, the hot ones stay because "
          "they are used again and again, and each CPU counts in its own copy without atomics. "
          "increment() would never have inserted a flow into it: lookup_or_try_init() does.")
def check_flow_table(c: Checker, program, map_name: str = "flows") -> None:
    """Lesson 08's exercise: `map_name` keeps the hot flows of a stream of more flows than it
    holds, with exact counts per CPU, and never more than 8 entries."""
    flows = program[map_name]
    watched = program["watched"]
    c.expect(flows.max_entries <= MAX_ENTRIES,
             f"{map_name!r} has room for {flows.max_entries} flows; the table may hold at most "
             f"{MAX_ENTRIES}. Keep the size at {MAX_ENTRIES}: the point is a table smaller than the "
             "stream.")
    uid = unused_uid()
    watched[0] = uid           # first watch our uid only, then start from an empty table
    flows.clear()
    try:
        calls_on_cpus(uid, exercise_stream())
    finally:
        watched[0] = 0
    got, totals = _counts(flows)
    if not totals:
        c.require(False, _empty(program, flows, map_name))
    c.expect(len(totals) <= MAX_ENTRIES,
             f"The table holds {len(totals)} flows at the end; at most {MAX_ENTRIES} were asked for.")
    missing = [f for f in HOT if f not in totals]
    if missing and flows.type in ("lru_hash", "lru_percpu_hash"):
        c.require(False, f"{_hot(missing)}. " + (
            f"With {flows.max_entries} entries the kernel's approximate LRU has too little room for "
            f"the 3 hot flows and each new one; give the table its {MAX_ENTRIES} entries."
            if flows.max_entries < MAX_ENTRIES else
            "Does the program look up every flow it sees (a lookup from the program is what marks "
            "an entry as recently used)?"))
    if missing:
        kept = [f for f in WARM_UP if f in totals]
        them = "it" if len(missing) == 1 else "them"
        c.require(False,
                  f"{_hot(missing, 'not in the table at the end')}, though every round used {them}. "
                  f"{map_name!r} is {flows.map_type.a}: it filled up with the first flows "
                  f"({_flows(kept)}) and then refused every new key, hot or not. Which map type "
                  "makes room for a new key by dropping the one used least recently?")
    if not flows.per_cpu:
        hot_totals = {f: totals[f] for f in HOT}
        c.require(False,
                  f"The hot flows are kept ({hot_totals}), but {map_name!r} is {flows.map_type.a}: "
                  "one value per flow, shared by all CPUs. The task wants each CPU's count "
                  "separately, and a value that only one CPU writes is also what makes (*n)++ safe "
                  "without an atomic add. Which LRU map type has a value per CPU?")
    want = expected_hot_counts(flows.cpus)
    for flow in HOT:
        c.expect(got[flow] == want[flow],
                 f"Flow {flow} has the counts {got[flow]} (CPU 0 first); the stream used it "
                 f"{want[flow]} times on those CPUs. Add exactly one per call to this CPU's "
                 "copy: (*n)++ or *n += 1.")
