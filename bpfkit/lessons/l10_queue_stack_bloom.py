"""Lesson 10's exercise (a bloom filter on a memory budget) and the bloom filter arithmetic
the lesson and its check share.

The kernel sizes a bloom filter itself (kernel/bpf/bloom_filter.c, `bloom_map_alloc`): for
`max_entries` values and K hash functions it takes max_entries * K / ln 2 bits, computed as
`(max_entries * K / 5) * 7` in integers, rounded up to a power of two (at least 64). So more
hash functions also buy more bits. The check makes its own values, adds them to the learner's
filter and tests as many values that were never added, so the false-positive rate it measures
is the filter's own.
"""
from __future__ import annotations

import math

from ..maps import Map
from .checker import Checker, exercise

DEFAULT_HASHES = 5         # what the kernel uses when map_extra (hashes=) is 0

# The exercise: remember this many values, in at most this many bits, wrong less often than this.
N_VALUES = 2000
BUDGET_BITS = 32768        # 4 KiB
TARGET_RATE = 0.01
TESTS = 20000              # values never added, tested to measure the false-positive rate


def kernel_bits(max_entries: int, hashes: int) -> int:
    """The size of the bit array the kernel allocates for a bloom filter, in bits."""
    hashes = hashes or DEFAULT_HASHES
    bits = max_entries * hashes // 5 * 7
    if bits > 2**31:
        return 2**32
    return max(64, 1 << (bits - 1).bit_length())


def theory(n: int, bits: int, hashes: int) -> float:
    """The classic false-positive rate of a bloom filter of `bits` bits holding `n` values
    with `hashes` hash functions: (1 - e^(-hashes * n / bits)) ** hashes."""
    return (1 - math.exp(-hashes * n / bits)) ** hashes


def spread(n: int, bits: int, hashes: int, tests: int) -> tuple[float, float]:
    """(expected, standard deviation) of the false positives a working bloom filter of `bits`
    bits and `hashes` hash functions, holding `n` values, gives among `tests` values never
    added. The count varies for two reasons: which bits the n values happen to set (n * hashes
    hashes thrown at `bits` bits: the filter's fill), and which tested values happen to find
    only set bits (binomial, given the fill). Where the fill's share dominates (few bits, few
    hashes), more tests do not narrow the spread: the filter itself is one draw."""
    throws = n * hashes
    empty = bits * (1 - 1 / bits) ** throws                       # expected bits still 0
    var_empty = (bits * (bits - 1) * (1 - 2 / bits) ** throws + empty - empty ** 2)
    fill = 1 - empty / bits
    sd_p = hashes * fill ** (hashes - 1) * math.sqrt(max(var_empty, 0.0)) / bits
    p = theory(n, bits, hashes)
    return p * tests, math.sqrt(tests * p * (1 - p) + (tests * sd_p) ** 2)


def plausible(false: int, n: int, bits: int, hashes: int, tests: int,
              sigmas: float = 5.0) -> bool:
    """Whether `false` false positives out of `tests` are what a working filter gives: within
    `sigmas` standard deviations of the theory (`spread`). At 5 sigma a working filter fails
    this about once in two million; a filter whose rate is twice the theory's fails it as soon
    as the expected count is above about 25."""
    expected, sd = spread(n, bits, hashes, tests)
    return abs(false - expected) <= sigmas * sd + 0.5


def hashes_of(bloom: Map) -> int:
    """The number of hash functions a bloom filter uses (map_extra; 0 means the default)."""
    return bloom.map_extra or DEFAULT_HASHES


def measure(bloom: Map, n: int, tests: int) -> tuple[int, int]:
    """Add the values 0 .. n-1, then test them and `tests` values never added (n, n+1, ...).
    Returns (false negatives, false positives): the first is always 0 for a bloom filter."""
    for v in range(n):
        bloom.add(v)
    missed = sum(v not in bloom for v in range(n))
    false = sum(v in bloom for v in range(n, n + tests))
    return missed, false


@exercise("A bloom filter on a budget",
          "The kernel gives max_entries * hashes * 7/5 bits, rounded up to a power of two, and "
          "the formula with those bits predicts what the filter really does.")
