"""Which exercises a learner has solved: every check records its outcome in one small JSON file,
which `python -m bpfkit progress` and the last lesson show as a table.

The file sits next to the lessons when the kit runs from its own folder (`make lab`, the VM): the
notebook kernels (root) and the learner's shell then read and write the same record.
`BPFKIT_PROGRESS` names another file (the tests use their own).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

KIT = Path(__file__).resolve().parents[2]


def path() -> Path:
    if os.environ.get("BPFKIT_PROGRESS"):
        return Path(os.environ["BPFKIT_PROGRESS"])
    if (KIT / "notebooks").is_dir():
        return KIT / ".progress.json"
    return Path.home() / ".local" / "share" / "bpfkit" / "progress.json"


def read() -> dict[str, dict]:
    """{exercise title: {"tries", "solved", "last" (the latest outcome), "when", "first" (the first
    try's time), "solved_after_s" (seconds from the first try to the first solved one)}}; {} if none."""
    try:
        data = json.loads(path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(exercise: str, solved: bool) -> int:
    """Add one try of `exercise`, and return its tries so far (this one included): a check's
    hints grow with them. Never fails a check: a record that cannot be written is skipped (a
    read-only folder, a full disk), and the try counts as the first."""
    file = path()
    tries = 1
    with contextlib.suppress(OSError):
        file.parent.mkdir(parents=True, exist_ok=True)
        with open(file.with_name(file.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two notebooks checking at once both count
            data = read()
            entry = data.get(exercise) if isinstance(data.get(exercise), dict) else {}
            tries = int(entry.get("tries", 0)) + 1
            now = time.time()
            first = entry.get("first", now) if isinstance(entry.get("first"), (int, float)) else now
            data[exercise] = {"tries": tries,
                              "solved": bool(entry.get("solved")) or solved,
                              "last": "solved" if solved else "not yet",
                              "when": time.strftime("%Y-%m-%d %H:%M"),
                              # from the first try to the first solved one: what an exercise
                              # took a learner, which the instructor notes' minutes are set against
                              "first": first}
            if "solved_after_s" in entry:
                data[exercise]["solved_after_s"] = entry["solved_after_s"]
            elif solved:
                data[exercise]["solved_after_s"] = round(now - first)
            fresh = file.with_name(file.name + ".new")
            fresh.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
            os.chmod(fresh, 0o644)  # the learner's shell reads what the root kernel wrote
            fresh.replace(file)
    return tries


def clear() -> bool:
    """Forget every outcome; True if there was a record."""
    try:
        path().unlink()
        return True
    except FileNotFoundError:
        return False
