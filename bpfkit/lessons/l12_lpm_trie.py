"""Lesson 12's exercise: predict which prefix of an LPM trie each source address lands in, then
add the widest prefix that gives one host a prefix of its own; checked by sending traffic.

The check sends a few datagrams from each source, one source at a time, out of the lesson's
host, and sees which prefix's hit count rises: that is the kernel's longest-prefix match,
observed, not computed. The trie is the lesson's (`bpf/12_lpm_trie/prefix_classify.c`): key
{"prefixlen": n, "addr": [a, b, c, d]}, value the prefix's hit count.
"""
from __future__ import annotations

import ipaddress

from ..core import waiting
from .checker import Checker, exercise

DST = "198.51.100.1"                       # where the lesson's host sends (no one owns it)
# What the trie holds after the lesson: its four prefixes, then the live section's /26.
LESSON_PREFIXES = ("0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.64/26")
LESSON_SOURCES = ("10.1.2.3", "10.1.2.77", "10.1.9.1", "10.200.0.5", "203.0.113.9")
EXERCISE_SOURCES = ("10.1.2.20", "10.1.2.127", "10.1.2.128", "10.1.3.1", "10.2.0.1", "11.1.2.3")
ALONE = "10.1.2.3"                         # the host the learner's prefix must catch on its own
PER_SOURCE = 2


def network(prefix) -> ipaddress.IPv4Network:
    """"10.1.2.0/24" (host bits allowed) as an IPv4Network."""
    return ipaddress.IPv4Network(str(prefix).strip(), strict=False)


def label(prefixlen: int, addr) -> str:
    """A trie key's fields as "10.1.2.0/24"."""
    return str(network(f"{'.'.join(str(int(b)) for b in addr)}/{int(prefixlen)}"))


def longest_match(address: str, prefixes) -> ipaddress.IPv4Network | None:
    """What the trie does, in Python: the longest of `prefixes` that contains `address`."""
    ip = ipaddress.IPv4Address(address)
    inside = [p for p in prefixes if ip in p]
    return max(inside, key=lambda p: p.prefixlen) if inside else None


def _hits(trie) -> dict[ipaddress.IPv4Network, int]:
    frame = trie.frame()
    value = "value" if "value" in frame.columns else frame.columns[-1]
    return {network(label(n, a)): int(v)
            for n, a, v in zip(frame["prefixlen"], frame["addr"], frame[value])}


def observe(trie, host, sources, to: str = DST, per_source: int = PER_SOURCE) -> dict:
    """Send `per_source` datagrams from each source alone and see which prefix counted them:
    {source: IPv4Network, or None when no prefix did}."""
    from ..lab import traffic
    matched = {}
    for source in sources:
        before = _hits(trie)
        traffic.udp_from(host, {source: per_source}, to)
        rose = waiting.until(lambda: [p for p, v in _hits(trie).items()
                                      if v - before.get(p, 0) >= per_source], 2.0)
        matched[source] = rose[0] if len(rose) == 1 else None
    return matched


def _why_not(source: str, said: ipaddress.IPv4Network, stored) -> str:
    """A hint for a wrong prediction that does not give the answer away."""
    ip = ipaddress.IPv4Address(source)
    if said not in stored:
        return f"{said} is not one of the trie's prefixes; pick from its prefix column."
    if ip not in said:
        return (f"{said} does not contain {source}: it covers {said.network_address} to "
                f"{said.broadcast_address}.")
    return (f"{said} contains {source}, but so does a longer (more specific) prefix in the trie, "
            "and the longest one wins.")


@exercise("Predict the longest match, then give 10.1.2.3 a prefix of its own",
          "Longest prefix wins: every source landed where you said, and 10.1.2.0/28 is the "
          "widest prefix that holds 10.1.2.3 without 10.1.2.20 (they share only 27 leading bits).")
