"""Lesson 19's exercise (a more cautious congestion avoidance, in a struct_ops program) and its
check, and the lesson's reading of a congestion control's samples.

The check runs its own loopback transfer through the learner's algorithm, so the window it
reads is the one the learner's code computed, ACK by ACK.
"""
from __future__ import annotations

import re

import pandas as pd

from ..lab import traffic
from .checker import Checker, exercise

TRANSFER = 16_000_000      # bytes: a few hundred ACKs on loopback, in well under a second
GROW = 4                   # a transfer that gave too few steps is tried again this much larger
TRIES = 3                  # 16 MB, 64 MB, 256 MB at most
SSTHRESH = 32              # where the lesson's slow start ends
ASKED_AT = 41              # the window the prediction is about


def congestion_name(source: str) -> str | None:
    """The `.name = "..."` of the struct tcp_congestion_ops in a program's C text."""
    found = re.search(r'\.name\s*=\s*"([^"]*)"', source or "")
    return found.group(1) if found else None


def reset_samples(obj) -> None:
    """Zero the samples and the `taken` counter (in the object's .bss) for a fresh recording."""
    bss = next((n for n in obj.map_names() if n.endswith(".bss")), None)
    if bss is not None:
        obj.types.setdefault(bss, ("u32", "u32"))
        obj[bss][0] = 0
    obj["samples"].clear()


def window(obj) -> pd.DataFrame:
    """The recorded window, one row per ACK (cong_avoid call): ack, ms, cwnd, acked."""
    frame = obj["samples"].frame()
    frame = frame[frame["ns"] > 0].sort_values("index")
    start = frame["ns"].min() if len(frame) else 0
    return pd.DataFrame({"ack": range(1, len(frame) + 1),
                         "ms": (frame["ns"] - start).to_numpy() / 1e6,
                         "cwnd": frame["cwnd"].to_numpy(), "acked": frame["acked"].to_numpy()})


def runs(cwnd) -> list[tuple[int, int]]:
    """(window, how many ACKs in a row left it there), in order."""
    out: list[list[int]] = []
    for value in cwnd:
        if out and out[-1][0] == value:
            out[-1][1] += 1
        else:
            out.append([int(value), 1])
    return [tuple(r) for r in out]


def avoidance_runs(cwnd, ssthresh: int = SSTHRESH) -> dict[int, int]:
    """{window: ACKs spent there} for the complete steps of congestion avoidance.

    A step is complete only if the window came up to it by one and left it up by one: the
    first step after slow start may begin part-way, the last is cut off by the transfer's end,
    and a loss (the window halved by ssthresh) ends a step early; none of these counts."""
    seen = runs(cwnd)
    return {k: n for (before, _), (k, n), (after, _) in zip(seen, seen[1:], seen[2:])
            if k >= ssthresh and before == k - 1 and after == k + 1}


def record(obj, name: str, steps: int) -> tuple[dict, pd.DataFrame]:
    """A loopback transfer through the congestion control `name` of `obj`, and its window ACK by
    ACK, with at least `steps` complete steps of congestion avoidance where the machine allows.

    How many ACKs a transfer gives is not fixed: on loopback one ACK covers many segments, and a
    busy machine coalesces more (and calls cong_avoid only while the sender is cwnd-limited).
    So a transfer that shows too few steps is made again, larger, on a fresh connection (a second
    connection on top of the first would start its slow start again in the middle of the samples)."""
    size = TRANSFER
    for _ in range(TRIES):
        reset_samples(obj)
        sent = traffic.tcp_transfer(size, name)
        acks = window(obj)
        if sent["received"] != size or len(avoidance_runs(acks["cwnd"])) >= steps:
            break
        size *= GROW
    return sent, acks


@exercise("A more cautious congestion avoidance",
          "+1 packet after 2 windows of ACKs: at 41 packets the window waits 82 ACKs, twice "
          "Reno's 41, so the line of the plot climbs half as steeply.")
def check_cautious(c: Checker, obj, prediction=None) -> None:
    """Lesson 19's exercise: the struct_ops program `obj` (a loaded BpfObject) grows the window
    by 1 packet after 2 * cwnd ACKs in congestion avoidance; `prediction` is the number of
    ACKs the window spends at 41 packets."""
    c.require(obj is not None and not getattr(obj, "closed", True),
              "Run the %%bpfobject l19_slow cell first: the check needs your loaded algorithm.")
    c.require(obj.struct_ops, "Your object registered no struct_ops: keep the SEC(\".struct_ops\") "
              "struct tcp_congestion_ops at the end of the cell.")
    name = congestion_name(obj.source)
    c.require(name, 'The ops table has no .name = "..."; give it one, e.g. "bpfkit_l19s".')
    sent, acks = record(obj, name, steps=2)
    c.require(sent["congestion"] == name and sent["received"] == sent["sent"],
              f"The transfer did not run through {name!r} (the socket reported "
              f"{sent['congestion']!r}, {sent['received']} of {sent['sent']} bytes arrived).")
    steps = avoidance_runs(acks["cwnd"])
    c.require(len(steps) >= 2, "The window hardly grew after slow start (fewer than 2 complete "
              "steps): does cong_avoid still add 1 to tp->snd_cwnd in congestion avoidance?")
    reno = all(n == k for k, n in steps.items())
    twice = all(n == 2 * k for k, n in steps.items())
    shown = ", ".join(f"{n} ACKs at {k}" for k, n in list(steps.items())[:3])
    if reno:
        c.expect(False, f"The window still grows like Reno's: {shown} (one window of ACKs per "
                 "step). Make cong_avoid wait twice as many ACKs before it adds the packet.")
    elif not twice:
        c.expect(False, f"The steps are {shown}; each step at k packets should last 2*k ACKs.")
    if prediction is None:
        c.expect(False, f"Write your prediction: how many ACKs does the window spend at "
                 f"{ASKED_AT} packets with your change?")
    elif twice and steps.get(ASKED_AT) not in (None, prediction):
        c.expect(False, f"Your prediction ({prediction}) is not what the kernel did at "
                 f"{ASKED_AT} packets: count the ACKs snd_cwnd_cnt needs before the step.")
    elif prediction != 2 * ASKED_AT:
        c.expect(False, f"Your prediction ({prediction}) does not follow from the rule: how many "
                 f"ACKs does snd_cwnd_cnt count before the window leaves {ASKED_AT}?")
