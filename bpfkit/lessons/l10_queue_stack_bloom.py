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
    c.require(isinstance(bloom, Map), "Pass the Map that bpfkit.create_map(\"bloom_filter\", ...) "
              f"returned, not {type(bloom).__name__}.")
    c.require(bloom.type == "bloom_filter",
              f"That map is a {bloom.type}; make a bloom filter: "
              "bpfkit.create_map(\"bloom_filter\", value=\"u32\", max_entries=..., hashes=...).")
    c.require(bloom.value_size == 4, f"Its values are {bloom.value_size} bytes; the check adds "
              "u32 values: make it with value=\"u32\".")
    k = hashes_of(bloom)
    bits = kernel_bits(bloom.max_entries, k)
    raw = bloom.max_entries * k // 5 * 7
    sizing = (f"{bloom.max_entries} × {k} hashes / 5 × 7 = {raw} bits, rounded up to a power of "
              f"two: {bits} bits")
    missed, false = measure(bloom, N_VALUES, TESTS)
    rate = false / TESTS
    c.expect(missed == 0, f"{missed} of the {N_VALUES} values added were reported as never added. "
             "A bloom filter never does that: was the map changed while the check ran?")
    c.expect(bits <= BUDGET_BITS,
             f"The kernel gave this filter {sizing}: {bits // BUDGET_BITS} times the budget of "
             f"{BUDGET_BITS} bits (4 KiB). Fewer entries or fewer hashes make it smaller.")
    c.expect(rate < TARGET_RATE,
             f"{false} of {TESTS} values never added were reported as 'maybe' ({rate:.2%}), more "
             f"than {TARGET_RATE:.0%}. The kernel gave it {sizing}; holding {N_VALUES} values that "
             f"is {bits / N_VALUES:.1f} bits per value. Where does the formula say the rate "
             "drops below 1%?")
    if predicted is None:
        c.expect(False, "No prediction yet: before running the check, compute the rate you expect "
                 "with (1 - e^(-K·n/m))^K, m being the bits the kernel gives, and pass it as "
                 "predicted=...")
        return
    c.require(isinstance(predicted, (int, float)) and 0 <= predicted <= 1,
              f"predicted={predicted!r} is not a rate between 0 and 1; give it as a fraction "
              "(1% is 0.01).")
    if not _agrees(predicted, false) and _agrees(predicted / 100, false):
        c.expect(False, f"predicted={predicted} looks like a percentage; give it as a fraction: "
                 f"{predicted}% is {predicted / 100:g}.")
        return
    unrounded = bloom.max_entries * k / math.log(2)
    c.expect(_agrees(predicted, false),
             f"You predicted {predicted:.3%}; the filter measured {rate:.3%}. Use the {bits} bits "
             f"the kernel really gives (not max_entries·K/ln 2 = {unrounded:.0f}, before "
             "rounding), with K and n: the formula then agrees with the measurement.")


def _agrees(predicted: float, false: int) -> bool:
    """Whether `false` false positives out of TESTS agree with a predicted rate: within a
    quarter of the prediction, or three standard deviations of the count (plus two)."""
    expected = predicted * TESTS
    return abs(expected - false) <= max(0.25 * expected, 3 * math.sqrt(expected) + 2)
