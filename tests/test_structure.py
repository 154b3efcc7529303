"""The package's shape, checked without a kernel: layers, no import circles, each ctypes prototype
declared once, errno numbers by name, and the lessons' programs found in an installed package.

A layered package stays easy to change only while nothing reaches up a layer; these tests read
the source (with `ast`) so a circle or an upward import fails here, named, before it confuses
an import order somewhere else.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bpfkit"

# Bottom to top: the package's folders, one layer each (observe and lab share one). A module
# imports only modules of its own folder or of folders below, and no circle. docs/architecture.md
# says what each holds.
LAYERS = [
    ["core"],                  # pure: errors, the map-type table, the lessons' catalogue
    ["access"],                # the doors to the system: libc, libbpf, BCC, bpf() calls, refusals
    ["host"],                  # what the kit made (lifetime), namespaces, sockets
    ["maps"],                  # one Map over the table of types, codecs per family
    ["loader"],                # compile, diagnose, verify, load and attach programs
    ["observe", "lab"],        # sampling, plots, events, test runs, profiles | cgroups, network, children
    ["lessons"],               # each lesson's check and its own helpers, progress
    ["magic", "reset", "__main__", "__init__"],
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def modules() -> dict[str, Path]:
    """bpfkit's modules by dotted name below the package ("maps.codecs.base")."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The bpfkit modules `name` imports, at the top or inside functions."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.startswith("bpfkit"):
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # `from . import kernel` names a module
                candidate = ".".join(target + [alias.name])
                found.add(candidate if candidate in known else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("bpfkit."):
                    found.add(alias.name.split(".", 1)[1])
    return {m for m in found if m in known and m != name and m != "__init__" or m == ""} - {""}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    assert top in LAYER, f"bpfkit/{module.replace('.', '/')} is in no layer folder of tests/test_structure.py: place it"
    return LAYER[top]


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_reaches_up_a_layer():
    wrong = [(a, b) for a, targets in graph().items() for b in targets
             if layer_of(b) > layer_of(a)]
    assert not wrong, "imports that reach up a layer: " + ", ".join(f"{a} -> {b}" for a, b in wrong)


def test_no_import_circle():
    edges = graph()
    done, stack = set(), []

    def visit(node):
        if node in stack:
            cycle = stack[stack.index(node):] + [node]
            pytest.fail("import circle: " + " -> ".join(cycle))
        if node in done:
            return
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if not nxt.startswith(node + ".") and not node.startswith(nxt + "."):
                visit(nxt)
        stack.pop()
        done.add(node)

    for node in sorted(edges):
        visit(node)


def test_the_graph_is_read_right():
    """The checks above are only as good as the import reader: spot-check known edges."""
    edges = graph()
    assert "access._libbpf" in edges["access.kernel"] and "core.maptypes" in edges["access.kernel"]
    assert "maps.codecs" in edges["maps.map"] and "host.lifetime" in edges["maps.map"]
    assert "maps.codecs.base" in edges["maps.codecs.sockets"]
    assert "host.netns" in edges["maps.map"]  # imported inside a method
    assert "maps" in edges["loader.program"] or "maps.map" in edges["loader.program"]


LONGEST_FUNCTION = 60


def test_no_function_is_longer_than_a_screen():
    """A function that does one thing fits on a screen; a longer one is several, unnamed."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}() ({lines} lines)")
    assert not long, f"functions over {LONGEST_FUNCTION} lines: " + ", ".join(long)


PROTOTYPE = re.compile(r"\b(\w+)\.(argtypes|restype)\s*=")
# Scripts the kit runs in a child process of their own (`python -c SCRIPT`): their ctypes calls are
# that process's, which imports nothing of the kit. Named here one by one.
CHILD_SCRIPTS = {"l15_local_storage.py": ("_LEADER_FIRST",)}


def test_each_ctypes_prototype_is_declared_once_in_its_module():
    """libbpf's prototypes live in _libbpf.PROTOTYPES, libc's in _libc, BCC's untyped two in
    _bcc.lib; nowhere else declares one, and nothing declares one twice."""
    allowed = {"_libbpf.py", "_libc.py", "_bcc.py"}
    seen: dict[tuple[str, str], str] = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for name in CHILD_SCRIPTS.get(path.name, ()):   # another process's code, not the kit's
            text = re.sub(rf'^{name} = r?"""(.*?)"""', "", text, count=1, flags=re.S | re.M)
        for line_no, line in enumerate(text.splitlines(), 1):
            for fn, attr in PROTOTYPE.findall(line):
                assert path.name in allowed, f"{path.relative_to(ROOT)}:{line_no} declares {fn}.{attr}"
                key = (fn, attr)
                assert key not in seen, f"{fn}.{attr} declared twice: {seen[key]} and {path.name}:{line_no}"
                seen[key] = f"{path.name}:{line_no}"
        assert "CDLL(" not in text or path.name in allowed, f"{path.name} loads a C library itself"
    from bpfkit.access import _libbpf
    assert len(_libbpf.PROTOTYPES) > 30 and "bpf_map_create" in _libbpf.PROTOTYPES


# What BCC keeps to itself (read from BCC 0.26), and the ways in to BCC: only _bcc.py uses them
# (system.py finds the module). A new reach inside BCC goes there, named and explained.
BCC_INSIDE = re.compile(r"\._trace_autoload|_open_key_fds|_decode_table_type|_bpfkit_reader|"
                        r"open_perf_events|tracepoint_fds|kprobe_fds|bcc_free_symcache|"
                        r"\bbcc\._|system\.bcc\(|\bBPF\.[A-Z_]+\b|\bimport bcc\b|from bcc\b|"
                        r"PerfType\.|PerfSWConfig\.|BPFAttachType\.")
QUOTED = re.compile(r"`[^`]*`")  # a docstring's `BPF.attach_func(...)` says what plain BCC writes


def test_only_the_bcc_door_reaches_inside_bcc():
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("_bcc.py", "system.py"):
            continue
        text = QUOTED.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), path.read_text())
        for line_no, line in enumerate(text.splitlines(), 1):
            found = BCC_INSIDE.search(line)
            assert not found, (f"{path.relative_to(ROOT)}:{line_no} reaches BCC ({found.group()}) "
                               "outside bpfkit/access/_bcc.py: add a named function there")


def test_a_failed_library_call_raises_oserror_with_its_errno():
    """One way to fail: the prototypes' errcheck turns -errno, NULL+errno and -1+errno into
    OSError, so no caller tests a return value."""
    import ctypes as ct
    import errno
    from bpfkit.access import _libbpf, _libc
    with pytest.raises(OSError) as e:
        _libbpf._negative(-errno.ENOENT, None, ())
    assert (e.value.errno, e.value.strerror) == (errno.ENOENT, "No such file or directory")
    assert _libbpf._negative(7, None, ()) == 7
    ct.set_errno(errno.ENOMEM)
    with pytest.raises(OSError) as e:
        _libbpf._null(None, None, ())
    assert e.value.errno == errno.ENOMEM
    with pytest.raises(OSError) as e:
        _libc.libc.setns(-1, 0)   # a real call: a bad fd, refused before any namespace changes
    assert e.value.errno == errno.EBADF
    fails = {entry[2] for entry in _libbpf.PROTOTYPES.values() if len(entry) > 2}
    assert fails == {_libbpf.NEG, _libbpf.NULL}
    assert len(_libbpf.PROTOTYPES["bpf_map_lookup_elem"]) == 3   # the hot path is checked too


ERRNO_NUMBER = re.compile(r"\berr\w*\s*(==|!=|in)\s*\(?\s*-?[1-9]")


def test_errno_values_are_named_not_numbered():
    for path in PACKAGE.rglob("*.py"):
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            assert not ERRNO_NUMBER.search(line), f"{path.relative_to(ROOT)}:{line_no}: {line.strip()}"


def test_families_are_codecs_without_system_calls():
    """A codec turns bytes into columns; the Map does the calls. No codec reaches libbpf."""
    for path in (PACKAGE / "maps" / "codecs").glob("*.py"):
        text = path.read_text()
        assert "_libbpf" not in text and "kernel" not in re.findall(r"import (\w+)", text), path.name
        assert "def __init__" not in text, f"{path.name}: codecs keep no state"


def test_an_installed_bpfkit_finds_the_lessons_programs(tmp_path):
    """Not only in a checkout: a plain (non-editable) install carries bpf/ as bpfkit/bpf."""
    source, target = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    for part in ("pyproject.toml", "README.md", "bpfkit", "bpf"):  # built here, not in the checkout
        (shutil.copytree if (ROOT / part).is_dir() else shutil.copy)(ROOT / part, source / part)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import bpfkit, pathlib; "
            "print(bpfkit.__file__); print(bpfkit.source('counter').splitlines()[0])")
    out = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout.splitlines()
    assert out[0].startswith(str(target))
    assert out[1] == (ROOT / "bpf" / "counter.c").read_text().splitlines()[0]
    installed = target / "bpfkit" / "bpf"
    assert sorted(str(p.relative_to(installed)) for p in installed.rglob("*.c")) == \
        sorted(str(p.relative_to(ROOT / "bpf")) for p in (ROOT / "bpf").rglob("*.c"))
    harness = Path("bpfkit", "lessons", "l11_stack_traces_profiler_harness.c")   # lesson 11 compiles it
    assert (target / harness).read_text() == (ROOT / harness).read_text()


# -- one name per lesson ---------------------------------------------------------------------------

def test_program_names_are_unique_across_the_lessons_folders():
    """`%%bpf NAME` and `bpfkit.load("NAME")` find a program by its short name in any lesson's
    folder, so no two programs of one kind may share one. A libbpf program (`NAME.bpf.c`, found
    by `bpfobject.load`) shares its name with a BCC one only as that program's twin
    (bpfkit.lessons.twins), in the twin's lesson folder."""
    from bpfkit.core import catalogue
    from bpfkit.lessons.twins import TWINS
    names: dict[tuple[str, str], Path] = {}
    for path in sorted((ROOT / "bpf").rglob("*.c")):
        name = path.name.split(".")[0]
        kind = "libbpf" if path.name.endswith(".bpf.c") else "bcc"
        assert (name, kind) not in names, f"two programs named {name}: {names[name, kind]} and {path}"
        names[name, kind] = path.relative_to(ROOT)
    for (name, kind), path in names.items():
        if kind == "libbpf" and (name, "bcc") in names:
            assert name in TWINS, f"{path} shares its name with {names[name, 'bcc']} but is no twin"
            assert path.parent.name == TWINS[name].lesson in catalogue.BY_STEM, path
    for name in TWINS:
        assert (name, "bcc") in names and (name, "libbpf") in names, f"twin {name} lacks a file"


def test_every_file_of_a_lesson_carries_its_stem():
    """libbpf-bootstrap's one stem: everything of lesson 14 is found by `14_cgroup_maps`, and
    every numbered file or folder belongs to a lesson of the catalogue."""
    from bpfkit.core import catalogue
    stems = {lesson.stem for lesson in catalogue.LESSONS}
    for lesson in catalogue.LESSONS:
        assert lesson.notebook(ROOT).is_file(), lesson.stem
        if lesson.exercise:
            assert lesson.solution(ROOT).is_file(), lesson.stem
            assert (ROOT / (lesson.module.replace(".", "/") + ".py")).is_file(), lesson.module
    shipped = [str(p.relative_to(ROOT)) for top in ("notebooks", "bpf", "bpfkit/lessons", "tests/lessons")
               for p in (ROOT / top).rglob("*") if p.is_file() and not any(
                   part.startswith(".") or part == "__pycache__" for part in p.relative_to(ROOT).parts)]
    for name in shipped:   # the files on disk: a user's unit run needs no git that trusts this clone
        found = re.search(r"(?:^|/|_|l)(\d\d_[a-z0-9_]+?)(?:\.ipynb|\.py|/)", name)
        if found and re.match(r"(notebooks|bpf|bpfkit/lessons|tests/lessons)/", name):
            stem = found.group(1)
            assert stem in stems, f"{name}: {stem} is no lesson of bpfkit/core/catalogue.py"
    numbered = {p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    assert numbered == stems, "the catalogue and notebooks/ list different lessons"
