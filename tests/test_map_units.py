"""Unit tests of the pure parts of bpfkit's maps: no kernel, no root, no BCC.

Nothing here creates a BPF map or program. Each test builds a `MapSpec` by hand, synthetic
numpy key and value arrays in the codec's own dtypes, and a fake `Lookups` that names programs,
maps and interfaces from dicts; then it checks the codec's table, the DataFrame `frames.build`
makes of it, the errno table of `failures`, the C conversions of `convert`, the map type table
and the pure `Snapshot` container.
"""
from __future__ import annotations

import ctypes as ct
import errno
import os
import socket
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from bpfkit.core import maptypes
from bpfkit.access import refusal, system
from bpfkit.core.errors import (ColumnError, KeyTypeError, MapEmpty, MapError, MapFull,
                                NotAllowedHere, PrivilegeError, UsageError)
from bpfkit.maps import codecs, convert, failures, frames
from bpfkit.maps.codecs import Lookups
from bpfkit.maps.codecs.devices import CpumapVal, DevmapVal
from bpfkit.maps.snapshot import Snapshot
from bpfkit.maps.spec import MapSpec
from bpfkit.host.sockets import socket_cookie


# ---- helpers ------------------------------------------------------------------------------

class FakeLookups(Lookups):
    """Names from dicts; records every question asked (kind, id[, netns])."""

    def __init__(self, programs=None, maps=None, interfaces=None):
        self.programs = programs or {}
        self.maps = maps or {}
        self.interfaces = interfaces or {}
        self.calls: list[tuple] = []

    def program_name(self, prog_id):
        self.calls.append(("program", prog_id))
        return self.programs.get(prog_id)

    def map_name(self, map_id):
        self.calls.append(("map", map_id))
        return self.maps.get(map_id)

    def interface_name(self, ifindex, netns=None):
        self.calls.append(("interface", ifindex, netns))
        return self.interfaces.get(ifindex)


def spec_of(type_name, key_size=4, value_size=8, max_entries=16, *, name="m", **kw) -> MapSpec:
    """A map of type `type_name` called `name`, as a test states it (no kernel object)."""
    return MapSpec(name, maptypes.get(type_name), key_size, value_size, max_entries, **kw)


def key_array(spec: MapSpec, keys) -> np.ndarray:
    return np.array(keys, dtype=codecs.for_type(spec.type).key_dtype(spec))


def value_array(spec: MapSpec, values) -> np.ndarray:
    return np.array(values, dtype=codecs.for_type(spec.type).value_dtype(spec))


def percpu_values(spec: MapSpec, rows) -> np.ndarray:
    """A per-CPU snapshot's value array: `rows` holds one list of `spec.cpus` values per entry."""
    codec = codecs.for_type(spec.type)
    out = np.zeros(len(rows), dtype=codec.value_dtype(spec))
    out["v"] = np.array(rows, dtype=codec.one_value_dtype(spec)).reshape(len(rows), spec.cpus)
    return out


def frame_of(spec: MapSpec, keys, values, *, lookups=None, objects=None, extra=None,
             columns=None, **options) -> pd.DataFrame:
    """The frame Map.frame() would show for these entries (arrays, or lists to convert)."""
    codec = codecs.for_type(spec.type)
    k = keys if isinstance(keys, np.ndarray) else key_array(spec, keys)
    v = values if isinstance(values, np.ndarray) else value_array(spec, values)
    table = codec.table(spec, k, v, objects=objects, lookups=lookups or FakeLookups(), **options)
    return frames.build(table, extra=extra, columns=columns)


def cells(column: pd.Series) -> list:
    """A column's values with every missing one (None or NaN, as pandas stores it) as None."""
    return [None if pd.isna(x) else x for x in column.tolist()]


def ip4(address: str) -> int:
    """An IPv4 address as a map stores it: the four bytes in wire order, read as a host int."""
    return int.from_bytes(socket.inet_aton(address), sys.byteorder)


def ne(n: int, size: int) -> bytes:
    return n.to_bytes(size, sys.byteorder)


class Task(ct.Structure):
    _fields_ = [("pid", ct.c_uint32), ("comm", ct.c_char * 16)]


class Pair(ct.Structure):
    _fields_ = [("a", ct.c_uint32), ("b", ct.c_uint32)]


class Tagged(ct.Structure):
    _fields_ = [("hits", ct.c_uint64), ("tag", ct.c_char * 8)]


class Twelve(ct.Structure):
    _fields_ = [("x", ct.c_uint32), ("y", ct.c_uint32), ("z", ct.c_uint32)]


class FourTuple(ct.Structure):
    _fields_ = [("local_ip4", ct.c_uint32), ("remote_ip4", ct.c_uint32),
                ("local_port", ct.c_uint32), ("remote_port", ct.c_uint32),
                ("family", ct.c_uint32)]


# ---- 1. the table of map types ----------------------------------------------------------

def test_map_types_are_numbered_1_to_33_in_order_with_unique_names():
    assert [t.number for t in maptypes.TABLE] == list(range(1, 34))
    assert len({t.name for t in maptypes.TABLE}) == 33
    assert maptypes.TABLE[0].name == "hash" and maptypes.TABLE[-1].name == "arena"


@pytest.mark.parametrize("kind", ["hash", "BPF_MAP_TYPE_HASH", "HASH", "bpf_map_type_hash", 1])
def test_get_finds_a_type_by_name_enum_name_upper_case_or_number(kind):
    assert maptypes.get(kind) is maptypes.BY_NAME["hash"]


def test_get_of_a_map_type_returns_it():
    queue = maptypes.BY_NAME["queue"]
    assert maptypes.get(queue) is queue
    assert maptypes.get(22) is queue and maptypes.name_of(22) == "queue"


@pytest.mark.parametrize("kind", ["hsh", "BPF_MAP_TYPE_HSH", "", True])
def test_get_of_an_unknown_name_raises_key_error_naming_it(kind):
    with pytest.raises(KeyError) as e:
        maptypes.get(kind)
    assert e.value.args == (kind,)


def test_get_of_an_unknown_number_is_a_placeholder_row():
    row = maptypes.get(99)
    assert (row.number, row.name, row.ops, row.bcc) == (99, "type 99", frozenset(), None)
    assert not row.readable and not row.per_cpu


def test_exactly_seven_types_have_no_bcc_macro():
    assert {t.name for t in maptypes.TABLE if t.bcc is None} == {
        "bloom_filter", "devmap_hash", "reuseport_sockarray", "cgrp_storage", "user_ringbuf",
        "struct_ops", "arena"}
    assert not maptypes.get("arena").bcc_declares and maptypes.get("hash").bcc_declares