def check_prefix_exercise(c: Checker, program, host, prediction: dict,
                          map_name: str = "prefixes", to: str = DST) -> None:
    """`prediction`: {source address: "a.b.c.d/n"} for each of EXERCISE_SOURCES, as the trie
    stood after the lesson; and the trie must now hold one more prefix, the widest that only
    10.1.2.3 lands in. Sends PER_SOURCE datagrams from every source, out of `host`."""
    from ..lab import net
    c.require(hasattr(host, "port") and hasattr(host, "netns"),
              "pass the lesson's host: check_prefix_exercise(prefix_classify, s12, prediction).")
    trie = program[map_name]
    c.require(trie.type == "lpm_trie", f"{map_name!r} is a {trie.type} map; the lesson's program "
              f"declares BPF_LPM_TRIE({map_name}, struct key4, u64, 64).")
    c.require(net.xdp_prog_id(host.port) in program.program_ids(),
              f"the program is not the XDP program of {host.port}: "
              f'lab.attach_xdp(<program>, {host.name}.port, "xdp_classify").')
    stored = set(_hits(trie))
    base = {network(p) for p in LESSON_PREFIXES}
    missing = sorted(base - stored, key=lambda p: p.prefixlen)
    c.require(not missing, "the trie lacks the lesson's " + ", ".join(map(str, missing))
              + ": run the lesson's cells above first (the live section adds 10.1.2.64/26).")
    extra = sorted(stored - base, key=lambda p: p.prefixlen)
    c.expect(len(extra) <= 1, "the exercise adds ONE prefix, but the trie holds "
             + ", ".join(map(str, extra)) + " beyond the lesson's: remove the others with "
             'del prefixes[key("a.b.c.d/n")].')

    _check_predictions(c, prediction, base)   # part 1: about the trie as the lesson left it
    predicted = not c.result.problems

    # Part 2: see where every source lands now, by sending from each.
    sources = (ALONE,) + tuple(s for s in LESSON_SOURCES + EXERCISE_SOURCES if s != ALONE)
    matched = observe(trie, host, sources, to)
    c.require(all(m is not None for m in matched.values()),
              "no prefix counted the datagrams of " + ", ".join(s for s, m in matched.items() if m is None)
              + ": is the program attached, and does the trie still hold 0.0.0.0/0?")
    mine = matched[ALONE]
    shared = [s for s in sources[1:] if matched[s] == mine]
    if mine in base:
        others = ", ".join(shared) if predicted else f"{len(shared)} other sources"  # no answers given away
        c.expect(False, f"{ALONE} still lands in {mine}, together with {others}. Add a longer prefix "
                 f'that contains {ALONE} and none of them: prefixes[key("a.b.c.d/n")] = 0.')
        return
    c.require(not shared, f"{mine} catches {', '.join(shared)} too: it is too wide. Write {ALONE} "
              "and each of them in binary: how many leading bits do they share?")
    rest = [p for p in stored if p != mine]
    widest = next(n for n in range(33)
                  if _alone(network(f"{ALONE}/{n}"), rest, sources))
    c.expect(mine.prefixlen <= widest,
             f"{mine} gives {ALONE} a prefix of its own, but it is narrower than it needs to be: a "
             "prefix with fewer bits would still hold no other source. Which source is nearest "
             f"to {ALONE} in binary, and how many leading bits do the two share?")


def _check_predictions(c: Checker, prediction: dict, base: set) -> None:
    """Each of EXERCISE_SOURCES predicted to land where the lesson's prefixes (`base`) put it."""
    unanswered = []
    for source in EXERCISE_SOURCES:
        said = prediction.get(source, "?") if isinstance(prediction, dict) else "?"
        try:
            said = network(said)
        except ValueError:
            unanswered.append(source)
            continue
        right = longest_match(source, base)
        c.expect(said == right, f"{source}: not {said}. " + _why_not(source, said, base))
    if unanswered:
        c.expect(False, "predict where " + ", ".join(unanswered)
                 + (" land" if len(unanswered) > 1 else " lands")
                 + f': prediction["{unanswered[0]}"] = "a.b.c.d/n", one of the trie\'s prefixes.')


def _alone(candidate, rest, sources) -> bool:
    """With `candidate` added to `rest`, does only ALONE's longest match become `candidate`?"""
    if candidate in rest:
        return False
    prefixes = rest + [candidate]
    return all((longest_match(s, prefixes) == candidate) == (s == ALONE) for s in sources)
