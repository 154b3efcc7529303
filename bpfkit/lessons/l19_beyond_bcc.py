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
    steps = _steps_of(c, obj)
    twice = _judge_steps(c, steps)
    _judge_prediction(c, steps, twice, prediction)


def _steps_of(c: Checker, obj) -> dict[int, int]:
    """The learner's algorithm registered, named and run through a transfer: its complete steps
    of congestion avoidance, {window: ACKs there}."""
    c.require(obj is not None and not getattr(obj, "closed", True),
              "The check got no loaded algorithm (the object is missing or closed); did the "
              "exercise's `%%bpfobject l19_slow` cell run without an error? Its output says what "
              "went wrong.",
              hint="Run the `%%bpfobject l19_slow` cell again: a compile error names the cell's "
                   "line, a verifier error the kernel's reason.",
              fix="Run `%%bpfobject l19_slow types=cc_types`, then "
                  "`check_cautious(l19_slow, prediction=prediction)`.")
    c.require(obj.struct_ops, "Your object registered no struct_ops map; the kernel calls an "
              "algorithm only through its table of callbacks. Which part of the cell 'A "
              "congestion control in BPF' is that table?",
              hint="The table is the `SEC(\".struct_ops\")` variable, a `struct "
                   "tcp_congestion_ops`, at the end of the cell.",
              fix="Keep `SEC(\".struct_ops\") struct tcp_congestion_ops l19s = { .init = ..., "
                  ".name = \"bpfkit_l19s\", };` at the end of the cell.")
    name = congestion_name(obj.source)
    c.require(name, "The ops table has no `.name`; a socket chooses an algorithm by that name. "
              "What name did the cell 'One connection chooses it' give `setsockopt`?",
              hint="`.name` is a field of the `struct tcp_congestion_ops` table.",
              fix='`.name = "bpfkit_l19s",` in the table.')
    sent, acks = record(obj, name, steps=2)
    c.require(sent["congestion"] == name and sent["received"] == sent["sent"],
              f"The transfer did not run through {name!r}: the socket reported "
              f"{sent['congestion']!r}, and {sent['received']} of {sent['sent']} bytes arrived. "
              "Is that name in the kernel's list of algorithms? The cell 'One connection "
              "chooses it' prints that list.",
              hint="The name is listed only while your object is loaded; run its cell again, "
                   "then the check.")
    steps = avoidance_runs(acks["cwnd"])
    c.require(len(steps) >= 2,
              f"The window made {len(steps)} complete steps of congestion avoidance after slow "
              "start; the check expected at least 2. Does `cong_avoid` still add a packet in "
              "congestion avoidance? The cell 'A congestion control in BPF' describes both "
              "phases.",
              hint="Each step needs `tp->snd_cwnd_cnt` to reach its limit, reset to 0, and "
                   "`tp->snd_cwnd` to grow by 1.",
              fix="`else if (++tp->snd_cwnd_cnt >= 2 * tp->snd_cwnd) { tp->snd_cwnd_cnt = 0; "
                  "tp->snd_cwnd += 1; }`")
    return steps


def _judge_steps(c: Checker, steps: dict[int, int]) -> bool:
    """Each step at k packets lasts 2*k ACKs; whether it does."""
    reno = all(n == k for k, n in steps.items())
    twice = all(n == 2 * k for k, n in steps.items())
    shown = ", ".join(f"{n} ACKs at {k}" for k, n in list(steps.items())[:3])
    slower = dict(hint="Congestion avoidance counts ACKs in `tp->snd_cwnd_cnt` until it reaches "
                       "a limit: that limit is how many ACKs a step lasts.",
                  fix="`else if (++tp->snd_cwnd_cnt >= 2 * tp->snd_cwnd) {`")
    if reno:
        c.expect(False, f"The window still grows like Reno's: {shown}, one window of ACKs per "
                 "step; the exercise expects two windows of ACKs per step. Which comparison in "
                 "`cong_avoid` decides when a step ends?", **slower)
    elif not twice:
        c.expect(False, f"The steps are {shown}; the exercise expects a step at k packets to "
                 "last 2*k ACKs. How many ACKs does your counter wait at k packets?", **slower)
    return twice


def _judge_prediction(c: Checker, steps: dict[int, int], twice: bool, prediction) -> None:
    """The prediction for ASKED_AT packets: given, what the rule gives, what the kernel did."""
    told = dict(hint="In the lesson's plot a step at k packets lasted k ACKs, because the counter "
                     "counted to the window; count to the limit your change sets.",
                fix=f"`prediction = {2 * ASKED_AT}`: the counter restarts when the window becomes "
                    f"{ASKED_AT} and the step ends at 2 x {ASKED_AT} ACKs.")
    if prediction is None:
        c.expect(False, f"No prediction yet (`prediction` is None); how many ACKs will the "
                 f"window spend at {ASKED_AT} packets with your change? The cell 'Exercise: a more "
                 "cautious congestion avoidance' asks for it.", **told)
    elif twice and steps.get(ASKED_AT) not in (None, prediction):
        c.expect(False, f"Your prediction ({prediction}) is not what the kernel measured at "
                 f"{ASKED_AT} packets with your program; how many ACKs does `snd_cwnd_cnt` count "
                 f"before the window leaves {ASKED_AT}?", **told)
    elif prediction != 2 * ASKED_AT:
        c.expect(False, f"Your prediction ({prediction}) does not follow from the exercise's "
                 f"rule; how many ACKs does `snd_cwnd_cnt` count before the window leaves "
                 f"{ASKED_AT}?", **told)
