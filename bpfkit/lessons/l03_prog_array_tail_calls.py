"""Lesson 03's exercise: a third handler in slot 2 of the program array, reached by tail call."""
from __future__ import annotations

from ..lab import children
from ..access import kernel
from ..loader.program import loaded
from .checker import Checker, exercise


@exercise("A third handler in slot 2",
          "The dispatcher was never reloaded: filling a slot is enough for tail calls to reach it.")
def check_third_target(c: Checker, program, slot: int = 2, events: int = 4) -> None:
    """Routes a fresh uid to `slot`, makes `events` execve() calls as it, and expects the
    program in that slot (not the fall-through path, not another handler) to count them all
    in hits[slot]."""
    handlers, route = program["handlers"], program["route"]
    hits, fell = program["hits"], program["fell_through"]
    name = program.name if program.name.isidentifier() else "prog"
    fn = "count_c"
    store = f'{name}["handlers"][{slot}] = {name}.load_func("{fn}", "tracepoint")'
    handler = f"int {fn}(void *ctx) {{ hits.atomic_increment({slot}); return 0; }}"
    c.require(hits.max_entries > slot,
              f"`hits` has {hits.max_entries} slot(s), so the handler of slot {slot} has no `hits[{slot}]` "
              "to count into. How many slots does the lesson's program give `hits`?",
              hint="One slot of `hits` per slot of `handlers`: 4.",
              fix="Declare it `BPF_ARRAY(hits, u64, 4);`.")
    target_id = handlers.get(slot)
    target = kernel.prog_info(target_id) if target_id else None
    if target is None:
        problem, hint, fix = _empty_slot(program, name, slot, fn, store, handler)
        c.require(False, problem, hint=hint, fix=fix)
    others = {s: handlers.get(s) for s in range(handlers.max_entries) if s != slot}
    same = [s for s, pid in others.items() if pid == target["id"]]
    uid = children.unused_uid()
    before, fell_before = [int(x) for x in hits.counts()], int(fell[0])
    route[uid] = slot
    try:
        children.run_as(uid, events)
    finally:
        del route[uid]
    after, fell_after = [int(x) for x in hits.counts()], int(fell[0])
    delta = [a - b for a, b in zip(after, before)]
    c.require(fell_after == fell_before,
              f"{fell_after - fell_before} of the check's {events} events fell through, though slot {slot} "
              f"held `{target['name']}` when the check started. Did the slot change while the check ran? "
              "The section 'Empty a slot' shows what a tail call into an empty slot does.",
              hint=f"Run the cell that fills `{name}`'s slots again, then the check, without changing "
                   "slots in between.",
              fix=f"`{store}`")
    if delta[slot] != events:
        moved = [k for k, d in enumerate(delta) if d and k != slot]
        if same:
            c.expect(False, f"Slot {slot} holds the same program as slot {same[0]} (`{target['name']}`), "
                     f"so the check's {events} events were counted in `hits[{same[0]}]`, not `hits[{slot}]`. "
                     f"Which program should slot {slot} hold? Question 1 of the exercise asks.",
                     hint=f"Each handler counts into its own slot of `hits`: slot {slot} needs a "
                          "function of its own, loaded from the C code.",
                     fix=f"Add `{handler}` to the %%bpf {name} cell, run it, then run the cell after it "
                         f"with `{store}`")
        elif moved:
            c.expect(False, f"The program in slot {slot} (`{target['name']}`) counted the check's {events} "
                     f"events into `hits[{moved[0]}]`, not `hits[{slot}]`. Which slot of `hits` does each "
                     "handler count into? The cell 'The program' lists them.",
                     hint=f"`count_a` counts into `hits[0]`, `count_b` into `hits[1]`: the handler of "
                          f"slot {slot} counts into `hits[{slot}]`.",
                     fix=f"In `{target['name']}`, add to slot {slot}: `hits.atomic_increment({slot});`")
        else:
            c.expect(False, f"{events} events reached slot {slot}, and `hits[{slot}]` grew by "
                     f"{delta[slot]}, not {events}. What does the handler in slot {slot} add per event?",
                     hint="One per event, into its own slot of `hits`, as `count_a` and `count_b` do.",
                     fix=f"`{handler}`")


def _empty_slot(program, name: str, slot: int, fn: str, store: str, handler: str):
    """(problem, hint, fix) when `slot` of the program's own array is empty. The program is named
    by its notebook variable (`%%bpf third` binds `third`), so that following the fix literally
    fills this program's array and not another one's: the lesson's `handlers` is `tail_calls`'s
    array, which the kernel accepts a tracepoint program into, but which this dispatcher never
    calls through."""
    empty = (f"Slot {slot} of {name}'s handlers is empty, so the events the dispatcher routes to it "
             "fall through.")
    if fn not in program._function_names():
        return (f"{empty} There is no function `{fn}` in its C code yet. What must a function look like "
                "for the dispatcher to jump into it? Question 1 of the exercise asks; `count_a` is one.",
                f"A handler is a plain function of the dispatcher's context that counts into its own "
                f"slot of `hits`. After you change the %%bpf {name} cell, run the cell after it too: a "
                "program loaded anew starts with every slot empty.",
                f"Add `{handler}` to the %%bpf {name} cell and run it, then run the cell after it again "
                f"with this line added: `{store}`")
    fn_id = None
    if fn.encode() in program.bpf.funcs:
        fn_id = kernel.prog_info_by_fd(program.bpf.funcs[fn.encode()].fd)["id"]
    for other_name, other in loaded().items():
        if other is program or fn_id is None:
            continue
        for map_name, m in other.maps.items():
            if m.type != "prog_array":
                continue
            frame = m.frame()
            if fn_id in frame["program_id"].tolist():
                at = frame["index"][frame["program_id"] == fn_id].iloc[0]
                return (f"{empty} Your `{fn}` is in slot {at} of {other_name}'s {map_name}, another "
                        f"program's array. Which array does {name}'s dispatcher call through? Question 2 "
                        "of the exercise asks.",
                        f"Each %%bpf cell makes its own maps: `handlers` above is "
                        f"`{other_name}[\"{map_name}\"]`, not `{name}[\"handlers\"]`.",
                        f"Put it into {name}'s own array: `{store}`")
    return (f"{empty} Which cell fills slots, and with a program of which type? The cell 'Load the "
            "handlers and fill two slots' does it for slots 0 and 1.",
            f"Load `{fn}` with `load_func()` as the dispatcher's program type, and store it in slot "
            f"{slot} of {name}'s own array.",
            f"`{store}`")
