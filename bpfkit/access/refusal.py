"""Why the kernel said no, in words true on this machine.

The kernel answers a refused bpf() call with a bare errno, and the same number means different
things. EPERM to a process that lacks CAP_BPF is a matter of privilege, and root fixes it; EPERM to
a process holding every capability BPF asks for is the kernel's own policy (lockdown, a security
module, a BPF LSM program), which nothing the learner types can change. EINVAL, EOPNOTSUPP and the
kernel's ENOTSUPP from a probe mean this kernel lacks the feature (older than it, built without it,
or its JIT cannot do it). Machines of one kind differ here (one refuses `arena` maps to root,
another allows all 33 types), so every door of the kit that meets a refusal asks `explain()`, and
every probe turns one into a row with `reason()` instead of an exception.

`pretended()` is the test-only switch that makes the kit act as if the kernel had refused
something, so the refusal paths run on a kernel that allows everything:

    BPFKIT_PRETEND_REFUSED="map:arena,program:lsm:EINVAL"   # kind:name[:ERRNO], EPERM if left out;
                                                          # kinds: map, program, helper, feature

`used()` is where the kit makes a map or loads a program for a lesson (not where a probe tries
one): it answers as `pretended()` does, and also writes "kind:name" to the file named by
`BPFKIT_RECORD_USED`, the second test-only switch. A test runs a lesson with it set and so finds,
by trying rather than by reading the lesson, which map and program types each cell makes: what
the cell's `# needs:` line must name (tests/test_refusal_matrix.py).
"""
from __future__ import annotations

import contextlib
import contextvars
import errno
import os

from . import system
from ..core.errors import BpfkitError, NotAllowedHere, PrivilegeError, UsageError

PRETEND = "BPFKIT_PRETEND_REFUSED"
RECORD = "BPFKIT_RECORD_USED"
_probing = contextvars.ContextVar("bpfkit_probing", default=False)
ENOTSUPP = 524  # the kernel's own "not supported", which errno does not name

# Capabilities a bpf() call may ask for, by what the kernel checks (CAP_NET_ADMIN for network
# maps and hooks, CAP_SYS_ADMIN for some types and as the old catch-all).
CAPABILITIES = {"CAP_BPF": system.CAP_BPF, "CAP_PERFMON": system.CAP_PERFMON,
                "CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": system.CAP_SYS_ADMIN}
ABSENT = (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP, errno.ENOSYS, errno.ENOENT)


def pretended(kind: str, name: str) -> int:
    """The errno the test switch makes the kernel answer for `name` of `kind`, or 0.

    Read at each call, so a test can set the variable in a running process."""
    for item in filter(None, (s.strip() for s in os.environ.get(PRETEND, "").split(","))):
        parts = item.split(":")
        if len(parts) < 2 or parts[0] != kind or parts[1].lower() != name.lower():
            continue
        code = parts[2].upper() if len(parts) > 2 else "EPERM"
        number = ENOTSUPP if code == "ENOTSUPP" else getattr(errno, code, None)
        if number is None and not code.isdigit():
            raise UsageError(f"{PRETEND} names no errno in {item!r}.",
                             "write kind:name[:ERRNO], e.g. map:arena:EPERM or program:lsm:EINVAL.")
        return number or int(code)
    return 0


def used(kind: str, name: str) -> int:
    """`pretended(kind, name)`, at a place the kit makes or loads `name` for real: recorded in
    the file `BPFKIT_RECORD_USED` names (when set), unless a probe is asking (`probing()`)."""
    path = os.environ.get(RECORD)
    if path and name and not _probing.get():
        with open(path, "a") as out:
            out.write(f"{kind}:{name}\n")
    return pretended(kind, name)


@contextlib.contextmanager
def probing():
    """Inside, what the kit makes is a probe's try (`allowed()`, `map_types()`), which the
    lesson does not need: `used()` records none of it."""
    token = _probing.set(True)
    try:
        yield
    finally:
        _probing.reset(token)


def errno_name(err: int) -> str:
    if err in (ENOTSUPP, errno.EOPNOTSUPP):   # errorcode says ENOTSUP for 95; the kernel, EOPNOTSUPP
        return "ENOTSUPP" if err == ENOTSUPP else "EOPNOTSUPP"
    return errno.errorcode.get(err, str(err))


def strerror(err: int) -> str:
    return "Not supported" if err == ENOTSUPP else os.strerror(err)