def test_per_cpu_types_are_exactly_the_four():
    assert {t.name for t in maptypes.TABLE if t.per_cpu} == {
        "percpu_hash", "percpu_array", "lru_percpu_hash", "percpu_cgroup_storage"}


def test_keyless_and_fd_keyed_types():
    by_key = {kind: {t.name for t in maptypes.TABLE if t.key == kind} for kind in maptypes.KEY_KINDS}
    assert by_key["none"] == {"queue", "stack", "bloom_filter", "ringbuf", "user_ringbuf", "arena"}
    assert by_key["fd"] == {"sk_storage", "inode_storage", "task_storage", "cgrp_storage"}
    assert {maptypes.get(n).fd_of for n in by_key["fd"]} == {"socket", "file", "pidfd", "cgroup"}


def test_readable_types():
    unreadable = {t.name for t in maptypes.TABLE if not t.readable}
    assert unreadable == {"perf_event_array", "cgroup_array", "xskmap", "ringbuf",
                          "user_ringbuf", "bloom_filter", "arena"}
    assert maptypes.get("hash").readable
    assert maptypes.get("queue").readable  # by peek
    assert maptypes.get("sk_storage").readable


@pytest.mark.parametrize("name, with_article", [
    ("array", "an array"), ("hash", "a hash"), ("user_ringbuf", "a user_ringbuf"),
    ("arena", "an arena"), ("inode_storage", "an inode_storage"), ("queue", "a queue"),
    ("lru_hash", "an lru_hash"), ("lpm_trie", "an lpm_trie"), ("percpu_hash", "a percpu_hash"),
    ("sk_storage", "an sk_storage"), ("xskmap", "an xskmap"), ("sockmap", "a sockmap"),
])
def test_article_property(name, with_article):
    assert maptypes.get(name).a == with_article


def test_every_rows_ops_and_key_kind_are_known():
    for t in maptypes.TABLE:
        assert t.ops and t.ops <= set(maptypes.OPS), t.name
        assert t.key in maptypes.KEY_KINDS, t.name


# ---- 2. which codec ---------------------------------------------------------------------

@pytest.mark.parametrize("name, codec_class", [
    ("percpu_hash", codecs.PerCpu), ("percpu_array", codecs.PerCpu),
    ("lru_percpu_hash", codecs.PerCpu), ("percpu_cgroup_storage", codecs.PerCpu),
    ("prog_array", codecs.Programs),
    ("array_of_maps", codecs.InnerMaps), ("hash_of_maps", codecs.InnerMaps),
    ("devmap", codecs.Devices), ("devmap_hash", codecs.Devices),
    ("cpumap", codecs.Cpus),
    ("sockmap", codecs.Sockets), ("sockhash", codecs.Sockets), ("reuseport_sockarray", codecs.Sockets),
    ("hash", codecs.Codec), ("array", codecs.Codec), ("lpm_trie", codecs.Codec),
    ("queue", codecs.Codec),
])
def test_for_type_picks_the_familys_codec(name, codec_class):
    assert type(codecs.for_type(name)) is codec_class
    assert type(codecs.for_type(maptypes.get(name).number)) is codec_class


# ---- 3. key columns: one rule for every family ------------------------------------------

@pytest.mark.parametrize("name, value_size", [
    ("array", 8), ("prog_array", 4), ("devmap", 4), ("sockmap", 8), ("array_of_maps", 4),
    ("cpumap", 4),
])
def test_index_maps_have_an_index_column(name, value_size):
    spec = spec_of(name, 4, value_size, 4)
    frame = frame_of(spec, [0, 2], [1, 3])
    assert frame.columns[0] == "index"
    assert frame["index"].tolist() == [0, 2]
    assert frame.attrs["key_columns"] == ["index"]


@pytest.mark.parametrize("name, value_size", [
    ("hash", 8), ("lru_hash", 8), ("hash_of_maps", 4), ("devmap_hash", 4), ("sockhash", 8),
])
def test_stored_scalar_keys_are_a_key_column(name, value_size):
    spec = spec_of(name, 4, value_size, key_type=ct.c_uint32)
    frame = frame_of(spec, [7, 5], [1, 3])
    assert frame.columns[0] == "key"
    assert frame["key"].tolist() == [7, 5]
    assert frame.attrs["key_columns"] == ["key"]


def test_struct_keys_are_their_field_names_and_char_arrays_become_str():
    spec = spec_of("hash", ct.sizeof(Task), 8, key_type=Task, value_type=ct.c_uint64)
    frame = frame_of(spec, [(1, b"bash"), (42, b"python3\0junk")], [10, 20])
    assert list(frame.columns) == ["pid", "comm", "value"]
    assert frame.to_dict("list") == {"pid": [1, 42], "comm": ["bash", "python3"], "value": [10, 20]}
    assert frame.attrs["key_columns"] == ["pid", "comm"]


@pytest.mark.parametrize("name", ["queue", "stack"])
def test_queue_and_stack_have_no_key_column(name):
    spec = spec_of(name, 0, 8, value_type=ct.c_uint64)
    frame = frame_of(spec, np.zeros(2, dtype=codecs.base.NO_KEY), [5, 6])
    assert list(frame.columns) == ["value"]
    assert frame["value"].tolist() == [5, 6]
    assert frame.attrs["key_columns"] == []


@pytest.mark.parametrize("name", ["sk_storage", "inode_storage", "task_storage", "cgrp_storage"])
def test_fd_keyed_maps_show_the_objects_given_as_the_key(name):
    spec = spec_of(name, 4, 8, value_type=ct.c_uint64)
    objects = [object(), "a socket"]
    frame = frame_of(spec, [11, 12], [100, 200], objects=objects)
    assert list(frame.columns) == ["key", "value"]
    assert frame["key"].tolist() == objects and frame["key"][0] is objects[0]
    assert frame["value"].tolist() == [100, 200]


# ---- 4. per-CPU maps ----------------------------------------------------------------------

def percpu_spec(name="percpu_hash", value_type=ct.c_uint64, cpus=3, **kw) -> MapSpec:
    return spec_of(name, 4, ct.sizeof(value_type), key_type=ct.c_uint32, value_type=value_type,
                   cpus=cpus, **kw)


def test_per_cpu_long_layout_has_a_row_per_entry_and_cpu():
    spec = percpu_spec(cpus=3)
    values = percpu_values(spec, [[1, 2, 3], [4, 5, 6]])
    frame = frame_of(spec, [7, 9], values, extra={"time": [0.5, 1.5]})
    assert list(frame.columns) == ["time", "key", "cpu", "value"]
    assert frame.to_dict("list") == {
        "time": [0.5, 0.5, 0.5, 1.5, 1.5, 1.5],
        "key": [7, 7, 7, 9, 9, 9],
        "cpu": [0, 1, 2, 0, 1, 2],
        "value": [1, 2, 3, 4, 5, 6],
    }
    assert frame.attrs["key_columns"] == ["key", "cpu"]


