"""Random and hostile input to bpfkit's public functions: only bpfkit's own errors come out
(never a crash, a bare BCC exception or a half-loaded program), and bad input never changes a
map's contents. Example counts are small so that the whole file runs in well under 30 s."""
from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bpfkit
from bpfkit.core import errors
from bpfkit.access import kernel
from conftest import held_elsewhere, settled_snapshot

_BASE = settings(deadline=None, database=None, derandomize=True,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def fuzz(examples: int):
    return settings(_BASE, max_examples=examples)

SEED = """BPF_HASH(counter_table);
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    u64 uid = bpf_get_current_uid_gid() & 0xFFFFFFFF;
    u64 counter = 0;
    u64 *p = counter_table.lookup(&uid);
    if (p != 0) {
        counter = *p;
    }
    counter++;
    counter_table.update(&uid, &counter);
    return 0;
}
"""

C_PIECES = st.sampled_from(["*", "&", ";", "{", "}", "(", ")", "p", "0", "\n", "return 1;", "NULL",
                            "counter_table", ".lookup", "u32", "#include <x.h>\n", "/*", "\"", "\\",
                            "bpf_trace_printk(\"%d\", 1);", "[10]", "x->y", "\0", "\t", "é"])


@st.composite
def mutated_seed(draw) -> str:
    """The seed's program with a few pieces inserted, deleted or replaced at random places."""
    text = SEED
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(C_PIECES)
        if kind == "insert":
            text = text[:at] + piece + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        else:
            text = text[:at] + piece + text[at + len(piece):]
    return text


def _new_objects(before: dict) -> dict:
    after = settled_snapshot(before)
    held = held_elsewhere()
    return {k: sorted(after[k] - before[k] - held[k]) for k in after if after[k] - before[k] - held[k]}


def _load_is_all_or_nothing(source) -> None:
    before = kernel.snapshot()
    try:
        program = bpfkit.load(source, name="fuzzed")
    except errors.BpfkitError as e:
        assert str(e).strip() and e.what  # a message, always
        assert not _new_objects(before), f"a failed load left objects behind for {source!r}"
        return
    program.close()
    assert not _new_objects(before)


@fuzz(14)
@given(mutated_seed())
def test_load_of_a_mangled_program_fails_cleanly_or_loads_whole(source):
    _load_is_all_or_nothing(source)


@fuzz(8)
@given(st.text(min_size=1, max_size=200).map(lambda t: t + "\n;"))
def test_load_of_random_text_is_a_compile_error(source):
    _load_is_all_or_nothing(source)


@fuzz(40)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=50).map(lambda b: b.decode("latin-1")),
                 st.sampled_from(["../../etc/passwd", "/dev/null", "\0", "x" * 5000, "counter\0.c",
                                  "/", ".", "~", "bpf/", "counter.h"])))
def test_load_of_random_names_and_paths_says_what_it_looked_for(name):
    if "\n" in name or any(c in name for c in ";{}()"):
        return  # that is C text, fuzzed above
    before = kernel.snapshot()
    try:
        bpfkit.load(name, name="fuzzed")
    except errors.BpfkitError:
        pass
    else:  # an existing file that happens to be a valid program: fine, and it must close
        bpfkit.loaded()["fuzzed"].close()
    assert not _new_objects(before)


