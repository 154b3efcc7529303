"""Lesson 07's exercise: count with a per-CPU array, and measure what one count costs."""
from __future__ import annotations

import numpy as np

from ..observe import testrun
from .checker import Checker, exercise

RUNS = 1000


@exercise("Count in a per-CPU array, and measure it",
          "Each CPU adds to its own copy of the slot, so a plain (*v)++ is exact without "
          "an atomic instruction, and a lookup in an array is a few instructions the "
          "verifier writes straight into the program.")
def check_percpu_counter(c: Checker, program, fn_name: str = "count_percpu",
                         measured_ns=None) -> None:
    """`program` holds a per-CPU array and an XDP function `fn_name` adding one to it per run;
    `measured_ns` is the learner's measurement of one run's extra cost over `empty`."""
    arrays = {name: m for name, m in program.maps.items() if m.type == "percpu_array"}
    c.require(arrays, "The program has no per-CPU array: declare one with "
              "BPF_PERCPU_ARRAY(packets, u64, 1);")
    m = next(iter(arrays.values()))
    m.clear()
    first = testrun.run(program, fn_name, repeat=RUNS)
    c.expect(first.retval == testrun.XDP_PASS,
             f"{fn_name} returned {first.retval}; return XDP_PASS ({testrun.XDP_PASS}) so the "
             "packet would go on.")
    frame = m.frame(per_cpu="sum")
    counted = int(np.asarray(frame.iloc[:, -1]).sum()) if len(frame) else 0
    c.require(counted == RUNS,
              f"The kernel ran {fn_name} {RUNS} times, but the array's slots add up to "
              f"{counted}. Look up slot 0 (u32 key = 0;), check the pointer for NULL, "
              "then add one: if (v) (*v)++;")
    c.require(isinstance(measured_ns, (int, float)) and not isinstance(measured_ns, bool),
              "Measure it: measured_ns = bpfkit.observe.testrun.cost(program, "
              f"{fn_name!r}) (the time of one run minus the time of `empty`).")
    # A few ns, measured twice on a busy 2-CPU machine, differed by 4 and by 5 ns in CI: each
    # measurement is a difference of two ~10 ns medians. Measure again before saying no, and
    # allow 6 ns: a number typed in (0, 100, 500) is still told apart from a measured one.
    def close(own: float) -> bool:
        return abs(measured_ns - own) <= max(6.0, 0.5 * abs(own))
    if measured_ns in testrun.measured(program, fn_name):   # cost() on this program said it
        return
    for _ in range(3):
        own = testrun.cost(program, fn_name, trials=5)
        if close(own):
            break
    c.expect(close(own),
             f"You measured {measured_ns:.1f} ns per count, the check measures {own:.1f} ns now. "
             "Use bpfkit.observe.testrun.cost() on the same program, and run it again if the machine "
             "was busy.")
