"""The one door to BCC: every reach past BCC's public Python API, and every BCC constant, is here.

BCC's Python module has no stable interface below `BPF(...)`, `load_func` and `attach_*`: the kit
needs more than that (to attach its own way so a failure frees what was made, to read a map BCC
cannot wrap, to close what BCC's own cleanup stopped halfway through), and each such need is one
small function below, saying why it reaches inside and which BCC it was read from. When a
distro ships a BCC that moves one of these, this file is the one to change; nothing else in
the kit names a BCC internal (tests/test_structure.py checks that).

The functions were read from BCC 0.26 (Debian 12's python3-bpfcc: `bcc/__init__.py`,
`table.py`, `libbcc.py`), the BCC the kit's machines run. BCC itself is imported on the first call, never
at import: a kernel-free test imports bpfkit where BCC does not work.
"""
from __future__ import annotations

import contextlib
import ctypes as ct
import functools
import json
import os

from . import kernel, system
from ..core.errors import UsageError, did_you_mean


def module():
    """The `bcc` module from the distro (found by `system.bcc()`, which explains its absence)."""
    return system.bcc()


# -- program types --------------------------------------------------------------------------

def prog_type(kind) -> int:
    """The number BCC's `load_func` takes for a program type named as the kernel names it
    ("xdp", "cgroup_skb", "sk_msg": `kernel.PROG_TYPES`). BCC's `BPF.XDP` and friends are
    exactly the kernel's `enum bpf_prog_type` (BCC 0.26 `__init__.py` class BPF), so lessons
    need no BCC import to say which type they mean. A number is still taken, as BCC's were."""
    if isinstance(kind, int) and not isinstance(kind, bool):
        return kind
    if isinstance(kind, str):
        name = kind.strip().lower()
        if name in kernel.PROG_TYPES[1:]:
            return kernel.PROG_TYPES.index(name)
    hint = did_you_mean(str(kind).lower(), kernel.PROG_TYPES[1:]) if isinstance(kind, str) else ""
    raise UsageError(f"{kind!r} is not a program type.",
                     (hint + " " if hint else "") + "Program types are the kernel's names, as a "
                     "string: " + ", ".join(repr(n) for n in kernel.PROG_TYPES[1:]) + ".")


def prog_type_name(kind) -> str:
    """The kernel's name of a program type given by name or number ("" for a number it has not)."""
    number = prog_type(kind)
    return kernel.PROG_TYPES[number] if 0 <= number < len(kernel.PROG_TYPES) else ""


# -- compiling without BCC's own attaching ------------------------------------------------------

_QuietBPF = None


def quiet_bpf_class():
    """BCC's BPF minus its attach-on-construct. BPF.__init__ calls the private
    `self._trace_autoload()` (BCC 0.26 `__init__.py`), which attaches every kprobe__/tracepoint__
    function at once: the kit attaches them itself, one by one, so a failure frees what was
    made and a tracepoint is checked before BCC tries it."""
    global _QuietBPF
    if _QuietBPF is None:
        class QuietBPF(module().BPF):
            def _trace_autoload(self):
                pass
        _QuietBPF = QuietBPF
    return _QuietBPF


# -- what a compiled module holds (libbcc's C calls on BPF.module) ------------------------------

@functools.lru_cache(maxsize=None)
def lib():
    """libbcc, with the prototypes of the calls BCC's Python leaves untyped (BCC 0.26
    `libbcc.py` declares neither bpf_num_tables nor bpf_table_name, so ctypes would truncate
    the module pointer to an int)."""
    lib = module().lib
    lib.bpf_num_tables.restype = ct.c_ulonglong
    lib.bpf_num_tables.argtypes = [ct.c_void_p]
    lib.bpf_table_name.restype = ct.c_char_p
    lib.bpf_table_name.argtypes = [ct.c_void_p, ct.c_ulonglong]
    return lib


def function_names(bpf) -> list[str]:
    """Every function a compiled program holds, loaded or not: BCC's Python lists only the
    loaded ones (`bpf.funcs`), so this asks libbcc about the module."""
    c = lib()
    return [c.bpf_function_name(bpf.module, i).decode() for i in range(c.bpf_num_functions(bpf.module))]


def table_names(bpf) -> list[str]:
    """Every map a compiled program declares; BCC's Python makes a Table only when asked for one."""
    c = lib()
    return [c.bpf_table_name(bpf.module, i).decode() for i in range(c.bpf_num_tables(bpf.module))]


def license(bpf) -> str:
    """The program's license string, which the verifier's refusal of a GPL-only helper needs."""
    return (lib().bpf_module_license(bpf.module) or b"").decode(errors="replace")


