"""Lesson 20's exercise: which map type for this job? Each answer is judged with the atlas's own
facts (bpfkit.core.maptypes: key kind, values, per CPU, what user space may do), so a wrong answer is
told why, in the table's words, and which lesson teaches the type that fits."""
from __future__ import annotations

from ..core import maptypes
from ..core.errors import did_you_mean
from .checker import Checker, exercise

# Each job: what it asks, then its requirements in order, as (test, why a type failing it does
# not fit). The first requirement an answer fails is what the check says; an answer that meets
# them all is right. "{t}" is the answer with its article, "{key}" its key kind.
JOBS = {
    "execs_per_uid": (
        "Count execve() calls per user id; any uid from 0 to 4 billion may show up, and user "
        "space reads the counts.",
        [(lambda t: t.key == "stored",
          "{t} is keyed by {key_words}; a uid is a number the map must keep as its key "
          "(key kind 'stored')."),
         (lambda t: t.values == "data",
          "{t} holds {values}, not counts you define (values 'data')."),
         (lambda t: t.name not in ("lpm_trie", "cgroup_storage", "percpu_cgroup_storage"),
          "{t} has a key with a fixed shape ({purpose}); a uid is a plain exact key."),
         (lambda t: t.readable, "user space cannot read {t} by key.")]),
    "read_histogram": (
        "Count every read() on a busy 2-CPU machine into 32 log2 buckets (slots 0..31), as "
        "cheaply as possible and with no atomic instruction.",
        [(lambda t: t.values == "data" and t.readable,
          "{t} holds {values}, not counts that user space reads."),
         (lambda t: t.key == "index",
          "{t} is keyed by {key_words}; 32 buckets are slots 0..31, which an index map has from "
          "the start, and its lookup is a few instructions, far cheaper than hashing a "
          "key (see the cost plot)."),
         (lambda t: t.per_cpu,
          "{t} has one value per slot for all CPUs: without an atomic add, two CPUs adding to "
          "the same slot at once lose counts. A per-CPU map gives each CPU its own copy.")]),
    "flow_table": (
        "Keep byte counts per network flow in 10,000 entries; when the table is full, the flow "
        "seen least recently must make room for a new one, with no help from user space.",
        [(lambda t: t.key == "stored" and t.values == "data",
          "{t} is keyed by {key_words} and holds {values}; a flow (addresses and ports) is a "
          "key the map must store, with counts as its value."),
         (lambda t: t.name.startswith("lru_"),
          "a full {name} refuses new keys (E2BIG) until user space deletes some; an LRU map drops "
          "its least recently used key by itself.")]),
    "seen_before": (
        "Answer 'have we seen this 64-bit file hash before?' for millions of values in a few "
        "megabytes; a rare wrong 'yes' is fine, a wrong 'no' is not.",
        [(lambda t: "test" in t.ops,
          "{t} keeps each entry whole, with the kernel's bookkeeping beside it: "
          "millions of them take far more than a few megabytes. One type answers 'seen?' "
          "with a few bits per value: no means no, yes means maybe.")]),
    "route": (
        "Choose the route for a packet's destination address from a table of prefixes "
        "(10.0.0.0/8, 10.1.0.0/16, ...) where the most specific matching prefix wins.",
        [(lambda t: t.key == "stored" and t.values == "data",
          "{t} is keyed by {key_words} and holds {values}: routes are prefixes with a value each."),
         (lambda t: t.name == "lpm_trie",
          "{t} finds only the exact key it is given: 10.1.2.3 would never find the entry "
          "10.1.0.0/16. One type matches the longest prefix that covers the address.")]),
}

KEY_WORDS = {"stored": "keys it stores (key kind 'stored')",
             "index": "slots 0..N-1 (key kind 'index')",
             "none": "nothing: it has no keys (key kind 'none')",
             "fd": "a kernel object's file descriptor (key kind 'fd')"}
VALUE_WORDS = {"data": "data", "stack": "stack traces", "events": "a stream of events",
               "memory": "shared memory pages", "kernel_struct": "a kernel ops table"}


def judge(job: str, answer) -> str | None:
    """Why `answer` does not fit `job`, in the table's words, or None when it fits."""
    try:
        t = maptypes.get(answer)
    except KeyError:
        hint = did_you_mean(str(answer), maptypes.BY_NAME)
        return (f"there is no map type {answer!r}. {hint + ' ' if hint else ''}"
                "Use a name from the atlas's type column, like \"hash\".")
    words = {"t": t.a, "name": t.name, "key_words": KEY_WORDS[t.key], "purpose": t.purpose,
             "values": VALUE_WORDS.get(t.values, f"references to {t.values}s")}
    for fits, why in JOBS[job][1]:
        if not fits(t):
            return why.format(**words)
    return None


@exercise("Which map type for this job?",
          "Each job's needs (what the key is, whether CPUs share a value, what happens when it is "
          "full, what user space must do) pick one row of the atlas.")
def check_choices(c: Checker, answers: dict) -> None:
    """`answers` maps each job in JOBS to a map type name ("hash", "lru_hash", ...)."""
    c.require(isinstance(answers, dict),
              "answers must be a dict: {\"execs_per_uid\": \"hash\", ...}, one map type per job.")
    unknown = sorted(set(answers) - set(JOBS))
    c.expect(not unknown, f"there is no job {unknown[0]!r} here; the jobs are "
             f"{', '.join(JOBS)}." if unknown else "")
    for job, (text, _) in JOBS.items():
        answer = answers.get(job)
        if answer is None:
            c.expect(False, f"{job}: not answered yet. {text} Which map type? The atlas's key, "
                     "per_cpu and ops columns decide.")
            continue
        why = judge(job, answer)
        if why is not None:
            c.expect(False, f"{job}: not {answer}: {why}")
