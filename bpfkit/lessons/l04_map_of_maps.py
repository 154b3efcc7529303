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
              f"`{map_name}` is a `{outer.type}` map, but the check expected a hash of maps "
              "(`hash_of_maps`), whose values are maps. Which declaration makes one, keyed by uid, "
              "and which of the cell's maps can be its template? Step 1 of the exercise shows the "
              "macro's shape; the cell 'The program' says what an inner map shares with the template.",
              hint=f"Declare `{map_name}` with `BPF_HASH_OF_MAPS`, key type `u32`, and one of the two "
                   "counter maps as the template: both have the same type and sizes.",
              fix=f"BPF_HASH_OF_MAPS({map_name}, u32, \"alice_calls\", 8);")
    slots = outer.frame()
    ids = dict(zip(slots["key"].tolist(), slots["inner_map_id"].tolist()))
    for uid in expected:
        c.expect(uid in ids,
                 f"`{map_name}` has no entry for uid {uid} (it holds {len(ids)} entries); the check "
                 f"expected one inner map for each of the uids {sorted(expected)}. Which map goes "
                 "in for which user? Step 3 of the exercise asks it; the cell 'Put a map in the slot: "
                 "in by fd, out by id' shows how a map goes in from Python.",
                 hint=f"Assign one of the program's counter maps (a `Map`) to `{map_name}[uid]`; "
                      "bpfkit passes its fd to the kernel.",
                 fix=f"{program.name}[{map_name!r}][{uid}] = {program.name}[\"alice_calls\"] "
                     "(and the other user's map for the other uid).")
    mine = [ids[u] for u in expected if u in ids]
    c.expect(len(set(mine)) == len(mine),
             f"`{map_name}` holds {len(mine)} entries but only {len(set(mine))} different inner "
             "map(s), so users share a counter; the check expected a map of their own for each. What "
             "would the counts show then? Step 3 of the exercise asks it.",
             hint="Each user's key needs a different one of the cell's counter maps.",
             fix=f"{map_name}[alice] = {program.name}[\"alice_calls\"] and "
                 f"{map_name}[bob] = {program.name}[\"bob_calls\"].")
    if c.result.problems:
        return
    inside = outer.contents()
    value = "value" if "value" in inside.columns else inside.columns[-1]
    for uid, n in expected.items():
        got = int(inside.loc[inside["outer_key"] == uid, value].sum())
        c.expect(got == n,
                 f"uid {uid}'s inner map counts {got}; the check expected {n}, the programs that "
                 f"user started. Does the program find the caller's own map in `{map_name}`, stop "
                 "when there is none, and add one to slot 0 of that map with an add two CPUs cannot "
                 "split? Step 2 of the exercise asks each of these; lesson 01 measured what a plain "
                 "add loses.",
                 hint=f"Look the uid up in `{map_name}` (NULL: return), then `bpf_map_lookup_elem` "
                      "on the map you got with key 0, check that pointer too, and add with the "
                      "atomic `__sync_fetch_and_add`.",
                 fix=f"void *calls = {map_name}.lookup(&uid); if (calls == 0) return 0; "
                     "int zero = 0; u64 *n = bpf_map_lookup_elem(calls, &zero); "
                     "if (n != 0) __sync_fetch_and_add(n, 1);")
