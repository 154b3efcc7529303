"""Lesson 03, the program array: ids on lookup, exact tail-call counts, live swaps, bpftool agrees."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.access import kernel
from bpfkit.core.errors import MapError
from bpfkit.lessons.l03_prog_array_tail_calls import check_third_target
from conftest import BPFTOOL, needs_bpftool, settled_snapshot
from notebook_runs import solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
LESSON = (ROOT / "bpf" / "03_prog_array_tail_calls" / "tail_calls.c").read_text()


def three_users(uid: int) -> tuple[int, int, int]:
    second = children.unused_uid(after=uid)
    return uid, second, children.unused_uid(after=second)


def load_with_handlers(extra: str = "", name: str = "tail_calls"):
    prog = bpfkit.load(LESSON + extra, name=name)
    prog["handlers"][0] = prog.load_func("count_a", "tracepoint")
    prog["handlers"][1] = prog.load_func("count_b", "tracepoint")
    return prog


def where(prog) -> list[int]:
    hits = prog["hits"]
    return [hits[0], hits[1], hits[2], prog["fell_through"][0]]


def test_lookup_gives_program_ids_and_the_frame_names_them(no_leaks):
    with bpfkit.load("tail_calls") as prog:
        handlers = prog["handlers"]
        assert handlers.codec.family == "programs"
        assert len(handlers) == 0 and handlers.frame().empty
        assert list(handlers.frame().columns) == ["index", "program_id", "program_name"]
        count_a = prog.load_func("count_a", "tracepoint")
        handlers[0] = count_a                        # a loaded function
        handlers[3] = "count_b"                      # a function name: loaded with the caller's type
        a_id = kernel.prog_info_by_fd(count_a.fd)["id"]
        b_id = kernel.prog_info_by_fd(prog.bpf.funcs[b"count_b"].fd)["id"]
        assert handlers[0] == a_id and handlers[3] == b_id and a_id != b_id
        assert handlers.get(1) is None and 0 in handlers and 1 not in handlers
        frame = handlers.frame()
        assert frame.to_dict("list") == {"index": [0, 3], "program_id": [a_id, b_id],
                                         "program_name": ["count_a", "count_b"]}
        full = handlers.frame(empty=True)
        assert full["index"].tolist() == [0, 1, 2, 3]
        assert full["program_id"].tolist() == [a_id, 0, 0, b_id]
        assert full["program_name"].isna().tolist() == [False, True, True, False]
        assert full["program_name"].iloc[[0, 3]].tolist() == ["count_a", "count_b"]
        assert kernel.prog_info(handlers[3])["type"] == "tracepoint"
        handlers[2] = count_a.fd                     # a plain int is an fd
        assert handlers[2] == a_id
        assert list(handlers.frame({"index": "slot"}).columns)[0] == "slot"


def test_tail_calls_count_exactly_and_empty_slots_fall_through(uid, no_leaks):
    alice, bob, carol = three_users(uid)
    with load_with_handlers() as prog:
        route = prog["route"]
        route[alice], route[bob], route[carol] = 0, 1, 2
        children.run_as(alice, 5)
        children.run_as(bob, 3)
        children.run_as(carol, 2)
        assert where(prog) == [5, 3, 0, 2]


def test_swapping_a_slot_changes_the_target_without_reloading(uid, no_leaks):
    alice, bob, carol = three_users(uid)
    with load_with_handlers() as prog:
        handlers, route = prog["handlers"], prog["route"]
        route[alice], route[bob], route[carol] = 0, 1, 2
        children.run_as(alice, 2)
        loaded = set(prog.program_ids())
        handlers[0] = prog.bpf.funcs[b"count_b"]
        assert handlers[0] == handlers[1]
        children.run_as(alice, 4)
        assert where(prog) == [2, 4, 0, 0]
        assert set(prog.program_ids()) == loaded
        del handlers[1]
        children.run_as(bob, 3)
        assert where(prog) == [2, 4, 0, 3]
        with pytest.raises(KeyError):
            del handlers[1]
        handlers.clear()
        assert len(handlers) == 0
        children.run_as(alice, 1)
        assert where(prog) == [2, 4, 0, 4]


def test_refusals_are_explained(no_leaks):
    extra = ("\nint not_a_tracepoint(struct xdp_md *ctx) { return XDP_PASS; }\n"
             "int spare(void *ctx) { return 0; }\n")
    with load_with_handlers(extra) as prog:
        handlers = prog["handlers"]
        with pytest.raises(MapError, match="past the end"):
            handlers[4] = "count_a"
        xdp = prog.load_func("not_a_tracepoint", "xdp")
        with pytest.raises(MapError, match="same program type"):
            handlers[2] = xdp
        with pytest.raises(MapError, match="refused"):
            handlers[2] = prog["hits"].fd            # a map's fd is not a program
        with pytest.raises(MapError, match="holds a program"):
            handlers[2] = 1.5
        with pytest.raises(MapError, match="same program type"):
            handlers[2] = "not_a_tracepoint"         # by name: it is loaded already, as XDP
        with pytest.raises(MapError, match="Cannot tell which program type"):
            handlers[2] = "spare"                    # tracepoint and XDP functions are loaded now
        assert handlers.get(2) is None


def test_closing_frees_the_handlers_too(no_leaks):
    before = settled_snapshot()
    prog = load_with_handlers()
    ids = set(prog.program_ids())
    assert len(ids) == 3
    prog.close()
    after = settled_snapshot(before)
    assert not ids & after["programs"]


@needs_bpftool
def test_bpftool_reads_the_same_program_array(no_leaks):
    with load_with_handlers() as prog:
        handlers = prog["handlers"]
        handlers[3] = "count_a"
        out = subprocess.run([BPFTOOL, "map", "dump", "id", str(handlers.id), "-j"],
                             capture_output=True, text=True, check=True).stdout
        dump = {int.from_bytes(bytes(int(b, 16) for b in e["key"]), "little"):
                int.from_bytes(bytes(int(b, 16) for b in e["value"]), "little") for e in json.loads(out)}
        frame = handlers.frame()
        assert dump == dict(zip(frame["index"].tolist(), frame["program_id"].tolist()))
        assert sorted(dump) == [0, 1, 3] and dump[0] == dump[3] != dump[1]
        shown = json.loads(subprocess.run([BPFTOOL, "prog", "show", "id", str(dump[1]), "-j"],
                                          capture_output=True, text=True, check=True).stdout)
        assert shown["name"] == "count_b" == frame["program_name"][1]


C_HANDLER = "\nint count_c(void *ctx) { hits.atomic_increment(2); return 0; }\n"
WRONG_HANDLER = "\nint count_c(void *ctx) { hits.atomic_increment(0); return 0; }\n"


def test_exercise_check(no_leaks):
    with load_with_handlers(name="third") as prog:
        result = check_third_target(prog)
        assert not result.passed and "Slot 2 of third's handlers is empty" in str(result)
        prog["handlers"][2] = "count_a"
        result = check_third_target(prog)
        assert not result.passed and "same program as slot 0" in str(result)
    with load_with_handlers(WRONG_HANDLER, name="third") as prog:
        prog["handlers"][2] = prog.load_func("count_c", "tracepoint")
        result = check_third_target(prog)
        assert not result.passed and "hits[0]" in str(result)
    with load_with_handlers(C_HANDLER, name="third") as prog:
        prog["handlers"][2] = prog.load_func("count_c", "tracepoint")
        result = check_third_target(prog)
        assert result.passed, str(result)
        assert where(prog) == [0, 0, 4, 0] and len(prog["route"]) == 0


def _fix(result) -> list[str]:
    """The `...` spans of a result's fix tier (shown from the third try): the code it tells the
    learner to write."""
    [line] = [line.strip() for line in str(result).splitlines() if line.strip().startswith("Fix:")]
    return line.split("`")[1::2]


def test_following_the_exercise_fix_literally_solves_it(no_leaks):
    """The lesson's own `tail_calls` program has an array named `handlers` too, and the kernel
    accepts the third program's count_c into it. The fix must lead into third's array, and the
    code it quotes, run as written, must solve the exercise."""
    with bpfkit.load("tail_calls") as lesson:
        third = load_with_handlers(name="third")
        try:
            tries = [check_third_target(third) for _ in range(3)]
            assert "Fix:" not in str(tries[1]) and "Hint:" in str(tries[1])
            c_code, line = _fix(tries[2])
            assert "int count_c" in c_code and line.startswith('third["handlers"][2] = third.')
            third.close()                                    # the learner edits the cell, runs it
            third = load_with_handlers("\n" + c_code + "\n", name="third")
            lesson["handlers"][2] = third.load_func("count_c", "tracepoint")   # the wrong array
            result = check_third_target(third)
            assert "slot 2 of tail_calls's handlers" in str(result)
            exec(_fix(result)[-1], {"third": third})
            result = check_third_target(third)
            assert result.passed, str(result)
            assert where(third) == [0, 0, 4, 0]
        finally:
            third.close()


def test_the_first_try_asks_and_shows_no_line_of_the_solution(no_leaks):
    """On the starter (slot 2 empty, no count_c), the first try asks; the hint comes on the
    second, the code on the third."""
    solution = solution_only_lines(ROOT / "notebooks" / "03_prog_array_tail_calls.ipynb")
    assert any("count_c" in line for line in solution)
    with load_with_handlers(name="third") as prog:
        first, second, third = (str(check_third_target(prog)) for _ in range(3))
    assert not [line for line in solution if line in first], first
    assert "?" in first and "Hint:" not in first and "Hint:" in second and "Fix:" not in second
    assert "Fix:" in third and "hits.atomic_increment(2);" in third
