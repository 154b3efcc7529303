"""Lesson 03's exercise: a third handler in slot 2 of the program array, reached by tail call."""
from __future__ import annotations

from .. import kernel, workload
from . import Checker, exercise


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
    c.require(target is not None,
              f"Slot {slot} of handlers is empty, so events routed to it fall through. Write "
              f"`int count_c(void *ctx) {{ hits.increment({slot}); return 0; }}` in the C code, "
              f"then handlers[{slot}] = prog.load_func(\"count_c\", BPF.TRACEPOINT).")
    others = {s: handlers.get(s) for s in range(handlers.max_entries) if s != slot}
    same = [s for s, pid in others.items() if pid == target["id"]]
    uid = workload.unused_uid()
    before, fell_before = [int(x) for x in hits.counts()], int(fell[0])
    route[uid] = slot
    try:
        workload.run_as(uid, events)
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
