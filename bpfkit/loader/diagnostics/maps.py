"""BCC's words when the kernel refuses to create a map a program declares ("could not open bpf
map: NAME, error: ..."), put as what to change in the declaration; and where the refusal is the
kernel's own (a map type it forbids or lacks), the same words `create_map` gives for that type,
through `refusal.explain`, whether the kernel said it or the test switch pretended it."""
from __future__ import annotations

import errno
import os
import re

from ...access import refusal
from ...core import maptypes
from ...core.errors import BpfkitError, LoadError

_FAILED = re.compile(r"could not open bpf map: (\w+), error: (.*)$", re.M)
# BCC's table-type strings that are not the kernel's names (BCC's frontend_action.cc).
_BCC_TYPES = {"histogram": "hash", "prog": "prog_array", "perf_output": "perf_event_array",
              "stacktrace": "stack_trace", "extern": ""}
_ERRNO_OF = {os.strerror(n): n for n in (errno.EPERM, errno.EACCES, errno.EINVAL, errno.EOPNOTSUPP,
                                          errno.ENOSYS, errno.E2BIG, errno.ENOMEM)}


def declared_type(source: str, name: str) -> str | None:
    """The kernel's name of the map type `name` is declared as in BCC C (`BPF_HASH(name`,
    `BPF_TABLE("lru_hash", key, leaf, name`), or None where the text does not say."""
    n = re.escape(name)
    table = re.search(r'\bBPF_TABLE\w*\(\s*"(\w+)"\s*,[^,]*,[^,]*,\s*' + n + r'\b', source)
    if table:
        kind = _BCC_TYPES.get(table.group(1), table.group(1))
        return kind if kind in maptypes.BY_NAME else None
    macro = re.search(r'\b(BPF_\w+)\(\s*' + n + r'\b', source)
    if macro:
        by_macro = {mt.bcc: mt.name for mt in maptypes.BY_NAME.values() if mt.bcc}
        by_macro.update({"BPF_HISTOGRAM": "hash", "BPF_PERF_OUTPUT": "perf_event_array"})
        return by_macro.get(macro.group(1))
    return None


def refused(name: str, kind: str, err: int, where: str) -> BpfkitError | None:
    """The error for map `name` (of type `kind`) that the kernel refused with `err`, in the words
    of `refusal.explain` (what the learner meets for that type everywhere), or None where `err`
    is no refusal of the type itself (a wrong size, too many entries)."""
    mt = maptypes.get(kind)
    e = refusal.explain(err, f"{kind} maps", since=mt.since, fallback=lambda: None)
    if e is not None:
        e.what = f"Map {name!r} declared in {where} cannot be made. " + e.what
    return e


def map_error(output: str, where: str, source: str = "") -> BpfkitError | None:
    """The error for the first map BCC could not create, in `output`; None if none failed."""
    failed = _FAILED.search(output)
    if not failed:
        return None
    name, why = failed.group(1), failed.group(2).strip()
    kind, err = declared_type(source, name), _ERRNO_OF.get(why.split(" (")[0].strip().rstrip("."))
    if kind and err and err not in (errno.E2BIG, errno.ENOMEM) and not (
            err == errno.EINVAL and f"BPF_MAP_TYPE_{kind.upper()}" in _kernel_map_types()):
        said = refused(name, kind, err, where)
        if said is not None:
            return said
    low = why.lower()
    if "argument list too long" in low or "cannot allocate memory" in low:
        hint = (f"map {name!r} asks for more entries or bigger values than the kernel allows or has "
                "memory for: lower its max_entries (the last argument of BPF_HASH/BPF_ARRAY).")
    elif "operation not permitted" in low:
        from ...access import system
        hint = system.privilege_hint()
    else:
        hint = (f"check how {name!r} is declared: max_entries must be at least 1, and the key and "
                "value types must suit the map type (e.g. an array's key is a u32 index).")
    return LoadError(f"The kernel refused to create map {name!r} declared in {where}: {why}.", hint)


def _kernel_map_types() -> dict:
    """The map types this kernel's BTF names (an EINVAL for one of them is a wrong shape, not a
    missing type); empty where there is no BTF, so EINVAL then reads as a missing type."""
    from ...maps import btf
    return btf.vmlinux_enum("bpf_map_type") or {}
