"""The lesson rules that can be read off a notebook's file, checked without running it.

A lesson's program is editable in a `%%bpf NAME` cell, and `bpf/NAME.c` stays the source of truth
for tests and the command line: when a cell is named after a file in bpf/, the two must say the
same thing. Cells that pin a lesson's facts are tagged "check" and collapsed, out of the reading
path.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bpfkit.loader import features
from notebook_runs import lessons, solutions

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = lessons() + solutions()   # the catalogue's
PROGRAMS = {p.stem: p for p in (ROOT / "bpf").rglob("*.c") if not p.name.endswith(".bpf.c")}  # BCC's


def code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def bpf_cells(path: Path):
    """(NAME, C text) of each `%%bpf NAME` cell."""
    for cell in code_cells(path):
        text = features.NEEDS_LINE.sub("", "".join(cell["source"]), count=1).lstrip("\n")
        if text.startswith("%%bpf "):
            first, _, body = text.partition("\n")
            yield first.split()[1], body


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_cell_named_after_a_lesson_program_holds_that_program(path):
    for name, body in bpf_cells(path):
        if name in PROGRAMS:
            assert body.strip() == PROGRAMS[name].read_text().strip(), (
                f"{path.name}: the %%bpf {name} cell and bpf/{name}.c differ; bpf/{name}.c is the "
                "source of truth (tests and the command line load it): change both together")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_check_cells_are_collapsed(path):
    for cell in code_cells(path):
        if "check" in cell["metadata"].get("tags", []):
            assert cell["metadata"].get("jupyter", {}).get("source_hidden"), (
                f"{path.name}: a cell tagged 'check' must be collapsed (jupyter.source_hidden): "
                + "".join(cell["source"])[:60])


LESSONS = [p for p in NOTEBOOKS if p.parent.name == "notebooks" and not p.name.startswith("00_")]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_the_exercise_links_to_its_solution(path):
    """The file browser does not list solutions/ (jupyter/jupyter_server_config.json): the link
    is how a learner gets there."""
    solution = f"solutions/{path.stem}.ipynb"
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "markdown")
    assert f"]({solution})" in text, f"{path.name} has no link to {solution}"
    assert (path.parent / solution).is_file()


WORDS_AT_MOST = 1100   # about 5 minutes of reading at 200 words a minute: the rest is "going further"
FURTHER = "## Going further"


def prose_words(path: Path) -> tuple[int, int]:
    """(words a learner reads on the lesson's path, words in its "Going further" sections). A
    "Going further" section is a markdown cell whose first line starts with `## Going further`
    and every cell after it up to the next `## ` heading (or the notebook's end): optional
    reading a lesson keeps out of its timed path."""
    path_words = further = 0
    inside = False
    for cell in json.loads(path.read_text())["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            first = text.lstrip().partition("\n")[0]
            if first.startswith("## "):
                inside = first.startswith(FURTHER)
            words = len(text.split())
            if inside:
                further += words
            else:
                path_words += words
    return path_words, further


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.parent.name == "notebooks"],
                         ids=lambda p: p.stem)
def test_a_lesson_reads_in_about_five_minutes(path):
    """Issue: no lesson fit its 15 minutes with its exercise. What a lesson must say fits in
    WORDS_AT_MOST words of prose; what is worth reading but not needed goes under a "## Going
    further" heading, which the instructor notes' minutes leave out."""
    words, _ = prose_words(path)
    assert words <= WORDS_AT_MOST, (f"{path.name} has {words} words of prose outside its "
                                     f"'{FURTHER}' sections; at most {WORDS_AT_MOST}")


@pytest.mark.unit
def test_words_in_going_further_sections_are_not_counted(tmp_path):
    cells = [{"cell_type": "markdown", "source": ["# Lesson\n", "one two three"]},
             {"cell_type": "code", "source": ["x = 1"]},
             {"cell_type": "markdown", "source": ["## Going further: more\n", "four five"]},
             {"cell_type": "markdown", "source": ["still further"]},
             {"cell_type": "markdown", "source": ["## Clean up\n", "six"]}]
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert prose_words(path) == (9, 8)   # a heading's "#" counts as a word: so be it


@pytest.mark.unit
def test_the_instructor_notes_give_each_lessons_minutes_and_a_route_of_two_hours():
    """docs/instructor.md's table is tests/lesson_minutes.py's output (the rule it states), so the
    notes move with the lessons; the 2-hour route, exercises included, fits in 120 minutes."""
    import lesson_minutes
    rows = lesson_minutes.table()
    notes = (ROOT / "docs" / "instructor.md").read_text()
    assert lesson_minutes.markdown(rows) in notes, (
        "docs/instructor.md's minutes table is out of date: paste `python tests/lesson_minutes.py`")
    route = sum(r["total"] for r in rows if r["lesson"] in lesson_minutes.ROUTE)
    assert route <= 120, f"the 2-hour route takes {route} minutes with its exercises"