def test_per_cpu_long_layout_maps_rows_to_entries():
    spec = percpu_spec(cpus=2)
    table = codecs.for_type(spec.type).table(spec, key_array(spec, [7, 9, 4]),
                                             percpu_values(spec, [[1, 2], [3, 4], [5, 6]]))
    assert table.entry.tolist() == [0, 0, 1, 1, 2, 2]
    assert len(table) == 6


def test_per_cpu_wide_layout_has_a_column_per_cpu_named_after_renaming():
    spec = percpu_spec(cpus=3)
    values = percpu_values(spec, [[1, 2, 3], [4, 5, 6]])
    wide = frame_of(spec, [7, 9], values, per_cpu="wide")
    assert wide.to_dict("list") == {"key": [7, 9], "value_cpu0": [1, 4], "value_cpu1": [2, 5],
                                    "value_cpu2": [3, 6]}
    assert wide.attrs["key_columns"] == ["key"]
    renamed = frame_of(spec, [7, 9], values, per_cpu="wide", columns={"value": "n", "key": "uid"})
    assert list(renamed.columns) == ["uid", "n_cpu0", "n_cpu1", "n_cpu2"]
    assert renamed["n_cpu2"].tolist() == [3, 6]


def test_per_cpu_sum_wraps_around_like_the_c_type():
    spec = percpu_spec("percpu_array", value_type=ct.c_uint8, cpus=2)
    frame = frame_of(spec, [0, 1], percpu_values(spec, [[200, 100], [1, 2]]), per_cpu="sum")
    assert frame.to_dict("list") == {"index": [0, 1], "value": [44, 3]}
    assert frame["value"].dtype == np.uint8


def test_per_cpu_sum_adds_each_struct_field_and_keeps_cpu0s_text():
    spec = percpu_spec(value_type=Tagged, cpus=2)
    values = percpu_values(spec, [[(1, b"cpu0"), (2, b"cpu1")], [(10, b"x"), (30, b"y")]])
    frame = frame_of(spec, [7, 9], values, per_cpu="sum")
    assert frame.to_dict("list") == {"key": [7, 9], "hits": [3, 40], "tag": ["cpu0", "x"]}


def test_per_cpu_layout_must_be_long_wide_or_sum():
    spec = percpu_spec(cpus=2)
    with pytest.raises(UsageError, match="per_cpu= is one of"):
        frame_of(spec, [1], percpu_values(spec, [[1, 2]]), per_cpu="tall")


def test_per_cpu_slot_is_the_value_rounded_up_to_8_bytes():
    codec = codecs.PerCpu()
    assert codec.value_dtype(percpu_spec(value_type=ct.c_uint32, cpus=2)).itemsize == 2 * 8
    assert codec.value_dtype(percpu_spec(value_type=ct.c_uint64, cpus=3)).itemsize == 3 * 8
    assert codec.value_dtype(percpu_spec(value_type=Twelve, cpus=2)).itemsize == 2 * 16


def test_per_cpu_encode_value_with_one_value_fills_every_cpu():
    spec = percpu_spec(value_type=ct.c_uint32, cpus=3)
    raw = codecs.PerCpu().encode_value(spec, 5).raw
    assert raw == (ne(5, 4) + bytes(4)) * 3


def test_per_cpu_encode_value_with_a_list_fills_each_cpu():
    spec = percpu_spec(value_type=ct.c_uint32, cpus=2)
    raw = codecs.PerCpu().encode_value(spec, [1, 2]).raw
    assert raw == ne(1, 4) + bytes(4) + ne(2, 4) + bytes(4)
    twelve = percpu_spec(value_type=Twelve, cpus=2)
    raw = codecs.PerCpu().encode_value(twelve, [(1, 2, 3), {"x": 4, "y": 5, "z": 6}]).raw
    assert raw == (ne(1, 4) + ne(2, 4) + ne(3, 4) + bytes(4)
                   + ne(4, 4) + ne(5, 4) + ne(6, 4) + bytes(4))


def test_per_cpu_struct_value_as_a_tuple_fills_every_cpu_when_cpus_differ_from_fields():
    spec = percpu_spec(value_type=Pair, cpus=3)
    assert codecs.PerCpu().encode_value(spec, (3, 4)).raw == (ne(3, 4) + ne(4, 4)) * 3


def test_per_cpu_struct_value_as_a_tuple_fills_every_cpu_when_cpus_equal_fields():
    spec = percpu_spec(value_type=Pair, cpus=2)
    assert codecs.PerCpu().encode_value(spec, (3, 4)).raw == (ne(3, 4) + ne(4, 4)) * 2


def test_per_cpu_encode_value_refuses_a_value_that_does_not_fit():
    spec = percpu_spec(value_type=ct.c_uint8, cpus=2)
    with pytest.raises(KeyTypeError, match="from 0 to 255"):
        codecs.PerCpu().encode_value(spec, [1, 256])


def test_per_cpu_decode_value_gives_a_list_per_cpu():
    spec = percpu_spec(value_type=ct.c_uint32, cpus=3)
    codec = codecs.PerCpu()
    raw = ne(7, 4) + bytes(4) + ne(8, 4) + bytes(4) + ne(9, 4) + bytes(4)
    record = np.frombuffer(raw, codec.value_dtype(spec), 1)[0]
    assert codec.decode_value(spec, record) == [7, 8, 9]
    pair = percpu_spec(value_type=Pair, cpus=2)
    record = np.frombuffer(codec.encode_value(pair, [{"a": 1, "b": 2}, {"a": 3, "b": 4}]).raw,
                           codec.value_dtype(pair), 1)[0]
    assert codec.decode_value(pair, record) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]


def test_per_cpu_values_array_of_one_value_per_entry_gives_every_cpu_that_value():
    spec = percpu_spec(value_type=ct.c_uint32, cpus=2)
    out = codecs.PerCpu().values_array(spec, [5, 6, 7])
    assert out.shape == (3, 2) and out.dtype.itemsize == 8
    assert out["v"].tolist() == [[5, 5], [6, 6], [7, 7]]
    assert out.tobytes() == b"".join(ne(v, 4) + bytes(4) for v in (5, 5, 6, 6, 7, 7))


def test_per_cpu_values_array_of_a_value_per_entry_and_cpu_sets_each():
    spec = percpu_spec(value_type=ct.c_uint32, cpus=2)
    out = codecs.PerCpu().values_array(spec, np.array([[1, 2], [3, 4]]))
    assert out["v"].tolist() == [[1, 2], [3, 4]]