def table(bpf, name: str) -> tuple[int, type | None, type | None]:
    """(fd, key ctypes type, value ctypes type) of map `name`, without BCC's `Table()`: BCC 0.26
    raises "Unknown table type" for sockmap, sockhash and the storage maps, whose fds are
    fine. The C types come from the JSON libbcc describes them in, decoded by BCC's private
    `BPF._decode_table_type` (BCC 0.26 `__init__.py`); a queue or stack has no key (None)."""
    c, raw = lib(), name.encode()
    bpf_class = module().BPF

    def c_type(desc: bytes):
        return bpf_class._decode_table_type(json.loads(desc)) if desc else None
    return (c.bpf_table_fd(bpf.module, raw), c_type(c.bpf_table_key_desc(bpf.module, raw)),
            c_type(c.bpf_table_leaf_desc(bpf.module, raw)))


def events_table(bpf, name: str):
    """BCC's table object of a ring or perf buffer: BCC polls buffers only through it. Never
    kept: BCC frees a perf buffer when its table object goes, at the program's close."""
    return bpf[name.encode()]


# -- readers of event buffers -------------------------------------------------------------------

def reader_of(table):
    """The bpfkit reader that registered with this BCC table last (None before any): kept on
    BCC's table object, which lives exactly as long as the program and its buffer."""
    return getattr(table, "_bpfkit_reader", None)


def set_reader(table, reader) -> None:
    table._bpfkit_reader = reader


def perf_buffer_cpus(table) -> list[int]:
    """The CPUs whose perf buffers BCC opened on this table. BCC keeps them in the private dict
    `PerfEventArray._open_key_fds` (BCC 0.26 `table.py`) and frees each buffer when its slot is
    deleted; there is no public way to ask."""
    return list(getattr(table, "_open_key_fds", {}))


# -- hooks BCC opened, closed when BCC's own cleanup stops halfway ------------------------------

def force_close(bpf) -> None:
    """Close every perf event, tracepoint, raw tracepoint and kprobe BCC attached, then the
    module: BCC's `cleanup()` stops at the first detach that fails and leaves the rest. The
    hooks are in BCC's own bookkeeping dicts (`open_perf_events`, `tracepoint_fds`,
    `kprobe_fds`, `raw_tracepoint_fds`, BCC 0.26 `__init__.py`), emptied here so that BCC's
    cleanup at exit does not close them again."""
    c = lib()
    for fds in (list(bpf.open_perf_events.values()) + list(bpf.tracepoint_fds.values())
                + list(bpf.kprobe_fds.values())):
        for fd in (fds.values() if isinstance(fds, dict) else [fds]):
            with contextlib.suppress(Exception):
                c.bpf_close_perf_event_fd(fd)  # the event's reference to the program
    for fd in list(bpf.raw_tracepoint_fds.values()):
        with contextlib.suppress(OSError):
            os.close(fd)
    for held in (bpf.open_perf_events, bpf.tracepoint_fds, bpf.raw_tracepoint_fds, bpf.kprobe_fds):
        held.clear()
    with contextlib.suppress(Exception):
        bpf.close()  # the functions' fds, and the module with its maps


# -- perf events on each CPU's clock (the profiler) ----------------------------------------------

def cpu_clock() -> tuple[int, int]:
    """BCC's key of a software CPU-clock perf event: (PerfType.SOFTWARE, PerfSWConfig.CPU_CLOCK)."""
    bcc = module()
    return bcc.PerfType.SOFTWARE, bcc.PerfSWConfig.CPU_CLOCK


def perf_events(bpf) -> dict:
    """BCC's record of the perf events it opened, {(type, config): {cpu: fd}}: the dict
    `BPF.open_perf_events` (BCC 0.26), which `detach_perf_event` and `cleanup()` close from.
    The kit opens one CPU at a time and files the fds there itself, so BCC closes them."""
    return bpf.open_perf_events


def online_cpus() -> list[int]:
    return module().utils.get_online_cpus()


def close_perf_event(fd: int) -> None:
    lib().bpf_close_perf_event_fd(fd)


# -- names of addresses ---------------------------------------------------------------------------

def symbol_cache(pid: int):
    """BCC's symbol cache of process `pid` (its /proc/PID/maps and the ELF symbols of what it mapped)."""
    return module().SymbolCache(pid)


def free_symbol_cache(cache, pid: int) -> None:
    """Free a symbol cache now: BCC 0.26's SymbolCache has no close, only the C call on its
    `.cache` pointer, and a profiler of many short processes would hold every one until exit."""
    lib().bcc_free_symcache(cache.cache, pid)


def ksym(addr: int) -> str:
    return module().BPF.ksym(addr).decode(errors="replace")


# -- XDP -------------------------------------------------------------------------------------------

def attach_xdp(dev: str, fn, flags: int) -> None:
    """BCC's BPF.attach_xdp (a static method: it needs no program object); raises BCC's bare
    Exception on a refusal."""
    module().BPF.attach_xdp(dev.encode(), fn, flags)


def remove_xdp(dev: str, flags: int) -> None:
    module().BPF.remove_xdp(dev.encode(), flags)
