"""`python -m bpfkit doctor | counter`: the kit from a terminal."""
from __future__ import annotations

import argparse
import sys
import time

from .errors import BpfkitError
from .workload import user_name


def counter(interval: float, count: int | None) -> int:
    """The seed's `while True` loop: the execve count per uid, printed every interval."""
    from .program import load
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bpfkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check that this machine can run the lessons")
    c = sub.add_parser("counter", help="print execve() calls per user, live")
    c.add_argument("--interval", type=float, default=2.0, help="seconds between prints")
    c.add_argument("--count", type=int, default=None, help="stop after this many prints")
    args = parser.parse_args(argv)
    try:
        if args.command == "doctor":
            from .system import doctor
            return doctor()
        return counter(args.interval, args.count)
    except BpfkitError as e:
        print(e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
