"""BCC's words when the kernel refuses to create a map a program declares ("could not open bpf
map: NAME, error: ..."), put as what to change in the declaration."""
from __future__ import annotations

import re

from ...core.errors import LoadError

_FAILED = re.compile(r"could not open bpf map: (\w+), error: (.*)$", re.M)


def map_error(output: str, where: str) -> LoadError | None:
    """The error for the first map BCC could not create, in `output`; None if none failed."""
    failed = _FAILED.search(output)
    if not failed:
        return None
    name, why = failed.group(1), failed.group(2).strip()
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
