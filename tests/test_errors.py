"""The mistakes a learner makes, each made for real: the right bpfkit error, and a message that
says what happened and what to do (the words are checked, not just the type).

Setup failures (privilege, BCC, headers, tracefs) are made in a child process: capabilities
dropped with capsh, a uid without privilege, a private mount namespace (unshare -m) with the
headers or tracefs hidden, a fake `bcc` package on PYTHONPATH. The machine itself is untouched.
"""
from __future__ import annotations

import errno
import json
import os
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.core import errors
from bpfkit.access import system
from bpfkit.core.errors import (BccMissing, CompileError, HeadersMissing, KeyTypeError, MapFull,
                                MapNotFound, PrivilegeError, TracefsMissing, TracepointNotFound,
                                VerifierError)
from conftest import as_user, kernel_state, leftovers

ROOT = Path(__file__).resolve().parent.parent

# The seed's program, as a learner copies it (with a tracepoint: this kernel has no kprobes).
SEED = """\
BPF_HASH(counter_table);

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u64 uid;
    u64 counter = 0;
    u64 *p;

    uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    p = counter_table.lookup(&uid);
    if (p != 0) {
        counter = *p;
    }
    counter++;
    counter_table.update(&uid, &counter);
    return 0;
}
"""
LOOKUP_LINE = 9  # the line of counter_table.lookup in SEED


def _no_bcc_noise(message: str) -> None:
    """What BCC and clang print around an error must not reach the learner."""
    for noise in ("/virtual/", "helpers.h", "warnings generated", "errors generated",
                  "Traceback", "Failed to compile BPF module"):
        assert noise not in message, f"{noise!r} in:\n{message}"


# ---- 1. a map name that does not exist ------------------------------------------------------

def test_misspelled_map_name_lists_the_maps_and_suggests_the_nearest(no_leaks):
    with bpfkit.load("counter") as prog:
        with pytest.raises(MapNotFound) as e:
            prog["copunter_table"]  # the seed's own typo
    msg = str(e.value)
    assert "no map named 'copunter_table'" in msg
    assert "Its maps are: counter_table." in msg
    assert "Did you mean 'counter_table'?" in msg
    assert isinstance(e.value, KeyError)  # `name in prog`-style code still works


# ---- 2. a misspelled map method in C --------------------------------------------------------

def test_misspelled_map_method_points_at_the_learners_line_and_the_right_method(no_leaks):
    source = SEED.replace("counter_table.lookup", "counter_table.loopkup")
    before = kernel_state()
    with pytest.raises(CompileError) as e:
        bpfkit.load(source, name="seed_typo")
    msg = str(e.value)
    assert msg.startswith(f"Your C code did not compile: line {LOOKUP_LINE}, column 23: "
                          "the map counter_table has no method 'loopkup'")
    assert "    p = counter_table.loopkup(&uid);\n" + " " * 26 + "^" in msg
    assert "use counter_table.lookup(...)" in e.value.hint
    _no_bcc_noise(msg)
    assert not leftovers(before)


