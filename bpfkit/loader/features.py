"""What this kernel lets a lesson use, each thing tried for real: map types, program types, kprobes,
and one thing of the toolchain, "arena programs" (can this machine's clang compile them?).

Machines of one kind differ (one refuses `arena` maps to root, another allows all 33 types; one
loads LSM programs, another forbids them), so a lesson never assumes: it asks

    arena_here = bpfkit.allowed("arena map")     # shows one sentence where the kernel refuses
    arena_here

and marks each cell of the part that needs it with a first line `# needs: arena map`, which
magic.py turns into one line saying what the kernel refuses, where it does. Every probe gives an
answer (a row, an `Allowed`), never an exception; the words come from `refusal`, so they match
what the kit says when a real load fails.
The test switch `BPFKIT_PRETEND_REFUSED` (see refusal.py) reaches every probe here, through the
same doors a real load takes.
"""
from __future__ import annotations

import ctypes as ct
import errno
import functools
import os
import re
import struct
from dataclasses import dataclass

import pandas as pd

from ..access import kernel, refusal, system
from ..core import maptypes
from ..access._libbpf import ProgLoadOpts, lib, quiet
from ..core.errors import BpfkitError, NotAllowedHere, NotFound, SetupError, UsageError, did_you_mean
from ..maps import btf
from ..maps.create import make_and_close

# `r0 = 0; exit`: the smallest program every type's verifier accepts.
NOTHING = bytes.fromhex("b700000000000000" "9500000000000000")
BPF_F_SLEEPABLE = 1 << 4
# What a type needs besides its instructions: the attach type it is loaded for, a kernel function
# (by BTF) it attaches to, flags; `expect` is the errno that means "this type exists" where a
# real target cannot be named (as libbpf's own probe does).
NEEDS = {
    "cgroup_sock_addr": {"attach": "BPF_CGROUP_INET4_CONNECT"},
    "cgroup_sockopt": {"attach": "BPF_CGROUP_GETSOCKOPT"},
    "sk_lookup": {"attach": "BPF_SK_LOOKUP"},
    "netfilter": {"attach": "BPF_NETFILTER"},
    "tracing": {"attach": "BPF_TRACE_FENTRY", "function": "bpf_fentry_test1"},
    "lsm": {"attach": "BPF_LSM_MAC", "function": "bpf_lsm_file_open"},
    "syscall": {"flags": BPF_F_SLEEPABLE},
    "struct_ops": {"expect": refusal.ENOTSUPP},   # exists: refuses an ops table of none
    "ext": {"expect": errno.EINVAL},              # exists: refuses an extension of nothing
}
NOT_PROGRAMS = ("unspec",)
# What the verifier says of a helper a program may not call: unknown to the kernel ("invalid func
# unknown#250"), or not for this program type ("unknown func" before Linux 6.x, then "program of
# this type cannot use helper").
HELPER_REFUSED = ("invalid func ", "unknown func ", "cannot use helper ")


@dataclass(frozen=True)
class Allowed:
    """Whether this kernel allows `thing`; false, it says why (`error`, a bpfkit error) in one
    sentence when shown, so a lesson's `if` has its reason on the page."""
    thing: str
    ok: bool
    error: BpfkitError | None = None

    def __bool__(self) -> bool:
        return self.ok

    @property
    def why(self) -> str:
        return "" if self.error is None else self.error.what

    @property
    def reason(self) -> str:
        """A few words, as in a row of map_types() or program_types()."""
        return "" if self.error is None else refusal.reason(self.error)

    def __repr__(self) -> str:
        if self.ok:
            return f"This kernel allows {self.thing}."
        head = self.why.split(": ")[0].rstrip(".")
        return f"{head} ({self.reason}); the parts that need them are skipped."


# -- program types ------------------------------------------------------------------------------