def check_bloom_budget(c: Checker, bloom, predicted: float | None = None) -> None:
    """Lesson 10's exercise: `bloom` (a bloom filter of u32 values, made by the learner) must
    hold N_VALUES values in at most BUDGET_BITS bits with under TARGET_RATE false positives,
    and `predicted` must be the learner's prediction of that rate (a fraction)."""
    _check_map(c, bloom)
    k = hashes_of(bloom)
    bits = kernel_bits(bloom.max_entries, k)
    raw = bloom.max_entries * k // 5 * 7
    sizing = (f"{bloom.max_entries} × {k} hashes / 5 × 7 = {raw} bits, rounded up to a power of "
              f"two: {bits} bits")
    missed, false = measure(bloom, N_VALUES, TESTS)
    rate = false / TESTS
    c.expect(missed == 0,
             f"{missed} of the {N_VALUES} values added were reported as never added, where a "
             "bloom filter reports none: was the map changed while the check ran? The cell "
             "'A bloom filter: seen before?' says why a \"no\" is always right.",
             hint="A filter handed to a running program (with `maps=`) may be changed by it; give "
                  "the check a filter nothing else uses.",
             fix="Make the filter in the exercise cell's `with` line and pass only that map.")
    c.expect(bits <= BUDGET_BITS,
             f"The kernel gave this filter {bits} bits, {bits // BUDGET_BITS} times the budget of "
             f"{BUDGET_BITS} bits (4 KiB): how does it choose the bits from `max_entries` and "
             "`hashes`? The cell 'How often is \"maybe\" wrong?' shows the kernel's sizing.",
             hint=f"The kernel gave {sizing}. Fewer entries or fewer hashes make it smaller.",
             fix="`MAX_ENTRIES = 2000` with `HASHES` from 6 to 11: the kernel gives 32768 bits.")
    c.expect(rate < TARGET_RATE,
             f"{false} of {TESTS} values never added were reported as \"maybe\" ({rate:.2%}), "
             f"where fewer than {TARGET_RATE:.0%} may be. The kernel gave it {bits} bits, "
             f"{bits / N_VALUES:.1f} per value: how many bits per value does the formula need for "
             "1%? The cell 'How often is \"maybe\" wrong?' has the formula.",
             hint=f"The kernel gave {sizing}. Under 1% needs about 9.6 bits per value even with "
                  "the best K, and the kernel gives more bits when `hashes` grows.",
             fix="`HASHES = 6` with `MAX_ENTRIES = 2000`: the kernel gives 32768 bits, and the "
                 "formula predicts 0.083%.")
    _check_prediction(c, predicted, false, bloom.max_entries, k)


def _check_map(c: Checker, bloom) -> None:
    """`bloom` is a bloom filter of u32 values."""
    c.require(isinstance(bloom, Map),
              f"The check got {type(bloom).__name__}, where it expected the bloom filter itself, a "
              "`Map`: which name does the exercise cell give the filter it makes?",
              hint="The `with bpfkit.create_map(...) as ...:` line names the map; pass that name.",
              fix="Inside the `with` block: `result = check_bloom_budget(choice, "
                  "predicted=predicted)`.")
    c.require(bloom.type == "bloom_filter",
              f"That map is a {bloom.type}, where the check expected a bloom filter: which map "
              "type answers \"no\" or \"maybe\"? The cell 'A bloom filter: seen before?' makes "
              "one.",
              hint="`bpfkit.create_map` takes the map type as its first argument, and `hashes=` "
                   "for a bloom filter.",
              fix="`bpfkit.create_map(\"bloom_filter\", value=\"u32\", max_entries=MAX_ENTRIES, "
                  "hashes=HASHES, flags=BPF_F_ZERO_SEED, name=\"l10_choice\")`")
    c.require(bloom.value_size == 4,
              f"Its values are {bloom.value_size} bytes, where the check adds 4-byte values (u32): "
              "which argument of `bpfkit.create_map` sets a value's type?",
              hint="The value type is the `value=` argument, as in the cell 'A bloom filter: seen "
                   "before?'.",
              fix="`value=\"u32\"` in `bpfkit.create_map(...)`.")


def _check_prediction(c: Checker, predicted, false: int, max_entries: int, k: int) -> None:
    """The learner's predicted rate against the `false` positives measured out of TESTS."""
    bits = kernel_bits(max_entries, k)
    rate = false / TESTS
    if predicted is None:
        c.expect(False,
                 "No prediction yet (`predicted=None`): what rate does (1 − e^(−K·n/m))^K give "
                 "for your filter? The cell 'How often is \"maybe\" wrong?' says which m the "
                 "kernel gives.",
                 hint=f"m is the {bits} bits the kernel gives this filter, not max_entries·K/ln 2; "
                      f"K is {k} and n is {N_VALUES}.",
                 fix=f"`predicted = (1 - math.exp(-HASHES * {N_VALUES} / {bits})) ** HASHES`")
        return
    c.require(isinstance(predicted, (int, float)) and 0 <= predicted <= 1,
              f"predicted={predicted!r}, where the check expected a rate between 0 and 1: how is "
              "1% written as a fraction? Step 2 of the exercise says.",
              hint="A rate is a number from 0 to 1, not a string: 1% is 0.01.",
              fix="`predicted = 0.01` means 1%; compute yours with `math.exp`.")
    if not _agrees(predicted, false) and _agrees(predicted / 100, false):
        c.expect(False,
                 f"predicted={predicted} is about 100 times the measured rate, {rate:.4f}: was it "
                 "written as a percentage? Step 2 of the exercise asks for a fraction.",
                 hint=f"{predicted}% is {predicted / 100:g} as a fraction.",
                 fix=f"`predicted = {predicted / 100:g}`")
        return
    unrounded = max_entries * k / math.log(2)
    c.expect(_agrees(predicted, false),
             f"You predicted {predicted:.3%}; the filter measured {rate:.3%}. Which m did your "
             "formula use? The cell 'How often is \"maybe\" wrong?' says how the kernel picks m.",
             hint=f"Use the {bits} bits the kernel really gives (not max_entries·K/ln 2 = "
                  f"{unrounded:.0f}, before rounding), with K = {k} and n = {N_VALUES}.",
             fix=f"`predicted = (1 - math.exp(-{k} * {N_VALUES} / {bits})) ** {k}`, that is "
                 f"{theory(N_VALUES, bits, k):.3%}.")


def _agrees(predicted: float, false: int) -> bool:
    """Whether `false` false positives out of TESTS agree with a predicted rate: within a
    quarter of the prediction, or three standard deviations of the count (plus two)."""
    expected = predicted * TESTS
    return abs(expected - false) <= max(0.25 * expected, 3 * math.sqrt(expected) + 2)
