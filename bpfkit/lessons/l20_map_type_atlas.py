"""Lesson 20's exercise: which map type for this job? Each answer is judged with the atlas's own
facts (bpfkit.core.maptypes: key kind, values, per CPU, what user space may do), so a wrong answer is
told what the check saw against what the job needs, in the table's words, and asked a question; a
hint follows on the next try, and the type that fits on the try after."""
from __future__ import annotations

from ..core import maptypes
from ..core.errors import did_you_mean
from .checker import Checker, exercise

# Each job: what it asks, then its requirements in order, as (test, why a type failing it does
# not fit, ending in a question; a hint). The first requirement an answer fails is what the check
# says; an answer that meets them all is right. "{t}" is the answer with its article, "{key}" its
# key kind.
JOBS = {
    "execs_per_uid": (
        "Count execve() calls per user id; any uid from 0 to 4 billion may show up, and user "
        "space reads the counts.",
        [(lambda t: t.key == "stored",
          "{t} is keyed by {key_words}; a uid is a number the map must keep as its key. Which key "
          "kind is that? The list under 'The atlas, asked of this kernel' says what each means.",
          "Look in the atlas for key kind 'stored' with values 'data'."),
         (lambda t: t.values == "data",
          "{t} holds {values}, not counts you define. Which types hold plain data (values 'data')?",
          "Look in the atlas for key kind 'stored' with values 'data'."),
         (lambda t: t.name not in ("lpm_trie", "cgroup_storage", "percpu_cgroup_storage"),
          "{t} has a key with a fixed shape ({purpose}); a uid is a plain exact key. Which stored-key "
          "type takes any key you give it?",
          "It is the type lesson 01 counted users with."),
         (lambda t: t.readable,
          "user space cannot read {t} by key, and the job's counts are read by user space. What "
          "does the atlas's `ops` column say each type allows?",
          "A type whose `ops` has `lookup`, keyed by stored keys.")]),
    "read_histogram": (
        "Count every read() on a busy 2-CPU machine into 32 log2 buckets (slots 0..31), as "
        "cheaply as possible and with no atomic instruction.",
        [(lambda t: t.values == "data" and t.readable,
          "{t} holds {values}, not counts that user space reads. Which types hold plain data that "
          "user space can look up?",
          "Values 'data', and `lookup` in the `ops` column."),
         (lambda t: t.key == "index",
          "{t} is keyed by {key_words}; 32 buckets are slots 0..31. Which key kind has those slots "
          "from the start, and what does the cost plot say its lookup costs next to a hash's?",
          "Key kind 'index': a lookup is a few instructions, far cheaper than hashing a key."),
         (lambda t: t.per_cpu,
          "{t} has one value per slot for all CPUs, and a plain add on a shared slot loses counts "
          "when two CPUs add at once: use a per-CPU map, or atomic adds as lesson 02 does, which "
          "this job rules out. Which type gives each CPU its own copy of a slot?",
          "The `per_cpu` column: each CPU adds to its own copy, with no atomic and no cache line "
          "moving between CPUs (lesson 08).")]),
    "flow_table": (
        "Keep byte counts per network flow in 10,000 entries; when the table is full, the flow "
        "seen least recently must make room for a new one, with no help from user space.",
        [(lambda t: t.key == "stored" and t.values == "data",
          "{t} is keyed by {key_words} and holds {values}; a flow (addresses and ports) is a key "
          "the map must store, with counts as its value. Which key kind stores the keys it is given?",
          "Key kind 'stored', values 'data'."),
         (lambda t: t.name.startswith("lru_"),
          "a full {name} refuses new keys (E2BIG) until user space deletes some, and the job wants "
          "the least recently seen flow to make room by itself. Which types evict on their own?",
          "Lesson 08's table that makes room: its name says 'least recently used'.")]),
    "seen_before": (
        "Answer 'have we seen this 64-bit file hash before?' for millions of values in a few "
        "megabytes; a rare wrong 'yes' is fine, a wrong 'no' is not.",
        [(lambda t: "test" in t.ops,
          "{t} keeps each entry whole, with the kernel's bookkeeping beside it: millions of them "
          "take far more than a few megabytes. Which type answers 'seen?' with a few bits per "
          "value, where no means no and yes means maybe?",
          "Its `ops` column has `test`; lesson 10 teaches it.")]),
    "route": (
        "Choose the route for a packet's destination address from a table of prefixes "
        "(10.0.0.0/8, 10.1.0.0/16, ...) where the most specific matching prefix wins.",
        [(lambda t: t.key == "stored" and t.values == "data",
          "{t} is keyed by {key_words} and holds {values}, but routes are prefixes with a value "
          "each. Which key kind stores the keys it is given?",
          "Key kind 'stored', values 'data'."),
         (lambda t: t.name == "lpm_trie",
          "{t} finds only the exact key it is given: 10.1.2.3 would never find the entry "
          "10.1.0.0/16. Which type matches the longest prefix that covers an address?",
          "Lesson 12's type: a trie of prefixes.")]),
}

