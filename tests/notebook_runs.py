"""Run a lesson notebook twice, each time in a fresh kernel, and check that it leaves the machine
as it found it: no BPF program, map or link, no network namespace, no network interface more.

A notebook that forgets to detach an XDP program or to delete a namespace does not fail on its
own; the next run, or the next lesson, trips over the leftover. This catches it where it starts.
"""
from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from bpfkit import kernel
from bpfkit.features import needs_of
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
    from bpfkit import cgroup, kernel
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


def run_notebook(path: Path, timeout: int = 300) -> Seconds:
    """Execute every cell of the notebook in a fresh kernel; returns the seconds it took."""
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    start = time.monotonic()
    client.execute()
    took = Seconds(time.monotonic() - start)
    cells = []
    for index, cell in enumerate(nb.cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        begin, end = stamps.get("iopub.execute_input"), stamps.get("shell.execute_reply")
        if begin and end:
            seconds = (datetime.fromisoformat(end.replace("Z", "+00:00"))
                       - datetime.fromisoformat(begin.replace("Z", "+00:00"))).total_seconds()
            cells.append((seconds, index))
    cells.sort(reverse=True)
    took.slowest = (", ".join(f"cell {i}: {s:.1f} s" for s, i in cells[:3])
                    + f"; outside cells: {float(took) - sum(s for s, _ in cells):.1f} s")
    return took


def _leftovers(before: dict, after: dict) -> dict:
    held = held_by_processes()
    return {k: sorted(after[k] - before[k] - held[k]) for k in after if after[k] - before[k] - held[k]}


def run_notebook_twice_and_compare(path, timeout: int = 300, *, cgroups: bool = False) -> list[float]:
    """Run the notebook twice in a row; after each run, the kernel's BPF program, map and link
    ids, `ip netns list` and `ip -o link` must be what they were before. Objects another live
    process holds are not counted (other programs may load BPF meanwhile). With `cgroups`, the
    programs attached to cgroups and the "bpfkit-" cgroups must be as before too (a program
    attached to a cgroup outlives every fd; only a detach or removing the cgroup frees it).
    Returns the run times."""
    path = Path(path)
    bpf_before = settled_snapshot()
    net_before = network_state()
    cg_before = cgroup_state() if cgroups else None
    times = []
    for run in (1, 2):
        times.append(run_notebook(path, timeout))
        bpf_after = settled_snapshot(bpf_before)
        left = _leftovers(bpf_before, bpf_after)
        if left:  # the kernel frees some objects after a grace period: look once more
            time.sleep(1.0)
            left = _leftovers(bpf_before, settled_snapshot(bpf_before))
        assert not left, f"{path.name}, run {run}, left BPF objects in the kernel: {left}"
        net_after = network_state()
        assert net_after == net_before, (f"{path.name}, run {run}, changed the network: "
                                         f"before {net_before}, after {net_after}")
        if cgroups:
            cg_after = cgroup_state()
            assert cg_after == cg_before, (f"{path.name}, run {run}, changed the cgroups: "
                                           f"before {cg_before}, after {cg_after}")
    return times


def run_twice_in_one_kernel(path, timeout: int = 300) -> tuple[list[dict[str, set[int]]], str]:
    """Run all cells twice in the same kernel, as a learner pressing "Run all" twice does, and
    return the BPF ids the still-running kernel holds after each pass (both must be empty),
    with what the cells wrote to stderr (warnings: a clean-up that failed part-way says so).

    A fresh kernel frees everything when it exits, so only a kernel that stays up shows a
    clean-up cell that forgets something, or a re-run that stacks programs."""
    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    held, said = [], []
    with client.setup_kernel():
        pid = client.km.provisioner.pid
        for _ in range(2):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
                said += [f"cell {index}: {out.get('text', '')}".strip() for out in cell.get("outputs", [])
                         if out.get("output_type") == "stream" and out.get("name") == "stderr"]
            held.append(kernel.held_by(pid))
    return held, "\n".join(said)


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
