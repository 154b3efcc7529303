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
    c.require(hits.max_entries > slot, f"hits has {hits.max_entries} slots; it needs one for "
              f"handler {slot}: BPF_ARRAY(hits, u64, 4).")
    target_id = handlers.get(slot)
    target = kernel.prog_info(target_id) if target_id else None
    if target is None:
        c.require(False, _empty_slot_hint(program, slot))
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
              f"{fell_after - fell_before} of {events} events fell through: the tail call into "
              f"slot {slot} did not happen.")
    if delta[slot] != events:
        moved = [k for k, d in enumerate(delta) if d and k != slot]
        if same:
            c.expect(False, f"Slot {slot} holds the same program as slot {same[0]} "
                     f"({target['name']!r}); write a new handler for slot {slot}.")
        elif moved:
            c.expect(False, f"The program in slot {slot} ({target['name']!r}) counted into hits[{moved[0]}]; "
                     f"make it count into hits[{slot}].")
        else:
            c.expect(False, f"{events} events reached slot {slot}, and hits[{slot}] grew by "
                     f"{delta[slot]}: the handler should add one per event.")


def _empty_slot_hint(program, slot: int, fn: str = "count_c") -> str:
    """What to do when `slot` of the program's own array is empty. The hint names the program
    by its notebook variable (`%%bpf third` binds `third`), so that following it literally fills
    this program's array and not another one's: the lesson's `handlers` is `tail_calls`'s
    array, which the kernel accepts a tracepoint program into, but which this dispatcher never
    calls through."""
    name = program.name if program.name.isidentifier() else "prog"
    store = f'{name}["handlers"][{slot}] = {name}.load_func("{fn}", "tracepoint")'
    empty = f"Slot {slot} of {name}'s handlers is empty, so events routed to it fall through."
    if fn not in program._function_names():
        return (f"{empty} There is no function {fn} in its C code yet: add "
                f"`int {fn}(void *ctx) {{ hits.increment({slot}); return 0; }}` to the %%bpf {name} "
                f"cell and run it, then run the cell after it again (a program loaded anew starts "
                f"with every slot empty) with this line added: `{store}`")
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
                return (f"{empty} Your {fn} is in slot {at} of {other_name}'s {map_name}, another "
                        f"program's array that {name}'s dispatcher never calls through. Put it into "
                        f"{name}'s own array: `{store}`")
    return f"{empty} Load {fn} with the dispatcher's program type and store it there: `{store}`"
