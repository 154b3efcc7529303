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

import numpy as np

from ..lab import children
from ..maps import Map, create_map
from ..loader.program import Program, load
from .checker import Checker, exercise, learners

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
        c.expect(False, f"`prediction` is still None; the exercise's first step asks for a number. "
                 f"What does the starter's `counts` hold for key {KEY} after {BEFORE} runs, a reload "
                 f"of the cell, and {AFTER} more runs? 'Two maps that belong to the notebook' says "
                 "when BCC frees a map declared in the C code.",
                 hint="Running a %%bpf cell again closes the program it loaded before.")
    elif prediction != STARTER_AFTER_RELOAD:
        c.expect(False, f"Your prediction ({prediction}) is not what the starter does. Where does "
                 "a map declared in the C code (`BPF_HASH`) live, and what happens to it when the "
                 "cell runs again and the old program is closed? 'Two maps that belong to the "
                 "notebook' says.",
                 hint="A map declared in the C code is made when the cell loads and freed with its "
                      "program; the reload closes the old program.",
                 fix=f"prediction = {STARTER_AFTER_RELOAD}: the reload starts a new, empty map, so "
                     f"only the {AFTER} runs after it are counted.")
    call = "result = check_keeps_count(l13_keep, counts, prediction=prediction)"
    c.require(isinstance(program, Program),
              f"The check got a {type(program).__name__}, not a program. Which variable did the "
              "exercise's %%bpf cell make? Its first line names it.", fix=call)
    c.require(isinstance(counts, Map),
              f"The second argument is a {type(counts).__name__}, not a map. Which map should the "
              "program count into? The cell under 'Two maps that belong to the notebook' made it.",
              fix=call)
    c.require(not program.closed,
              f"Program {program.name!r} is closed, so the check cannot look at its maps. Was "
              "it closed (or cleaned up) after its %%bpf cell last ran?",
              fix="Run the exercise's %%bpf cell again, then this check.")
    c.require("counts" in program,
              f"Program {program.name!r} has no map called `counts`; the check reads the map by that "
              "name. Which names does the exercise ask you to keep?",
              fix="Count into a map named `counts`, and keep `watch`.")
    theirs = program["counts"]
    c.require(theirs.owner is not program,
              f"The program's `counts` is its own map (id {theirs.id}), made when the cell loaded, "
              f"not the notebook's `counts` (id {counts.id}): every reload starts it from zero. "
              "Which maps in this lesson outlived a reload of their program, and where were they "
              "made? See 'A later run continues from the kept state'.",
              hint="A map made in user space and handed to a program is kept when the program is "
                   "replaced; the exercise's cell already receives `watch` that way.",
              fix="Delete the BPF_HASH line and hand the program the notebook's map on the cell's "
                  "first line: `%%bpf l13_keep maps=counts,watch`. A handed-in map is a pointer, used "
                  "with helpers as in shared_execs: `bpf_map_update_elem(counts, &key, &start, "
                  "BPF_NOEXIST)`, `bpf_map_lookup_elem(counts, &key)`, then `__sync_fetch_and_add`.")
    c.require(theirs.id == counts.id,
              f"The program's `counts` is map id {theirs.id}, not the notebook's `counts` (id "
              f"{counts.id}). Which variable does the cell's first line hand in?",
              fix="Hand in the notebook's variables by name: `maps=counts,watch`.")
    c.require("watch" in program and program["watch"].owner is not program,
              "The program no longer reads `watch` from the notebook, and the check points `watch` "
              "at a user of its own. Does the cell's first line still hand in `watch`?",
              fix="`maps=counts,watch` on the %%bpf line, and no map declared in the C code.")
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
    shown = (f"An earlier run left {BEFORE} under key {KEY}; after {AFTER} more execve() calls of "
             f"the watched user (and one of a user nobody watches) the map said {after}, expected "
             f"{BEFORE + AFTER}")
    add = ("As in shared_execs: `bpf_map_update_elem(counts, &key, &start, BPF_NOEXIST)`, then "
           "`u64 *count = bpf_map_lookup_elem(counts, &key)` and, if not NULL, "
           "`__sync_fetch_and_add(count, 1)`.")
    if after == BEFORE:
        c.expect(False, f"{shown} (the map's keys: {keys}). Does the program count the uid in "
                 f"watch[0] under key {KEY}? 'Two programs, one map' shows shared_execs doing it.",
                 hint=f"Look up key {KEY} in the handed-in map and add 1 to what is there.", fix=add)
    elif after == 1:
        c.expect(False, f"{shown}: does each call write the count afresh? 'Two programs, one map' "
                 "names the flag that writes a key only when it is missing.",
                 hint="BPF_NOEXIST creates the entry only if it is not there yet.", fix=add)
    else:
        c.expect(after == BEFORE + AFTER,
                 f"{shown}. Does the program add exactly 1 per call of the uid in watch[0], to what "
                 "is there?",
                 hint="Add atomically (lesson 01): two CPUs may start programs at once.", fix=add)



BATCH_ENTRIES = 300   # more than any one batch a learner asks for


@exercise("Read a whole map in batches, with the kernel's cursor",
          "Batch after batch from the cursor the last call returned, until the kernel says the "
          "walk is over: what frame() does, in as few system calls as the map allows.")
def check_batch_loop(c: Checker, read_all) -> None:
    """`read_all(m)` reads every entry of hash map `m` with `m.lookup_batch(cursor, count)` and
    returns {key: value}. The check makes a hash map of BATCH_ENTRIES entries, runs the learner's
    loop on it and compares with `frame()`."""
    c.require(callable(read_all), f"`read_all` is a {type(read_all).__name__}, where the check "
              "expected a function of a map. Did the cell that defines it run?")
    with create_map("hash", key="u32", value="u64", max_entries=1024, name="l13_batches") as m:
        m.update_batch(np.arange(BATCH_ENTRIES, dtype=np.uint32),
                       np.arange(BATCH_ENTRIES, dtype=np.uint64) * 7)
        calls = []
        real = m.lookup_batch

        def counted(cursor=None, count=64):
            calls.append(count)
            return real(cursor, count)

        m.lookup_batch = counted            # the check counts the learner's calls
        got, error = learners(read_all, m)
        whole = m.frame()
        want = dict(zip(whole["key"].tolist(), whole["value"].tolist()))
    c.require(error is None, f"On a map of {BATCH_ENTRIES} entries your `read_all` raised {error}. "
              "What does `lookup_batch` return? The cell 'Batches and a cursor' shows one call.",
              hint="It returns three things: the keys, the values, and where to go on from.")
    c.require(isinstance(got, dict), f"Your `read_all` returned a {type(got).__name__}; the check "
              "expected a dict of key to value.")
    got = {int(k): int(v) for k, v in got.items()}
    c.require(calls, "Your `read_all` never called `m.lookup_batch`: the exercise is the loop "
              "over it. Which call hands the kernel a cursor?")
    c.expect(got == want,
             f"On a map of {BATCH_ENTRIES} entries, your loop made {len(calls)} call(s) of "
             f"`lookup_batch` and returned {len(got)} entries, {sum(want.get(k) == v for k, v in got.items())} "
             f"of them right. When is the walk over, and where does the next call start?",
             hint="The third thing a call returns is the cursor for the next call; it is None "
             "once the kernel said the end was reached (ENOENT).",
             fix="cursor, out = None, {}\nwhile True:\n    keys, values, cursor = m.lookup_batch(cursor, 64)\n"
             "    out.update(zip(keys.tolist(), values.tolist()))\n    if cursor is None:\n        return out")
