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
    trie, stored, base = _check_setup(c, program, host, map_name)
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
        c.expect(False, f"{ALONE} still lands in {mine}, together with {others}; the exercise wants "
                 f"it under a prefix of its own. Which longer prefix contains {ALONE} and none of "
                 "them?",
                 hint="Write the last bytes in binary: the prefix must end where 10.1.2.3 parts "
                      "from its nearest neighbour.",
                 fix=f'prefixes[key("a.b.c.d/n")] = 0, with a prefix that contains {ALONE} and '
                     "none of the others.")
        return
    c.require(not shared, f"{mine} catches {', '.join(shared)} too: it is too wide. Write {ALONE} "
              "and each of them in binary: how many leading bits do they share?",
              hint="A prefix of n bits holds every address that shares those n leading bits.")
    rest = [p for p in stored if p != mine]
    widest = next(n for n in range(33)
                  if _alone(network(f"{ALONE}/{n}"), rest, sources))
    c.expect(mine.prefixlen <= widest,
             f"{mine} gives {ALONE} a prefix of its own, but it is narrower than it needs to be: a "
             "prefix with fewer bits would still hold no other source. Which source is nearest "
             f"to {ALONE} in binary, and how many leading bits do the two share?",
             hint="A source inside 10.1.2.64/26 is counted there whatever shorter prefix you add.",
             fix=f"Shorten {mine} one bit at a time while it still holds only {ALONE}: "
                 f"prefixes[key(...)] = 0 with /{widest}, then delete {mine}.")


def _check_setup(c: Checker, program, host, map_name: str):
    """The lesson's host, trie and attachment, and the lesson's five prefixes in the trie:
    (the trie, the prefixes it holds, the lesson's five)."""
    from ..lab import net
    c.require(hasattr(host, "port") and hasattr(host, "netns"),
              f"The check got a {type(host).__name__} as the host, not the lesson's host (a network "
              "namespace with a port). Which variable did the cell under 'A network of our own' make?",
              hint="The second argument is the host that sends the datagrams: `s12`.",
              fix="result = check_prefix_exercise(prefix_classify, s12, prediction)")
    trie = program[map_name]
    c.require(trie.type == "lpm_trie",
              f"`{map_name}` is a {trie.type} map; the check expects an lpm_trie. Did the program "
              "cell change its declaration? 'The program' says what a trie needs.",
              fix=f"Declare it as the lesson does: BPF_LPM_TRIE({map_name}, struct key4, u64, 64);")
    c.require(net.xdp_prog_id(host.port) in program.program_ids(),
              f"The XDP program on {host.port} is not this program's `xdp_classify`. Was the attach "
              "cell after 'The program' run again after the program cell last ran?",
              hint="Re-running a %%bpf cell loads a new program; the port keeps the old one until you "
                   "attach again.",
              fix=f'lab.attach_xdp(prefix_classify, {host.name}.port, "xdp_classify", mode="skb")')
    stored = set(_hits(trie))
    base = {network(p) for p in LESSON_PREFIXES}
    missing = sorted(base - stored, key=lambda p: p.prefixlen)
    c.require(not missing, f"The trie holds {len(stored)} prefixes but lacks the lesson's "
              + ", ".join(map(str, missing)) + ". Were the cells above run in order? The section "
              "'A more specific prefix, live' leaves the trie with five prefixes.",
              hint="Run the lesson's cells from the program down; the live section adds 10.1.2.64/26.",
              fix="Write each missing prefix as the lesson does: prefixes[key(prefix)] = 0.")
    extra = sorted(stored - base, key=lambda p: p.prefixlen)
    c.expect(len(extra) <= 1, f"The trie holds {len(extra)} prefixes beyond the lesson's five ("
             + ", ".join(map(str, extra)) + "); the exercise adds one. Which of them is your answer?",
             hint="A delete names the exact prefix, as in 'Lookups and deletes from user space'.",
             fix='del prefixes[key("a.b.c.d/n")] for each prefix that is not your answer.')
    return trie, stored, base


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
        c.expect(said == right, f"{source}: not {said}. " + _why_not(source, said, base),
                 hint="List the trie's prefixes that contain the source; the longest one counts it.",
                 fix=f'prediction["{source}"] = "{right}"')
    if unanswered:
        c.expect(False, f"{len(unanswered)} of the {len(EXERCISE_SOURCES)} sources have no prediction yet ("
                 + ", ".join(unanswered) + "); the exercise's first step asks where each lands. "
                 "Which of the trie's five prefixes contain each one?",
                 fix=f'prediction["{unanswered[0]}"] = "a.b.c.d/n", with one of the trie\'s prefixes.')


def _alone(candidate, rest, sources) -> bool:
    """With `candidate` added to `rest`, does only ALONE's longest match become `candidate`?"""
    if candidate in rest:
        return False
    prefixes = rest + [candidate]
    return all((longest_match(s, prefixes) == candidate) == (s == ALONE) for s in sources)