def _load(type_name: str, code: bytes, log: bool = False) -> tuple[int | None, int, str]:
    """`code` loaded as a program of `type_name`, with what the type needs: (its fd or None,
    the kernel's errno or 0, the verifier's log where `log`). A probe wants the log of a
    refusal as much as the errno, so the refusal is an answer here, not an exception."""
    needs = NEEDS.get(type_name, {})
    opts = ProgLoadOpts(sz=ct.sizeof(ProgLoadOpts), prog_flags=needs.get("flags", 0))
    if "attach" in needs:
        attach = (btf.vmlinux_enum("bpf_attach_type") or {}).get(needs["attach"])
        if attach is None:   # the kernel's BTF does not name it: too old for the type
            return None, errno.EINVAL, ""
        opts.expected_attach_type = attach
    if "function" in needs:
        opts.attach_btf_id = btf.vmlinux_function_id(needs["function"])
        if not opts.attach_btf_id:
            raise NotAllowedHere(f"not tried: the kernel's BTF has no {needs['function']}() to "
                                 "attach a probe to")
    said = ct.create_string_buffer(64 * 1024) if log else None
    if said is not None:
        opts.log_level, opts.log_size, opts.log_buf = 1, len(said), ct.addressof(said)
    insns = ct.create_string_buffer(code, len(code))
    fd, err = None, 0
    try:
        with quiet():
            fd = lib.bpf_prog_load(kernel.PROG_TYPES.index(type_name), b"probe", b"GPL", insns,
                                   len(code) // 8, ct.byref(opts))
    except OSError as e:
        err = e.errno
    return fd, err, said.value.decode(errors="replace") if said is not None else ""


def _load_nothing(type_name: str) -> None:
    """Load `r0 = 0; exit` as a program of this type and close it; raise the kernel's refusal."""
    err = refusal.pretended("program", type_name)
    if not err:
        fd, err, _ = _load(type_name, NOTHING)
        if fd is not None:
            os.close(fd)
            return
        if err == NEEDS.get(type_name, {}).get("expect"):
            return
    raise refusal.explain(err, f"{type_name} programs")


def _call_helper(type_name: str, number: int, name: str) -> None:
    """Load a program of this type that calls helper `number` and close it; raise when this
    kernel does not let such a program call it. The verifier checks the helper before its
    arguments, so any other complaint means the helper is there (as libbpf's own probe reads it)."""
    err = refusal.pretended("program", type_name) or refusal.pretended("helper", name)
    if not err:
        code = struct.pack("<BBhi", 0x85, 0, 0, number) + NOTHING
        fd, refused, said = _load(type_name, code, log=True)
        if fd is not None:
            os.close(fd)
            return
        words = next((line for line in said.splitlines() if any(w in line for w in HELPER_REFUSED)),
                      None)
        if words is not None:
            raise NotAllowedHere(f"A {type_name} program may not call {name}() on this kernel: the "
                                 f"verifier said \"{words.strip()}\".",
                                 "another program type may call it (bpfkit.helpers(\"xdp\"), say), "
                                 "or a newer kernel.", errno=refused,
                                 short=f"not for {type_name} programs here: {words.strip()}")
        if said.strip() or refused not in (errno.EPERM, errno.EACCES):
            return
        err = refused
    raise refusal.explain(err, f"{name}() in {type_name} programs")


def program_types() -> pd.DataFrame:
    """Every program type this kernel defines, one row each, each tried for real: the smallest
    program of the type is loaded (for an LSM or tracing type, at a real kernel function) and
    closed at once. Columns: type, number, supported, error (why not, in words)."""
    known = btf.vmlinux_enum("bpf_prog_type")
    names = list(kernel.PROG_TYPES)
    if known:
        by_number = {v: k.removeprefix("BPF_PROG_TYPE_").lower() for k, v in known.items()
                     if not k.startswith("__")}
        names = [by_number[n] for n in sorted(by_number)]
    rows = []
    for name in names:
        if name in NOT_PROGRAMS:
            continue
        if name not in kernel.PROG_TYPES:
            rows.append({"type": name, "number": None, "supported": False,
                         "error": "a type newer than bpfkit: not tried"})
            continue
        supported, error = refusal.attempt(lambda: _load_nothing(name))
        rows.append({"type": name, "number": kernel.PROG_TYPES.index(name),
                     "supported": supported, "error": error})
    return pd.DataFrame(rows)


def helpers(program_type: str = "tracepoint") -> pd.DataFrame:
    """Every helper this kernel defines (`enum bpf_func_id`, from its BTF), one row each, tried
    for real from a program of `program_type`: may such a program call it here? Columns: helper,
    number, supported, error (the verifier's words where it may not)."""
    if program_type not in kernel.PROG_TYPES[1:]:
        raise NotFound(f"There is no program type {program_type!r}.",
                       (did_you_mean(program_type, kernel.PROG_TYPES[1:]) or "")
                       + " bpfkit.program_types() lists them.")
    known = btf.vmlinux_enum("bpf_func_id") or {}
    kind_refused = refusal.attempt(lambda: _load_nothing(program_type))[1]   # then every row is that
    rows = []
    for full, number in sorted(known.items(), key=lambda kv: kv[1]):
        if number <= 0 or full.startswith("__"):
            continue
        name = "bpf_" + full.removeprefix("BPF_FUNC_")
        supported, error = ((False, kind_refused) if kind_refused else
                             refusal.attempt(lambda: _call_helper(program_type, number, name)))
        rows.append({"helper": name, "number": number, "supported": supported, "error": error})
    return pd.DataFrame(rows, columns=["helper", "number", "supported", "error"])


# -- one feature, by name ------------------------------------------------------------------------

def _kprobes() -> None:
    err = refusal.pretended("feature", "kprobes")
    if err:
        raise refusal.explain(err, "kprobes")
    if not system.kprobes_available():
        raise refusal.explain(errno.ENOENT, "kprobes")


# A program using arena pointers: clang must turn each use of an `__arena` pointer into the
# kernel's address-space casts, which it does where it defines __BPF_FEATURE_ADDR_SPACE_CAST
# (LLVM 19 and later; LLVM 18 compiles the same C into plain loads the verifier refuses).
ARENA_PROBE = r"""
#ifndef __BPF_FEATURE_ADDR_SPACE_CAST
#error "no address-space casts for __arena pointers"
#endif
#define __arena __attribute__((address_space(1)))
unsigned long long __arena *counter;
__attribute__((section("syscall"), used)) int bump(void *ctx) {
    if (!counter)
        return 0;
    *counter += 1;
    return *counter;
}
"""


@functools.lru_cache(maxsize=1)
def _clang_arena() -> BpfkitError | None:
    """Compile ARENA_PROBE with the clang %%bpfobject uses (once a process: the toolchain does not
    change under a running notebook); the error that says why it cannot, or None."""
    import subprocess
    import tempfile
    from . import bpfobject
    clang = bpfobject.clang()
    if clang is None:
        return SetupError("This machine has no clang to compile arena programs.", bpfobject.INSTALL,
                          short="no clang")
    said = subprocess.run([clang, "--version"], capture_output=True, text=True).stdout
    version = (said.splitlines() or ["clang"])[0].strip()
    with tempfile.TemporaryDirectory(prefix="bpfkit-arena-") as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(ARENA_PROBE)
        done = subprocess.run([clang, "-O2", "-target", "bpf", "-mcpu=v3", "-c", src,
                               "-o", os.path.join(tmp, "probe.o")], capture_output=True, text=True)
    if done.returncode == 0:
        return None
    short = "no address-space casts" if "address-space casts" in done.stderr else "it failed"
    return SetupError(f"This machine's clang ({version}) cannot compile arena programs: {short} "
                      "(pointers into an arena need LLVM 19 or later).",
                      "install clang 19 or later (Debian 13 has it; Ubuntu 24.04: apt-get install "
                      "clang-19) and run the lesson again.",
                      detail=done.stderr.strip()[-2000:], short=f"{short}; LLVM 19 and later have them")


def _arena_programs() -> None:
    err = refusal.pretended("feature", "arena_programs")
    if err:
        raise SetupError("This machine's clang cannot compile arena programs (pretended).",
                         "unset BPFKIT_PRETEND_REFUSED.", errno=err, short="pretended")
    failed = _clang_arena()
    if failed is not None:
        raise failed


FEATURES = {"kprobes": ("kprobes", _kprobes), "arena_programs": ("arena programs", _arena_programs)}


def _resolve(feature: str):
    """(thing in words, the trial) for "arena", "arena map", "lsm program", "kprobes"."""
    words = feature.strip().lower().replace("-", "_").split()
    if not words:
        raise UsageError("allowed() needs a feature: a map type, a program type or 'kprobes'.",
                         'for example bpfkit.allowed("arena map") or bpfkit.allowed("lsm program").')
    whole = "_".join(words)
    for known in (whole, whole + "s"):     # "arena programs", "arena program"
        if known in FEATURES:
            return FEATURES[known]
    kind = words[-1].rstrip("s") if len(words) > 1 else ""
    name = "_".join(words[:-1]) if kind in ("map", "program") else whole
    if kind in ("", "map") and name in maptypes.BY_NAME:
        mt = maptypes.get(name)
        return f"{name} maps", lambda: make_and_close(mt)
    if kind in ("", "program") and name in kernel.PROG_TYPES[1:]:
        return f"{name} programs", lambda: _load_nothing(name)
    choices = (list(maptypes.BY_NAME) + [f"{p} program" for p in kernel.PROG_TYPES[1:]]
               + [f.replace("_", " ") for f in FEATURES])
    raise NotFound(f"bpfkit knows no feature {feature!r}.",
                   (did_you_mean(name, choices) + " " if did_you_mean(name, choices) else "")
                   + "Name a map type (\"arena map\"), a program type (\"lsm program\") or "
                   "\"kprobes\"; bpfkit.map_types() and bpfkit.program_types() list them.")


# -- a notebook cell that needs a feature ---------------------------------------------------------

NEEDS_LINE = re.compile(r"^\s*#\s*needs:\s*(?P<features>[^#]*?)\s*$", re.IGNORECASE)


def needs_of(first_line: str) -> list[str] | None:
    """The features a cell's first line `# needs: arena map, lsm program` asks for, or None."""
    m = NEEDS_LINE.match(first_line)
    if m is None:
        return None
    return [f.strip() for f in m.group("features").split(",") if f.strip()]


def skipped(wanted: list[str]) -> str:
    """What a cell whose `# needs:` the kernel refuses runs instead: one line saying so (an
    unknown feature raises its own error here, at the cell, in words). Returns what was
    refused, in words ("arena maps")."""
    for feature in wanted:
        here = allowed(feature)
        if not here:
            if isinstance(here.error, SetupError):   # the machine's toolchain, not the kernel
                print(f"Skipped: {here.why}")
            else:
                print(f"Skipped: this kernel refuses {here.thing} ({here.reason}).")
            return here.thing
    print(f"Skipped: this cell needs {', '.join(wanted)}, which the kernel refused when the cell "
          "was read; run it again.")
    return ", ".join(wanted)


def allowed(feature: str) -> Allowed:
    """Does this kernel allow `feature` ("arena map", "lsm program", "kprobes")? Tried for real,
    each time it is asked; never raises for a refusal. Shown in a notebook, the answer is one
    sentence, with the kernel's reason where it says no."""
    thing, trial = _resolve(feature)
    try:
        trial()
    except BpfkitError as e:
        return Allowed(thing, False, e)
    except Exception as e:   # whatever else the try met is still an answer, in words
        return Allowed(thing, False, NotAllowedHere(
            f"Trying {thing} failed: {type(e).__name__}: {e}", "`python -m bpfkit doctor` shows "
            "this kernel's facts.", errno=getattr(e, "errno", None),
            short=f"{type(e).__name__}: {e}"))
    return Allowed(thing, True)
