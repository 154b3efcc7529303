"""Lesson 11's exercise (who calls the hot function?) and its check.

The mystery program has one helper, `mix()`, that does all the work, and two callers:
`encode()` calls it 100 times with 1000 rounds, `decode()` once with 300000 rounds. The learner
changes only `main()` so that `encode()` becomes the hotter caller, with about three quarters
of `mix()`'s samples, and predicts what the profile will say before looking. The check reads
the folded stacks of the learner's own profile, so what it compares is what the kernel saw.
"""
from __future__ import annotations

import numbers

import pandas as pd

from ..profile import callers, top_functions
from . import Checker, exercise

# The exercise's mystery program, as the lesson hands it out: decode() is the hotter caller.
MYSTERY = r"""
volatile unsigned long sink;       // volatile: the compiler keeps every round

void mix(int rounds) {             // the shared helper: all the real work is here
    for (int i = 0; i < rounds; i++)
        sink = sink * 31 + i;
}

void encode(void) {                // many small calls: 100 x 1000 rounds
    for (int block = 0; block < 100; block++)
        mix(1000);
}

void decode(void) {                // one big call: 300000 rounds
    mix(300000);
}

int main(void) {
    for (;;) {                     // change only main()
        encode();
        decode();
    }
}
"""

HELPER, WANTED, OTHER = "mix", "encode", "decode"
BAND = (0.55, 0.95)       # "about three quarters", with room for the noise of ~70 samples
TOLERANCE = 0.2           # how far a predicted share may be from the measured one
MIN_SAMPLES = 30


@exercise("Who calls the hot function?",
          "The flat profile only says mix(); the stacks say who made it hot. Calls are not "
          "time: encode() calls mix() 100 times as often, but it is the rounds that cost.")
def check_hotter_caller(c: Checker, folded: pd.DataFrame, prediction: dict) -> None:
    """`folded`: the profile of the learner's changed mystery program (`fold(...)`);
    `prediction`: {"hottest": function with the most self samples, "hotter_caller": the caller
    of mix() with more of its samples, "share": that caller's fraction of mix()'s samples}."""
    c.require(isinstance(folded, pd.DataFrame) and {"stack", "samples"} <= set(folded.columns),
              "Pass the folded profile of your program: fold(counts.frame(...), stacks, symbols).")
    total = int(folded["samples"].sum())
    c.require(total >= MIN_SAMPLES,
              f"The profile has only {total} samples; it needs at least {MIN_SAMPLES}. Did the "
              "program run for its second of CPU time, with the profiler attached?")
    top = top_functions(folded)
    hottest, hottest_n = top["function"].iloc[0], int(top["self"].iloc[0])
    by_caller = callers(folded, HELPER)
    c.require(len(by_caller) > 0,
              f"{HELPER}() never appears in the samples: keep the helpers as they are and call "
              f"{WANTED}() and {OTHER}() from main().")
    counted = dict(zip(by_caller["caller"], by_caller["samples"].astype(int)))
    missing = [f for f in (WANTED, OTHER) if f not in counted]
    c.require(not missing,
              f"{' and '.join(f + '()' for f in missing)} no longer calls {HELPER}() in the profile: "
              "keep both callers, and change how often main() calls each one.")
    both = counted[WANTED] + counted[OTHER]
    share = counted[WANTED] / both
    actual = WANTED if counted[WANTED] >= counted[OTHER] else OTHER
    actual_share = max(share, 1 - share)

    if share < 0.5:
        c.expect(False, f"{OTHER}() is still the hotter caller: {1 - share:.0%} of {HELPER}()'s samples "
                 f"come through it. {WANTED}() calls {HELPER}() 100 times for each time {OTHER}() "
                 f"calls it once, but how many rounds does each call do? Change main() so that "
                 f"{WANTED}() hands {HELPER}() about three times the rounds {OTHER}() does.")
    elif share < BAND[0]:
        c.expect(False, f"{WANTED}() is ahead, but only just ({share:.0%} of {HELPER}()'s samples): "
                 "with some seventy samples that is too close to call. Aim for about three quarters.")
    elif share > BAND[1]:
        c.expect(False, f"{WANTED}() now has {share:.0%} of {HELPER}()'s samples, well over three "
                 f"quarters: {OTHER}() is nearly gone. Call {WANTED}() a little less often.")

    c.require(isinstance(prediction, dict),
              'Write your prediction as a dict: {"hottest": ..., "hotter_caller": ..., "share": ...}.')
    said = str(prediction.get("hottest", "")).strip().removesuffix("()")
    c.expect(said == hottest,
             f"You predicted {prediction.get('hottest')!r} would have the most samples of its own; the "
             f"profile says {hottest!r} ({hottest_n} of {total} samples). Self samples count only the "
             "innermost frame, the function whose instructions were running.")
    said = str(prediction.get("hotter_caller", "")).strip().removesuffix("()")
    c.expect(said == actual,
             f"You predicted {prediction.get('hotter_caller')!r} as the hotter caller of {HELPER}(); "
             f"in your program's profile it is {actual!r} ({actual_share:.0%} of {HELPER}()'s samples).")
    guess = prediction.get("share")
    if not isinstance(guess, numbers.Real) or isinstance(guess, bool) or not 0 <= guess <= 1:
        c.expect(False, f"\"share\" is the fraction of {HELPER}()'s samples that come through the "
                 f"hotter caller: a number between 0 and 1, not {guess!r}.")
    else:
        c.expect(abs(float(guess) - actual_share) <= TOLERANCE,
                 f"You predicted that {guess:.2f} of {HELPER}()'s samples come through {actual}(); "
                 f"the samples say {actual_share:.2f}. Count the rounds each caller hands to "
                 f"{HELPER}() in one pass of main()'s loop.")
