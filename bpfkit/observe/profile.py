"""A sampling profiler's two ends: CPU-clock perf events that run a program on every CPU, and
the names of the addresses its stack traces hold.

A profiler's BPF side (bpf/11_stack_traces_profiler/profile.c) fills two maps: `stacks`, a stack
trace map (stack id -> the instruction addresses of one call stack, innermost first), and `counts`,
(pid, user stack id, kernel stack id) -> samples. `attach_cpu_clock` starts the sampling;
`Symbols(pid)` names addresses: the process's own (BCC's symbol cache, from its /proc/PID/maps and
the ELF symbol tables of what it mapped; the process must still run) and the kernel's
(/proc/kallsyms). A negative stack id is an error from `bpf_get_stackid()`, not a stack:
`stack_error` names it. Folding the stacks into text and tables is `folding.py`; drawing them,
`flame.py`.
"""
from __future__ import annotations

import ctypes as ct
import errno

from ..access import _bcc, refusal
from ..core import atomic
from ..core.errors import Closed, KernelError
from ..core.guard import Guard, held

KERNEL_MARK = "_[k]"   # flamegraph.pl's mark for a kernel frame in folded text
ROOT = "all"


# -- sampling ---------------------------------------------------------------------------------

@atomic.whole
def attach_cpu_clock(program, fn_name: str, hz: int = 99) -> int:
    """Run function `fn_name` of `program` (a perf_event function) `hz` times a second on
    every online CPU, driven by each CPU's clock, whatever runs there. Returns how many CPUs.

    In plain BCC this is one call, `b.attach_perf_event(ev_type=PerfType.SOFTWARE,
    ev_config=PerfSWConfig.CPU_CLOCK, fn_name=b"do_sample", sample_freq=99, cpu=-1)`, which
    opens one perf event per CPU and attaches the program to each. Here each CPU is attached
    in turn so that a refusal halfway closes the events already opened; attaching again first
    closes the earlier events, so a cell run twice does not sample twice. `program.close()`
    closes them all (BCC's cleanup closes every perf event it opened)."""
    key = _bcc.cpu_clock()
    b = program.bpf
    if key in _bcc.perf_events(b):
        b.detach_perf_event(*key)
    program.load_func(fn_name, "perf_event")  # a verifier refusal, explained
    opened: dict[int, int] = {}
    try:
        for cpu in _bcc.online_cpus():
            b.attach_perf_event(ev_type=key[0], ev_config=key[1], fn_name=fn_name.encode(),
                                sample_freq=int(hz), cpu=cpu)
            opened.update(_bcc.perf_events(b).pop(key))
    except Exception as e:  # BCC raises a bare Exception; the syscall's errno is still there
        err, said = ct.get_errno(), str(e)
        for fd in opened.values():
            _bcc.close_perf_event(fd)
        raise refusal.explain(err, "a CPU-clock perf event, so nothing can be sampled here",
                              fallback=lambda: KernelError(
                                  f"This kernel refuses a CPU-clock perf event ({said}), so nothing "
                                  "can be sampled here.", "perf events need a kernel built with "
                                  "CONFIG_PERF_EVENTS; `python -m bpfkit doctor` shows this "
                                  "kernel's facts.", errno=err or None)) from None
    _bcc.perf_events(b)[key] = opened
    return len(opened)


# -- stack ids and their errors ----------------------------------------------------------------

def stack_error(stack_id: int, user: bool) -> str | None:
    """What a negative stack id means, as a frame name; None for a kernel -EFAULT (the sample
    hit user code, so there was no kernel stack: normal, nothing to show)."""
    code = -int(stack_id)
    if code == errno.EFAULT:
        return "[no user stack]" if user else None
    if code == errno.EEXIST:
        return "[stack lost: id collision]"
    return f"[stack error {errno.errorcode.get(code, code)}]"


def addresses(stacks, stack_id: int) -> list[int]:
    """The addresses of one stack in a stack trace map, innermost first (trailing zeros
    dropped); [] for a negative id or one no longer in the map."""
    if stack_id < 0:
        return []
    value = stacks.get(int(stack_id))
    if value is None:
        return []
    ips = value["ip"] if isinstance(value, dict) else value
    out = []
    for ip in ips:
        if not ip:
            break
        out.append(int(ip))
    return out


# -- names -----------------------------------------------------------------------------------

class Symbols:
    """Function names for the addresses of process `pid` and of the kernel.

    User addresses are resolved through BCC's symbol cache for that pid, which reads the
    process's memory map: make it while the process still runs. Names are remembered, so
    each address is looked up once. `close()` frees BCC's cache (a `with` block does it)."""

    def __init__(self, pid: int):
        self.pid = int(pid)
        self._cache = _bcc.symbol_cache(self.pid)
        self._names: dict[tuple[bool, int], str] = {}
        # BCC's cache is C memory: a close from another thread frees it after a lookup in flight.
        self._guard = Guard(self._free, lambda: Closed(
            f"The symbols of process {self.pid} were closed.", "make bpfkit.observe.profile.Symbols(pid) again."))

    @held
    def user(self, addr: int) -> str:
        key = (True, addr)
        if key not in self._names:
            name, _, _ = self._cache.resolve(addr, True)
            self._names[key] = name.decode(errors="replace") if name else f"[unknown {addr:#x}]"
        return self._names[key]

    def kernel(self, addr: int) -> str:
        key = (False, addr)
        if key not in self._names:
            self._names[key] = _bcc.ksym(addr)
        return self._names[key]

    def close(self) -> None:
        self._guard.close()

    def _free(self) -> None:
        if self._cache is not None:
            _bcc.free_symbol_cache(self._cache, self.pid)
            self._cache = None

    def __enter__(self) -> "Symbols":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- folding ---------------------------------------------------------------------------------


# -- what the folded stacks say --------------------------------------------------------------


# -- the flame graph -------------------------------------------------------------------------
