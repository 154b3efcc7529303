"""How long each lesson takes a learner, by a stated rule, for the instructor notes' table.

No room of learners has been timed yet, so the minutes come from what each lesson holds, by a rule
anyone can check and the notes state:

- reading: the prose outside "Going further" sections at 200 words a minute, and the code a learner
  reads (code cells but the collapsed checks) at 20 lines a minute;
- running: the Run All seconds measured on a 2-CPU VM (`RUN_ALL`, from the notebook harness's
  output: `make test` prints each notebook's run), rounded up to a minute;
- doing: each exercise 5 minutes to read and plan, plus 1 minute per line of code the solution
  writes (its code lines the starter lacks, asserts and plots left out); each "break it"
  prediction 2 minutes.

The instructor notes' table is this script's output (`python tests/lesson_minutes.py`), and a
test keeps them equal; `progress` records what real learners took (minutes per exercise), to set
against it.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from notebook_runs import lessons, solution_only_lines  # noqa: E402
from test_lesson_shape import prose_words  # noqa: E402

WORDS_A_MINUTE, CODE_LINES_A_MINUTE = 200, 20
EXERCISE_MINUTES, LINE_MINUTES, BREAK_MINUTES = 5, 1, 2
# The 2-hour route: the lessons a workshop takes in order; the others make a second day.
ROUTE = ("00_check_your_setup", "01_hash_map_counter", "02_array_histogram",
         "03_prog_array_tail_calls", "06_devmap_xdp_redirect")
# Run All, seconds, measured (tests/test_notebooks.py prints them; a 2-CPU VM of the project's kind).
RUN_ALL = {"00": 2, "01": 11, "02": 13, "03": 3, "04": 3, "05": 6, "06": 10, "07": 17, "08": 7,
           "09": 5, "10": 5, "11": 5, "12": 3, "13": 3, "14": 7, "15": 6, "16": 9, "17": 7,
           "18": 6, "19": 13, "20": 5}


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def code_lines_read(path: Path) -> int:
    """Lines of the code cells a learner reads: collapsed check cells left out."""
    return sum(len([line for line in "".join(c["source"]).splitlines() if line.strip()])
               for c in _cells(path) if c["cell_type"] == "code"
               and "check" not in c.get("metadata", {}).get("tags", []))


def lines_to_write(path: Path) -> int:
    """Code lines the solution writes that the starter lacks, asserts, plots and prints left out."""
    return len([line for line in solution_only_lines(path)
                if not re.match(r"(assert|print\(|ax\b|ax\.|fig|bpfkit\.plot|plt\.)", line)])


def breaks(path: Path) -> int:
    return sum("attempt(" in "".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code")


def exercises(path: Path) -> int:
    return sum(bool(re.match(r"## Exercise", "".join(c["source"]).lstrip()))
               for c in _cells(path) if c["cell_type"] == "markdown")


def minutes(path: Path) -> dict:
    words, further = prose_words(path)
    read = words / WORDS_A_MINUTE + code_lines_read(path) / CODE_LINES_A_MINUTE
    run = math.ceil(RUN_ALL.get(path.name[:2], 0) / 60)
    do = (exercises(path) * EXERCISE_MINUTES + lines_to_write(path) * LINE_MINUTES
          + breaks(path) * BREAK_MINUTES)
    return {"lesson": path.stem, "words": words, "further": further, "read": round(read),
            "run": run, "do": do, "total": round(read) + run + do}


def table() -> list[dict]:
    return [minutes(p) for p in lessons()]


def markdown(rows: list[dict]) -> str:
    out = ["| lesson | words | reading | Run All | exercises | minutes | route |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        route = "2-hour" if r["lesson"] in ROUTE else "day 2"
        out.append(f"| {r['lesson']} | {r['words']} (+{r['further']} further) | {r['read']} | "
                   f"{r['run']} | {r['do']} | {r['total']} | {route} |")
    route_total = sum(r["total"] for r in rows if r["lesson"] in ROUTE)
    rest = sum(r["total"] for r in rows if r["lesson"] not in ROUTE)
    out.append(f"| **2-hour route** | | | | | **{route_total}** | |")
    out.append(f"| **day 2** (the rest) | | | | | **{rest}** | |")
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(table()))
