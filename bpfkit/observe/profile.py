"""From a profiler's maps to a flame graph: stack ids, addresses, function names, pictures.

A sampling profiler's BPF side (bpf/11_stack_traces_profiler/profile.c) fills two maps: `stacks`, a stack trace map
(stack id -> the instruction addresses of one call stack, innermost first), and `counts`,
(pid, user stack id, kernel stack id) -> samples. This module turns them into something a
person reads:

- `Symbols(pid)` names addresses: the process's own (BCC's symbol cache, from its
  /proc/PID/maps and the ELF symbol tables of what it mapped; the process must still run) and
  the kernel's (/proc/kallsyms).
- `fold(counts, stacks, symbols)` resolves every sampled stack and merges equal ones: one row
  per distinct stack, written root first as `main;hot_function;asm_exc_page_fault_[k]`, the
  "folded" text that Brendan Gregg's flamegraph.pl reads (`_[k]` marks a kernel frame).
- `top_functions`, `callers`, `flame_layout` are pure: folded stacks in, a DataFrame out.
- `flame_graph` draws the layout with matplotlib: one rectangle per function in a stack, as
  wide as its samples, callers below their callees.

A negative stack id is an error from `bpf_get_stackid()`, not a stack: `stack_error` names it.
"""
from __future__ import annotations

