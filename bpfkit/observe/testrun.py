"""Run a BPF program inside the kernel on a made-up packet, and time it: BPF_PROG_TEST_RUN.

The kernel can run an XDP (or socket filter, tc, ...) program on a buffer we hand it, `repeat`
times in a row, and report the average time per run in nanoseconds, measured in the kernel.
That is how lesson 07 measures what a map operation costs: time a program doing N lookups,
subtract a program doing nothing, divide by N. BCC has no wrapper for it (none up to 0.31), so
this calls libbpf's `bpf_prog_test_run_opts` through ctypes.
"""
from __future__ import annotations

import ctypes as ct
import errno
import statistics
import weakref
from dataclasses import dataclass

from ..access import _bcc, refusal
from ..access._libbpf import TestRunOpts, lib
from ..core.errors import KernelError, UsageError

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT = range(5)
PACKET = bytes(64)  # an all-zero 64-byte frame: XDP wants at least an Ethernet header


@dataclass
class Run:
    """One test run: what the program returned and its average time per run, in ns."""
    retval: int
    ns: int
    repeat: int


TEST_RUN_TYPES = ("xdp", "socket_filter", "sched_cls")


def prog_fd(program, fn_name: str, prog_type: str = "xdp") -> int:
    """The fd of `fn_name` in a bpfkit Program, loaded as `prog_type` on first use."""
    if _bcc.prog_type_name(prog_type) not in TEST_RUN_TYPES:
        raise UsageError(f"A test run here takes a program of type "
                         f"{' or '.join(repr(t) for t in TEST_RUN_TYPES)}, not {prog_type!r}.",
                         'pass prog_type="xdp" (the default), "socket_filter" or "sched_cls".')
    return program.load_func(fn_name, prog_type).fd


def run(program, fn_name: str, *, repeat: int = 1, data: bytes = PACKET, prog_type: str = "xdp") -> Run:
    """Run `fn_name` of `program` `repeat` times on `data` inside the kernel."""
    fd = prog_fd(program, fn_name, prog_type)
    buf = ct.create_string_buffer(bytes(data), len(data))
    out = ct.create_string_buffer(len(data) + 256)
    opts = TestRunOpts(sz=ct.sizeof(TestRunOpts), data_in=ct.addressof(buf),
                       data_size_in=len(data), data_out=ct.addressof(out),
                       data_size_out=len(out), repeat=max(int(repeat), 1))
    try:
        lib.bpf_prog_test_run_opts(fd, ct.byref(opts))
    except OSError as e:
        if e.errno == errno.EPERM:   # a missing privilege, or the kernel's own policy
            raise refusal.explain(e.errno, f"test runs of {fn_name!r} (BPF_PROG_TEST_RUN)") from None
        raise KernelError(f"The kernel could not test-run {fn_name!r}: {e.strerror}.",
                          "BPF_PROG_TEST_RUN needs a program type that supports it "
                          "(XDP, tc, socket filter); an XDP packet needs at least 14 bytes.",
                          errno=e.errno) from None
    return Run(opts.retval, opts.duration, opts.repeat)


def ns_per_run(program, fn_name: str, *, repeat: int = 100_000, trials: int = 5, **kw) -> float:
    """The median, over `trials` test runs, of the kernel's average ns per run."""
    return statistics.median(run(program, fn_name, repeat=repeat, **kw).ns for _ in range(trials))


def cost(program, fn_name: str, *, baseline: str = "empty", ops: int = 1, repeat: int = 100_000,
         trials: int = 5, **kw) -> float:
    """ns per operation: (time of `fn_name` - time of `baseline`) / `ops`, where `fn_name`
    does `ops` operations and `baseline` is the same program doing none (entering and
    leaving the program, handing it the packet). Trials alternate between the two so a
    machine getting busier affects both alike."""
    mine, base = [], []
    for _ in range(trials):
        base.append(run(program, baseline, repeat=repeat, **kw).ns)
        mine.append(run(program, fn_name, repeat=repeat, **kw).ns)
    ns = (statistics.median(mine) - statistics.median(base)) / ops
    _MEASURED.setdefault(program, {}).setdefault(fn_name, []).append(ns)
    return ns


@dataclass
class Order:
    """Whether one function costs less than another, told apart from the noise of the machine: a
    lesson asserts an order ("an array lookup is cheaper than a hash lookup") that holds on every
    machine, but a busy 2-CPU VM can swap two close numbers in one measurement. Truthy unless
    the measurement clearly contradicts the order (the gap is wider than the trials' spread);
    printed, it says what was measured in a sentence either way."""
    cheap: str
    dear: str
    cheap_ns: float
    dear_ns: float
    noise_ns: float   # how much the trials varied: the two spreads added, at least the resolution
    trials: int

    @property
    def holds(self) -> bool:
        return self.cheap_ns < self.dear_ns

    @property
    def clear(self) -> bool:
        return abs(self.dear_ns - self.cheap_ns) > self.noise_ns

    def __bool__(self) -> bool:
        return self.holds or not self.clear

    def __str__(self) -> str:
        both = (f"{self.cheap} {self.cheap_ns:.1f} ns, {self.dear} {self.dear_ns:.1f} ns "
                f"(median of {self.trials} trials each, which varied by {self.noise_ns:.1f} ns)")
        if self.holds and self.clear:
            return f"{self.cheap} is cheaper than {self.dear}: {both}."
        if not self.clear:
            return (f"This machine was too busy to tell {self.cheap} from {self.dear}: {both}. "
                    "Run the cell again when the machine is quieter.")
        return f"{self.cheap} measured dearer than {self.dear}, beyond the noise: {both}."

    __repr__ = __str__


def _spread(values: list[float]) -> float:
    """The interquartile range: how much trials differ, blind to one trial a busy moment spoiled."""
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q3 - q1


def order(cheap: tuple, dear: tuple, *, ops: int = 1, baseline: str = "empty", repeat: int = 100_000,
          trials: int = 5, rounds: int = 3, **kw) -> Order:
    """Measure whether `cheap` = (program, function) costs less per operation than `dear`, each
    against its own program's `baseline`. Trials alternate between the two, each paired with a
    baseline run just before it; a round that cannot tell them apart is followed by another, up
    to `rounds`, pooling the trials."""
    costs: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(rounds):
        for _ in range(trials):
            for side, (program, fn_name) in enumerate((cheap, dear)):
                base = run(program, baseline, repeat=repeat, **kw).ns
                costs[side].append((run(program, fn_name, repeat=repeat, **kw).ns - base) / ops)
        found = Order(cheap[1], dear[1], statistics.median(costs[0]), statistics.median(costs[1]),
                      max(_spread(costs[0]) + _spread(costs[1]), 1.0 / ops), len(costs[0]))
        if found.holds and found.clear:
            break
    return found


# What cost() returned, by program and function: an exercise check asks whether a number was
# measured with cost() on that program, which no other machine's speed can make false.
_MEASURED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def measured(program, fn_name: str) -> list[float]:
    """Every value cost(program, fn_name) returned in this process."""
    return list(_MEASURED.get(program, {}).get(fn_name, []))