# The type the check shows from the third try on (the solution's; others may fit too).
FITS = {"execs_per_uid": "hash", "read_histogram": "percpu_array", "flow_table": "lru_hash",
        "seen_before": "bloom_filter", "route": "lpm_trie"}

KEY_WORDS = {"stored": "keys it stores (key kind 'stored')",
             "index": "slots 0..N-1 (key kind 'index')",
             "none": "nothing: it has no keys (key kind 'none')",
             "fd": "a kernel object's file descriptor (key kind 'fd')"}
VALUE_WORDS = {"data": "data", "stack": "stack traces", "events": "a stream of events",
               "memory": "shared memory pages", "kernel_struct": "a kernel ops table"}


def _judged(job: str, answer) -> tuple[str, str] | None:
    """(why `answer` does not fit `job`, a hint), or None when it fits."""
    try:
        t = maptypes.get(answer)
    except KeyError:
        hint = did_you_mean(str(answer), maptypes.BY_NAME)
        return (f"there is no map type {answer!r}. {hint + ' ' if hint else ''}"
                "Which name in the atlas's `type` column did you mean?",
                "Names are written as in the `type` column, in lower case, like \"hash\".")
    words = {"t": t.a, "name": t.name, "key_words": KEY_WORDS[t.key], "purpose": t.purpose,
             "values": VALUE_WORDS.get(t.values, f"references to {t.values}s")}
    for fits, why, hint in JOBS[job][1]:
        if not fits(t):
            return why.format(**words), hint
    return None


def judge(job: str, answer) -> str | None:
    """Why `answer` does not fit `job`, in the table's words, or None when it fits."""
    judged = _judged(job, answer)
    return judged and judged[0]


def _fix(job: str) -> str:
    kind = maptypes.get(FITS[job])
    return f'`answers["{job}"] = "{kind.name}"` (lesson {kind.lesson[:2]} teaches it).'


@exercise("Which map type for this job?",
          "Each job's needs (what the key is, whether CPUs share a value, what happens when it is "
          "full, what user space must do) pick one row of the atlas.")
def check_choices(c: Checker, answers: dict) -> None:
    """`answers` maps each job in JOBS to a map type name ("hash", "lru_hash", ...)."""
    c.require(isinstance(answers, dict),
              f"`answers` is {type(answers).__name__!r}, not a dict. What does the exercise cell "
              "hand to `check_choices`?",
              hint="A dict with one entry per job: the job's name, then a map type's name.",
              fix='`check_choices({"execs_per_uid": "<a type>", "read_histogram": "<a type>", ...})`')
    unknown = sorted(set(answers) - set(JOBS))
    c.expect(not unknown,
             f"there is no job {unknown[0]!r} here; the jobs are {', '.join(JOBS)}. Which one did "
             "you mean?" if unknown else "",
             hint="The job names are the ones the cell above the exercise prints.",
             fix=f"Use the keys {', '.join(JOBS)}, and no others.")
    for job, (text, _) in JOBS.items():
        answer = answers.get(job)
        if answer is None:
            c.expect(False, f"{job}: not answered yet. {text} Which map type? The key, per_cpu "
                     "and ops columns of the table under 'The atlas, asked of this kernel' decide.",
                     hint="Ask in order: what is the key? Does each CPU need its own value? What "
                          "must happen when the map is full? What must user space do?",
                     fix=_fix(job))
            continue
        judged = _judged(job, answer)
        if judged is not None:
            why, hint = judged
            c.expect(False, f"{job}: not {answer}: {why}", hint=hint, fix=_fix(job))
