"""Lesson 13, sharing and pinning: two programs count into one map made in user space, the map
outlives them, a pin outlives the process's own handle, a second process reads the pin
(`python -m bpfkit map`, bpftool), and a later run continues from the kept counts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bpfkit
from bpfkit.lab import children
from bpfkit.access import kernel
from bpfkit.host import lifetime
from bpfkit.lessons.l13_sharing_pinning import STARTER, check_keeps_count
from conftest import BPFTOOL
from notebook_runs import solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
# The solution notebook's program: the starter without its own map, counting with helpers.
SOLVED = STARTER.replace("BPF_HASH(counts, u32, u64, 8);   // declared here: made when this cell loads\n", "")
SOLVED = SOLVED.replace("    counts.atomic_increment(key);    // BCC's way to add 1 to a map it declared\n",
                        "    u64 start = 0;\n"
                        "    bpf_map_update_elem(counts, &key, &start, BPF_NOEXIST);\n"
                        "    u64 *count = bpf_map_lookup_elem(counts, &key);\n"
                        "    if (count)\n"
                        "        __sync_fetch_and_add(count, 1);\n")
assert "BPF_HASH" not in SOLVED and "atomic_increment" not in SOLVED and "BPF_NOEXIST" in SOLVED
EXECVE, EXIT = 1, 2


def make_maps():
    counts = bpfkit.create_map("hash", key="u32", value="u64", max_entries=8, name="l13_counts")
    watch = bpfkit.create_map("array", value="u32", max_entries=1, name="l13_watch")
    return counts, watch


def bpfkit_map(*args: str) -> subprocess.CompletedProcess:
    """`python -m bpfkit map ...`, in a second process."""
    return subprocess.run([sys.executable, "-m", "bpfkit", "map", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)


def map_gone(map_id: int, timeout: float = 3.0) -> bool:
    """The kernel frees a map after a grace period once nothing holds it."""
    deadline = time.monotonic() + timeout
    while kernel.map_info(map_id) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_two_programs_share_one_map_that_outlives_them(no_leaks):
    counts, watch = make_maps()
    alice, bob = children.private_uids(2)
    watch[0] = alice                                 # before loading: 0 would be root, who is busy
    given = {"counts": counts, "watch": watch}
    execs = bpfkit.load("shared_execs", maps=given)
    exits = bpfkit.load("shared_exits", maps=given)
    assert execs["counts"] is counts and exits["counts"] is counts and exits["watch"] is watch
    assert len(counts) == 0

    children.run_as(alice, 3)                        # 3 execve() and 3 exits, one per program
    assert dict(counts.items()) == {EXECVE: 3, EXIT: 3}

    watch[0] = bob                                   # both programs follow the setting at once
    children.run_as(alice, 2)
    children.run_as(bob, 3)
    assert dict(counts.items()) == {EXECVE: 6, EXIT: 6}

    exits.close()                                    # one unloaded: the other keeps counting
    children.run_as(bob, 2)
    assert dict(counts.items()) == {EXECVE: 8, EXIT: 6}

    execs.close()                                    # both unloaded: the notebook holds the map
    children.run_as(bob, 2)
    assert bpfkit.loaded() == {} and kernel.map_info(counts.id)["name"] == "l13_counts"
    assert dict(counts.items()) == {EXECVE: 8, EXIT: 6}

    execs = bpfkit.load(execs.source, name="shared_execs", maps=given)   # a later run carries on
    exits = bpfkit.load(exits.source, name="shared_exits", maps=given)
    children.run_as(bob, 2)
    assert dict(counts.items()) == {EXECVE: 10, EXIT: 8}
    frame = counts.frame({"key": "event", "value": "count"}).sort_values("event")
    assert frame.to_dict("list") == {"event": [1, 2], "count": [10, 8]}
    bpfkit.close_all()
    assert lifetime.held() == {}


def test_a_pin_is_read_by_a_second_process_and_keeps_the_map_for_a_later_run(no_leaks):
    counts, watch = make_maps()
    (uid,) = children.private_uids(1, skip=4)
    watch[0] = uid
    given = {"counts": counts, "watch": watch}
    execs = bpfkit.load("shared_execs", maps=given)
    children.run_as(uid, 3)
    name = f"bpfkit-l13-test-{os.getpid()}"
    pin = counts.pin(name)
    assert pin.path == Path("/sys/fs/bpf") / name and pin.path.exists()
    map_id = counts.id

    # A second process: bpfkit's command line, as JSON and as text.
    out = bpfkit_map(name, "--json")
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert (seen["id"], seen["name"], seen["type"], seen["pin"]) == (map_id, "l13_counts", "hash",
                                                                     str(pin.path))
    assert (seen["key_size"], seen["value_size"], seen["max_entries"]) == (4, 8, 8)
    assert seen["entries"] == [{"key": EXECVE, "value": 3}]
    text = bpfkit_map(str(pin.path))                 # a full path works as well as a name
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == (f"map 'l13_counts' (hash, id {map_id}) pinned at "
                                           f"{pin.path}: 1 entry")
    assert text.stdout.splitlines()[2].split() == ["1", "3"]
    if BPFTOOL:                                      # and the kernel's own tool agrees
        shown = subprocess.run([BPFTOOL, "map", "show", "pinned", str(pin.path), "-j"],
                               capture_output=True, text=True, check=True).stdout
        assert json.loads(shown)["id"] == map_id

    # Let go of everything but the pin: the kernel keeps the map, counts and all.
    execs.close()
    counts.close()
    assert kernel.map_info(map_id)["name"] == "l13_counts"
    counts = bpfkit.open_pinned(name)                # a later run
    assert counts.id == map_id and dict(counts.items()) == {EXECVE: 3}
    execs = bpfkit.load(execs.source, name="shared_execs", maps={"counts": counts, "watch": watch})
    children.run_as(uid, 2)
    assert counts[EXECVE] == 5

    bpfkit.close_all()                               # removes the pin; nothing holds the map now
    assert not pin.path.exists() and lifetime.held() == {}
    assert map_gone(map_id)
    gone = bpfkit_map(name)                          # the command explains a missing pin
    assert gone.returncode == 1 and gone.stdout == ""
    assert "Could not open the map pinned" in gone.stderr and "ls /sys/fs/bpf" in gone.stderr




def test_the_starter_loses_its_count_on_a_reload_and_the_check_says_why(no_leaks):
    counts, watch = make_maps()
    (uid,) = children.private_uids(1, skip=6)
    watch[0] = uid
    old = bpfkit.load(STARTER, name="l13_keep", maps={"watch": watch})
    children.run_as(uid, 3)
    assert old["counts"][EXECVE] == 3
    new = bpfkit.load(STARTER, name="l13_keep", maps={"watch": watch})     # the cell, run again
    children.run_as(uid, 2)
    assert old.closed and new["counts"][EXECVE] == 2                      # what to predict

    unsure = check_keeps_count(new, counts)                            # try 1: it asks
    assert not unsure and "`prediction` is still None" in str(unsure)
    assert "The program's `counts` is its own map" in str(unsure) and "maps=counts" not in str(unsure)
    assert not [line for line in solution_only_lines(ROOT / "notebooks" / "13_sharing_pinning.ipynb") if line in str(unsure)], str(unsure)
    wrong = check_keeps_count(new, counts, prediction=5)                # try 2: a hint
    assert not wrong and "Your prediction (5) is not what the starter does" in str(wrong)
    assert "Hint: A map made in user space" in str(wrong) and "Fix:" not in str(wrong)
    right_guess = check_keeps_count(new, counts, prediction=2)          # try 3: the code
    assert not right_guess and "prediction" not in str(right_guess).lower()
    assert "Fix: Delete the BPF_HASH line" in str(right_guess) and "maps=counts,watch" in str(right_guess)
    new.close()
    closed = check_keeps_count(new, counts, prediction=2)            # never raises
    assert not closed and "is closed" in str(closed)
    nothing = check_keeps_count(None, counts, prediction=2)
    assert not nothing and "The check got a NoneType, not a program" in str(nothing)
    bpfkit.close_all()


def test_the_check_passes_the_solution_and_names_what_else_is_wrong(no_leaks):
    made, watch = make_maps()
    watch[0] = children.private_uids(1, skip=8)[0]   # nobody runs as it: the check uses its own
    made.pin(f"bpfkit-l13-test-keep-{os.getpid()}")
    counts = bpfkit.open_pinned(f"bpfkit-l13-test-keep-{os.getpid()}")   # as in the lesson
    solved = bpfkit.load(SOLVED, name="l13_keep", maps={"counts": counts, "watch": watch})
    result = check_keeps_count(solved, counts, prediction=2)
    assert result, result
    assert "solved" in str(result)
    assert len(counts) == 0          # the check counted with maps and uids of its own

    other = bpfkit.create_map("hash", key="u32", value="u64", max_entries=8, name="l13_other")
    elsewhere = check_keeps_count(solved, other, prediction=2)         # not the notebook's map
    assert not elsewhere and f"is map id {solved['counts'].id}, not the notebook's `counts` (id {other.id})" in str(elsewhere)

    wrong_key = SOLVED.replace("u32 key = 1;", "u32 key = 2;")
    assert wrong_key != SOLVED
    keyed = bpfkit.load(wrong_key, name="l13_keep", maps={"counts": counts, "watch": watch})
    result = check_keeps_count(keyed, counts, prediction=2)
    assert not result and "the map said 3, expected 5 (the map's keys: [1, 2])" in str(result)
    assert "the map's keys: [1, 2]" in str(result)

    resets = SOLVED.replace("BPF_NOEXIST", "BPF_ANY")     # writes 0 at every call, then adds 1
    assert resets != SOLVED
    forgetful = bpfkit.load(resets, name="l13_keep", maps={"counts": counts, "watch": watch})
    result = check_keeps_count(forgetful, counts, prediction=2)
    assert not result and "does each call write the count afresh?" in str(result)
    assert "the map said 1, expected 5" in str(result) and len(result.problems) == 1
    assert len(counts) == 0
    bpfkit.close_all()


def test_private_uids_are_free_distinct_and_the_same_for_one_process():
    import pwd
    uids = children.private_uids(4)
    assert len(set(uids)) == 4 and uids == children.private_uids(4)
    assert children.private_uids(2, skip=2) == uids[2:]
    taken = {p.pw_uid for p in pwd.getpwall()}
    assert not taken & set(uids) and min(uids) >= 1_000_000
    with pytest.raises(bpfkit.core.errors.UsageError):
        children.private_uids(17)
    with pytest.raises(bpfkit.core.errors.UsageError):
        children.private_uids(2, skip=15)


def test_the_batch_loop_check_wants_every_entry_by_the_cursor():
    """Lesson 13's user-space exercise: a loop over Map.lookup_batch. The check passes a loop that
    follows the cursor to its end, and refuses one that stops after the first batch, one that
    never calls lookup_batch, and one that raises, asking first and showing the loop last."""
    from bpfkit.lessons.l13_sharing_pinning import BATCH_ENTRIES, check_batch_loop

    def follows(m):
        cursor, out = None, {}
        while True:
            keys, values, cursor = m.lookup_batch(cursor, 32)
            out.update(zip(keys.tolist(), values.tolist()))
            if cursor is None:
                return out

    def first_batch_only(m):
        keys, values, _ = m.lookup_batch(None, 32)
        return dict(zip(keys.tolist(), values.tolist()))

    assert check_batch_loop(follows).passed
    once = check_batch_loop(first_batch_only)
    assert not once.passed and f"of {BATCH_ENTRIES} entries" in str(once) and "while True" not in str(once)
    assert "Hint" in str(check_batch_loop(first_batch_only))
    assert "while True" in str(check_batch_loop(first_batch_only))                   # the third try
    assert "never called" in str(check_batch_loop(lambda m: {k: 0 for k in range(BATCH_ENTRIES)}))
    assert "ZeroDivisionError" in str(check_batch_loop(lambda m: 1 / 0))
