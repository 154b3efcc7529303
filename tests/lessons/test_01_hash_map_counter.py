"""The seed lesson's counter, on the real kernel: exact counts, tidy frames, no stacking."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.access import kernel
from conftest import settled_snapshot
from notebook_runs import solution_only_lines


def test_counter_counts_each_execve_exactly(uid, no_leaks):
    with bpfkit.load("counter") as prog:
        children.run_as(uid, 7)
        frame = prog["counter_table"].frame()
        assert frame.loc[frame["key"] == uid, "value"].tolist() == [7]
        children.run_as(uid, 2)
        assert prog["counter_table"][uid] == 9


def test_atomic_counter_counts_exactly_too(uid, no_leaks):
    with bpfkit.load("counter_atomic") as prog:
        children.run_as(uid, 4)
        assert prog["counter_table"][uid] == 4


def test_frame_columns_dtypes_and_renaming(uid, no_leaks):
    with bpfkit.load("counter") as prog:
        children.run_as(uid, 1)
        table = prog["counter_table"]
        frame = table.frame()
        assert list(frame.columns) == ["key", "value"]
        assert frame["key"].dtype == np.uint64 and frame["value"].dtype == np.uint64
        assert list(table.frame({"key": "uid", "value": "count"}).columns) == ["uid", "count"]
        assert list(table.frame(columns=["uid", "count"]).columns) == ["uid", "count"]
        assert list(table.frame(columns={"value": "n"}).columns) == ["key", "n"]


def test_struct_keys_and_values_become_named_columns(no_leaks):
    source = r"""
    struct key_t { u32 pid; char comm[16]; };
    struct val_t { u64 count; u32 flags; };
    BPF_HASH(by_task, struct key_t, struct val_t, 16);
    """
    with bpfkit.load(source, name="structs") as prog:
        m = prog["by_task"]
        m[{"pid": 42, "comm": "bash"}] = {"count": 3, "flags": 1}
        m[(7, "python3")] = (10, 0)
        frame = m.frame().sort_values("pid").reset_index(drop=True)
        assert list(frame.columns) == ["pid", "comm", "count", "flags"]
        assert frame["comm"].tolist() == ["python3", "bash"]
        assert frame["count"].tolist() == [10, 3]
        assert frame["pid"].dtype == np.uint32
        assert m[(42, "bash")] == {"count": 3, "flags": 1}


def test_loading_same_name_again_replaces_the_program(no_leaks):
    before = kernel.snapshot()["programs"]
    first = bpfkit.load("counter")
    first_ids = set(first.program_ids())
    second = bpfkit.load("counter")
    assert first.closed and not second.closed
    now = settled_snapshot({"programs": before | set(second.program_ids()),
                            "maps": kernel.snapshot()["maps"], "links": set()})["programs"]
    assert now - before == set(second.program_ids())
    assert not first_ids & now
    assert bpfkit.loaded()["counter"] is second
    second.close()


def test_closed_program_says_so(no_leaks):
    prog = bpfkit.load("counter")
    table = prog["counter_table"]
    prog.close()
    with pytest.raises(bpfkit.core.errors.ProgramClosed, match="closed"):
        table.frame()


# The seed's program as the seed attaches it: to the execve syscall's kernel function with a kprobe,
# asked for by name (BCC's own way), or by a kprobe__ prefix. The kernel function's name differs by
# architecture (__x64_sys_execve, __arm64_sys_execve): bpfkit asks BCC for it, never spells it.
SEED_KPROBE = r"""
BPF_HASH(counter_table);
int FUNCTION(void *ctx) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    counter_table.increment(uid);
    return 0;
}
"""
KPROBE_FORMS = {
    "by name": ("hello", lambda prog: prog.attach_kprobe_or_tracepoint("execve", "hello")),
    "kprobe__ prefix": ("kprobe__sys_execve", None),
    "arch prefix": ("kprobe____x64_sys_execve", None),
}


def _seed_counts(uid: int, form: str) -> tuple[str, int]:
    function, attach = KPROBE_FORMS[form]
    with bpfkit.load(SEED_KPROBE.replace("FUNCTION", function), name="seed_kprobe") as prog:
        where = attach(prog) if attach else prog.attached[function]
        children.run_as(uid, 3)
        return where, prog["counter_table"].get(uid, 0)


@pytest.mark.skipif(not bpfkit.access.system.kprobes_available(),
                    reason="this kernel has no kprobes (no kprobe_events in tracefs, no kprobe event "
                           "source in sysfs): the fallback test below runs instead")
@pytest.mark.parametrize("form", KPROBE_FORMS)
def test_the_seeds_kprobe_counts_each_execve(uid, no_leaks, form):
    where, count = _seed_counts(uid, form)
    assert where.startswith("kprobe:") and where.endswith("sys_execve")
    assert count == 3


@pytest.mark.skipif(bpfkit.access.system.kprobes_available(),
                    reason="this kernel has kprobes, so the kit never falls back to a tracepoint")
@pytest.mark.parametrize("form", KPROBE_FORMS)
def test_without_kprobes_the_seeds_kprobe_falls_back_to_the_syscall_tracepoint(uid, no_leaks, form, capsys):
    where, count = _seed_counts(uid, form)
    assert where == "tracepoint:syscalls:sys_enter_execve"
    assert count == 3
    assert "kprobes are not available" in capsys.readouterr().out


def test_cell_magic_binds_the_program_and_rerun_replaces_it(no_leaks):
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext bpfkit")
    cell = "%%bpf magic_counter\nBPF_HASH(counter_table);\n"
    assert shell.run_cell(cell).success
    first = shell.user_ns["magic_counter"]
    assert isinstance(first, bpfkit.Program) and "counter_table" in first
    assert shell.run_cell(cell).success
    assert first.closed and not shell.user_ns["magic_counter"].closed
    shell.user_ns["magic_counter"].close()


def test_counter_command_prints_per_user_rows(no_leaks):
    out = subprocess.run([sys.executable, "-m", "bpfkit", "counter", "--interval", "0.3", "--count", "2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("Counting execve() per user") and len(lines) == 3
    # The command itself starts no program, but the machine may: each row is "name (uid N): count".
    assert all("(uid " in l or l == "(no execve yet)" for l in lines[1:])


# Lesson 01's exercise: the check reads the map, races a copy of the program on two CPUs, and
# reads the C code for what one race cannot show.
BY_COMM = r"""
struct key_t { char comm[16]; };
MAP(counter_table, struct key_t);
TRACEPOINT_PROBE(sched, sched_process_exec) {
    struct key_t key = {};
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    ADD
    return 0;
}
""".replace("MAP", "BPF_HASH")
PER_CPU = BY_COMM.replace("BPF_HASH", "BPF_PERCPU_HASH")
EXACT_ADD = ("u64 zero = 0, *n = counter_table.lookup_or_try_init(&key, &zero); "
             "if (n) __sync_fetch_and_add(n, 1);")
TRY_INIT_PLAIN_ADD = "u64 zero = 0, *n = counter_table.lookup_or_try_init(&key, &zero); if (n) (*n)++;"
STARTER = r"""
BPF_HASH(counter_table);
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    counter_table.increment(uid);
    return 0;
}
"""
RACE_CELL = "'Lookup-then-update is not atomic'"   # a lost count's problem points at the race's cell


@pytest.mark.parametrize("source, passed, says", [
    (STARTER, False, ["still a number", RACE_CELL]),
    (BY_COMM.replace("ADD", "counter_table.increment(key);"), False, [RACE_CELL]),
    (BY_COMM.replace("ADD", "counter_table.atomic_increment(key);"), False, ["first count"]),
    (BY_COMM.replace("ADD", TRY_INIT_PLAIN_ADD), False, [RACE_CELL]),
    (BY_COMM.replace("ADD", EXACT_ADD).replace("sched, sched_process_exec", "syscalls, sys_enter_execve"),
     False, ["'true' started 3 times"]),
    (PER_CPU.replace("ADD", "counter_table.increment(key);"), False, []),
    (BY_COMM.replace("ADD", EXACT_ADD), True, []),
    (BY_COMM.replace("ADD", EXACT_ADD + " // not counter_table.increment(key);"), True, []),
    (PER_CPU.replace("ADD", TRY_INIT_PLAIN_ADD), True, []),
    (PER_CPU.replace("ADD", EXACT_ADD), True, []),
], ids=["starter", "increment", "atomic_increment", "plain_add", "wrong_hook", "percpu_increment",
        "solution", "comment", "percpu", "percpu_atomic"])
def test_comm_exercise_check_says_what_is_wrong(uid, no_leaks, source, passed, says):
    from bpfkit.lessons.l01_hash_map_counter import check_comm_counter
    with bpfkit.load(source, name="by_comm") as prog:
        children.run_as(uid, 3)
        result = check_comm_counter(prog, {"true": 3})
        assert result.passed == passed, str(result)
        for words in says:
            assert words in str(result), str(result)


def test_the_check_counts_a_lost_add_from_the_race_not_from_the_code(no_leaks):
    """The race: a copy of the program at getppid(), as a fresh uid, from two CPUs. Every call
    is counted by an atomic add and by a per-CPU map (its copies summed)."""
    from bpfkit.lessons.l01_hash_map_counter import race
    for source in (BY_COMM.replace("ADD", EXACT_ADD), PER_CPU.replace("ADD", TRY_INIT_PLAIN_ADD)):
        with bpfkit.load(source, name="by_comm") as prog:
            made, counted = race(prog, calls_per_worker=50_000)
            assert made == counted == 100_000
    from bpfkit.lessons.l01_hash_map_counter import how_it_adds
    [(problem, hint, fix)] = how_it_adds(STARTER, per_cpu=False, raced=(600_000, 599_000))
    assert "counted 599,000: 1,000 lost" in problem and "atomic" in hint and "__sync_fetch_and_add" in fix
    [(problem, _, _)] = how_it_adds(STARTER, per_cpu=False, raced=None)
    assert "could not race" in problem


def test_the_checks_problems_ask_first_and_show_the_code_on_the_third_try(uid, no_leaks):
    from bpfkit.lessons.l01_hash_map_counter import check_comm_counter
    with bpfkit.load(BY_COMM.replace("ADD", "counter_table.atomic_increment(key);"), name="by_comm") as prog:
        children.run_as(uid, 3)
        first, second, third = (str(check_comm_counter(prog, {"true": 3})) for _ in range(3))
    assert "?" in first and "Hint:" not in first and "__sync_fetch_and_add" not in first
    assert "Hint:" in second and "Fix:" not in second
    assert "Fix:" in third and "__sync_fetch_and_add(n, 1)" in third




def test_the_first_try_on_the_starter_shows_no_line_of_the_solution(uid, no_leaks):
    from bpfkit.lessons.l01_hash_map_counter import check_comm_counter
    with bpfkit.load(STARTER, name="by_comm") as prog:
        children.run_as(uid, 3)
        first = str(check_comm_counter(prog, {"true": 3}))
    assert not [line for line in solution_only_lines(Path(__file__).resolve().parents[2] / "notebooks" / "01_hash_map_counter.ipynb") if line in first], first
