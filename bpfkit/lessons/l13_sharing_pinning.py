"""Lesson 13's exercise (a count that survives a reload) and its check.

The starter declares its own `counts` map in C, so the map is made when the cell loads and
freed when the cell runs again: a reload starts from zero. The learner predicts the count after
a reload, then hands the program the notebook's map (`maps=counts,watch`) so that the count
carries on. The check first makes sure the program's `counts` is the notebook's map, then loads
the learner's C once more, as a later run, with copies of the maps in which an earlier run
"left" a count of 3, and a uid of its own (so the learner's program, still attached, counts
nothing of it): 2 more execve() calls must make 5.
"""
from __future__ import annotations

from ..lab import children
from ..maps import Map, create_map
from ..loader.program import Program, load
from .checker import Checker, exercise

BEFORE, AFTER = 3, 2           # execve() calls before and after the reload
STARTER_AFTER_RELOAD = AFTER   # what the starter's own map says after the reload
KEY = 1                        # the exercise counts execve() under key 1, as shared_execs.c

# The starter cell's C text, as the lesson shows it (the tests load it).
STARTER = r"""BPF_HASH(counts, u32, u64, 8);   // declared here: made when this cell loads

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 zero = 0;
    u32 *uid = bpf_map_lookup_elem(watch, &zero);
    if (uid == NULL || *uid != (u32)bpf_get_current_uid_gid())
        return 0;
    u32 key = 1;                     // execve() calls, as in shared_execs
    counts.atomic_increment(key);    // BCC's way to add 1 to a map it declared
    return 0;
}
"""


@exercise("A count that survives a reload",
          "The map came from the notebook, not from the C code: reloading the program replaced "
          "the program, and the map with its count stayed.")
def check_keeps_count(c: Checker, program, counts, prediction=None) -> None:
    """Lesson 13's exercise. `program`: the learner's %%bpf program; `counts`: the notebook's
    shared map it should count into; `prediction`: what the learner predicted the starter's
    count to be after a reload. The check loads the learner's C once more itself, with copies
    of the maps, so the learner's own maps and program are left as they were."""
    if prediction is None:
        c.expect(False, "Write down your prediction first: prediction = the number the starter's "
                 f"`counts` holds for key {KEY} after {BEFORE} runs, a reload of the cell, and "
                 f"{AFTER} more runs.")
    elif prediction != STARTER_AFTER_RELOAD:
        c.expect(False, f"Your prediction ({prediction}) is not what the starter does. Where does "
                 "a map declared in the C code (BPF_HASH) live, and what happens to it when the "
                 "cell runs again and the old program is closed?")
    c.require(isinstance(program, Program), "Pass the exercise's program, the variable its %%bpf "
              f"cell made (l13_keep), not {type(program).__name__}.")
    c.require(isinstance(counts, Map), "Pass the notebook's map `counts` as the second argument, "
              f"not {type(counts).__name__}.")
    c.require(not program.closed, f"Program {program.name!r} is closed: run its %%bpf cell again, "
              "then this check.")
    c.require("counts" in program, f"Program {program.name!r} has no map called `counts`: keep "
              "that name, so the check can read it.")
    theirs = program["counts"]
    c.require(theirs.owner is not program,
              "The program still declares its own `counts` (the BPF_HASH line): that map is "
              "made when the cell loads and freed when the cell runs again, so every reload "
              "starts from zero. Delete the line and hand the program the notebook's map on "
              "the cell's first line (maps=counts,watch); a handed-in map is a pointer, used "
              "with helpers as in shared_execs.")
    c.require(theirs.id == counts.id,
              f"The program's `counts` is map id {theirs.id}, not the notebook's `counts` (id "
              f"{counts.id}): hand it the notebook's variable, `maps=counts,watch`.")
    c.require("watch" in program and program["watch"].owner is not program,
              "The program must still read the uid to count from the notebook's `watch` "
              "(maps=counts,watch), so the check can point it at a user of its own.")
    _continues_from_kept_state(c, program)


def _continues_from_kept_state(c: Checker, program) -> None:
    """Load the learner's C once more, as a later run does, with copies of the maps it was given:
    `counts` already holds the count an earlier run left (BEFORE), `watch` a uid of the check's
    own. AFTER execve() calls of that uid (and one of a uid nobody watches) must carry it on."""
    given = {n: program[n] for n in program.map_names() if program[n].owner is not program}
    uid, other = children.private_uids(2, skip=12)   # uids the lesson itself does not use
    made, later = [], None
    try:
        maps = {}
        for name, m in given.items():
            maps[name] = create_map(m.type, key=m.key_type, value=m.value_type,
                                    max_entries=m.max_entries, name="l13_check")
            made.append(maps[name])
        maps["watch"][0] = uid
        maps["counts"][KEY] = BEFORE                     # what an earlier run left
        later = load(program.source, name="l13-check-later", maps=maps)
        children.run_as(uid, AFTER)
        children.run_as(other, 1)                        # a user nobody watches: not counted
        after = maps["counts"].get(KEY, 0)
        keys = sorted(maps["counts"].keys())
    finally:
        if later is not None:
            later.close()
        for m in made:
            m.close()
    if after == BEFORE:
        c.expect(False, f"Nothing was added under key {KEY} for the watched user (the map's keys: "
                 f"{keys}). Count the execve() calls of the uid in watch[0] under key {KEY}, as "
                 "shared_execs does.")
    elif after == 1:
        c.expect(False, f"An earlier run left {BEFORE} under key {KEY}, and after {AFTER} more "
                 "calls the map said 1: each call writes the count afresh. Create the entry only "
                 "when it is missing (BPF_NOEXIST), then add to it.")
    else:
        c.expect(after == BEFORE + AFTER,
                 f"An earlier run left {BEFORE} under key {KEY}; after {AFTER} more execve() calls "
                 f"of the watched user (and one of a user nobody watches) the map said {after}, "
                 f"not {BEFORE + AFTER}. Add 1 per call of the uid in watch[0], to what is there.")
