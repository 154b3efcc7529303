"""Run a notebook as a workshop does, and check that it leaves the machine as it found it: no BPF
program, map or link, no network namespace, no network interface, no cgroup more.

A notebook that forgets to detach an XDP program or to delete a namespace does not fail on its
own; the next run, or the next lesson, trips over the leftover. This catches it where it starts.
`run_all_twice_and_compare` is the harness of tests/test_notebooks.py; `bpf_cell` gives the
lessons' tests the C text of a notebook's cell.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from bpfkit.access import kernel
from bpfkit.core import catalogue
from bpfkit.loader.features import needs_of
from conftest import settled_snapshot



def held_by_processes() -> dict[str, set[int]]:
    """BPF object ids some live process holds an fd to (anything a process holds is that
    process's, and goes when it exits; a leak outlives its notebook's kernel)."""
    held = {"programs": set(), "maps": set(), "links": set()}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        for kind, ids in kernel.held_by(int(pid)).items():
            held[kind] |= ids
    return held


def network_state() -> dict[str, list[str]]:
    """Network namespace names and the root namespace's interface names."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {"netns": sorted(line.split()[0] for line in netns.splitlines() if line.strip()),
            "links": sorted(line.split(":")[1].strip().split("@")[0]
                            for line in links.splitlines() if line.strip())}


def cgroup_state() -> dict[str, list]:
    """Every cgroup v2 directory with a BPF program attached (path -> attach type and program
    id, as `bpftool cgroup tree` lists them), plus the "bpfkit-" cgroups, attached or not."""
    from bpfkit.lab import cgroup
    from bpfkit.access import kernel
    root = cgroup.mount()
    kinds = {n: t for n, t in kernel.ATTACH_TYPES.items() if n.startswith("cgroup_")}
    attached, ours = {}, sorted(p.name for p in root.glob(cgroup.PREFIX + "*"))
    for folder, _, _ in os.walk(root):
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue  # removed meanwhile
        try:
            found = []
            for name, kind in kinds.items():
                try:
                    found += [(name, i) for i in kernel.attached_prog_ids(fd, kind)]
                except OSError:
                    pass
            if found:
                attached[os.path.relpath(folder, root)] = sorted(found)
        finally:
            os.close(fd)
    return {"bpfkit cgroups": ours, "attached": sorted(attached.items())}


class Seconds(float):
    """A run's seconds, with where they went: `slowest` names the three slowest cells, and
    `outside` the time no cell took (the kernel's start and shutdown), so a slow run says why."""
    slowest: str = ""


NOTHING = {"programs": set(), "maps": set(), "links": set()}
NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def lessons() -> list[Path]:
    """The lessons, in the catalogue's order (bpfkit/core/catalogue.py: one list of the course)."""
    return [lesson.notebook(NOTEBOOKS.parent) for lesson in catalogue.LESSONS]


def solutions() -> list[Path]:
    """The solutions of the catalogue's exercises, `notebooks/solutions/NN_stem.ipynb`."""
    return [lesson.solution(NOTEBOOKS.parent) for lesson in catalogue.LESSONS if lesson.exercise]


def notebook_id(path: Path) -> str:
    """`14_cgroup_maps` for a lesson, `14_cgroup_maps-solution` for its solution."""
    path = Path(path)
    return path.stem + "-solution" if path.parent.name == "solutions" else path.stem


def notebook_path(name: str) -> Path:
    """The notebook of an id (`19_beyond_bcc`, `19_beyond_bcc-solution`)."""
    found = [p for p in lessons() + solutions() if notebook_id(p) == name]
    assert len(found) == 1, f"no single notebook for {name!r}: {found}"
    return found[0]


def _cell_seconds(nb) -> list[tuple[float, int]]:
    cells = []
    for index, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        begin, end = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if begin and end:
            seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                       - datetime.fromisoformat(begin.replace("Z", "+00:00"))).total_seconds()
            cells.append((seconds, index))
    return sorted(cells, reverse=True)


def _timed(took: float, nb) -> Seconds:
    cells = _cell_seconds(nb)
    seconds = Seconds(took)
    seconds.slowest = (", ".join(f"cell {i}: {s:.1f} s" for s, i in cells[:3])
                       + f"; outside cells: {took - sum(s for s, _ in cells):.1f} s")
    return seconds


def _stderr(nb) -> str:
    return "\n".join(f"cell {index}: {out.get('text', '')}".strip()
                     for index, cell in enumerate(nb.cells) for out in cell.get("outputs", [])
                     if out.get("output_type") == "stream" and out.get("name") == "stderr")


