"""`python -m bpfkit reset`: the lessons as the kit ships them, and nothing of the kit's left in
the kernel or the system, for a fresh start or the next learner at this machine.

A learner's edited notebooks are not thrown away: each goes to `notebooks/.backup/<time>/` before
the shipped one (the clone's committed version, through git) takes its place. What a dead notebook
left behind (struct_ops registrations, a sysctl, pins, cgroups, network namespaces and cables,
folders) is removed, and each is named; programs and maps that a
running notebook kernel still holds are that kernel's, so they are named, with the way to free them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from .lab import cgroup, net
from .loader import compiler
from .access import kernel
from .host import lifetime
from .lessons import progress
from .core.errors import SetupError
from .maps import pins

KIT = progress.KIT


def lessons(kit: Path = KIT) -> dict[str, list[str]]:
    """Put back every lesson notebook (and solution) that differs from the clone's committed
    version, keeping a copy of the learner's. {"restored": [...], "backup": [folder] or []}."""
    folder = kit / "notebooks"
    if shutil.which("git") is None or not (kit / ".git").exists():
        raise SetupError(f"{kit} is not a git clone (or git is missing): nothing to restore the "
                         "lessons from.", "clone the kit again to start afresh.")
    changed = subprocess.run(["git", "-C", str(kit), "ls-files", "--modified", "--deleted", "-z", "--",
                              "notebooks/*.ipynb"], capture_output=True, check=True).stdout
    names = sorted({n for n in changed.decode().split("\0") if n})
    if not names:
        return {"restored": [], "backup": []}
    backup = folder / ".backup" / time.strftime("%Y%m%d-%H%M%S")
    for name in names:
        edited = kit / name
        if edited.exists():
            keep = backup / Path(name).relative_to("notebooks")
            keep.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(edited, keep)
    subprocess.run(["git", "-C", str(kit), "checkout", "--", *names], capture_output=True, check=True)
    return {"restored": names, "backup": [str(backup)] if backup.exists() else []}


def leftovers() -> dict[str, list[str]]:
    """Remove what dead bpfkit processes left (what their records under /run/bpfkit name:
    struct_ops registrations, a sysctl, cgroups, namespaces and cables, folders, pins; then
    what older runs left without a record: marked cgroups, `bpfkit-*` interfaces, the
    compiler's short kallsyms files), and name the live processes that still hold BPF programs
    or maps. {category: [what was removed]}: every category is listed, empty when nothing was."""
    undone = lifetime.free_dead()
    removed = {"struct_ops": undone.get("struct_ops", []), "sysctls": undone.get("sysctl", []),
               "pins": undone.get("pin", []) + pins.cleanup_stale(),
               "cgroups": [Path(c).name for c in undone.get("cgroup", [])] + cgroup.cleanup_stale(),
               "network": undone.get("netdev", []) + net.cleanup_stale(),
               "files": undone.get("dir", []) + compiler.remove_orphans()}
    removed = {kind: sorted(set(names)) for kind, names in removed.items()}
    held = []
    for pid in _kernels():
        objects = kernel.held_by(pid)
        if objects["programs"] or objects["maps"]:
            held.append(f"process {pid} ({_command(pid)}) holds {len(objects['programs'])} programs "
                        f"and {len(objects['maps'])} maps: restart that notebook's kernel "
                        "(Kernel > Restart Kernel) to free them")
    return {**removed, "held": held}


def _kernels() -> list[int]:
    """Python processes that may be notebooks using bpfkit (not this one)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        command = _command(proc.name)
        if int(proc.name) != os.getpid() and ("ipykernel" in command or "bpfkit" in command):
            found.append(int(proc.name))
    return sorted(found)


def _command(pid) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