@fuzz(6)
@given(st.one_of(st.integers(), st.none(), st.binary(max_size=8), st.lists(st.text(max_size=3), max_size=3),
                 st.floats(), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
def test_load_of_things_that_are_not_c_says_so(thing):
    with pytest.raises(errors.BpfkitError):
        bpfkit.load(thing, name="fuzzed")


# ---- maps: random keys and values -----------------------------------------------------------------

MAPS_SOURCE = """
struct value_t { u64 count; u32 flags; char name[8]; };
BPF_HASH(small, u32, struct value_t, 4);
BPF_ARRAY(slots, u64, 4);
"""


@pytest.fixture(scope="module")
def maps_program():
    program = bpfkit.load(MAPS_SOURCE, name="fuzz_maps")
    yield program
    program.close()


ANYTHING = st.one_of(
    st.integers(min_value=-2 ** 70, max_value=2 ** 70), st.integers(0, 6), st.none(), st.booleans(),
    st.floats(allow_nan=True), st.text(max_size=12), st.binary(max_size=20),
    st.tuples(st.integers(0, 2 ** 64), st.integers(-5, 2 ** 33), st.text(max_size=9)),
    st.dictionaries(st.sampled_from(["count", "flags", "name", "nope"]),
                    st.one_of(st.integers(-1, 2 ** 65), st.text(max_size=9)), max_size=3),
    st.lists(st.integers(), max_size=3))
def mostly(good, bad=ANYTHING):
    """`good` three times in four, else anything (one_of would flatten ANYTHING's branches and
    pick a good one rarely)."""
    return st.integers(0, 3).flatmap(lambda i: bad if i == 0 else good)


SMALL_KEY = st.integers(0, 6)
STRUCT = st.one_of(
    st.tuples(st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 32 - 1), st.text(string.ascii_letters, max_size=7)),
    st.fixed_dictionaries({"count": st.integers(0, 99)}, optional={"name": st.text(max_size=9)}))
# Mostly well-formed operations (so that some succeed and the map has contents to protect),
# with hostile keys and values mixed in.
OP = st.one_of(
    st.tuples(st.sampled_from(["get", "set", "del", "in"]), st.just("small"), mostly(SMALL_KEY), mostly(STRUCT)),
    st.tuples(st.sampled_from(["get", "set", "del", "in"]), st.just("slots"), mostly(SMALL_KEY),
              mostly(st.integers(0, 2 ** 64 - 1))))
OPS = st.lists(OP, min_size=5, max_size=25)
ALLOWED = (errors.KeyTypeError, errors.MapError, KeyError)


@fuzz(60)
@given(OPS)
def test_map_operations_with_random_keys_and_values_raise_only_map_errors(maps_program, ops):
    small, slots = maps_program["small"], maps_program["slots"]
    small.clear()
    slots.clear()
    model = {"small": {}, "slots": {i: 0 for i in range(4)}}
    for op, which, key, value in ops:
        m = maps_program[which]
        try:
            if op == "get":
                got = m[key]
                assert got == model[which][key]
            elif op == "in":
                assert (key in m) == (isinstance(key, int) and key in model[which])
            elif op == "set":
                m[key] = value
                model[which][key] = m[key]  # what the kernel stored, read back
            else:
                del m[key]
                model[which].pop(key)
        except errors.MapFull:
            assert which == "small" and len(model["small"]) == 4
        except ALLOWED:
            pass
        # Whatever happened, the kernel holds exactly what the successful operations wrote.
        assert dict(m.items()) == model[which]


@fuzz(40)
@given(st.one_of(st.none(), st.lists(st.text(max_size=6), max_size=6),
                 st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4),
                 st.dictionaries(st.sampled_from(["key", "value", "count", "x"]),
                                 st.text(min_size=1, max_size=5), max_size=2),
                 st.text(max_size=6)))
def test_frame_with_random_column_names_renames_or_says_why(maps_program, columns):
    small = maps_program["small"]
    small.clear()
    small[1] = {"count": 2, "flags": 3, "name": "ab"}
    try:
        frame = small.frame(columns)
    except errors.ColumnError as e:
        assert "column" in str(e)
        return
    assert len(frame) == 1 and len(frame.columns) == 4


@fuzz(30)
@given(st.text(max_size=20))
def test_random_map_and_attribute_names_give_suggestions_not_crashes(maps_program, name):
    if name in ("small", "slots"):
        return
    with pytest.raises(errors.MapNotFound):
        maps_program[name]
    if name.isidentifier() and not name.startswith("_") and not hasattr(type(maps_program), name) \
            and name not in vars(maps_program):
        with pytest.raises(errors.NoSuchAttribute):
            getattr(maps_program, name)