def refusals_said(nb) -> list[str]:
    """The sentences a notebook printed for what the kernel refused (a `# needs:` cell's
    "Skipped: ..." line, an `allowed()` answer shown in a cell), each once, in order: what the
    lesson × kernel table (tests/kernel_table.py) shows as the parts a kernel skipped."""
    said = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
            for line in text.splitlines():
                line = line.strip().strip("'\"")
                if (line.startswith("Skipped:") or line.endswith("are skipped.")) and line not in said:
                    said.append(line)
    return said


def report(path, nb, error: str | None = None) -> None:
    """One JSON line per notebook run in the file BPFKIT_NOTEBOOK_REPORT names (where set): its
    id, ran or failed, and what it said the kernel refused; scripts/test-kernel.sh and CI collect
    them from each kernel into one table."""
    where = os.environ.get("BPFKIT_NOTEBOOK_REPORT")
    if not where or Path(path).resolve() not in {p.resolve() for p in lessons() + solutions()}:
        return                      # the harness's own tests run made-up notebooks: not lessons
    line = {"notebook": notebook_id(path), "outcome": "failed" if error else "ran",
            "skipped": refusals_said(nb), "error": error.strip().splitlines()[-1] if error and error.strip() else ""}
    with open(where, "a") as f:
        f.write(json.dumps(line) + "\n")


def skipped(cell) -> bool:
    """The cell did not run: the kernel refuses what it needs (`# needs:`, bpfkit/magic.py)."""
    return any(o.get("output_type") == "stream" and o.get("text", "").startswith("Skipped: ")
               for o in cell.get("outputs", []))


def execute(path, timeout: int = 300, passes: int = 1, after_pass=None, after_cell=None,
            kernel_env: dict | None = None):
    """Start a fresh kernel, run every cell of the notebook `passes` times in it (a learner
    pressing Run All again), and shut the kernel down. A cell that fails, or a cell tagged
    raises-exception that does not, fails the test with the cell and its error.

    `after_pass(number, kernel_pid, nb)` runs after each pass while the kernel is still up, and
    `after_cell(index, cell)` after each cell of the first pass. `kernel_env` is added to the
    environment the notebook's kernel starts with (this process's stays as it is, so runs in
    threads do not see each other's).
    Returns the notebook (the last pass's outputs) and the seconds of each pass, then of the
    kernel's start and of its shutdown."""
    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    times = []
    start = time.monotonic()
    env = None if kernel_env is None else {**os.environ, **kernel_env}
    with client.setup_kernel(**({} if env is None else {"env": env})):
        started = time.monotonic()
        pid = client.km.provisioner.pid
        for number in range(1, passes + 1):
            begin = time.monotonic()
            for index, cell in enumerate(nb.cells):
                try:
                    client.execute_cell(cell, index)
                except CellExecutionError as e:
                    said = re.sub(r"\x1b\[[0-9;]*m", "", str(e))   # the traceback without its colours
                    report(path, nb, f"cell {index}: {said}")
                    pytest.fail(f"{path.name}, run {number}, cell {index} failed:\n{said}", pytrace=False)
                if after_cell is not None and number == 1:
                    after_cell(index, cell)
                if "raises-exception" in cell.metadata.get("tags", []) and not skipped(cell):
                    assert any(o.get("output_type") == "error" for o in cell.get("outputs", [])), \
                        f"{path.name}, run {number}, cell {index} is tagged raises-exception but raised " \
                        f"nothing:\n{cell.source}"
            times.append(_timed(time.monotonic() - begin, nb))
            if after_pass is not None:
                try:
                    after_pass(number, pid, nb)
                except AssertionError as e:
                    report(path, nb, str(e))
                    raise
        report(path, nb)
        closing = time.monotonic()
    times += [Seconds(started - start), Seconds(time.monotonic() - closing)]
    return nb, times


def _leftovers(before: dict, after: dict) -> dict:
    held = held_by_processes()
    return {k: sorted(after[k] - before[k] - held[k]) for k in after if after[k] - before[k] - held[k]}


def machine_state() -> tuple[dict, dict]:
    """The network and the cgroups, as `assert_machine_as_before` compares them."""
    return network_state(), cgroup_state()


