"""The lesson × kernel table: which lessons ran on which kernel, which parts a kernel's refusals
skipped, and which failed, from the reports the notebook harness writes (BPFKIT_NOTEBOOK_REPORT,
one JSON line a notebook; a first line without "notebook" describes the kernel and the run).

    python tests/kernel_table.py build/kernels/*.json

CI prints it after running the lessons on this machine's kernel and in a VM on a distribution's
(scripts/test-kernel.sh); the README's "Where it runs" is written from it.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def read(path) -> tuple[dict, dict[str, dict]]:
    """A report's description of its kernel, and each notebook's last line (its outcome: a
    notebook that ran and then failed the machine check has two lines)."""
    about, notebooks = {}, {}
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "notebook" in record:
            notebooks[record["notebook"]] = record
        else:
            about.update(record)
    about.setdefault("kernel", Path(path).stem)
    return about, notebooks


def refused_thing(sentence: str) -> str:
    """The few words a table cell keeps of a refusal sentence: what was refused."""
    m = re.match(r"Skipped: this kernel refuses (.*?) \(", sentence)
    if m:
        return m.group(1)
    return re.split(r" \(|: |; ", sentence.removeprefix("Skipped: "), maxsplit=1)[0].rstrip(".")


def cell(record: dict | None) -> str:
    if record is None:
        return "not run"
    if record["outcome"] == "failed":
        return "**failed**"
    skipped = list(dict.fromkeys(refused_thing(s) for s in record["skipped"]))
    return "ran" + (f"; skipped: {', '.join(skipped)}" if skipped else "")


def column(about: dict) -> str:
    said = [about.get(k) for k in ("system", "arch", "accelerator") if about.get(k)]
    return f"{about['kernel']}" + (f" ({', '.join(said)})" if said else "")


def table(reports: list[tuple[dict, dict[str, dict]]]) -> str:
    names = sorted({name for _, notebooks in reports for name in notebooks})
    lines = ["| lesson | " + " | ".join(column(about) for about, _ in reports) + " |",
             "|---|" + "---|" * len(reports)]
    lines += [f"| {name} | " + " | ".join(cell(nbs.get(name)) for _, nbs in reports) + " |"
              for name in names]
    for about, notebooks in reports:
        ran = sum(r["outcome"] == "ran" for r in notebooks.values())
        reasons = list(dict.fromkeys(s for r in notebooks.values() for s in r["skipped"]))
        timing = "".join(f", {k.removesuffix('_s')} {about[k] / 60:.1f} min"
                         for k in ("provision_s", "tests_s") if k in about)
        lines += ["", f"{column(about)}: {ran} of {len(notebooks)} ran{timing}."]
        lines += [f"- {reason}" for reason in reasons]
        lines += [f"- {name} failed: {r['error']}" for name, r in notebooks.items()
                  if r["outcome"] == "failed"]
    return "\n".join(lines)


def about_this_machine() -> dict:
    """The first line of a report on this machine's own kernel (make test)."""
    import platform
    release = platform.freedesktop_os_release()
    return {"kernel": platform.release(), "system": release.get("PRETTY_NAME", ""),
            "arch": platform.machine(), "accelerator": "this machine"}


if __name__ == "__main__":
    if sys.argv[1:] == ["--about"]:
        print(json.dumps(about_this_machine()))
        sys.exit(0)
    reports = [read(p) for p in sys.argv[1:] if Path(p).exists()]
    print(table(reports) if reports else "kernel_table: no reports")