def test_error_in_a_bpf_file_names_the_file_and_its_line(tmp_path, monkeypatch, no_leaks):
    (tmp_path / "bpf").mkdir()
    (tmp_path / "bpf" / "seed.c").write_text(SEED.replace("counter_table.lookup", "counter_table.loopkup"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CompileError) as e:
        bpfkit.load("bpf/seed.c")
    assert str(e.value).startswith(f"bpf/seed.c did not compile: line {LOOKUP_LINE}, column 23:")
    assert f"bpf/seed.c, line {LOOKUP_LINE}, column 23:" in e.value.detail


# ---- 3. a C syntax error ----------------------------------------------------------------------

def test_syntax_error_is_placed_in_the_learners_code_not_bccs(no_leaks):
    # Line 13 comes after the TRACEPOINT_PROBE, where BCC has inserted a struct of its own:
    # clang's line number is larger; the learner's is 13.
    source = SEED.replace("    counter++;\n", "    counter++\n")
    with pytest.raises(CompileError) as e:
        bpfkit.load(source, name="seed_syntax")
    msg = str(e.value)
    assert msg.startswith("Your C code did not compile: line 13, column 14: expected ';' after expression")
    assert "    counter++\n" + " " * 17 + "^" in msg
    assert "add the missing ';'" in e.value.hint
    _no_bcc_noise(msg)
    assert msg.count("line ") <= 4  # one error, not clang's cascade


def test_several_errors_show_the_first_three_and_count_the_rest(no_leaks):
    source = "int f(void *ctx) {\n" + "".join(f"    int x{i} = y{i};\n" for i in range(5)) + "    return 0;\n}\n"
    with pytest.raises(CompileError) as e:
        bpfkit.load(source, name="many_errors")
    detail = e.value.detail
    assert [f"line {n}, column" in detail for n in (2, 3, 4, 5, 6)] == [True, True, True, False, False]
    assert "(and 2 more errors after these)" in detail
    assert "'y0' is not declared" in e.value.hint


# ---- 3b. mistakes that crash BCC's compiler instead of being reported ---------------------------

@pytest.mark.parametrize("source, words", [
    ("*BPF_HASH(counter_table);\n", "crashed on it"),
    ("BPF_ARRAY(h, u64, 64);\nTRACEPOINT_PROBE(syscalls, sys_exit_read) {\n"
     "    int k = args->ret / 1024;\n    h.increment(k);\n    return 0;\n}\n", "signed number"),
])
def test_a_compiler_crash_is_a_compile_error_and_this_process_survives(source, words, no_leaks):
    before = kernel_state()
    with pytest.raises(CompileError) as e:
        bpfkit.load(source, name="crash")
    assert words in e.value.what and "separate process" in e.value.what
    if words == "signed number":
        assert "u64" in e.value.hint
    assert not leftovers(before)
    with bpfkit.load(SEED, name="after_crash") as prog:   # the process still loads programs
        assert "counter_table" in prog


# ---- 4. a verifier rejection ------------------------------------------------------------------

def test_verifier_rejection_shows_the_line_the_log_and_a_hint(no_leaks):
    source = SEED.replace("    if (p != 0) {\n        counter = *p;\n    }\n", "    counter = *p;\n")
    before = kernel_state()
    with pytest.raises(VerifierError) as e:
        bpfkit.load(source, name="seed_null")
    msg = str(e.value)
    assert msg.startswith("The verifier refused TRACEPOINT_PROBE(syscalls, sys_enter_execve) "
                          "at line 10 of your C code:\n    counter = *p;\n"
                          "It says: R0 invalid mem access 'map_value_or_null'")
    assert "Last lines of the verifier's log:" in msg
    assert "; counter = *p;  (line 10)" in msg  # the log's own source line, renumbered
    assert "call bpf_map_lookup_elem" in msg
    assert "lookup() returns NULL when the key is missing" in e.value.hint
    assert "@ main.c" not in msg
    assert not leftovers(before), "a program the verifier refused left maps behind"


# ---- 5. no privilege ----------------------------------------------------------------------------

CHILD = """
import json, sys
import bpfkit
try:
    prog = bpfkit.load(sys.argv[1] if len(sys.argv) > 1 else "counter")
    print(json.dumps({"type": None, "tracefs": bpfkit.access.system.tracefs_mounted()}))
    prog.close()
except bpfkit.core.errors.BpfkitError as e:
    print(json.dumps({"type": type(e).__name__, "message": str(e)}))
"""


def _child(prefix: list[str] | None = None, code: str = CHILD, *, env=None, shell=None):
    """Run `code` in a child bpfkit; returns its JSON line (or fails with its output)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", **(env or {})}
    if shell is not None:
        argv = ["unshare", "-m", "sh", "-c", shell, "sh", sys.executable, "-c", code]
    else:
        argv = (prefix or []) + [sys.executable, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd="/",
                         timeout=120)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    assert lines, f"child said:\n{out.stdout}\n{out.stderr}"
    return json.loads(lines[-1]) | {"stdout": out.stdout, "returncode": out.returncode}


needs_capsh = pytest.mark.skipif(shutil.which("capsh") is None,
                                 reason="capsh (libcap2-bin) is installed by scripts/provision.sh --test-tools")


@needs_capsh
def test_root_without_bpf_capabilities_is_told_which_are_missing():
    drop = ["capsh", "--drop=cap_sys_admin,cap_bpf,cap_perfmon", "--", "-c", '"$0" "$@"']
    got = _child(drop)
    assert got["type"] == PrivilegeError.__name__
    msg = got["message"]
    assert "runs as root but lacks CAP_BPF and CAP_PERFMON" in msg
    assert "capabilities were dropped" in msg
    assert "grant CAP_BPF and CAP_PERFMON" in msg


@needs_capsh
def test_root_with_cap_bpf_but_not_cap_perfmon_is_told_exactly_that():
    got = _child(["capsh", "--drop=cap_sys_admin,cap_perfmon", "--", "-c", '"$0" "$@"'])
    assert got["type"] == PrivilegeError.__name__
    assert "runs as root but lacks CAP_PERFMON:" in got["message"]
    assert "grant CAP_PERFMON (in a container: --cap-add PERFMON)" in got["message"]


def test_an_unprivileged_user_is_told_it_is_not_root():
    nobody = children.unused_uid()
    got = _child(as_user(nobody))
    assert got["type"] == PrivilegeError.__name__
    msg = got["message"]
    assert f"runs as uid {nobody}, not root, and lacks CAP_BPF and CAP_PERFMON" in msg
    assert "run it as root" in msg and "make lab" in msg


def test_doctor_reports_missing_privilege_and_exits_1():
    out = subprocess.run([*as_user(children.unused_uid()), sys.executable, "-m", "bpfkit", "doctor"],
                         capture_output=True, text=True, cwd="/",
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.returncode == 1
    assert "[FAIL] privilege" in out.stdout and "not root" in out.stdout
    assert "not ready: fix privilege" in out.stdout


# ---- 6. BCC missing, or the unrelated PyPI bcc in its place ------------------------------------

HIDE_DISTRO_BCC = """
import sys
sys.path = [p for p in sys.path if "dist-packages" not in p or "venv" in p]
import bpfkit.access.system
bpfkit.access.system.DISTRO_MODULE_DIRS = ()
"""


@pytest.fixture
def fake_pypi_bcc(tmp_path):
    """A package named bcc that is not BCC (like PyPI's lattice library of that name)."""
    pkg = tmp_path / "fake" / "bcc"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""A lattice library, not BPF."""\nclass Lattice:\n    pass\n')
    return str(tmp_path / "fake")


@pytest.mark.unit
def test_pypi_bcc_instead_of_the_distros_is_named_with_the_fix(fake_pypi_bcc):
    got = _child(code=HIDE_DISTRO_BCC + CHILD, env={"PYTHONPATH": f"{fake_pypi_bcc}:{ROOT}"})
    assert got["type"] == BccMissing.__name__
    msg = got["message"]
    assert f"The `bcc` package imported from {fake_pypi_bcc}/bcc/__init__.py is the unrelated PyPI library" in msg
    assert "pip uninstall bcc" in msg
    assert system._distro_install_command() in msg


def test_pypi_bcc_is_set_aside_when_the_distros_bcc_is_there(fake_pypi_bcc):
    got = _child(env={"PYTHONPATH": f"{fake_pypi_bcc}:{ROOT}"})
    assert got["type"] is None  # loaded with the distro's BCC
    doctor = subprocess.run([sys.executable, "-m", "bpfkit", "doctor"], capture_output=True, text=True,
                            cwd="/", env={**os.environ, "PYTHONPATH": f"{fake_pypi_bcc}:{ROOT}"})
    assert "the unrelated PyPI `bcc`" in doctor.stdout and "set aside (pip uninstall bcc)" in doctor.stdout


@pytest.mark.unit
def test_no_bcc_at_all_gives_the_distro_install_command():
    got = _child(code=HIDE_DISTRO_BCC + CHILD)
    assert got["type"] == BccMissing.__name__
    assert "BCC (the BPF Compiler Collection) is not installed for any Python here." in got["message"]
    assert system._distro_install_command() in got["message"]
    assert "never from pip" in got["message"]
    if Path("/etc/debian_version").exists():
        assert "sudo apt-get install bpfcc-tools python3-bpfcc" in got["message"]


# ---- 7. kernel headers missing -----------------------------------------------------------------

def test_missing_headers_name_the_package_for_the_running_kernel(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    got = _child(shell=f'mount --bind {empty} /lib/modules/$(uname -r) && exec "$@"')
    assert got["type"] == HeadersMissing.__name__
    msg = got["message"]
    assert f"No kernel headers at /lib/modules/{platform.release()}/build" in msg
    assert system.headers_package() in msg
    if Path("/etc/debian_version").exists():
        assert f"sudo apt-get install linux-headers-{platform.release()}" in msg
    assert "scripts/provision.sh" in msg


def test_doctor_fails_on_missing_headers_with_the_fix(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = subprocess.run(["unshare", "-m", "sh", "-c",
                          f'mount --bind {empty} /lib/modules/$(uname -r) && exec "$@"', "sh",
                          sys.executable, "-m", "bpfkit", "doctor"],
                         capture_output=True, text=True, cwd="/",
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 1
    assert "[FAIL] headers" in out.stdout and system.headers_package() in out.stdout


@pytest.mark.parametrize("describes", ["another kernel", "the running kernel"])
def test_headers_that_describe_another_kernel_are_noted_by_the_doctor(describes, tmp_path):
    """Headers made for each case (only their release string) in place of the machine's, in a
    private mount namespace: the doctor's line notes a mismatch, and only a mismatch."""
    release = platform.release()
    said = "9.9.9-not-this-one" if describes == "another kernel" else release
    generated = tmp_path / "build" / "include" / "generated"
    generated.mkdir(parents=True)
    (generated / "utsrelease.h").write_text(f'#define UTS_RELEASE "{said}"\n')
    code = ("from bpfkit.access import system\n"
            "print(next(c for c in system.checks() if c.name == 'headers').line())")
    out = subprocess.run(["unshare", "-m", "sh", "-c", f'mount --bind {tmp_path} /lib/modules/{release} && exec "$@"',
                          "sh", sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                         timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and f"({said})" in out.stdout, out.stdout + out.stderr
    assert ("does not match the running kernel" in out.stdout) is (describes == "another kernel"), out.stdout


# ---- 8. tracefs not mounted ----------------------------------------------------------------------

UMOUNT_TRACEFS = f"umount {system.TRACEFS} && "


def test_unmounted_tracefs_is_mounted_again_by_root():
    got = _child(shell=UMOUNT_TRACEFS + 'exec "$@"')
    assert got["type"] is None and got["tracefs"] is True
    assert system.tracefs_mounted()  # the namespace was private: the machine's mount never moved


@needs_capsh
def test_unmounted_tracefs_without_cap_sys_admin_says_how_to_mount_it():
    got = _child(shell=UMOUNT_TRACEFS + 'exec capsh --drop=cap_sys_admin -- -c \'exec "$0" "$@"\' "$@"')
    assert got["type"] == TracefsMissing.__name__
    msg = got["message"]
    assert f"tracefs is not mounted at {system.TRACEFS}, and this process may not mount it " \
           "(it lacks CAP_SYS_ADMIN)" in msg
    assert f"sudo mount -t tracefs tracefs {system.TRACEFS}" in msg


def test_doctor_reports_unmounted_tracefs_and_does_not_mount_it():
    out = subprocess.run(
        ["unshare", "-m", "sh", "-c",
         UMOUNT_TRACEFS + f'"$@"; echo "exit=$?"; test -d {system.TRACEFS}/events && echo MOUNTED || echo UNMOUNTED',
         "sh", sys.executable, "-m", "bpfkit", "doctor"],
        capture_output=True, text=True, cwd="/", env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "[FAIL] tracefs      not mounted" in out.stdout
    assert f"fix: sudo mount -t tracefs tracefs {system.TRACEFS}" in out.stdout
    assert "exit=1" in out.stdout and out.stdout.rstrip().endswith("UNMOUNTED")


# ---- 9. a tracepoint that does not exist -------------------------------------------------------------

def test_unknown_tracepoint_lists_the_nearest_names_from_this_kernel(no_leaks):
    source = SEED.replace("sys_enter_execve", "sys_enter_execvee")
    before = kernel_state()
    with pytest.raises(TracepointNotFound) as e:
        bpfkit.load(source, name="seed_tp")
    msg = str(e.value)
    assert msg.startswith("This kernel has no tracepoint 'syscalls:sys_enter_execvee'. The nearest are: "
                          "syscalls:sys_enter_execve, syscalls:sys_enter_execveat")
    assert "TRACEPOINT_PROBE(category, event)" in e.value.hint
    assert not leftovers(before)


def test_unknown_tracepoint_category_lists_categories(no_leaks):
    with pytest.raises(TracepointNotFound) as e:
        bpfkit.load("TRACEPOINT_PROBE(syscall, sys_enter_execve) { return 0; }", name="seed_cat")
    assert "The nearest are: syscalls" in str(e.value)


# ---- 10. a full map -------------------------------------------------------------------------------------

def test_full_map_explains_max_entries(no_leaks):
    with bpfkit.load("BPF_HASH(small, u32, u64, 2);", name="small_map") as prog:
        m = prog["small"]
        m[1], m[2] = 10, 20
        with pytest.raises(MapFull) as e:
            m[3] = 30
        m[2] = 21  # an existing key still updates
        assert dict(m.items()) == {1: 10, 2: 21}
    msg = str(e.value)
    assert "Map 'small' is full: it holds at most max_entries=2 entries" in msg
    assert "give the map a larger max_entries in C" in msg


# ---- 11. a Python key or value of the wrong type or size -------------------------------------------------

@pytest.mark.parametrize("key,value,expected", [
    ("alice", 1, "The map's key is a C u64 (8 bytes); 'alice' does not fit: expected a whole number, got str"),
    (2 ** 70, 1, "The map's key is a C u64 (8 bytes); 1180591620717411303424 does not fit"),
    (-1, 1, "-1 is outside 0..18446744073709551615"),
    (1, 1.5, "The map's value is a C u64 (8 bytes); 1.5 does not fit"),
    (1, None, "The map's value is a C u64 (8 bytes); None does not fit"),
])
def test_wrong_key_or_value_says_what_the_map_expects(key, value, expected, no_leaks):
    with bpfkit.load("counter") as prog:
        with pytest.raises(KeyTypeError) as e:
            prog["counter_table"][key] = value
    assert expected in str(e.value)
    assert "pass a whole number from 0 to 18446744073709551615" in e.value.hint


def test_wrong_struct_key_names_its_fields(no_leaks):
    source = "struct key_t { u32 pid; char comm[16]; };\nBPF_HASH(by_task, struct key_t, u64, 8);"
    with bpfkit.load(source, name="struct_keys") as prog:
        m = prog["by_task"]
        with pytest.raises(KeyTypeError) as e:
            m[{"pid": 1, "command": "bash"}] = 1
        assert "no field 'command'" in str(e.value)
        assert "pass a dict with the fields ['pid', 'comm']" in e.value.hint
        with pytest.raises(KeyTypeError) as e:
            m[(1, "a-command-name-too-long")] = 1
        assert "do not fit in char[16]" in str(e.value)


# ---- 12. an interrupted sampling loop -----------------------------------------------------------------

@pytest.mark.parametrize("how", ["sample", "live"])
def test_interrupted_sampling_stops_cleanly_and_keeps_what_it_sampled(how, no_leaks):
    import matplotlib
    matplotlib.use("Agg")
    run = bpfkit.sample if how == "sample" else bpfkit.observe.sampling.live
    with bpfkit.load("counter") as prog:
        m = prog["counter_table"]
        m[7] = 1
        calls = []

        def action():  # the learner presses stop during the third pause
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            m[7] = m[7] + 1

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            frame = run(m, every=0.01, duration=10, action=action)
        assert frame.loc[frame["key"] == 7, "value"].tolist() == [1, 2, 3]
        assert frame["time"].is_monotonic_increasing
        assert any("interrupted after 3 snapshots" in str(w.message) for w in caught)
        assert not prog.closed  # the program keeps running: only the loop stopped


# ---- typos in Python names ----------------------------------------------------------------------------

def test_misspelled_python_methods_suggest_the_right_name(no_leaks):
    with bpfkit.load("counter") as prog:
        table = prog["counter_table"]
        with pytest.raises(AttributeError) as e:
            table.fram()
        assert str(e.value) == "A bpfkit Map has no attribute 'fram'.\n\nWhat to do: Did you mean .frame?"
        with pytest.raises(errors.NoSuchAttribute, match=r"Did you mean \.items\?"):
            table.itmes()
        with pytest.raises(AttributeError, match=r"Did you mean \.close\b"):
            prog.clsoe()
        with pytest.raises(AttributeError, match=r"'counter_table' is a map: write prog\['counter_table'\]"):
            prog.counter_table
        with pytest.raises(AttributeError, match=r"For the map 'counter_table', write prog\['counter_table'\]"):
            prog.counter_tabel
        assert not hasattr(table, "no_such_thing") and hasattr(table, "frame")


# ---- IPython shows bpfkit errors as their message alone ------------------------------------------------

def test_ipython_shows_the_message_without_a_traceback(capsys, no_leaks):
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext bpfkit")
    good = "%%bpf seed_cell\n" + SEED
    assert shell.run_cell(good).success
    first = shell.user_ns["seed_cell"]
    capsys.readouterr()

    bad = "%%bpf seed_cell\n" + SEED.replace("counter_table.lookup", "counter_table.loopkup")
    result = shell.run_cell(bad)
    out = capsys.readouterr().out
    assert isinstance(result.error_in_exec, CompileError)
    # Line 1 of the cell is the magic, so the seed's line 9 is the cell's line 10.
    assert "The %%bpf seed_cell cell did not compile: line 10, column 23: the map counter_table " \
           "has no method 'loopkup'" in out
    assert "Traceback" not in out and "File " not in out and "%tb" not in out
    # The failed cell changed nothing: the earlier program is still there and still running.
    assert shell.user_ns["seed_cell"] is first and not first.closed
    assert "(The program loaded earlier as 'seed_cell' is still loaded, unchanged.)" in out

    shell.run_cell("seed_cell['copunter_table']")
    out = capsys.readouterr().out
    assert "MapNotFound" in out and "Did you mean 'counter_table'?" in out and "Traceback" not in out
    shell.run_cell("seed_cell.close()")


@pytest.mark.unit
def test_ipython_still_shows_tracebacks_for_other_errors(capsys):
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext bpfkit")
    shell.run_cell("1 / 0")
    assert "Traceback" in capsys.readouterr().out


# ---- 14. the verifier's hardest messages, and C from elsewhere ------------------------------------

def _refused(source: str, error=VerifierError):
    before = kernel_state()
    with pytest.raises(error) as e:
        bpfkit.load(source, name="hard")
    assert not leftovers(before)
    _no_bcc_noise(e.value.what)
    return e.value


LOOPS = {
    # the verifier follows x round by round and gives up: "8193 jumps is too complex"
    "unbounded": ("u64 x = bpf_get_prandom_u32();\n    u64 steps = 0;\n    while (x > 1) {\n"
                  "        x = (x & 1) ? 3 * x + 1 : x / 2;\n        steps++;\n    }\n"
                  "    bpf_trace_printk(\"%d\\n\", steps);\n", "while (x > 1) {", 5),
    # a constant but huge bound: E2BIG, for which BCC prints no log at all
    "too long": ("u64 sum = 0;\n    for (u64 i = 0; i < 100000000; i++) {\n"
                 "        sum += bpf_get_prandom_u32();\n    }\n"
                 "    bpf_trace_printk(\"%d\\n\", sum);\n", "for (u64 i = 0; i < 100000000; i++) {", 4),
}


@pytest.mark.parametrize("case", sorted(LOOPS))
def test_a_loop_the_verifier_cannot_bound_is_named_as_the_loop_with_its_line(case, no_leaks):
    body, loop_line, row = LOOPS[case]
    source = "\nTRACEPOINT_PROBE(syscalls, sys_enter_getppid) {\n    " + body + "    return 0;\n}\n"
    e = _refused(source)
    assert f"it cannot tell that the loop at line {row} of your C code ends" in e.what, e.what
    assert loop_line in e.what
    for fix in ("constant", "#pragma unroll", "bpf_loop"):
        assert fix in e.hint


def test_a_key_passed_by_value_shows_the_learners_line_and_says_pass_a_pointer(no_leaks):
    """clang 14 (Debian 12) only warns, and the verifier refuses the number; clang 16 and later
    (Debian 13's 19) refuse it while compiling. Either way: the learner's line, and the fix."""
    source = SEED.replace("counter_table.lookup(&uid)", "counter_table.lookup(uid)")
    e = _refused(source, (VerifierError, CompileError))
    if isinstance(e, VerifierError):
        assert f"at line {LOOKUP_LINE} of your C code:\n    p = counter_table.lookup(uid);" in e.what
        assert "the key of bpf_map_lookup_elem as a number" in e.what
    else:
        assert f"line {LOOKUP_LINE}, column" in e.what and "integer to pointer conversion" in e.what
        assert "    p = counter_table.lookup(uid);" in e.detail
    assert "bpf_pseudo_fd" not in e.what + e.detail  # BCC's rewriting of the line stays hidden
    assert "write counter_table.lookup(&uid), not counter_table.lookup(uid)" in e.hint


CGROUP_STORAGE_UNCAST = """
BPF_CGROUP_STORAGE(bytes_out, u64);
int count_egress(struct __sk_buff *skb) {
    u64 *bytes = bytes_out.get_local_storage(0);
    __sync_fetch_and_add(bytes, skb->len);
    return 1;
}
"""


def test_cgroup_storage_s_method_without_a_cast_is_told_to_cast(no_leaks):
    """BCC declares get_local_storage() as returning an int: clang 14 (Debian 12) warns and the
    program loads; clang 16 and later (Debian 13) refuse it. Either way the cast works."""
    try:
        prog = bpfkit.load(CGROUP_STORAGE_UNCAST, name="uncast")
        prog.load_func("count_egress", "cgroup_skb")
        prog.close()
    except CompileError as e:
        assert "integer to pointer conversion" in e.what
        assert e.hint == ("BCC declares bytes_out.get_local_storage() as returning an int (it returns a "
                          "pointer to the value): cast it, as in u64 *value = (u64 *)bytes_out."
                          "get_local_storage(0);")
    cast = CGROUP_STORAGE_UNCAST.replace("= bytes_out.", "= (u64 *)bytes_out.")
    with bpfkit.load(cast, name="cast") as prog:
        prog.load_func("count_egress", "cgroup_skb")


def test_a_gpl_only_helper_in_a_non_gpl_program_names_the_license_and_the_helper(no_leaks):
    source = ("#define BPF_LICENSE Proprietary\n"
              "TRACEPOINT_PROBE(syscalls, sys_enter_openat) {\n    char name[16];\n"
              "    bpf_probe_read_user_str(name, sizeof(name), args->filename);\n"
              "    bpf_trace_printk(\"%s\\n\", name);\n    return 0;\n}\n")
    e = _refused(source)
    assert "it calls bpf_probe_read_user_str" in e.what and "license is 'Proprietary'" in e.what
    assert "#define BPF_LICENSE" in e.hint and "GPL" in e.hint


def test_a_missing_tracepoint_field_keeps_clangs_guess_and_lists_the_real_fields(no_leaks):
    source = ("TRACEPOINT_PROBE(syscalls, sys_enter_openat) {\n"
              "    bpf_trace_printk(\"%d\\n\", args->flagz);\n    return 0;\n}\n")
    e = _refused(source, CompileError)
    assert "line 2" in e.what and "did you mean 'flags'?" in e.what
    fields = system.tracepoint_fields("syscalls", "sys_enter_openat")
    assert {"filename", "flags", "mode"} <= set(fields)
    assert f"its args are {', '.join(fields)}" in e.hint


def test_an_unknown_raw_tracepoint_is_named_with_the_nearest(no_leaks):
    e = _refused("RAW_TRACEPOINT_PROBE(sched_swich) {\n    return 0;\n}\n", TracepointNotFound)
    assert e.what.startswith("This kernel has no raw tracepoint 'sched_swich'. The nearest are: sched_switch")
    assert "RAW_TRACEPOINT_PROBE(sched_switch)" in e.hint


def test_a_misspelled_helper_is_a_compile_error_with_the_nearest_name(no_leaks):
    source = SEED.replace("bpf_get_current_uid_gid()", "bpf_get_curent_uid_gid()")
    e = _refused(source, CompileError)
    assert "line 8" in e.what
    assert ("implicit declaration of function 'bpf_get_curent_uid_gid'" in e.what       # clang 14
            or "call to undeclared function 'bpf_get_curent_uid_gid'" in e.what)        # clang 19
    assert "[-W" not in e.what
    assert e.hint.startswith("Did you mean 'bpf_get_current_uid_gid'")


LIBBPF_STYLE = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
    __uint(max_entries, 1024);
    __type(value, u32);
} seen SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int handle_execve(void *ctx)
{
    u32 uid = bpf_get_current_uid_gid();
    u64 *n = bpf_map_lookup_elem(&counts, &uid);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
"""


def test_libbpf_style_code_is_named_as_such_with_bccs_equivalent_of_each_piece(no_leaks):
    e = _refused(LIBBPF_STYLE, CompileError)
    assert "written for libbpf" in e.what
    for piece in ("map counts (hash): BPF_HASH(counts, u32, u64, 10240);",
                  "map events (ringbuf): BPF_RINGBUF_OUTPUT(events, 64);",
                  'map seen (bloom_filter): BCC cannot declare it; make it in Python with '
                  'seen = bpfkit.create_map("bloom_filter", ...)',
                  "write TRACEPOINT_PROBE(syscalls, sys_enter_execve)",
                  "the license line", "#include of bpf/bpf_helpers.h, vmlinux.h",
                  "bpf_map_lookup_elem(&counts, ...): write counts.lookup(&key)."):
        assert piece in e.detail, piece


# ---- 15. Python-side mistakes ------------------------------------------------------------------------

def test_reading_a_missing_key_names_the_map_and_the_key_and_suggests_get(no_leaks):
    with bpfkit.load(SEED, name="seed_missing") as prog:
        m = prog["counter_table"]
        with pytest.raises(KeyError) as e:  # still a KeyError, as for a dict
            m[4_000_000_000]
        assert isinstance(e.value, errors.KeyMissing)
        assert str(e.value).startswith("Map 'counter_table' has no key 4000000000.")
        assert ".get(4000000000, 0)" in e.value.hint
        assert m.get(4_000_000_000, 0) == 0 and 4_000_000_000 not in m


def test_reading_past_the_end_of_an_array_gives_the_valid_range(no_leaks):
    with bpfkit.create_map("array", key="u32", value="u64", max_entries=4, name="four") as a:
        with pytest.raises(KeyError) as e:
            a[10]
        assert "Slot 10 is past the end of 'four'" in str(e.value) and "slots 0..3" in str(e.value)
        assert "from 0 to 3" in e.value.hint
        assert a.get(10, 0) == 0 and a[3] == 0


def test_a_program_where_a_map_goes_says_which_of_its_maps_to_pass(no_leaks):
    with bpfkit.load(SEED, name="seed_whole") as prog:
        for call in (lambda: bpfkit.sample(prog, every=0.1, duration=0.1),
                     lambda: bpfkit.load(SEED, name="seed_given", maps={"other": prog})):
            with pytest.raises(errors.MapError) as e:
                call()
            assert "this is the whole program 'seed_whole'" in e.value.what
            assert "prog['counter_table']" in e.value.hint


def test_cflags_as_one_string_is_refused_with_the_list_to_write(no_leaks):
    with pytest.raises(errors.UsageError) as e:
        bpfkit.load(SEED, name="seed_flags", cflags="-DLIMIT=10 -DX=1")
    assert "cflags takes a list of compiler flags, not one string" in e.value.what
    assert "cflags=['-DLIMIT=10', '-DX=1']" in e.value.hint


def test_a_folder_as_the_source_lists_its_programs(tmp_path, no_leaks):
    (tmp_path / "mine.c").write_text(SEED)
    (tmp_path / "other.c").write_text(SEED)
    with pytest.raises(errors.UsageError) as e:
        bpfkit.load(tmp_path)
    assert e.value.what.endswith("is a folder, not a C file.")
    assert "mine, other" in e.value.hint


@pytest.mark.unit
def test_a_misspelled_program_name_lists_bcc_s_programs_and_a_libbpf_one_says_how_to_load_it():
    with pytest.raises(errors.NotFound) as e:
        bpfkit.load("countr")
    said = str(e.value)
    assert "No BPF program named 'countr'" in said and "'counter'" in said
    assert "counter_race" in said and ".bpf" not in said  # libbpf's *.bpf.c are not BCC programs
    libbpf_c = sorted(ROOT.glob("bpf/19_beyond_bcc/*.bpf.c"))   # no BCC program of their names
    assert libbpf_c, "lesson 19's programs are in bpf/"
    name = libbpf_c[0].name[:-len(".bpf.c")]
    with pytest.raises(errors.UsageError) as e:
        bpfkit.load(name)
    assert f"{name}.bpf.c is libbpf C, which BCC cannot build" in str(e.value)
    assert f"bpfkit.loader.bpfobject.load('{name}')" in str(e.value)


def test_libbpf_c_is_found_by_the_same_lookup_and_a_missing_one_lists_the_others():
    from bpfkit.loader import bpfobject, program
    name = sorted(ROOT.glob("bpf/19_beyond_bcc/*.bpf.c"))[0].name[:-len(".bpf.c")]
    text, path, _ = program.resolve(name, ".bpf.c")
    assert path.name == f"{name}.bpf.c" and text == (ROOT / "bpf" / "19_beyond_bcc" / f"{name}.bpf.c").read_text()
    with pytest.raises(errors.BpfkitError) as e:
        bpfobject.load("l19_nothing")
    assert e.value.what == "No libbpf program named 'l19_nothing' (looked for bpf/l19_nothing.bpf.c)."
    assert name in e.value.hint and "counter_race" not in e.value.hint   # BCC's are not listed


@pytest.mark.unit
def test_a_twin_s_name_finds_bcc_s_file_for_bcc_and_the_libbpf_file_for_libbpf():
    """`counter` names two files: bpf/counter.c (BCC) and its libbpf twin counter.bpf.c."""
    from bpfkit.loader import program
    _, bcc_file, _ = program.resolve("counter", ".c")
    _, libbpf_file, _ = program.resolve("counter", ".bpf.c")
    assert bcc_file == ROOT / "bpf" / "counter.c"
    assert libbpf_file == ROOT / "bpf" / "01_hash_map_counter" / "counter.bpf.c"
    with pytest.raises(errors.UsageError) as e:   # a folder lists its BCC programs by name
        program.resolve(ROOT / "bpf" / "01_hash_map_counter")
    assert "counter_atomic." in e.value.hint and ".bpf" not in e.value.hint


def test_a_program_type_the_kernel_forbids_is_not_called_a_missing_privilege(no_leaks):
    """Root with every capability, and the kernel still says EPERM (an LSM program, refused by
    this kernel's lockdown): the learner is told the kernel forbids the type, not to add
    capabilities they already have."""
    assert not system.missing_privileges()
    source = "LSM_PROBE(file_open, struct file *file) { return 0; }\n"
    with bpfkit.load(source, name="forbidden_lsm") as prog:
        try:
            prog.load_func("lsm__file_open", "lsm")
        except errors.PrivilegeError as e:
            pytest.fail(f"called a missing privilege: {e}")
        except errors.NotAllowedHere as e:
            assert e.errno == errno.EPERM and "does not allow loading function lsm__file_open()" in e.what
            assert "no privilege is missing" in e.what and "root" not in e.hint
        else:
            pytest.skip("this kernel loads BPF LSM programs")


TASK_STORAGE_BY_HELPER = """
BPF_TASK_STORAGE(on_task, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task_btf();
    u64 *n = bpf_task_storage_get(&on_task, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
"""
HASH_BY_HELPER = """
BPF_HASH(counts, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 key = 0;
    u64 *n = bpf_map_lookup_elem(&counts, &key);
    if (n)
        __sync_fetch_and_add(n, 1);
    return 0;
}
"""


@pytest.mark.parametrize("source, wrong, hinted", [
    (TASK_STORAGE_BY_HELPER, "bpf_task_storage_get(&on_task, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE)",
     "on_task.task_storage_get(task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE)"),
    (HASH_BY_HELPER, "bpf_map_lookup_elem(&counts, &key)", "counts.lookup(&key)"),
])
def test_a_bcc_map_handed_to_a_helper_is_told_to_use_the_method_and_the_method_loads(source, wrong, hinted,
                                                                                    no_leaks):
    try:
        bpfkit.load(source, name="helper_map").close()
    except VerifierError as e:
        assert "is not a map" in e.what and f"{wrong};" in e.what
        assert e.hint.endswith(f"{hinted}.")
        with bpfkit.load(source.replace(wrong, hinted), name="helper_map"):
            pass  # the hint, followed, loads
    else:
        pytest.skip("this BCC turns the map's address into the map itself")