def assert_machine_as_before(name: str, bpf_before: dict, machine_before: tuple[dict, dict]) -> None:
    """The kernel's BPF program, map and link ids (settled, minus what live processes hold),
    `ip netns list`, `ip -o link`, the cgroups with programs attached and the "bpfkit-" cgroups
    are what they were (a program attached to a cgroup outlives every fd; only a detach or
    removing the cgroup frees it)."""
    left = _leftovers(bpf_before, settled_snapshot(bpf_before))
    if left:  # the kernel frees some objects after a grace period: look once more
        time.sleep(1.0)
        left = _leftovers(bpf_before, settled_snapshot(bpf_before))
    assert not left, f"{name} left BPF objects in the kernel: {left}"
    net_before, cg_before = machine_before
    net_after, cg_after = machine_state()
    assert net_after == net_before, f"{name} changed the network: before {net_before}, after {net_after}"
    assert cg_after == cg_before, f"{name} changed the cgroups: before {cg_before}, after {cg_after}"


def passes() -> int:
    """Run All twice in one kernel, as a learner who presses it again (the default); once where
    BPFKIT_NOTEBOOK_PASSES=1 says so: an emulated VM (scripts/test-kernel.sh) is 10-20 times
    slower, and the second pass checks the kit, which the main suite does on every change."""
    return int(os.environ.get("BPFKIT_NOTEBOOK_PASSES", "2"))


def run_all_twice_and_compare(path, timeout: int = 300) -> list[Seconds]:
    """The notebook as a workshop runs it: a fresh kernel, Run All, Run All again in the same
    kernel (a learner pressing it twice), then the kernel shut down.

    After each pass the still-running kernel must hold no BPF program, map or link (its clean-up
    cells freed what it made: a fresh kernel frees everything when it exits, so only a kernel
    that stays up shows a clean-up cell that forgets something, or a re-run that stacks
    programs). After the shutdown the machine must be as before (`assert_machine_as_before`).
    Returns the seconds of each pass, then of the kernel's start and shutdown."""
    path = Path(path)
    name = notebook_id(path)
    bpf_before = settled_snapshot()
    machine_before = machine_state()

    def holds_nothing(number, pid, nb):
        held = kernel.held_by(pid)
        assert held == NOTHING, (f"{name}, run {number}: the kernel still holds BPF objects after "
                                 f"its clean-up: {held}; the cells said:\n{_stderr(nb)}")
        if number == 1:
            assert_first_tries_ask(path, nb)

    nb, times = execute(path, timeout, passes=passes(), after_pass=holds_nothing)
    try:
        assert_machine_as_before(f"{name} (after its kernel shut down)", bpf_before, machine_before)
    except AssertionError as e:
        report(path, nb, str(e))     # the last line a notebook has in the report is its outcome
        raise
    return times


def code_lines(path) -> set[str]:
    """The code lines of a notebook's code cells (C and Python), comments and blanks left out,
    stripped: what a starter and its solution are compared by."""
    lines = set()
    for cell in nbformat.read(str(path), as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            line = re.split(r"//|(?:^|\s)#", line, maxsplit=1)[0].strip()
            if line and not line.startswith("%"):
                lines.add(line)
    return lines


SOLUTION_LINE_AT_LEAST = 12   # shorter lines ("if (v) {", "return 0;") say nothing of the answer


def solution_only_lines(lesson) -> set[str]:
    """Lines of a lesson's solution notebook that its starter does not have: the answer."""
    for solution in solutions():
        if solution.name == Path(lesson).name:
            return {line for line in code_lines(solution) - code_lines(lesson)
                    if len(line) >= SOLUTION_LINE_AT_LEAST}
    return set()


def first_tries(nb) -> list[str]:
    """What the exercise checks said on their first try in a run (a Result prints "(try 1)")."""
    said = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("text", "") or out.get("data", {}).get("text/plain", "")
            if "not yet (try 1)" in text:
                said.append(text)
    return said


def assert_first_tries_ask(path, nb) -> None:
    """Issue 22: a check run on the untouched starter asks before it tells: its first try's words
    hold no line of the solution's code (hints and the fix come with later tries)."""
    answer = solution_only_lines(path)
    for said in first_tries(nb):
        told = sorted(line for line in answer if line in said)
        assert not told, (f"{Path(path).name}: the check's first try on the starter prints the "
                          f"solution's code {told}:\n{said}")


def bpf_cell(notebook, name: str) -> str:
    """The C text of the `%%bpf NAME ...` cell of a notebook (a path, or one relative to the
    project): what a test loads to check an exercise's starter or solution."""
    path = Path(notebook)
    path = path if path.is_absolute() else Path(__file__).resolve().parent.parent / path
    for cell in nbformat.read(str(path), as_version=4).cells:
        source = cell.source.partition("\n")[2] if needs_of(cell.source.partition("\n")[0]) else cell.source
        first, _, body = source.partition("\n")
        if cell.cell_type == "code" and first.split()[:2] == ["%%bpf", name]:
            return body
    raise AssertionError(f"{path.name} has no %%bpf {name} cell")