import ctypes as ct
import errno
import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..access import _bcc, refusal
from ..core import atomic
from . import plot
from ..core.errors import KernelError

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
        err = ct.get_errno()
        for fd in opened.values():
            _bcc.close_perf_event(fd)
        raise refusal.explain(err, "a CPU-clock perf event, so nothing can be sampled here",
                              fallback=lambda: KernelError(
                                  f"This kernel refuses a CPU-clock perf event ({e}), so nothing "
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
        if self._cache is not None:
            _bcc.free_symbol_cache(self._cache, self.pid)
            self._cache = None

    def __enter__(self) -> "Symbols":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- folding ---------------------------------------------------------------------------------

def fold(counts: pd.DataFrame, stacks, symbols: Symbols, *, value: str | None = None) -> pd.DataFrame:
    """Every sampled stack with its names, equal stacks merged: columns `stack` (frames root
    first, joined by ";", user frames then kernel frames marked `_[k]`) and `samples`.

    `counts` is the frame of the (pid, user_stack_id, kernel_stack_id) -> count hash; its
    count column is `value` (by default the one column that is not a key field)."""
    keys = ("pid", "user_stack_id", "kernel_stack_id")
    if value is None:
        others = [c for c in counts.columns if c not in keys]
        value = others[0] if len(others) == 1 else "value"
    rows = []
    for user_id, kernel_id, n in zip(counts["user_stack_id"], counts["kernel_stack_id"], counts[value]):
        rows.append((resolve(int(user_id), int(kernel_id), stacks, symbols), int(n)))
    return fold_stacks(rows)


def resolve(user_id: int, kernel_id: int, stacks, symbols: Symbols) -> list[str]:
    """One sample's frames, root first: the user stack (outermost caller first), then the
    kernel stack with each frame marked `_[k]`."""
    frames = []
    if user_id >= 0:
        frames += [symbols.user(a) for a in reversed(addresses(stacks, user_id))]
    elif stack_error(user_id, True):
        frames.append(stack_error(user_id, True))
    if kernel_id >= 0:
        frames += [symbols.kernel(a) + KERNEL_MARK for a in reversed(addresses(stacks, kernel_id))]
    elif stack_error(kernel_id, False):
        frames.append(stack_error(kernel_id, False) + KERNEL_MARK)
    return frames


def fold_stacks(rows: Iterable[tuple[list[str], int]]) -> pd.DataFrame:
    """(frames root first, samples) pairs -> one row per distinct stack, most samples first
    (then by name): columns `stack` and `samples`."""
    merged: dict[str, int] = {}
    for frames, n in rows:
        if not frames or n <= 0:
            continue
        text = ";".join(frames)
        merged[text] = merged.get(text, 0) + int(n)
    frame = pd.DataFrame({"stack": list(merged), "samples": np.array(list(merged.values()), dtype=np.int64)})
    return frame.sort_values(["samples", "stack"], ascending=[False, True], ignore_index=True)


def frames_of(stack: str) -> list[str]:
    return stack.split(";") if stack else []


def is_kernel(frame: str) -> bool:
    return frame.endswith(KERNEL_MARK)


def name_of(frame: str) -> str:
    """A frame's function name, without the kernel mark."""
    return frame[:-len(KERNEL_MARK)] if is_kernel(frame) else frame


# -- what the folded stacks say --------------------------------------------------------------

def top_functions(folded: pd.DataFrame) -> pd.DataFrame:
    """Samples per function: `self` (it was the innermost frame: the CPU was running its code)
    and `total` (it was anywhere on the stack, counted once per sample); `kernel` says which
    side it is on. Most self samples first."""
    self_n: dict[str, int] = {}
    total_n: dict[str, int] = {}
    for stack, n in zip(folded["stack"], folded["samples"]):
        frames = frames_of(stack)
        if not frames:
            continue
        self_n[frames[-1]] = self_n.get(frames[-1], 0) + int(n)
        for f in set(frames):
            total_n[f] = total_n.get(f, 0) + int(n)
    names = list(total_n)
    frame = pd.DataFrame({
        "function": [name_of(f) for f in names],
        "kernel": [is_kernel(f) for f in names],
        "self": np.array([self_n.get(f, 0) for f in names], dtype=np.int64),
        "total": np.array([total_n[f] for f in names], dtype=np.int64),
    })
    return frame.sort_values(["self", "total", "function"], ascending=[False, False, True],
                             ignore_index=True)


def callers(folded: pd.DataFrame, function: str) -> pd.DataFrame:
    """Who called `function`: for each sample with it on the stack, the frame just below its
    outermost appearance. Columns `caller` and `samples`, most first; a sample in which it is
    the root has the caller "(none)"."""
    found: dict[str, int] = {}
    for stack, n in zip(folded["stack"], folded["samples"]):
        frames = [name_of(f) for f in frames_of(stack)]
        if function in frames:
            i = frames.index(function)
            caller = frames[i - 1] if i > 0 else "(none)"
            found[caller] = found.get(caller, 0) + int(n)
    frame = pd.DataFrame({"caller": list(found), "samples": np.array(list(found.values()), dtype=np.int64)})
    return frame.sort_values(["samples", "caller"], ascending=[False, True], ignore_index=True)


# -- the flame graph -------------------------------------------------------------------------

def flame_layout(folded: pd.DataFrame, *, root: str = ROOT) -> pd.DataFrame:
    """The rectangles of a flame graph: one per function per distinct call path.

    Columns `name`, `kernel`, `depth` (0 for the root, which spans every sample; a frame's
    callees sit one above it), `start` and `width` in samples. Equal prefixes merge, as in
    flamegraph.pl: siblings are ordered by name, so x means nothing but width does."""
    tree: dict = {}
    for stack, n in zip(folded["stack"], folded["samples"]):
        node = tree
        for f in frames_of(stack):
            child = node.setdefault(f, [0, {}])
            child[0] += int(n)
            node = child[1]
    total = int(folded["samples"].sum()) if len(folded) else 0
    rows = [(root, False, 0, 0, total)] if total else []

    def walk(node: dict, depth: int, start: int) -> None:
        x = start
        for f in sorted(node):
            n, children = node[f]
            rows.append((name_of(f), is_kernel(f), depth, x, n))
            walk(children, depth + 1, x)
            x += n

    walk(tree, 1, 0)
    return pd.DataFrame(rows, columns=["name", "kernel", "depth", "start", "width"]).astype(
        {"depth": np.int64, "start": np.int64, "width": np.int64})


def _color(name: str, kernel: bool) -> tuple:
    """A stable shade per function: warm colours for user space, blues for the kernel."""
    h = (zlib.crc32(name.encode()) % 1000) / 1000
    if kernel:
        return (0.35 + 0.25 * h, 0.6 + 0.2 * h, 0.95, 1.0)
    return (0.95, 0.45 + 0.4 * h, 0.2 + 0.15 * h, 1.0)


def flame_graph(folded: pd.DataFrame, *, title: str, ax=None, icicle: bool = False,
                figsize=None):
    """Draw folded stacks as a flame graph (root at the bottom) or, with `icicle=True`, an
    icicle chart (root at the top). Width is samples; labels are written where they fit; the
    figure is as tall as the deepest stack needs. Returns the matplotlib Axes."""
    layout = flame_layout(folded)
    total = int(layout["width"].max()) if len(layout) else 0
    depth = int(layout["depth"].max()) + 1 if len(layout) else 1
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator
    ax = ax or plot.new_axes(figsize or (10, max(2.6, min(7.0, 1.3 + 0.3 * depth))))
    colors = [(0.8, 0.8, 0.8, 1.0) if d == 0 else _color(n, k)
              for n, k, d in zip(layout["name"], layout["kernel"], layout["depth"])]
    ax.barh(layout["depth"], layout["width"], left=layout["start"], height=0.95, color=colors,
            edgecolor="white", linewidth=0.5, align="edge")
    fig = ax.figure
    axes_px = fig.get_size_inches()[0] * fig.dpi * ax.get_position().width
    char_px = 7.0 * fig.dpi / 72 * 0.62
    for name, d, start, width in zip(layout["name"], layout["depth"], layout["start"], layout["width"]):
        label = f"{name} ({width})" if d == 0 else name
        room = int(width / max(total, 1) * axes_px / char_px) - 1
        if room < 3:
            continue
        if len(label) > room:
            label = label[:room - 2] + ".."
        ax.text(start + width * 0.01 + total * 0.002, d + 0.47, label, va="center", ha="left",
                fontsize=7, clip_on=True)
    ax.set_xlim(0, max(total, 1))
    if icicle:
        ax.set_ylim(depth, 0)
    else:
        ax.set_ylim(0, depth)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, loc="left")
    ax.set_xlabel("samples (width: how often the CPU was in this stack)")
    ax.set_ylabel("stack depth\n(callees " + ("below" if icicle else "above") + " callers)")
    ax.legend(handles=[Patch(color=_color("user", False), label="user space"),
                       Patch(color=_color("kernel", True), label="kernel")],
              loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=2, frameon=False, fontsize="small")
    fig.tight_layout()
    return ax
