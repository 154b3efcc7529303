"""`python -m bpfkit reset` and `progress`: the lessons back as shipped with the learner's copy
kept, what dead notebooks left removed, live holders named; every check's outcome recorded."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bpfkit.loader import compiler
from bpfkit.core import errors
from bpfkit.lessons import progress
from bpfkit import reset
from bpfkit.lessons.checker import CATALOG, exercise
from bpfkit.lessons.checker import progress as progress_table

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def record(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    monkeypatch.setenv("BPFKIT_PROGRESS", str(path))
    return path


@pytest.fixture
def practice():
    @exercise("Practice: say 42", module="bpfkit.lessons.l01_hash_map_counter")   # listed under 01
    def check_answer(c, answer):
        c.expect(answer == 42, "say 42")
    yield check_answer
    del CATALOG["Practice: say 42"]


def test_every_check_records_its_outcome_and_solved_stays_solved(record, practice):
    assert progress.read() == {}
    assert not practice(41) and not practice(7)
    entry = progress.read()["Practice: say 42"]
    assert (entry["tries"], entry["solved"], entry["last"]) == (2, False, "not yet")
    assert practice(42) and not practice(0)
    entry = progress.read()["Practice: say 42"]
    assert (entry["tries"], entry["solved"], entry["last"]) == (4, True, "not yet")
    assert oct(record.stat().st_mode & 0o777) == "0o644"       # the learner's shell reads it

    table = progress_table()
    assert len(table) >= 14 and set(table["status"]) <= {"solved", "not yet", "not tried"}
    row = table.set_index("exercise").loc["Practice: say 42"]
    assert (row["status"], row["tries"]) == ("solved", 4)
    assert row["lesson"] == "01_hash_map_counter"
    assert 0 <= row["minutes"] < 5 and entry["solved_after_s"] >= 0   # first try to solved, here at once
    # Each lesson's exercise is listed under the notebook that imports its check.
    lessons = set(table["lesson"])
    assert {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")
            if "bpfkit.lessons." in p.read_text()} <= lessons

    out = subprocess.run([sys.executable, "-m", "bpfkit", "progress"], capture_output=True, text=True,
                         env={**os.environ, "BPFKIT_PROGRESS": str(record)}, cwd="/")
    assert out.returncode == 0 and "of" in out.stdout.splitlines()[-1], out.stderr
    assert progress.clear() and progress.read() == {} and not progress.clear()


def test_a_record_that_cannot_be_written_never_fails_a_check(tmp_path, monkeypatch, practice):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("BPFKIT_PROGRESS", str(blocked / "progress.json"))
    assert practice(42)
    monkeypatch.setenv("BPFKIT_PROGRESS", str(tmp_path / "garbled.json"))
    (tmp_path / "garbled.json").write_text("{not json")
    assert not practice(1) and progress.read()["Practice: say 42"]["tries"] == 1


def git(kit: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(kit), *args], capture_output=True, text=True, check=True,
                          env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}).stdout


def test_reset_puts_edited_and_deleted_lessons_back_and_keeps_the_learners_copy(tmp_path):
    kit = tmp_path / "kit"
    (kit / "notebooks" / "solutions").mkdir(parents=True)
    shipped = {"notebooks/01_a.ipynb": '{"cells": []}\n', "notebooks/02_b.ipynb": '{"cells": [1]}\n',
               "notebooks/solutions/01_a.ipynb": '{"cells": [2]}\n'}
    for name, text in shipped.items():
        (kit / name).write_text(text)
    git(kit, "init", "-q")
    git(kit, "add", ".")
    git(kit, "commit", "-qm", "lessons")
    assert reset.lessons(kit) == {"restored": [], "backup": []}

    (kit / "notebooks/01_a.ipynb").write_text('{"cells": ["my work"]}\n')
    (kit / "notebooks/solutions/01_a.ipynb").unlink()
    (kit / "notebooks/03_mine.ipynb").write_text("{}")          # the learner's own: left alone
    done = reset.lessons(kit)
    assert done["restored"] == ["notebooks/01_a.ipynb", "notebooks/solutions/01_a.ipynb"]
    for name, text in shipped.items():
        assert (kit / name).read_text() == text
    backup = Path(done["backup"][0])
    assert backup.parent == kit / "notebooks" / ".backup"
    assert (backup / "01_a.ipynb").read_text() == '{"cells": ["my work"]}\n'
    assert (kit / "notebooks/03_mine.ipynb").exists()
    assert reset.lessons(kit) == {"restored": [], "backup": []}
    with pytest.raises(errors.SetupError, match="not a git clone"):
        reset.lessons(tmp_path)


DIES_WITH_A_PIN = """
import os, bpfkit
from bpfkit.host import lifetime
m = bpfkit.create_map("array", key="u32", value="u64", max_entries=1)
m.pin("bpfkit-test-reset-pin")
bpfkit.load("TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }", name="dies")
print(lifetime.me().replace(":", "-"), flush=True)
os.kill(os.getpid(), 9)
"""
HOLDS_A_MAP = """
import sys, bpfkit
m = bpfkit.create_map("array", key="u32", value="u64", max_entries=1)
print("ready", flush=True)
sys.stdin.read()
"""


def test_reset_removes_what_a_dead_notebook_left_and_names_a_live_holder(no_leaks):
    pin = Path("/sys/fs/bpf/bpfkit-test-reset-pin")
    holder = subprocess.Popen([sys.executable, "-c", HOLDS_A_MAP], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "ready\n"
        # After the holder's create_map, which would have removed the dead one's pin itself.
        died = subprocess.run([sys.executable, "-c", DIES_WITH_A_PIN], capture_output=True, text=True)
        assert died.returncode == -signal.SIGKILL and pin.exists(), died.stderr
        out = subprocess.run([sys.executable, "-m", "bpfkit", "reset", "--keep-lessons"],
                             capture_output=True, text=True, cwd="/")
        assert out.returncode == 0, out.stderr
        assert f"pins: removed {pin}" in out.stdout and not pin.exists()
        short_kallsyms = Path(tempfile.gettempdir()) / f"{compiler.KALLSYMS_PREFIX}{died.stdout.strip()}"
        assert f"files: removed {short_kallsyms}" in out.stdout and not short_kallsyms.exists()
        assert f"process {holder.pid} (" in out.stdout and "holds 0 programs and 1 maps" in out.stdout
        assert "Restart Kernel" in out.stdout
    finally:
        holder.communicate("", timeout=10)
        if pin.exists():
            pin.unlink()