# ---- 5. programs and maps as values -------------------------------------------------------

def test_program_array_names_programs_by_id_and_empty_slots_have_no_name():
    spec = spec_of("prog_array", 4, 4, 4)
    lookups = FakeLookups(programs={11: "tail_a", 12: "tail_b"})
    snap = Snapshot(key_array(spec, [1, 3]), value_array(spec, [11, 12])).with_every_slot(4)
    frame = frame_of(spec, snap.keys, snap.values, lookups=lookups)
    assert list(frame.columns) == ["index", "program_id", "program_name"]
    assert frame["program_id"].dtype == np.uint32
    assert frame["index"].tolist() == [0, 1, 2, 3]
    assert frame["program_id"].tolist() == [0, 11, 0, 12]
    assert cells(frame["program_name"]) == [None, "tail_a", None, "tail_b"]


def test_program_names_are_looked_up_once_per_distinct_id_and_never_for_0():
    spec = spec_of("prog_array", 4, 4, 8)
    lookups = FakeLookups(programs={11: "tail_a"})
    frame = frame_of(spec, list(range(6)), [11, 11, 0, 99, 11, 99], lookups=lookups)
    assert Counter(lookups.calls) == {("program", 11): 1, ("program", 99): 1}
    assert cells(frame["program_name"]) == ["tail_a", "tail_a", None, None, "tail_a", None]


def test_map_of_maps_names_inner_maps_by_id():
    spec = spec_of("hash_of_maps", 4, 4, key_type=ct.c_uint32)
    lookups = FakeLookups(maps={21: "per_user", 22: "per_host"})
    frame = frame_of(spec, [5, 6, 8], [21, 22, 21], lookups=lookups)
    assert frame.to_dict("list") == {"key": [5, 6, 8], "inner_map_id": [21, 22, 21],
                                     "inner_map_name": ["per_user", "per_host", "per_user"]}
    assert frame["inner_map_id"].dtype == np.uint32
    assert Counter(lookups.calls) == {("map", 21): 1, ("map", 22): 1}


@pytest.mark.parametrize("name", ["prog_array", "array_of_maps", "hash_of_maps", "cgroup_array"])
@pytest.mark.parametrize("value", [True, False, np.bool_(True), -1, 1.5, "3", None])
def test_reference_encode_value_refuses_what_is_not_a_file_descriptor(name, value):
    spec = spec_of(name, 4, 4)
    with pytest.raises(MapError, match="not " + repr(value).replace("(", r"\(").replace(")", r"\)")):
        codecs.for_type(name).encode_value(spec, value)


def test_reference_encode_value_takes_an_fd_as_a_u32_or_u64_by_value_size():
    four = codecs.Programs().encode_value(spec_of("prog_array", 4, 4), 7)
    assert type(four) is ct.c_uint32 and four.value == 7
    eight = codecs.InnerMaps().encode_value(spec_of("array_of_maps", 4, 8), np.int64(9))
    assert type(eight) is ct.c_uint64 and eight.value == 9
    assert codecs.Programs().encode_value(spec_of("prog_array", 4, 4), 0).value == 0


# ---- 6. devices and CPUs --------------------------------------------------------------------

def test_devmap_names_interfaces_in_the_namespace_asked_for():
    spec = spec_of("devmap", 4, 4, 4)
    lookups = FakeLookups(interfaces={2: "veth-a", 3: "veth-b"})
    frame = frame_of(spec, [0, 1, 2], [2, 0, 3], lookups=lookups, netns="lab")
    assert list(frame.columns) == ["index", "ifindex", "name"]
    assert frame["ifindex"].tolist() == [2, 0, 3]
    assert cells(frame["name"]) == ["veth-a", None, "veth-b"]
    assert frame["ifindex"].dtype == np.uint32
    assert sorted(lookups.calls) == [("interface", 2, "lab"), ("interface", 3, "lab")]


def test_devmap_without_netns_asks_in_this_namespace():
    lookups = FakeLookups(interfaces={1: "lo"})
    frame = frame_of(spec_of("devmap_hash", 4, 4, key_type=ct.c_uint32), [1, 5], [1, 1],
                     lookups=lookups)
    assert frame.to_dict("list") == {"key": [1, 5], "ifindex": [1, 1], "name": ["lo", "lo"]}
    assert lookups.calls == [("interface", 1, None)]


def test_devmap_with_bpf_devmap_val_shows_the_program_last():
    spec = spec_of("devmap", 4, 8, 4)
    assert codecs.Devices().value_type(spec) is DevmapVal
    lookups = FakeLookups(interfaces={2: "veth-a"})
    frame = frame_of(spec, [0, 3], [(2, 40), (2, 0)], lookups=lookups)
    assert list(frame.columns) == ["index", "ifindex", "name", "prog_id"]
    assert frame.to_dict("list") == {"index": [0, 3], "ifindex": [2, 2], "name": ["veth-a", "veth-a"],
                                     "prog_id": [40, 0]}


@pytest.mark.parametrize("value", [0, -1, "eth0", 1.5, True])
def test_devmap_encode_value_refuses_what_is_not_an_ifindex(value):
    with pytest.raises(MapError, match="a name or an ifindex") as e:
        codecs.Devices().encode_value(spec_of("devmap", 4, 4), value)
    assert f"not {value!r}" in e.value.what


def test_devmap_encode_value_takes_an_ifindex():
    four = codecs.Devices().encode_value(spec_of("devmap", 4, 4), 3)
    assert type(four) is ct.c_uint32 and four.value == 3
    eight = codecs.Devices().encode_value(spec_of("devmap", 4, 8), 3)
    assert type(eight) is DevmapVal and (eight.ifindex, eight.prog_id) == (3, 0)


def test_cpumap_shows_the_queue_size():
    frame = frame_of(spec_of("cpumap", 4, 4, 2), [0, 1], [192, 0])
    assert frame.to_dict("list") == {"index": [0, 1], "qsize": [192, 0]}
    spec = spec_of("cpumap", 4, 8, 2)
    assert codecs.Cpus().value_type(spec) is CpumapVal
    frame = frame_of(spec, [0, 1], [(192, 7), (0, 0)])
    assert frame.to_dict("list") == {"index": [0, 1], "qsize": [192, 0], "prog_id": [7, 0]}


def test_cpumap_encode_value_refuses_a_queue_size_of_0():
    with pytest.raises(MapError, match="size of the queue"):
        codecs.Cpus().encode_value(spec_of("cpumap", 4, 4), 0)
    assert codecs.Cpus().encode_value(spec_of("cpumap", 4, 4), 192).value == 192


