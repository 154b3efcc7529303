"""Lesson 03's exercise: a third handler in slot 2 of the program array, reached by tail call."""
from __future__ import annotations

from .. import workload
from ..errors import BpfkitError
from . import Checker, Result


def check_third_target(program, slot: int = 2, events: int = 4) -> Result:
    """Routes a fresh uid to `slot`, makes `events` execve() calls as it, and expects the
    program in that slot (not the fall-through path, not another handler) to count them all
    in hits[slot]."""
    c = Checker("A third handler in slot 2",
                "The dispatcher was never reloaded: filling a slot is enough for tail calls to reach it.")
    try:
        handlers, route = program["handlers"], program["route"]
        hits, fell = program["hits"], program["fell_through"]
    except BpfkitError as e:
        c.expect(False, e.what)
        return c.done()
    if not c.expect(hits.max_entries > slot, f"hits has {hits.max_entries} slots; it needs one for "
                    f"handler {slot}: BPF_ARRAY(hits, u64, 4)."):
        return c.done()
    target = handlers.program_info(slot)
    if not c.expect(target is not None,
                    f"Slot {slot} of handlers is empty, so events routed to it fall through. Write "
                    f"`int count_c(void *ctx) {{ hits.increment({slot}); return 0; }}` in the C code, "
                    f"then handlers[{slot}] = prog.load_func(\"count_c\", BPF.TRACEPOINT)."):
        return c.done()
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
    if not c.expect(fell_after == fell_before,
                    f"{fell_after - fell_before} of {events} events fell through: the tail call into "
                    f"slot {slot} did not happen."):
        return c.done()
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
    return c.done()
