"""The lesson × kernel table reads the harness's reports as it writes them (kernel-free)."""
from __future__ import annotations

import json

import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

import kernel_table
import notebook_runs

pytestmark = pytest.mark.unit


def _nb(*texts):
    cells = [new_code_cell("x", outputs=[new_output("stream", name="stdout", text=t)]) for t in texts]
    return new_notebook(cells=cells)


def test_a_notebooks_refusals_are_each_said_once_in_order():
    nb = _nb("Skipped: this kernel refuses arena maps (EPERM: lockdown).\n",
             "plain output\nSkipped: this kernel refuses arena maps (EPERM: lockdown).\n",
             "Skipped: this kernel refuses lsm programs (EINVAL).\n")
    assert notebook_runs.refusals_said(nb) == ["Skipped: this kernel refuses arena maps (EPERM: lockdown).",
                                               "Skipped: this kernel refuses lsm programs (EINVAL)."]


def test_the_table_has_a_column_per_kernel_and_the_last_outcome_of_each_notebook(tmp_path, monkeypatch):
    host, vm = tmp_path / "host.json", tmp_path / "vm.json"
    host.write_text(json.dumps({"kernel": "6.18.0", "system": "Debian 12"}) + "\n")
    vm.write_text(json.dumps({"kernel": "6.12.1", "accelerator": "TCG", "tests_s": 600}) + "\n")
    for where, skipped_text in ((host, "Skipped: this kernel refuses arena maps (EPERM).\n"), (vm, "")):
        monkeypatch.setenv("BPFKIT_NOTEBOOK_REPORT", str(where))
        notebook_runs.report(notebook_runs.notebook_path("19_beyond_bcc"), _nb(skipped_text))
    monkeypatch.setenv("BPFKIT_NOTEBOOK_REPORT", str(vm))
    notebook_runs.report(notebook_runs.notebook_path("01_hash_map_counter-solution"), _nb())
    notebook_runs.report(notebook_runs.notebook_path("01_hash_map_counter-solution"), _nb(), "cell 3: boom\nValueError: x")
    text = kernel_table.table([kernel_table.read(host), kernel_table.read(vm)])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["lesson"] == "| lesson | 6.18.0 (Debian 12) | 6.12.1 (TCG) |"
    assert rows["19_beyond_bcc"] == "| 19_beyond_bcc | ran; skipped: arena maps | ran |"
    assert rows["01_hash_map_counter-solution"] == "| 01_hash_map_counter-solution | not run | **failed** |"
    assert "6.12.1 (TCG): 1 of 2 ran, tests 10.0 min." in text
    assert "- 01_hash_map_counter-solution failed: ValueError: x" in text


def test_nothing_is_written_where_no_report_is_asked_for_nor_for_a_made_up_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("BPFKIT_NOTEBOOK_REPORT", raising=False)
    monkeypatch.chdir(tmp_path)
    notebook_runs.report(notebook_runs.notebook_path("00_check_your_setup"), _nb())
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("BPFKIT_NOTEBOOK_REPORT", str(tmp_path / "report.json"))
    notebook_runs.report(tmp_path / "leaky.ipynb", _nb())        # the harness's own tests' notebooks
    assert list(tmp_path.iterdir()) == []
    notebook_runs.report(notebook_runs.notebook_path("00_check_your_setup"), _nb())
    assert kernel_table.read(tmp_path / "report.json")[1]["00_check_your_setup"]["outcome"] == "ran"


def test_a_refusal_cell_keeps_what_was_refused():
    assert kernel_table.refused_thing("Skipped: this kernel refuses arena maps (EPERM: x).") == "arena maps"
    assert kernel_table.refused_thing(
        "The kernel does not allow lsm programs here (EPERM); the parts that need them are skipped."
    ) == "The kernel does not allow lsm programs here"
