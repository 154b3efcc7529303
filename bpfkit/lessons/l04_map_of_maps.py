"""Lesson 04's exercise: a counter map of its own for each user, found through a hash of maps."""
from __future__ import annotations

from .checker import Checker, exercise


@exercise("A counter map per user, through a hash of maps",
          "Each user's events land in a map of their own, which user space chose.")
def check_per_user_maps(c: Checker, program, expected: dict[int, int],
                        map_name: str = "per_user") -> None:
    """`expected`: uid -> how many programs that user started since the inner maps went in."""
    outer = program[map_name]
    c.require(outer.type == "hash_of_maps",
              f"{map_name!r} is a {outer.type} map. Declare it as a hash of maps keyed by "
              f"uid: BPF_HASH_OF_MAPS({map_name}, u32, \"alice_calls\", 8);")
    slots = outer.frame()
    ids = dict(zip(slots["key"].tolist(), slots["inner_map_id"].tolist()))
    for uid in expected:
        c.expect(uid in ids, f"{map_name!r} has no entry for uid {uid}: put that user's inner map in "
                 f"from Python, e.g. {program.name}[{map_name!r}][{uid}] = {program.name}[\"alice_calls\"].")
    mine = [ids[u] for u in expected if u in ids]
    c.expect(len(set(mine)) == len(mine),
             "two users share one inner map, so their counts mix: give each user a map of their own.")
    if c.result.problems:
        return
    inside = outer.contents()
    value = "value" if "value" in inside.columns else inside.columns[-1]
    for uid, n in expected.items():
        got = int(inside.loc[inside["outer_key"] == uid, value].sum())
        c.expect(got == n, f"uid {uid}'s inner map counts {got}, but that user started {n} programs. "
                 f"The program must look up {map_name} with the caller's uid, and add one to slot 0 "
                 "of the inner map it gets back: u64 *n = bpf_map_lookup_elem(inner, &zero); "
                 "then __sync_fetch_and_add(n, 1).")