# ---- 7. sockets -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["sockmap", "sockhash", "reuseport_sockarray"])
def test_socket_map_with_a_4_byte_value_cannot_be_read(name):
    codec = codecs.for_type(name)
    with pytest.raises(MapError, match="8-byte cookie") as e:
        codec.check_readable(spec_of(name, 4, 4))
    assert "BPF_SOCKHASH_U64" in e.value.hint
    assert codec.check_readable(spec_of(name, 4, 8)) is None


def test_sockhash_4_tuple_key_folds_into_local_and_remote_addresses():
    spec = spec_of("sockhash", ct.sizeof(FourTuple), 8, key_type=FourTuple)
    keys = [(ip4("127.0.0.1"), ip4("10.1.2.3"), 40000, 80, 2),
            (ip4("192.168.0.7"), ip4("127.0.0.1"), 22, 51000, 2)]
    frame = frame_of(spec, keys, [1001, 1002])
    assert frame.to_dict("list") == {
        "local": ["127.0.0.1:40000", "192.168.0.7:22"],
        "remote": ["10.1.2.3:80", "127.0.0.1:51000"],
        "family": [2, 2],
        "cookie": [1001, 1002],
    }
    assert frame["cookie"].dtype == np.uint64
    assert frame.attrs["key_columns"] == ["local", "remote", "family"]


def test_sockhash_ports_in_network_order_are_swapped():
    spec = spec_of("sockhash", ct.sizeof(FourTuple), 8, key_type=FourTuple)
    keys = [(ip4("127.0.0.1"), ip4("10.1.2.3"), socket.htons(40000), socket.htons(80), 2)]
    frame = frame_of(spec, keys, [1], ports="network")
    assert frame["local"].tolist() == ["127.0.0.1:40000"]
    assert frame["remote"].tolist() == ["10.1.2.3:80"]


def test_sockmap_index_is_not_folded():
    frame = frame_of(spec_of("sockmap", 4, 8, 4), [0, 1], [5, 6])
    assert frame.to_dict("list") == {"index": [0, 1], "cookie": [5, 6]}


def test_sockets_option_names_the_notebooks_sockets_by_cookie_first():
    a, b = socket.socketpair()
    try:
        ca, cb = socket_cookie(a), socket_cookie(b)
        assert ca != cb
        frame = frame_of(spec_of("sockmap", 4, 8, 4), [0, 1, 2], [cb, 123456789, ca],
                         sockets={"client": a, "server": b})
    finally:
        a.close()
        b.close()
    assert list(frame.columns) == ["socket", "index", "cookie"]
    assert cells(frame["socket"]) == ["server", None, "client"]
    assert frame["index"].tolist() == [0, 1, 2]
    assert frame["cookie"].tolist() == [cb, 123456789, ca]
    assert frame.attrs["key_columns"] == ["socket", "index"]


# ---- 8. maps user space cannot read -----------------------------------------------------------

@pytest.mark.parametrize("name, words", [
    ("ringbuf", "stream"), ("user_ringbuf", "stream"), ("perf_event_array", "perf events"),
    ("cgroup_array", "cgroups"), ("xskmap", "AF_XDP sockets"), ("arena", "pages of memory"),
    ("bloom_filter", "cannot list"),
])
def test_unreadable_map_says_why(name, words):
    spec = spec_of(name, 4, 8)
    for codec in (codecs.Codec(), codecs.for_type(name)):
        with pytest.raises(MapError) as e:
            codec.check_readable(spec)
        assert words in e.value.what
        assert e.value.what.startswith(f"Map 'm' is {spec.type.a}: ")


def test_unreadable_bloom_filter_hints_at_value_in_m():
    with pytest.raises(MapError) as e:
        codecs.Codec().check_readable(spec_of("bloom_filter", 0, 8))
    assert "value in m" in e.value.hint


def test_unreadable_ring_buffer_hints_at_bpfkit_events():
    with pytest.raises(MapError) as e:
        codecs.Codec().check_readable(spec_of("ringbuf", 0, 0))
    assert "bpfkit.observe.events.ring" in e.value.hint


@pytest.mark.parametrize("name", ["hash", "array", "queue", "sk_storage", "percpu_hash"])
def test_readable_maps_pass_check_readable(name):
    assert codecs.for_type(name).check_readable(spec_of(name, 4, 8)) is None


# ---- 9. frames: build and renaming --------------------------------------------------------------

def hash_spec(**kw) -> MapSpec:
    return spec_of("hash", 8, 8, 64, key_type=ct.c_uint64, value_type=ct.c_uint64, **kw)


def test_columns_list_renames_in_order():
    frame = frame_of(hash_spec(), [1, 2], [10, 20], columns=["uid", "count"])
    assert frame.to_dict("list") == {"uid": [1, 2], "count": [10, 20]}
    assert frame.attrs["key_columns"] == ["uid"]


def test_columns_list_of_the_wrong_length_names_the_frames_columns():
    with pytest.raises(ColumnError) as e:
        frame_of(hash_spec(), [1], [10], columns=["uid"])
    assert "columns= names 1 columns, the frame has 2: ['key', 'value']" in e.value.what


def test_columns_dict_renames_the_columns_it_names():
    frame = frame_of(hash_spec(), [1], [10], extra={"time": [0.25]},
                     columns={"key": "uid", "value": "count"})
    assert frame.to_dict("list") == {"time": [0.25], "uid": [1], "count": [10]}
    assert frame.attrs["key_columns"] == ["uid"]


class Flow(ct.Structure):   # fields named like frame()'s options
    _fields_ = [("ports", ct.c_uint32), ("keys", ct.c_uint32), ("method", ct.c_uint32)]


def test_a_field_named_like_an_option_renames_like_any_other():
    spec = spec_of("hash", 8, ct.sizeof(Flow), key_type=ct.c_uint64, value_type=Flow)
    frame = frame_of(spec, [1], [(80, 2, 3)], columns={"ports": "port pair", "keys": "k", "method": "m"})
    assert frame.to_dict("list") == {"key": [1], "port pair": [80], "k": [2], "m": [3]}


def test_renames_as_keywords_are_refused_with_the_dict_to_write():
    e = frames.keywords_refused("frame", {"key": "uid", "value": "count"}, ["per_cpu", "keys"],
                                "frame({...})")
    assert isinstance(e, UsageError) and isinstance(e, TypeError)
    assert e.what == "frame() has no option key=, value=."
    assert "frame({'key': 'uid', 'value': 'count'})" in e.hint
    near = frames.keywords_refused("frame", {"per_cpus": "sum"}, ["per_cpu", "keys"], "frame({...})")
    assert near.hint.startswith("did you mean per_cpu=?")


