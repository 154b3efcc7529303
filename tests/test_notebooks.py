"""Every lesson and every solution, run as a workshop runs it: a fresh kernel, Run All, Run All
again in the same kernel, the kernel shut down. A cell that fails fails the test with the cell and
its error; after each pass the kernel must hold no BPF object, and after the shutdown the kernel,
the network and the cgroups must be as they were (tests/notebook_runs.py).

Notebooks are the catalogue's (bpfkit/core/catalogue.py): a lesson added there is covered without a
new test, and a notebook on disk the catalogue does not list fails the unit test below. How long each pass took is printed (-rP shows
it), never asserted: speed goals are not timed tests.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bpfkit.lessons.checker import progress
from notebook_runs import (NOTEBOOKS as FOLDER, lessons, notebook_id, run_all_twice_and_compare,
                           solutions)

NOTEBOOKS = sorted(lessons() + solutions(), key=notebook_id)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=notebook_id)
def test_notebook_runs_all_twice_and_leaves_the_machine_as_it_was(path):
    *runs, start, shutdown = run_all_twice_and_compare(path)
    print(f"{notebook_id(path)}: kernel start {start:.1f} s; "
          + "; ".join(f"run {n} {run:.1f} s ({run.slowest})" for n, run in enumerate(runs, 1))
          + f"; shutdown {shutdown:.1f} s")


@pytest.mark.unit
def test_every_notebook_is_run_and_every_exercise_has_its_lesson_and_solution():
    """The catalogue misses nothing: every notebook of the kit (but JupyterLab's checkpoints and the
    copies `bpfkit reset` keeps) is a parameter above, the lessons are numbered 00, 01, ...
    without a gap, and each exercise of the catalogue has its lesson and one solution."""
    shipped = {p for p in FOLDER.rglob("*.ipynb")
               if not any(part.startswith(".") for part in p.relative_to(FOLDER).parts)}
    assert shipped == set(NOTEBOOKS), sorted(map(str, shipped ^ set(NOTEBOOKS)))
    numbers = [p.name[:2] for p in lessons()]
    assert numbers == [f"{n:02d}" for n in range(len(numbers))], numbers
    ids = [notebook_id(p) for p in NOTEBOOKS]
    assert len(ids) == len(set(ids)), ids
    exercises = set(progress()["lesson"])
    assert exercises <= {notebook_id(p) for p in lessons()}, exercises
    assert {f"{lesson}-solution" for lesson in exercises} == {notebook_id(p) for p in solutions()}


def _notebook(tmp_path, *cells: str):
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook
    nb = new_notebook(cells=[new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "leaky.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_the_harness_fails_a_notebook_whose_kernel_keeps_a_map(tmp_path):
    """The checks above can fail: a map the cells never close is still held after Run All."""
    path = _notebook(tmp_path, "import bpfkit\nm = bpfkit.create_map('hash', key='u32', value='u64', "
                               "max_entries=4, name='harness_kept')")
    with pytest.raises(AssertionError, match="run 1: the kernel still holds BPF objects"):
        run_all_twice_and_compare(path)


def test_the_harness_fails_a_notebook_that_leaves_a_pinned_map(tmp_path):
    """...and a map pinned and closed outlives the kernel: the machine is not as it was."""
    pins = Path("/sys/fs/bpf") / f"bpfkit-harness-test-{os.getpid()}"
    path = _notebook(tmp_path, "import os, itertools\nimport bpfkit\nfrom bpfkit.access import _libbpf\n"
                               f"os.makedirs({str(pins)!r}, exist_ok=True)\n"
                               "with bpfkit.create_map('hash', key='u32', value='u64', max_entries=4, "
                               "name='harness_pin') as m:\n"
                               f"    n = len(os.listdir({str(pins)!r}))\n"
                               f"    assert _libbpf.lib.bpf_obj_pin(m.fd, f'{pins}/m{{n}}'.encode()) == 0")
    try:
        with pytest.raises(AssertionError, match="left BPF objects in the kernel"):
            run_all_twice_and_compare(path)
        assert len(list(pins.iterdir())) == 2     # both passes ran, each pinned one
    finally:
        shutil.rmtree(pins, ignore_errors=True)


@pytest.mark.unit
def test_a_first_try_that_prints_the_solutions_code_fails_the_run():
    """The harness's rule for checks on untouched starters (notebook_runs.assert_first_tries_ask),
    against lesson 07's real solution: a message holding one of its lines fails, a question not."""
    from nbformat.v4 import new_code_cell, new_notebook, new_output
    from notebook_runs import assert_first_tries_ask, solution_only_lines
    lesson = FOLDER / "07_map_cost_in_kernel.ipynb"
    answer = next(line for line in sorted(solution_only_lines(lesson)) if "lookup(&key)" in line)

    def run_saying(text):
        cell = new_code_cell("result")
        cell.outputs = [new_output("execute_result", {"text/plain": text}, execution_count=1)]
        return new_notebook(cells=[cell])

    asks = "❌ Count: not yet (try 1).\n   • The slots add up to 0, not 1000. What does one run do?"
    assert_first_tries_ask(lesson, run_saying(asks))
    with pytest.raises(AssertionError, match="prints the solution's code"):
        assert_first_tries_ask(lesson, run_saying(asks + f"\n     Fix: {answer}"))
    later = asks.replace("(try 1)", "(try 3)") + f"\n     Fix: {answer}"
    assert_first_tries_ask(lesson, run_saying(later))    # the third try may show the code
