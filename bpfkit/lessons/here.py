"""Which lessons run fully on this kernel, and which parts of the others it will skip, and why.

What a lesson's parts need is written once, in the lesson: each cell that makes a map or loads a
program starts with `# needs: hash map, tracepoint program` (found by running the lesson and
recording what each cell made: tests/lesson_needs.py; the refusal matrix checks each). This reads
those lines with the heading of the part each is in, and asks the running kernel about each
feature for real (`features.allowed`, each once): no version numbers, since kernels of one
version differ. `python -m bpfkit doctor` and lesson 00 show it.
"""
from __future__ import annotations

import json
import sys

import pandas as pd

from ..core import catalogue
from ..access import system
from ..loader import features
from .progress import KIT


def parts(stem: str) -> list[tuple[str, list[str]]]:
    """(the heading of a part, the features a cell of it needs), for each `# needs:` cell of the
    lesson `stem`, in order; [] where the notebook is not here (an installed kit without them)."""
    path = catalogue.BY_STEM[stem].notebook(KIT)
    if not path.is_file():
        return []
    heading, found = catalogue.BY_STEM[stem].title, []
    for cell in json.loads(path.read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            heads = [line.lstrip("#").strip() for line in source.splitlines() if line.startswith("## ")]
            heading = heads[-1] if heads else heading
        elif (wanted := features.needs_of(source.partition("\n")[0])):
            found.append((heading, wanted))
    return found


def lessons_here() -> pd.DataFrame:
    """One row per lesson part this kernel will skip (lesson, part, refused, why), and one row
    per lesson that runs fully (part and refused empty). Each feature is tried once."""
    answers: dict[str, features.Allowed] = {}
    rows = []
    for lesson in catalogue.LESSONS:
        skipped = {}
        for heading, wanted in parts(lesson.stem):
            for feature in wanted:
                if feature not in answers:
                    try:
                        answers[feature] = features.allowed(feature)
                    except Exception as e:   # a feature the kit does not know: said, not raised
                        answers[feature] = features.Allowed(feature, False, features.NotAllowedHere(
                            f"bpfkit cannot try {feature!r}: {e}", short=str(e)))
                here = answers[feature]
                if not here and heading not in skipped:
                    skipped[heading] = here
        rows += [{"lesson": lesson.stem, "part": h, "refused": a.thing, "why": a.reason}
                 for h, a in skipped.items()] or [{"lesson": lesson.stem, "part": "", "refused": "",
                                                   "why": ""}]
    return pd.DataFrame(rows, columns=["lesson", "part", "refused", "why"])


def report(stream=None) -> pd.DataFrame:
    """Print which lessons run fully here, then the parts each other lesson will skip, and why."""
    stream = stream or sys.stdout
    table = lessons_here()
    full = table[table["part"] == ""]["lesson"].tolist()
    print(f"lessons: {len(full)} of {len(catalogue.LESSONS)} run fully on this kernel", file=stream)
    skipped = table[table["part"] != ""]
    for (lesson, refused), rows in skipped.groupby(["lesson", "refused"], sort=False):
        shown = ", ".join(f'"{p}"' for p in rows["part"])
        print(f"  {lesson} skips {shown}: this kernel refuses {refused}", file=stream)
    for refused, why in skipped.drop_duplicates("refused")[["refused", "why"]].itertuples(index=False):
        print(f"  why {refused}: {why}", file=stream)
    return table


def doctor(stream=None) -> int:
    """The machine's checks (`system.doctor`), then the lessons this kernel runs fully and the
    parts it will skip: 0 when a lesson can run, 1 with the fixes otherwise."""
    status = system.doctor(stream)
    if status == 0:
        report(stream)
    return status