def test_renaming_an_unknown_column_suggests_the_nearest():
    with pytest.raises(ColumnError) as e:
        frame_of(hash_spec(), [1], [10], columns={"valeu": "count"})
    assert "There is no column 'valeu' to rename" in e.value.what
    assert e.value.hint == "Did you mean 'value'?"
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("how", [{"columns": {"key": "value"}}, {"columns": ["a", "a"]}])
def test_renaming_two_columns_to_one_name_is_refused(how):
    with pytest.raises(ColumnError):
        frame_of(hash_spec(), [1, 2], [10, 20], **how)


def test_rename_renames_any_frame_like_map_frame():
    frame = pd.DataFrame({"key": [1], "value": [2]})
    assert list(frames.rename(frame, ["uid", "n"]).columns) == ["uid", "n"]
    assert list(frames.rename(frame, {"value": "count"}).columns) == ["key", "count"]
    with pytest.raises(ColumnError, match="Did you mean 'key'"):
        frames.rename(frame, {"kye": "uid"})
    with pytest.raises(UsageError, match=r"rename\(frame, \{'value': 'n'\}\)"):
        frames.rename(frame, value="n")


def test_renaming_maps_names_old_to_new():
    assert frames.renaming(["key", "value"], ["uid", "n"]) == {"key": "uid", "value": "n"}
    assert frames.renaming(["key", "value"], {"value": "n"}) == {"value": "n"}
    assert frames.renaming(["key", "value"]) == {}


class Child(ct.Structure):
    _fields_ = [("pid", ct.c_uint32), ("exits", ct.c_uint32)]


def test_struct_value_field_named_like_a_key_column_is_prefixed_with_value():
    spec = spec_of("hash", ct.sizeof(Task), ct.sizeof(Child), key_type=Task, value_type=Child)
    frame = frame_of(spec, [(1, b"sh")], [(5, 6)])
    assert frame.to_dict("list") == {"pid": [1], "comm": ["sh"], "value.pid": [5], "exits": [6]}
    assert frame.attrs["key_columns"] == ["pid", "comm"]
    renamed = frame_of(spec, [(1, b"sh")], [(5, 6)], columns={"value.pid": "child"})
    assert list(renamed.columns) == ["pid", "comm", "child", "exits"]


def test_struct_value_field_named_key_is_prefixed_with_value():
    class Counted(ct.Structure):
        _fields_ = [("key", ct.c_uint32), ("count", ct.c_uint32)]
    spec = spec_of("hash", 4, 8, key_type=ct.c_uint32, value_type=Counted)
    frame = frame_of(spec, [3], [(9, 4)])
    assert frame.to_dict("list") == {"key": [3], "value.key": [9], "count": [4]}
    assert frame.attrs["key_columns"] == ["key"]


@pytest.mark.parametrize("spec, options, columns", [
    (hash_spec(), {}, ["key", "value"]),
    (spec_of("hash", ct.sizeof(Task), 8, key_type=Task, value_type=ct.c_uint64), {},
     ["pid", "comm", "value"]),
    (percpu_spec(cpus=2), {"per_cpu": "long"}, ["key", "cpu", "value"]),
    (percpu_spec(cpus=2), {"per_cpu": "wide"}, ["key", "value_cpu0", "value_cpu1"]),
    (spec_of("prog_array", 4, 4, 4), {}, ["index", "program_id", "program_name"]),
    (spec_of("devmap", 4, 8, 4), {}, ["index", "ifindex", "name", "prog_id"]),
    (spec_of("sockhash", ct.sizeof(FourTuple), 8, key_type=FourTuple), {},
     ["local", "remote", "family", "cookie"]),
])
def test_an_empty_table_builds_an_empty_frame_with_the_right_columns(spec, options, columns):
    codec = codecs.for_type(spec.type)
    table = codec.table(spec, np.zeros(0, dtype=codec.key_dtype(spec)),
                        np.zeros(0, dtype=codec.value_dtype(spec)), lookups=FakeLookups(), **options)
    frame = frames.build(table, extra={"time": []})
    assert list(frame.columns) == ["time", *columns]
    assert len(frame) == 0
    assert isinstance(frame.index, pd.RangeIndex)


def test_frame_index_is_a_range_index_from_0():
    spec = percpu_spec(cpus=2)
    frame = frame_of(spec, [7, 9], percpu_values(spec, [[1, 2], [3, 4]]),
                     extra={"time": pd.Series([1.0, 2.0], index=[10, 20])})
    assert isinstance(frame.index, pd.RangeIndex)
    assert frame.index.equals(pd.RangeIndex(4))
    assert frame["time"].tolist() == [1.0, 1.0, 2.0, 2.0]


# ---- 10. errno -> learner's error ----------------------------------------------------------------

E = errno


@pytest.mark.parametrize("map_type, op, err, error, part, words", [
    ("array", "lookup", E.E2BIG, MapError, "what", "past the end"),
    ("array", "update", E.E2BIG, MapError, "what", "past the end"),
    ("hash", "update", E.E2BIG, MapFull, "what", "max_entries=16 entries"),
    ("queue", "push", E.E2BIG, MapFull, "what", "max_entries=16 values"),
    ("prog_array", "update", E.EINVAL, MapError, "hint", "same program type"),
    ("hash_of_maps", "update", E.EINVAL, MapError, "hint", "template"),
    ("hash_of_maps", "update", E.EINVAL, MapError, "hint", "BPF_HASH_OF_MAPS"),
    ("devmap", "update", E.EINVAL, MapError, "what", "no interface with ifindex 7"),
    ("devmap_hash", "update", E.ENODEV, MapError, "what", "no interface with ifindex 7"),
    ("sockmap", "update", E.EOPNOTSUPP, MapError, "what", "refused to put that socket"),
    ("sockmap", "update", E.EBUSY, MapError, "what", "already in another map"),
    ("reuseport_sockarray", "update", E.EBUSY, MapError, "hint", "one slot at a time"),
    ("array", "delete", E.EINVAL, MapError, "what", "cannot be deleted"),
    ("queue", "pop", E.ENOENT, MapEmpty, "what", "The queue 'm' is empty: there is nothing to pop from"),
    ("stack", "peek", E.ENOENT, MapEmpty, "what", "nothing to peek at"),
    ("sk_storage", "lookup", E.EBADF, MapError, "what", "not an open socket"),
    ("task_storage", "delete", E.EBADF, MapError, "what", "not an open pidfd"),
    ("hash", "update", E.EEXIST, MapError, "hint", "BPF_NOEXIST"),
    ("hash", "lookup", failures.ENOTSUPP, MapError, "what", "(ENOTSUPP)"),
    ("hash", "lookup", E.EOPNOTSUPP, MapError, "what", "cannot read a hash from user space"),
    ("hash", "update", E.EACCES, MapError, "hint", "BPF_F_RDONLY"),
    ("hash", "delete", E.EIO, MapError, "what", os.strerror(E.EIO)),
])
def test_explain_turns_an_errno_into_the_learners_error(map_type, op, err, error, part, words):
    spec = spec_of(map_type, 4, 8, 16, name="m")
    exc = failures.explain(spec, op, err, key=3, value=7)
    assert type(exc) is error
    assert words in getattr(exc, part)


