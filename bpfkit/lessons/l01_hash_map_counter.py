"""Lesson 01's exercise: count execve() per command name instead of per uid, exactly.

Two things are checked: the map (started programs counted under their own name), by starting
`true` a known number of times; and how the program adds, by reading its C code, because a
lost count needs two CPUs starting the same program in the same few nanoseconds, which no
check can make happen on demand.
"""
from __future__ import annotations

import re

from pandas.api.types import is_string_dtype, is_object_dtype

from ..lab.children import hammer, unused_uid
from ..loader.program import load
from .checker import Checker, exercise

PLAIN_INCREMENT = re.compile(r"\.\s*increment\s*\(")          # not .atomic_increment(
ATOMIC_INCREMENT = re.compile(r"\.\s*atomic_increment\s*\(")
ATOMIC_ADD = re.compile(r"\b(__sync_fetch_and_add|lock_xadd)\s*\(")
TRY_INIT = re.compile(r"\.\s*lookup_or_try_init\s*\(")


def how_it_adds(source: str) -> str | None:
    """What is wrong with how `source` adds one, in words; None when it adds exactly."""
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.S)   # comments do not count
    if PLAIN_INCREMENT.search(code):
        return ("The program counts with increment(), which the race above measured losing counts: "
                "it is `*value += 1`, a read and a write that two CPUs can interleave. Of the ways "
                "you saw, which one adds in a single step that no other CPU can split?")
    if ATOMIC_INCREMENT.search(code) and not ATOMIC_ADD.search(code):
        return ("atomic_increment() adds atomically to an entry that exists; the first count of a new "
                "name is inserted by a plain update that fails when another CPU inserted the name "
                "first, and that count is lost. Which call creates the entry so that both CPUs get "
                "the one that won, before they add?")
    if not ATOMIC_ADD.search(code):
        return ("The program adds one in two steps (read the count, write count + 1): two CPUs "
                "starting the same program at once both read the same count, and one start is lost. "
                "Add with one atomic instruction, as atomic_table did in the race above.")
    if not TRY_INIT.search(code):
        return ("The program adds atomically, but how does a new name get its entry? Create it so "
                "that two CPUs racing to create it both end up adding to the same one, as "
                "atomic_table did in the race above.")
    return None


@exercise("Count programs started, per command name, exactly",
          "The key is the command name, read at sched_process_exec once the new program has "
          "replaced the old one; lookup_or_try_init() makes each new name's entry once, and "
          "__sync_fetch_and_add() adds in one step: no start is lost, on any number of CPUs.")
def check_comm_counter(c: Checker, program, expected: dict[str, int],
                       map_name: str = "counter_table") -> None:
    """`expected`: command name -> how many times the learner ran it since loading."""
    problem = how_it_adds(program.source)
    c.expect(problem is None, problem)
    frame = program[map_name].frame()
    names = [col for col in frame.columns if is_string_dtype(frame[col]) or is_object_dtype(frame[col])]
    c.require(names, f"The map's key is still a number (columns {list(frame.columns)}). Make it a "
              "struct with a `char comm[16];` field, filled by bpf_get_current_comm().")
    counts = dict(zip(frame[names[0]], frame[frame.columns[-1]]))
    c.require(any(counts.values()), "The map has command names but no counts: add one per event.")
    for comm, n in expected.items():
        got = counts.get(comm[:15], 0)
        c.expect(got >= n, f"{comm!r} started {n} times but the map counts {got} for it. Whose name "
                 "does the process carry when your program runs? At syscalls:sys_enter_execve the "
                 "new program has not replaced the old one yet.")


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
