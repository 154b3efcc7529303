"""What each cell of a lesson makes in the kernel, found by running it, and its `# needs:` line.

The one place that knows what a lesson's parts need is the lesson itself: each cell that makes a
map or loads a program says so on its first line (`# needs: hash map, tracepoint program`), where
a learner reads it, `# needs:` skips it where the kernel refuses (bpfkit/magic.py), the doctor
lists it, and the refusal matrix refuses each type it names (tests/test_refusal_matrix.py). Those
lines are not guessed from reading the code: `record()` runs the notebook with the kit's second
test switch (BPFKIT_RECORD_USED, bpfkit/access/refusal.py) and collects, cell by cell, every map
type the kit made and every program type it loaded; `stale()` is what a line misses, and

    python tests/lesson_needs.py 01_hash_map_counter ...     # (as root, on the real kernel)

writes the lines into the lesson and its solution. Version numbers would not do: kernels of one
version differ (one refuses arena maps to root, another allows them).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import nbformat

from bpfkit.loader import features

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))


def feature(used: str) -> str:
    """"map:hash" -> "hash map", "program:tracepoint" -> "tracepoint program"."""
    kind, _, name = used.partition(":")
    return f"{name} {kind}"


def declared(cell) -> list[str]:
    """The features a cell's `# needs:` line names (none without one)."""
    return features.needs_of(cell.source.partition("\n")[0]) or [] if cell.cell_type == "code" else []


def record(path, timeout: int = 300) -> dict[int, list[str]]:
    """Run the notebook once in a fresh kernel (tests/notebook_runs.py) with the record switch
    on: {cell index: the features it used, "hash map", "tracepoint program", in order}."""
    from notebook_runs import execute
    fd, log = tempfile.mkstemp(prefix="bpfkit-used-")
    os.close(fd)
    used: dict[int, list[str]] = {}
    seen = 0

    def after_cell(index, cell):
        nonlocal seen
        text = Path(log).read_text()
        for line in text[seen:].splitlines():
            if line and feature(line) not in used.setdefault(index, []):
                used[index].append(feature(line))
        seen = len(text)
    try:
        execute(path, timeout, after_cell=after_cell, kernel_env={"BPFKIT_RECORD_USED": log})
    finally:
        os.unlink(log)
    return {i: u for i, u in used.items() if u}


def stale(path, used: dict[int, list[str]]) -> list[str]:
    """Each cell whose `# needs:` line misses a type it made, in words."""
    nb = nbformat.read(str(path), as_version=4)
    return [f"cell {i} ({nb.cells[i].source.splitlines()[0][:50]!r}) made {sorted(set(u) - set(declared(nb.cells[i])))} "
            f"but its first line is not '# needs: {', '.join(sorted(set(u) | set(declared(nb.cells[i]))))}'"
            for i, u in sorted(used.items()) if set(u) - set(declared(nb.cells[i]))]


def needs_of_notebook(path) -> list[str]:
    """Every map and program type the notebook's `# needs:` lines name, in order."""
    nb = nbformat.read(str(path), as_version=4)
    found = []
    for cell in nb.cells:
        for f in declared(cell):
            if f.endswith((" map", " program")) and f not in found:
                found.append(f)
    return found


def write(path, used: dict[int, list[str]]) -> int:
    """Put each cell's features in its `# needs:` line (kept ones first); the number changed.
    The file is rewritten as the kit's notebooks are stored (JSON, indent 1), so a diff shows
    the lines and nothing else."""
    path = Path(path)
    raw = path.read_text()
    nb = json.loads(raw)
    changed = 0
    for i, u in used.items():
        cell = nb["cells"][i]
        source = "".join(cell["source"])
        have = features.needs_of(source.partition("\n")[0]) or []
        want = have + [f for f in u if f not in have]
        if want == have:
            continue
        body = source.partition("\n")[2] if have else source
        cell["source"] = f"# needs: {', '.join(want)}\n{body}".splitlines(keepends=True)
        changed += 1
    if changed:
        ascii_only = json.dumps(json.loads(raw), indent=1) + "\n" == raw
        path.write_text(json.dumps(nb, indent=1, ensure_ascii=ascii_only) + "\n")
    return changed


if __name__ == "__main__":
    from notebook_runs import notebook_path
    for stem in sys.argv[1:]:
        path = notebook_path(stem)
        used = record(path)
        print(f"{stem}: {used}; wrote {write(path, used)} lines", flush=True)
