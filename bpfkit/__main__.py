"""`python -m bpfkit doctor | counter | map PIN | reset | progress`: the kit from a terminal."""
from __future__ import annotations

import argparse
import json
import sys
import time

from .core.errors import BpfkitError
from .lab.children import user_name


def counter(interval: float, count: int | None) -> int:
    """The seed's `while True` loop: the execve count per uid, printed every interval."""
    from .loader.program import load
    with load("counter") as prog:
        table = prog["counter_table"]
        print(f"Counting execve() per user every {interval:g}s; Ctrl-C stops.", flush=True)
        n = 0
        try:
            while count is None or n < count:
                time.sleep(interval)
                n += 1
                rows = sorted(table.items())
                print("\t".join(f"{user_name(uid)} (uid {uid}): {c}" for uid, c in rows) or "(no execve yet)",
                      flush=True)
        except KeyboardInterrupt:
            pass
    return 0


def show_pinned(pin: str, as_json: bool = False) -> int:
    """Print the map pinned at `pin` (a path in bpffs, or a name under /sys/fs/bpf): its kernel
    id, name and type, then every entry. This process did not make the map: it opens it by its
    pin, as any other program could, and reads the same kernel object the maker reads."""
    from .maps import open_pinned
    from .maps.pins import path_of
    with open_pinned(pin) as m:
        frame = m.frame()
        keys = [k for k in frame.attrs.get("key_columns", []) if k in frame.columns]
        if keys and len(frame):
            frame = frame.sort_values(keys, ignore_index=True)
        about = {"pin": str(path_of(pin)), "id": m.id, "name": m.name, "type": m.type,
                 "key_size": m.key_size, "value_size": m.value_size,
                 "max_entries": m.max_entries}
        if as_json:
            rows = [{k: (v.hex() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
                     for k, v in row.items()} for row in frame.to_dict("records")]
            print(json.dumps({**about, "entries": rows}))
        else:
            print(f"map {m.name!r} ({m.type}, id {m.id}) pinned at {about['pin']}: "
                  f"{len(frame)} entr{'y' if len(frame) == 1 else 'ies'}")
            if len(frame):
                print(frame.to_string(index=False))
    return 0


def reset(keep_lessons: bool, forget_progress: bool) -> int:
    from .lessons import progress
    from . import reset as kit
    if not keep_lessons:
        try:
            lessons = kit.lessons()
        except BpfkitError as e:
            print(f"lessons: {e}", file=sys.stderr)
            return 1
        if lessons["restored"]:
            print(f"lessons: put back {len(lessons['restored'])} as shipped; yours are in {lessons['backup'][0]}")
        else:
            print("lessons: all as shipped already")
    left = kit.leftovers()
    for kind in (k for k in left if k != "held"):
        print(f"{kind}: removed {', '.join(left[kind])}" if left[kind] else f"{kind}: nothing left behind")
    for line in left["held"]:
        print(f"still loaded: {line}")
    if forget_progress:
        print("progress: forgotten" if progress.clear() else "progress: none recorded")
    return 0


def show_progress() -> int:
    from .lessons.checker import progress
    table = progress()
    print(table.to_string(index=False))
    solved = int((table["status"] == "solved").sum())
    print(f"\n{solved} of {len(table)} exercises solved")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bpfkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check that this machine can run the lessons, and list the "
                                     "lesson parts this kernel will skip, and why")
    c = sub.add_parser("counter", help="print execve() calls per user, live")
    c.add_argument("--interval", type=float, default=2.0, help="seconds between prints")
    c.add_argument("--count", type=int, default=None, help="stop after this many prints")
    p = sub.add_parser("map", help="print a pinned map's entries, opened from this process")
    p.add_argument("pin", help="the pin: a path in /sys/fs/bpf, or a name under it")
    p.add_argument("--json", action="store_true", help="print the map as one JSON object")
    r = sub.add_parser("reset", help="put the lessons back as shipped (keeping a copy of yours) and free "
                                     "what the kit left in the kernel")
    r.add_argument("--keep-lessons", action="store_true", help="only free what the kit left in the kernel")
    r.add_argument("--progress", action="store_true", help="also forget which exercises were solved")
    sub.add_parser("progress", help="which exercises are solved")
    args = parser.parse_args(argv)
    try:
        if args.command == "reset":
            return reset(args.keep_lessons, args.progress)
        if args.command == "progress":
            return show_progress()
        if args.command == "doctor":
            from .lessons.here import doctor
            return doctor()
        if args.command == "map":
            return show_pinned(args.pin, args.json)
        return counter(args.interval, args.count)
    except BpfkitError as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