def missing_capabilities() -> list[str]:
    caps = system.effective_caps()
    return [name for name, bit in CAPABILITIES.items() if not caps & (1 << bit)]


def policy() -> str:
    """What on this machine can forbid BPF to root, in one sentence's worth of clauses."""
    said = []
    mode = system.lockdown()
    if mode is None:
        said.append("lockdown: unknown (mount securityfs to see it: "
                    "sudo mount -t securityfs securityfs /sys/kernel/security)")
    else:
        said.append(f"lockdown is {'off' if mode == 'none' else f'in {mode} mode'}")
    modules = system.security_modules()
    if modules is not None:
        said.append(f"the security modules are {','.join(modules)}"
                    + (" (bpf among them: a BPF LSM program may refuse bpf() calls)"
                       if "bpf" in modules else ""))
    state = system.jit()
    if state is not None:
        said.append(f"the BPF JIT is {state}")
    return "; ".join(said)


def how_to_tell() -> str:
    return ("`dmesg | grep -i lockdown` shows each refusal lockdown made; `bpftool prog show` "
            "lists BPF LSM programs (type lsm), which can refuse any bpf() call; a feature the "
            "JIT lacks is refused with EOPNOTSUPP instead; `python -m bpfkit doctor` shows "
            "lockdown, the security modules and the JIT")


def explain(err: int, thing: str, *, since: str = "", fallback=None):
    """The error for a refused `thing` ("an arena map", "an LSM program"), or `fallback` (a
    callable of no arguments giving one) where the errno is no refusal of the feature itself."""
    if err in (errno.EPERM, errno.EACCES):
        if system.missing_privileges():
            return PrivilegeError(f"The kernel refused {thing}: {strerror(err)}. "
                                  + system.privilege_problem(), system.privilege_hint(), errno=err)
        missing = missing_capabilities()
        if missing:   # network maps and hooks ask for CAP_NET_ADMIN too
            return PrivilegeError(f"The kernel refused {thing}: {strerror(err)}. This process lacks "
                                  f"{' and '.join(missing)}, which some map types and hooks ask for.",
                                  system.privilege_hint(), errno=err)
        return NotAllowedHere(
            f"This kernel does not allow {thing} here: it answered \"{strerror(err)}\" "
            f"({errno_name(err)}) to a process that holds {', '.join(CAPABILITIES)}, so no "
            f"privilege is missing. Its own policy forbids it: {policy()}.",
            f"nothing in your code can change this; the lesson skips what needs it, and a machine "
            f"whose kernel allows it runs that part. To tell what refused: {how_to_tell()}.",
            errno=err, short=f"{errno_name(err)} to a process with every capability: the "
                             "kernel's own policy, such as lockdown or a security module")
    if err in ABSENT:
        return NotAllowedHere(
            f"This kernel does not have {thing}: it answered \"{strerror(err)}\" "
            f"({errno_name(err)}).",
            ("it is older than Linux " + since + ", or " if since else "it is ")
            + "built without it, or its JIT cannot do it on this architecture; the lesson skips "
            "what needs it. `python -m bpfkit doctor` shows this kernel's facts.", errno=err,
            short=f"{errno_name(err)}: " + (f"older than Linux {since}, or " if since else "")
                  + "built without it")
    if fallback is not None:
        return fallback()
    return NotAllowedHere(f"The kernel refused {thing}: {strerror(err)} ({errno_name(err)}).",
                          "`python -m bpfkit doctor` shows this kernel's facts.", errno=err,
                          short=f"{errno_name(err)}: {strerror(err)}")


def reason(exc: BaseException) -> str:
    """One line for a probe's row: why the attempt failed, whatever it raised."""
    short = getattr(exc, "short", "")
    if short:
        return short
    words = getattr(exc, "what", None) or str(exc) or type(exc).__name__
    if not isinstance(exc, (BpfkitError, OSError)):
        words = f"{type(exc).__name__}: {words}"
    err = getattr(exc, "errno", None)
    if isinstance(err, int) and err and errno_name(err) not in words:
        words = f"{words} ({errno_name(err)})"
    return " ".join(words.split())


def attempt(trial) -> tuple[bool, str]:
    """(True, "") when `trial()` returns, else (False, why in words): what every probe of the
    kit turns a try into, so one refused feature is a row, never an exception that takes the
    whole table (and every lesson reading it) down. Only Stop (KeyboardInterrupt) gets through."""
    try:
        trial()
        return True, ""
    except Exception as e:   # BCC and ctypes raise bare Exceptions too: still an answer
        return False, reason(e)
