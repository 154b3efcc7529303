"""Lesson 01's exercise: count execve() per command name instead of per uid."""
from __future__ import annotations

from pandas.api.types import is_string_dtype, is_object_dtype

from . import Checker, exercise


@exercise("Count programs started, per command name",
          "The key is the command name now: bpf_get_current_comm() fills its char[16].")
def check_comm_counter(c: Checker, program, expected: dict[str, int],
                       map_name: str = "counter_table") -> None:
    """`expected`: command name -> how many times the learner ran it since loading."""
    frame = program[map_name].frame()
    names = [col for col in frame.columns if is_string_dtype(frame[col]) or is_object_dtype(frame[col])]
    c.require(names, f"The map's key is still a number (columns {list(frame.columns)}). Make it a "
              "struct with a `char comm[16];` field, filled by "
              "bpf_get_current_comm(&key.comm, sizeof(key.comm)).")
    counts = dict(zip(frame[names[0]], frame[frame.columns[-1]]))
    c.require(any(counts.values()), "The map has command names but no counts: add one per "
              "event with counter_table.increment(key).")
    for comm, n in expected.items():
        got = counts.get(comm[:15], 0)
        c.expect(got >= n, f"{comm!r} started {n} times but the map counts {got} for it. At "
                 "syscalls:sys_enter_execve the process still has its parent's name: attach to "
                 "TRACEPOINT_PROBE(sched, sched_process_exec), which runs after the new program "
                 "has replaced the old one.")
