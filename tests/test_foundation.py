"""The kit's setup files agree with each other and with the machine."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _requirement_names(specs) -> dict[str, str]:
    out = {}
    for spec in specs:
        m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", spec)
        if m and m.group(1) not in ("python", "pip"):
            out[m.group(1).lower()] = m.group(2).replace(" ", "")
    return out


@pytest.mark.unit
def test_environment_yml_has_the_same_python_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"] + project["optional-dependencies"]["dev"])
    lines = (ROOT / "environment.yml").read_text().splitlines()
    deps = lines[lines.index("dependencies:") + 1:]
    conda = [l.strip()[2:] for l in deps if re.match(r"^  - [A-Za-z]", l)]
    assert _requirement_names(conda) == wanted
    assert not any(re.match(r"^\s*-\s*bcc\b", l) for l in lines), "bcc is not on conda-forge"


@pytest.mark.unit
def test_pyproject_never_asks_for_the_unrelated_pypi_bcc():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    every = project["dependencies"] + sum(project["optional-dependencies"].values(), [])
    assert "bcc" not in _requirement_names(every)


@pytest.mark.unit
def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make lab" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert "set -euo pipefail" in ci and re.search(r"^(part )?make test$", ci, re.M)


@pytest.mark.unit
def test_bcc_is_found_when_this_python_cannot_import_it():
    """What a conda environment sees: no `bcc` on sys.path. bpfkit must find the distro's."""
    code = (
        "import sys\n"
        "sys.path = [p for p in sys.path if 'dist-packages' not in p or 'venv' in p]\n"
        "try:\n    import bcc\n    print('importable'); sys.exit(3)\nexcept ImportError:\n    pass\n"
        "from bpfkit.access import system\n"
        "m = system.bcc()\n"
        "print(m.__file__, hasattr(m, 'BPF'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().endswith("True")
    assert "bcc/__init__.py" in out.stdout


def test_doctor_passes_on_this_machine():
    out = subprocess.run([sys.executable, "-m", "bpfkit", "doctor"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stdout
    for name in ("kernel", "privilege", "bcc", "headers", "tracefs", "kprobes", "bpftool", "btf"):
        assert re.search(rf"^\[(ok  |note)\] {name}\b", out.stdout, re.M), out.stdout


@pytest.mark.unit
def test_the_doctor_names_what_an_older_bcc_lacks(tmp_path):
    """Ubuntu 22.04's BCC 0.18 has neither atomic_increment() nor BPF_PERCPU_HASH: the doctor
    finds that in the library's text, where this machine's BCC has both."""
    from bpfkit.access import system
    assert system.missing_features() == []
    old = tmp_path / "libbcc.so.0"
    old.write_bytes(b"\0" * 4096 + b"#define BPF_HASH(...)\0lookup_or_try_init\0BPF_PERCPU_ARRAY\0")
    assert system.missing_features(str(old)) == ["map.atomic_increment() (BCC 0.21 and later)",
                                                 "BPF_PERCPU_HASH (BCC 0.19 and later)"]
    newer = tmp_path / "libbcc.so.1"
    newer.write_bytes(old.read_bytes() + b"atomic_increment\0#define BPF_PERCPU_HASH(...)\0")
    assert system.missing_features(str(newer)) == []


def test_provision_is_idempotent_and_quick_when_done():
    out = subprocess.run(["bash", str(ROOT / "scripts/provision.sh")], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "apt-get install" not in out.stdout  # everything was already there
    assert "ready: BCC" in out.stdout


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="make test installs vagrant first")
def test_vagrantfile_is_valid(tmp_path):
    env = {**os.environ, "VAGRANT_HOME": str(tmp_path), "VAGRANT_CHECKPOINT_DISABLE": "1"}
    out = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "validated successfully" in out.stdout
