"""Maps of maps on the real kernel: ids out, Maps in, an atomic swap, contents by id."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.core.errors import MapError
from bpfkit.lessons.l04_map_of_maps import check_per_user_maps
from bpfkit.maps import Map
from conftest import BPFTOOL, needs_bpftool
from notebook_runs import bpf_cell, solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
LESSON = ROOT / "notebooks" / "04_map_of_maps.ipynb"
SOLUTION = ROOT / "notebooks" / "solutions" / "04_map_of_maps.ipynb"

PER_USER = r"""
BPF_ARRAY(alice_calls, u64, 1);
BPF_ARRAY(bob_calls, u64, 1);
BPF_HASH_OF_MAPS(per_user, u32, "alice_calls", 8);

TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u32 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    void *calls = per_user.lookup(&uid);
    if (calls == 0)
        return 0;
    int zero = 0;
    u64 *n = bpf_map_lookup_elem(calls, &zero);
    if (n != 0)
        __sync_fetch_and_add(n, 1);
    return 0;
}
"""


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_outer_maps_get_the_map_of_maps_codec(no_leaks):
    with bpfkit.load("map_of_maps") as prog:
        assert prog["active"].codec.family == "maps"
        assert prog["active"].type == "array_of_maps"
    with bpfkit.load(PER_USER, name="per_user") as prog:
        assert prog["per_user"].codec.family == "maps"
        assert prog["per_user"].type == "hash_of_maps"


def test_a_map_goes_in_by_fd_and_comes_back_as_its_id(no_leaks):
    with bpfkit.load("map_of_maps") as prog:
        active, config_a = prog["active"], prog["config_a"]
        assert active.frame().empty
        active[0] = config_a
        assert active[0] == config_a.id != config_a.fd
        frame = active.frame()
        assert list(frame.columns) == ["index", "inner_map_id", "inner_map_name"]
        assert frame.to_dict("records") == [
            {"index": 0, "inner_map_id": config_a.id, "inner_map_name": "config_a"}]
        assert frame["inner_map_id"].dtype == np.uint32
        active[0] = prog["config_b"]
        assert active.frame()["inner_map_name"].tolist() == ["config_b"]
        del active[0]
        assert active.frame().empty


def test_swapping_the_inner_map_switches_the_whole_configuration(no_leaks):
    alice = children.unused_uid()
    bob = children.unused_uid(after=alice)
    carol = children.unused_uid(after=bob)
    with bpfkit.load("map_of_maps") as prog:
        prog["config_a"][alice] = 1
        prog["config_a"][bob] = 1
        prog["config_b"][bob] = 10
        prog["config_b"][carol] = 1
        everyone = lambda: [children.run_as(u, 3) for u in (alice, bob, carol)]  # noqa: E731
        everyone()                                     # slot empty: nothing counted
        assert prog["counts"].frame().empty
        prog["active"][0] = prog["config_a"]
        everyone()
        before = dict(zip(*prog["counts"].frame().to_dict("list").values()))
        assert before == {alice: 3, bob: 3}
        prog["active"][0] = prog["config_b"]           # one update: the switch
        everyone()
        after = dict(zip(*prog["counts"].frame().to_dict("list").values()))
        assert after == {alice: 3, bob: 3 + 30, carol: 3}


def test_contents_reads_every_inner_map_with_the_outer_key(uid, no_leaks):
    other = children.unused_uid(after=uid)
    with bpfkit.load(PER_USER, name="per_user") as prog:
        per_user = prog["per_user"]
        per_user[uid] = prog["alice_calls"]
        per_user[other] = prog["bob_calls"]
        children.run_as(uid, 2)
        children.run_as(other, 5)
        fds = _open_fds()
        inside = per_user.contents().sort_values("outer_key").reset_index(drop=True)
        assert _open_fds() == fds, "contents() must close the inner maps it opened"
        assert list(inside.columns) == ["outer_key", "inner_map_id", "inner_map_name", "index", "value"]
        assert inside.to_dict("records") == [
            {"outer_key": uid, "inner_map_id": prog["alice_calls"].id,
             "inner_map_name": "alice_calls", "index": 0, "value": 2},
            {"outer_key": other, "inner_map_id": prog["bob_calls"].id,
             "inner_map_name": "bob_calls", "index": 0, "value": 5}]
        assert check_per_user_maps(prog, {uid: 2, other: 5}).passed


def test_contents_of_an_empty_outer_map_has_the_columns(no_leaks):
    with bpfkit.load("map_of_maps") as prog:
        inside = prog["active"].contents()
        assert inside.empty
        assert list(inside.columns)[:3] == ["outer_index", "inner_map_id", "inner_map_name"]


def test_an_inner_map_opened_by_id_reads_and_writes_and_closes(no_leaks):
    with bpfkit.load("map_of_maps") as prog:
        prog["active"][0] = prog["config_a"]
        with prog["active"].inner(0) as inner:
            assert isinstance(inner, Map) and inner.owns_fd
            assert (inner.name, inner.id, inner.type) == ("config_a", prog["config_a"].id, "hash")
            inner[42] = 7                              # writes the same kernel map
            assert prog["config_a"][42] == 7
        with pytest.raises(MapError, match="closed"):
            inner[42]
        # A map bpfkit did not declare reads with int stand-ins of the right sizes.
        with Map.open_by_id(prog["config_a"].id) as raw:
            assert raw.frame().to_dict("records") == [{"key": 42, "value": 7}]
            assert raw.frame()["value"].dtype == np.uint64


def test_copying_a_slot_uses_the_inner_map_not_its_id(no_leaks):
    with bpfkit.load(PER_USER, name="per_user") as prog:
        per_user = prog["per_user"]
        per_user[1] = prog["bob_calls"]
        with per_user.inner(1) as same:
            per_user[2] = same
        assert per_user[2] == per_user[1] == prog["bob_calls"].id
        with pytest.raises(MapError, match="takes a Map, not the number") as err:
            per_user[3] = per_user[1]
        assert "inner(" in err.value.hint


def test_an_inner_map_unlike_the_template_is_refused_with_a_hint(no_leaks):
    with bpfkit.load(PER_USER, name="per_user") as prog, \
            bpfkit.load("BPF_ARRAY(wide, u64, 2); BPF_ARRAY(small, u32, 1);", name="others") as others:
        for wrong in (others["wide"], others["small"]):
            with pytest.raises(MapError, match="refused") as err:
                prog["per_user"][1] = wrong
            assert "template" in err.value.hint and "BPF_HASH_OF_MAPS" in err.value.hint
        assert prog["per_user"].frame().empty




def test_exercise_check_says_what_is_missing(uid, no_leaks):
    starter = bpf_cell(LESSON, "users")
    with bpfkit.load(starter, name="users") as prog:
        result = check_per_user_maps(prog, {uid: 1})
        said = str(result)
        assert not result.passed and "`per_user` is a `hash` map" in said and "hash_of_maps" in said
        assert not [line for line in solution_only_lines(LESSON) if line in said], said
        assert "Hint" not in said and "Fix" not in said
    with bpfkit.load(PER_USER, name="per_user") as prog:
        result = check_per_user_maps(prog, {uid: 1})
        assert not result.passed and "no entry for uid" in str(result)
        prog["per_user"][uid] = prog["alice_calls"]
        assert not check_per_user_maps(prog, {uid: 1}).passed    # no event yet
        children.run_as(uid, 1)
        assert check_per_user_maps(prog, {uid: 1}).passed


def test_exercise_check_shows_the_code_from_the_third_try(uid, no_leaks):
    with bpfkit.load(bpf_cell(LESSON, "users"), name="users") as prog:
        tries = [str(check_per_user_maps(prog, {uid: 1})) for _ in range(3)]
    assert "Hint:" not in tries[0] and "BPF_HASH_OF_MAPS" not in tries[0]
    assert "Hint: Declare `per_user` with `BPF_HASH_OF_MAPS`" in tries[1] and "Fix:" not in tries[1]
    assert 'Fix: BPF_HASH_OF_MAPS(per_user, u32, "alice_calls", 8);' in tries[2]


def test_exercise_check_asks_for_an_atomic_add_before_it_shows_one(uid, no_leaks):
    plain = PER_USER.replace("__sync_fetch_and_add(n, 1);", "*n += 1;")
    with bpfkit.load(plain, name="per_user") as prog:
        prog["per_user"][uid] = prog["alice_calls"]
        children.run_as(uid, 1)
        first = str(check_per_user_maps(prog, {uid: 2}))     # one count short: a wrong answer
        assert "counts 1; the check expected 2" in first and "__sync_fetch_and_add" not in first
        assert not check_per_user_maps(prog, {uid: 2}).passed
        third = str(check_per_user_maps(prog, {uid: 2}))
        assert "Fix:" in third and "__sync_fetch_and_add(n, 1)" in third


def _bpftool_dump(map_id: int) -> list[tuple[int, int]]:
    out = subprocess.run([BPFTOOL, "map", "dump", "id", str(map_id), "-j"], capture_output=True,
                         text=True, check=True).stdout
    number = lambda raw: int.from_bytes(bytes(int(b, 16) for b in raw), "little")  # noqa: E731
    pairs = []
    for entry in json.loads(out):
        if "formatted" in entry:
            entry = entry["formatted"]
        key, value = entry["key"], entry.get("value", entry.get("inner_map_id"))
        key = number(key) if isinstance(key, list) else int(key)
        value = number(value) if isinstance(value, list) else int(value)
        pairs.append((key, value))
    return sorted(pairs)


@needs_bpftool
def test_frame_agrees_with_bpftool(no_leaks):
    with bpfkit.load(PER_USER, name="per_user") as prog:
        per_user = prog["per_user"]
        per_user[7] = prog["alice_calls"]
        per_user[70000] = prog["bob_calls"]
        frame = per_user.frame()
        ours = sorted(zip(frame["key"].tolist(), frame["inner_map_id"].tolist()))
        assert ours == [(7, prog["alice_calls"].id), (70000, prog["bob_calls"].id)]
        assert _bpftool_dump(per_user.id) == ours