def test_eperm_on_a_map_is_a_privilege_only_where_one_is_missing(monkeypatch):
    """EPERM to a process holding every capability BPF asks for is the kernel's policy, not a
    privilege to get: the learner is not told to become root."""
    spec = spec_of("hash", 4, 8, 16, name="m")
    everything = sum(1 << bit for bit in refusal.CAPABILITIES.values())
    monkeypatch.setattr(system, "effective_caps", lambda: everything)
    exc = failures.explain(spec, "update", E.EPERM, key=3, value=7)
    assert type(exc) is NotAllowedHere and exc.errno == E.EPERM
    assert "no privilege is missing" in exc.what and "root" not in exc.hint
    monkeypatch.setattr(system, "effective_caps", lambda: everything & ~(1 << system.CAP_BPF)
                        & ~(1 << system.CAP_SYS_ADMIN))
    exc = failures.explain(spec, "update", E.EPERM, key=3, value=7)
    assert type(exc) is PrivilegeError and "CAP_BPF" in exc.what + exc.hint


def test_array_slot_past_the_end_gives_the_range_and_is_not_map_full():
    exc = failures.explain(MapSpec("hist", maptypes.get("array"), 4, 8, 32), "update", E.E2BIG, key=40)
    assert exc.what == ("Slot 40 is past the end of 'hist': an array has slots 0..31, fixed when "
                        "it is made.")
    assert not isinstance(exc, MapFull)


def test_empty_queue_error_is_an_index_error():
    exc = failures.explain(MapSpec("q", maptypes.get("queue"), 0, 8, 4), "pop", E.ENOENT)
    assert isinstance(exc, IndexError) and isinstance(exc, MapError)


def test_an_errno_no_rule_covers_is_a_generic_map_error_with_the_system_text():
    exc = failures.explain(MapSpec("counts", maptypes.get("hash"), 4, 8, 16), "lookup", E.EIO, key=5)
    assert type(exc) is MapError
    assert exc.what == "Could not read map 'counts' at key 5: Input/output error."
    assert "python -m bpfkit doctor" in exc.hint
    assert failures.ENOTSUPP == 524
    assert failures.reason(failures.ENOTSUPP) == "ENOTSUPP" and failures.reason(E.EIO) == os.strerror(E.EIO)


@pytest.mark.parametrize("map_type, op, part, words", [
    ("hash", "push", "hint", "queue and stack"),
    ("hash", "push", "what", "A hash offers: lookup, update, delete, iterate."),
    ("array", "delete", "what", "cannot be deleted"),
    ("percpu_array", "delete", "hint", "m[index] = 0"),
    ("sk_storage", "iterate", "hint", "keys="),
    ("sk_storage", "iterate", "what", "only from its socket"),
    ("queue", "iterate", "hint", "m.peek()"),
    ("queue", "iterate", "hint", "m.pop()"),
    ("queue", "iterate", "hint", "m.drain()"),
    ("bloom_filter", "update", "hint", "m.add(value)"),
    ("stack", "update", "hint", "m.push(value)"),
    ("hash", "add", "hint", "bloom filters"),
    ("arena", "lookup", "what", "An arena offers: mmap."),
])
def test_not_offered_says_what_the_map_type_offers_instead(map_type, op, part, words):
    exc = failures.not_offered(MapSpec("m", maptypes.get(map_type), 4, 8, 16), op)
    assert type(exc) is MapError
    assert words in getattr(exc, part)


# ---- 11. C types and conversion -----------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("u32", ct.c_uint32), ("u8", ct.c_uint8), ("s64", ct.c_int64), ("__u16", ct.c_uint16),
    ("u64[127]", ct.c_uint64 * 127), ("char[16]", ct.c_char * 16), (" u32 [ 4 ] ", ct.c_uint32 * 4),
    ("unsigned int", ct.c_uint), ("unsigned   long long", ct.c_ulonglong), ("int", ct.c_int),
    ("double", ct.c_double),
])
def test_ctype_reads_c_names(name, expected):
    assert convert.ctype(name) is expected


@pytest.mark.parametrize("given", [Task, ct.c_uint16, ct.c_char * 4, None])
def test_ctype_passes_ctypes_types_and_none_through(given):
    assert convert.ctype(given) is given


@pytest.mark.parametrize("given", ["float128", "u33", "", "u32[]", 3, 3.0, object])
def test_ctype_refuses_what_is_not_a_c_type(given):
    with pytest.raises(KeyTypeError, match="does not name a C type for the map's key"):
        convert.ctype(given, "key")


@pytest.mark.parametrize("ctype, value, words", [
    (ct.c_uint8, 256, "255"),
    (ct.c_uint8, -1, "outside 0..255"),
    (ct.c_int8, -129, "outside -128..127"),
    (ct.c_uint64, 1 << 64, "outside"),
    (ct.c_uint32, True, "got bool"),
    (ct.c_uint32, np.bool_(False), "got bool"),
    (ct.c_uint32, 1.0, "got float"),
    (ct.c_uint32, "1", "got str"),
    (ct.c_char * 4, "abcd", "with its ending NUL"),
    (ct.c_char * 4, b"abcde", "5 bytes do not fit in char[4]"),
    (ct.c_uint32 * 2, [1, 2, 3], "3 items do not fit in 2 slots"),
    (Task, {"pid": 1, "cmd": "sh"}, "no field 'cmd'"),
    (Task, (1,), "1 items for 2 fields"),
    (Task, 5, "expected a dict or tuple"),
])
def test_to_c_refuses_values_that_do_not_fit(ctype, value, words):
    with pytest.raises(KeyTypeError) as e:
        convert.to_c(ctype, value, "value")
    assert words in str(e.value)
    assert f"The map's value is a C {convert.c_name(ctype)}" in e.value.what


@pytest.mark.parametrize("ctype, value, raw", [
    (ct.c_uint8, 255, b"\xff"),
    (ct.c_int8, -128, b"\x80"),
    (ct.c_uint32, np.uint16(7), ne(7, 4)),
    (ct.c_char * 4, "abc", b"abc\0"),
    (ct.c_char * 4, b"abcd", b"abcd"),
    (ct.c_uint32 * 3, [1, 2], ne(1, 4) + ne(2, 4) + bytes(4)),
    (Pair, ne(5, 4) + ne(6, 4), ne(5, 4) + ne(6, 4)),  # a struct's bytes, exactly its size
])
def test_to_c_converts_values_that_fit(ctype, value, raw):
    assert bytes(convert.to_c(ctype, value)) == raw


