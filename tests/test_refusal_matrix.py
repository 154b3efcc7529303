"""Every lesson runs to its end on a kernel that refuses any one map or program type it uses.

For each lesson and each map type and program type its `# needs:` lines name (the one place that
knows what a lesson's parts need: tests/lesson_needs.py), the lesson runs once in a fresh Jupyter
kernel with the kit's test switch pretending that the kernel refuses that type (EPERM to a process
with every capability, as one of our machines answers arena maps). It must run to its last cell
with no cell failing, say in at least one line what was refused (the `Skipped: this kernel
refuses ...` sentence of `# needs:`), and leave its kernel holding no BPF object; when the whole
matrix is done the machine must be as it was before (tests/notebook_runs.py).

`test_each_cell_says_what_it_makes` is why those lines can be trusted: it runs each lesson as
is, with the kit recording every map type it makes and program type it loads, cell by cell, and
fails on a cell whose `# needs:` line misses one. Lessons only, as the issue asks: a solution
carries the same lines as its lesson where their cells are the same.

Run it on its own (it is left out of a plain `pytest` run): `pytest -m refusals -rP`. Two
notebooks run at once (the machine has two CPUs); `-rP` prints how long the matrix took.
"""
from __future__ import annotations

import concurrent.futures
import itertools
import os
import threading
import time

import pytest

from bpfkit.access import kernel, refusal
from bpfkit.core import catalogue
from lesson_needs import needs_of_notebook, record, stale
from notebook_runs import (NOTHING, assert_machine_as_before, execute, lessons, machine_state,
                           notebook_id)
from conftest import settled_snapshot

pytestmark = pytest.mark.refusals
LESSONS = {notebook_id(p): p for p in lessons()}
PAIRS = [(stem, need) for stem, path in LESSONS.items() for need in needs_of_notebook(path)]
WORKERS = int(os.environ.get("BPFKIT_MATRIX_WORKERS", "2"))


def switch(need: str) -> str:
    """"arena map" -> "map:arena": the test switch's words for a feature."""
    name, _, kind = need.rpartition(" ")
    return f"{kind}:{name.replace(' ', '_')}"


def said(nb) -> str:
    return "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def run_refused(stem: str, need: str) -> float:
    """Run lesson `stem` once with `need` refused; its seconds. Raises on every failure."""
    begin = time.monotonic()

    def holds_nothing(number, pid, nb):
        held = kernel.held_by(pid)
        assert held == NOTHING, f"{stem} with {need} refused: its kernel still holds {held}"
    nb, _ = execute(LESSONS[stem], after_pass=holds_nothing,
                    kernel_env={refusal.PRETEND: switch(need)})
    text = said(nb)
    name, _, kind = need.rpartition(" ")
    told = [f"refuses {name} {kind}s", f"does not allow {name} {kind}s", f"does not have {name} {kind}s",
            f"as {'an' if name[:1] in 'aeioulx' else 'a'} {name} {kind} here"]
    assert any(t in text for t in told), (f"{stem} with {need} refused ran to its end, but no line "
                                          f"names the refusal (looked for {told})")
    assert "Traceback" not in text, f"{stem} with {need} refused printed a traceback"
    return time.monotonic() - begin


@pytest.fixture(scope="module")
def matrix(request):
    """Every selected (lesson, type) run, two at a time, started when the first is asked for;
    the machine's state before them, and the time they all took."""
    chosen = [item.callspec.params["pair"] for item in request.session.items
              if getattr(item, "originalname", "") == "test_a_lesson_runs_with_one_type_refused"]
    before = settled_snapshot(), machine_state()
    start = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS)
    # Two runs of one lesson would make the same lab, cgroups and pins at once: one lesson runs
    # one pair at a time (its lock), and the pairs are queued lesson after lesson, round-robin,
    # so the two workers are nearly always on different lessons.
    locks = {stem: threading.Lock() for stem, _ in chosen}

    def one(stem, need):
        with locks[stem]:
            return run_refused(stem, need)
    by_lesson = [[p for p in chosen if p[0] == stem] for stem in dict.fromkeys(s for s, _ in chosen)]
    queued = [p for round_ in itertools.zip_longest(*by_lesson) for p in round_ if p is not None]
    futures = {pair: pool.submit(one, *pair) for pair in queued}
    yield {"futures": futures, "before": before, "start": start}
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.mark.parametrize("pair", PAIRS, ids=[f"{s}-{switch(n)}" for s, n in PAIRS])
def test_a_lesson_runs_with_one_type_refused(pair, matrix):
    seconds = matrix["futures"][pair].result()
    print(f"{pair[0]} with {pair[1]} refused: {seconds:.1f} s")


def test_the_matrix_leaves_the_machine_as_it_was(matrix):
    """After the last run (each kernel was checked to hold nothing): no BPF object, network
    namespace, interface or cgroup more than before; and how long the matrix took."""
    concurrent.futures.wait(matrix["futures"].values())
    took = time.monotonic() - matrix["start"]
    bpf_before, machine_before = matrix["before"]
    assert_machine_as_before("the refusal matrix", bpf_before, machine_before)
    failed = [p for p, f in matrix["futures"].items() if f.exception() is not None]
    print(f"refusal matrix: {len(matrix['futures'])} runs ({len(failed)} failed), {WORKERS} at a "
          f"time, in {took:.0f} s")


@pytest.mark.parametrize("stem", list(LESSONS))
def test_each_cell_says_what_it_makes(stem):
    """The `# needs:` lines are what the lesson really makes: run as is, every map type and
    program type each cell made (recorded by the kit) is on that cell's line."""
    path = LESSONS[stem]
    missing = stale(path, record(path))
    assert not missing, (f"{stem}: " + "; ".join(missing)
                         + f". Write them with: python tests/lesson_needs.py {stem}")


@pytest.mark.unit
def test_the_matrix_names_a_type_for_the_switch():
    assert switch("arena map") == "map:arena" and switch("tracepoint program") == "program:tracepoint"
    assert switch("percpu_hash map") == "map:percpu_hash"
    assert set(LESSONS) == {lesson.stem for lesson in catalogue.LESSONS}