@pytest.mark.parametrize("value", [{"pid": 42, "comm": "bash"}, (42, "bash"), [42, b"bash"]])
def test_to_c_fills_a_struct_from_a_dict_or_a_tuple(value):
    task = convert.to_c(Task, value)
    assert (task.pid, task.comm) == (42, b"bash")
    assert convert.from_c(Task, task) == {"pid": 42, "comm": "bash"}


def test_to_c_checks_struct_fields_range():
    with pytest.raises(KeyTypeError, match="outside 0..4294967295"):
        convert.to_c(Task, {"pid": -1})


def test_to_c_passes_an_instance_through():
    v = ct.c_uint32(3)
    assert convert.to_c(ct.c_uint32, v) is v


def test_c_name_spells_types_for_messages():
    assert convert.c_name(ct.c_uint32) == "u32"
    assert convert.c_name(ct.c_int8) == "s8"
    assert convert.c_name(ct.c_char * 16) == "char[16]"
    assert convert.c_name(ct.c_uint64 * 127) == "u64[127]"
    assert convert.c_name(Task) == "struct {u32 pid, char[16] comm}"


# ---- 12. Snapshot ---------------------------------------------------------------------------------

def u32s(*xs) -> np.ndarray:
    return np.array(xs, dtype=np.uint32)


def u64s(*xs) -> np.ndarray:
    return np.array(xs, dtype=np.uint64)


def test_snapshot_unpacks_as_keys_and_values_and_has_a_length():
    snap = Snapshot(u32s(1, 2, 3), u64s(10, 20, 30))
    keys, values = snap
    assert keys is snap.keys and values is snap.values
    assert len(snap) == 3


def test_snapshot_concat_joins_entries_and_objects_in_order():
    a = Snapshot(u32s(1, 2), u64s(10, 20), ["x", "y"], method="keys")
    b = Snapshot(u32s(3), u64s(30), ["z"], method="batch")
    both = Snapshot.concat([a, b])
    assert both.keys.tolist() == [1, 2, 3] and both.values.tolist() == [10, 20, 30]
    assert both.objects == ["x", "y", "z"]
    assert both.method == "keys"


def test_snapshot_concat_pads_objects_with_none_when_only_some_have_them():
    a = Snapshot(u32s(1, 2), u64s(10, 20))
    b = Snapshot(u32s(3), u64s(30), ["z"])
    assert Snapshot.concat([a, b]).objects == [None, None, "z"]
    assert Snapshot.concat([b, a]).objects == ["z", None, None]
    assert Snapshot.concat([a, a]).objects is None


def test_with_every_slot_fills_missing_slots_with_zeros():
    snap = Snapshot(u32s(3, 1), u64s(30, 10), method="batch").with_every_slot(4)
    assert snap.keys.dtype == np.uint32 and snap.values.dtype == np.uint64
    assert snap.keys.tolist() == [0, 1, 2, 3]
    assert snap.values.tolist() == [0, 10, 0, 30]
    assert snap.objects is None and snap.method == "batch"


def test_with_every_slot_drops_keys_past_the_last_slot():
    snap = Snapshot(u32s(5, 0), u64s(50, 1)).with_every_slot(2)
    assert snap.keys.tolist() == [0, 1] and snap.values.tolist() == [1, 0]


def test_with_every_slot_keeps_struct_values():
    spec = spec_of("array", 4, 8, 3, value_type=Pair)
    snap = Snapshot(u32s(2), value_array(spec, [(1, 2)])).with_every_slot(3)
    assert snap.values.tolist() == [(0, 0), (0, 0), (1, 2)]


def test_with_every_slot_keeps_a_value_per_cpu():
    spec = percpu_spec("percpu_array", value_type=ct.c_uint32, cpus=2)
    snap = Snapshot(u32s(1), percpu_values(spec, [[5, 6]])).with_every_slot(3)
    assert snap.values["v"].tolist() == [[0, 0], [5, 6], [0, 0]]
    frame = frame_of(spec, snap.keys, snap.values, per_cpu="wide")
    assert frame.to_dict("list") == {"index": [0, 1, 2], "value_cpu0": [0, 5, 0],
                                     "value_cpu1": [0, 6, 0]}


def test_round_up_to_the_kernels_alignment():
    """One rounding for per-CPU slots, mmap-able elements, ring records and pages."""
    from bpfkit.maps.layout import round_up
    assert [round_up(n) for n in (0, 1, 7, 8, 9, 16, 17)] == [0, 8, 8, 8, 16, 16, 24]
    assert round_up(1, 4096) == 4096 and round_up(4096, 4096) == 4096 and round_up(4097, 4096) == 8192


# ---- program types by name (bpfkit/access/_bcc.py) -----------------------------------------------------

def test_program_types_are_the_kernels_names_and_bccs_numbers_still_work():
    from bpfkit.access import _bcc, kernel
    assert _bcc.prog_type("xdp") == kernel.PROG_TYPES.index("xdp") == 6   # BCC's BPF.XDP
    assert _bcc.prog_type(" Cgroup_SKB ") == 8 and _bcc.prog_type("lsm") == 29
    assert _bcc.prog_type(6) == 6 and _bcc.prog_type_name(13) == "sock_ops"


def test_an_unknown_program_type_names_the_valid_ones_and_the_nearest():
    from bpfkit.access import _bcc
    from bpfkit.core.errors import BpfkitError
    with pytest.raises(BpfkitError) as e:
        _bcc.prog_type("tracepont")
    assert e.value.what == "'tracepont' is not a program type."
    assert e.value.hint.startswith("Did you mean 'tracepoint'") and "'sk_msg'" in e.value.hint
    assert "'unspec'" not in e.value.hint
    for wrong in (None, 2.0, True, "unspec"):
        with pytest.raises(BpfkitError, match="is not a program type"):
            _bcc.prog_type(wrong)


def test_an_unknown_attach_type_names_the_nearest():
    from bpfkit.lab import cgroup
    from bpfkit.access import kernel
    from bpfkit.core.errors import AttachError
    assert cgroup._attach_type("egress") == kernel.ATTACH_TYPES["cgroup_inet_egress"]
    assert cgroup._attach_type("sock_ops") == kernel.ATTACH_TYPES["cgroup_sock_ops"]
    with pytest.raises(AttachError) as e:
        cgroup._attach_type("egres")
    assert e.value.hint.startswith("Did you mean 'egress'") and "sock_ops" in e.value.hint
