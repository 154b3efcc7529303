"""The snapshot path behind every .frame(): batch reads, their fallback, per-CPU layouts, mmap.

Maps are filled from user space with known values, so every frame is compared exactly; the
batch path is checked against plain iteration (get_next_key + lookup), which has no cleverness
to get wrong.
"""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import bpfkit
from bpfkit.access import _libbpf
from bpfkit.core.errors import MapError

SOURCE = r"""
struct task_key { u32 pid; char comm[16]; };
struct pair { u64 packets; u32 bytes; };

BPF_HASH(by_u64, u64, u64, 20000);
BPF_HASH(by_task, struct task_key, u64, 10000);
BPF_PERCPU_HASH(per_cpu, u64, u64, 10000);
BPF_PERCPU_HASH(per_cpu_pair, u32, struct pair, 1000);
BPF_PERCPU_ARRAY(per_cpu_slots, u64, 1000);
BPF_ARRAY(slots, u64, 50000);
BPF_F_TABLE("array", u32, u64, mapped, 50000, BPF_F_MMAPABLE);
BPF_F_TABLE("array", u32, struct pair, mapped_pairs, 1000, BPF_F_MMAPABLE);
BPF_STACK_TRACE(stacks, 64);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    stacks.get_stackid(args, 0);   // a map type with no batch operations
    return 0;
}
"""

N = 20000


@pytest.fixture(scope="module")
def prog():
    program = bpfkit.load(SOURCE, name="test_snapshot")
    yield program
    program.close()


def filled_hash(prog, n=N):
    m = prog["by_u64"]
    m.clear()
    keys = np.arange(1, n + 1, dtype=np.uint64) * 7919  # spread over the buckets
    assert m.update_batch(keys, keys * 3) == n
    return m, keys


def sorted_frame(frame: pd.DataFrame, by) -> pd.DataFrame:
    return frame.sort_values(by, kind="stable").reset_index(drop=True)


# -- the batch path and its fallback -----------------------------------------------------------

def test_batch_and_iteration_give_the_same_frame(prog):
    m, keys = filled_hash(prog)
    stats = {}
    m.snapshot(stats=stats)
    assert stats["method"] == "batch" and stats["calls"] <= 3
    fast, slow = m.frame(), m.frame(method="iterate")
    assert len(fast) == N
    pd.testing.assert_frame_equal(sorted_frame(fast, "key"), sorted_frame(slow, "key"))
    expected = pd.DataFrame({"key": np.sort(keys), "value": np.sort(keys) * 3})
    pd.testing.assert_frame_equal(sorted_frame(fast, "key"), expected)


@pytest.mark.parametrize("batch_size", [1, 7, 1000, 19999])
def test_partial_batches_resume_where_the_kernel_stopped(prog, batch_size):
    m, keys = filled_hash(prog)
    stats = {}
    k, v = m.snapshot(batch_size=batch_size, stats=stats)
    assert stats["method"] == "batch"
    assert stats["calls"] > 1  # the read really was split into batches
    assert len(k) == N and len(np.unique(k)) == N
    assert set(k.tolist()) == set(keys.tolist())
    assert np.array_equal(v, k * 3)


def test_enospc_on_a_full_hash_grows_the_batch(prog):
    # 20000 entries in 32768 buckets: many buckets hold two or more, more than a batch of 1.
    m, keys = filled_hash(prog)
    stats = {}
    k, v = m.snapshot(batch_size=1, stats=stats)
    assert stats["enospc"] > 0
    assert sorted(k.tolist()) == sorted(keys.tolist())
    assert np.array_equal(v, k * 3)


def test_struct_keys(prog):
    m = prog["by_task"]
    n = 5000
    keys = np.zeros(n, dtype=m.key_dtype)
    keys["pid"] = np.arange(n)
    keys["comm"] = [b"task-%d" % (i % 97) for i in range(n)]
    m.update_batch(keys, np.arange(n, dtype=np.uint64) + 100)
    fast = sorted_frame(m.frame(), "pid")
    slow = sorted_frame(m.frame(method="iterate"), "pid")
    pd.testing.assert_frame_equal(fast, slow)
    assert list(fast.columns) == ["pid", "comm", "value"]
    assert fast["comm"].tolist()[:3] == ["task-0", "task-1", "task-2"]
    assert fast["value"].tolist() == list(range(100, 100 + n))
    assert m[{"pid": 96, "comm": "task-96"}] == 196


def test_arrays_read_in_batches(prog):
    m = prog["slots"]
    idx = np.arange(m.max_entries, dtype=np.uint32)
    m.update_batch(idx, idx.astype(np.uint64) ** 2)
    stats = {}
    k, v = m.snapshot(batch_size=4096, stats=stats)
    assert stats["method"] == "batch" and stats["calls"] >= m.max_entries // 4096
    assert np.array_equal(k, idx) and np.array_equal(v, idx.astype(np.uint64) ** 2)
    fast, slow = m.frame(), m.frame(method="iterate")
    pd.testing.assert_frame_equal(fast, slow)


def test_a_map_type_without_batch_falls_back(prog):
    for _ in range(5):
        os.getppid()
    m = prog["stacks"]
    assert m.type == "stack_trace"
    stats = {}
    k, v = m.snapshot(stats=stats)
    assert stats["method"] == "iterate" and stats["fallback"]
    assert len(k) >= 1
    k2, v2 = m.snapshot(method="iterate")
    assert sorted(k.tolist()) == sorted(k2.tolist())
    with pytest.raises(MapError):
        m.snapshot(method="batch")


class Churn:
    """A child process deleting and re-adding `keys` (value key*3) until stopped.

    A process, not a thread, so that it changes the map truly at the same time as the read
    (a thread would mostly wait for the GIL). It inherits the map's file descriptor."""

    def __init__(self, m, keys: np.ndarray):
        self.stop_r, self.stop_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: only libbpf calls, then _exit
            code = 1
            try:
                os.close(self.stop_w)
                os.set_blocking(self.stop_r, False)
                lib, fd = _libbpf.lib, m.fd
                k, v = np.zeros(1, dtype=np.uint64), np.zeros(1, dtype=np.uint64)
                kp, vp = k.ctypes.data, v.ctypes.data
                os.write(self.ready_w, b"1")
                while True:
                    for key in keys.tolist():
                        k[0], v[0] = key, key * 3
                        for call, args in ((lib.bpf_map_delete_elem, (fd, kp)),
                                           (lib.bpf_map_update_elem, (fd, kp, vp, 0))):
                            try:
                                call(*args)
                            except OSError:
                                pass   # a key the reader's side took first: churn on
                    try:
                        if os.read(self.stop_r, 1) == b"":
                            break
                    except BlockingIOError:
                        pass
                code = 0
            finally:
                os._exit(code)
        os.close(self.stop_r)
        os.close(self.ready_w)
        os.read(self.ready_r, 1)  # the child is churning
        os.close(self.ready_r)

    def stop(self) -> None:
        os.close(self.stop_w)  # the child reads EOF and leaves
        _, status = os.waitpid(self.pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize("method", ["batch", "iterate"])
def test_a_map_changing_under_the_read(prog, method):
    m, keys = filled_hash(prog, 10000)
    churned, stable = keys[::2], keys[1::2]
    churn = Churn(m, churned)
    try:
        for _ in range(5):
            k, v = m.snapshot(method=method, batch_size=64)
            assert len(np.unique(k)) == len(k), "a key came back twice"
            assert set(stable.tolist()) <= set(k.tolist()), "an untouched key went missing"
            assert set(k.tolist()) <= set(keys.tolist())
            assert np.array_equal(v, k * 3)
    finally:
        churn.stop()


# -- per-CPU maps ------------------------------------------------------------------------------

def test_per_cpu_hash_layouts(prog):
    m = prog["per_cpu"]
    cpus = m.cpus
    keys = np.arange(1, 3001, dtype=np.uint64)
    per = np.stack([keys * 10 + c for c in range(cpus)], axis=1)  # a different value on each CPU
    m.update_batch(keys, per)

    long = sorted_frame(m.frame(), ["key", "cpu"])
    assert list(long.columns) == ["key", "cpu", "value"]
    assert len(long) == len(keys) * cpus
    assert long["value"].tolist() == (long["key"] * 10 + long["cpu"]).tolist()
    pd.testing.assert_frame_equal(long, sorted_frame(m.frame(method="iterate"), ["key", "cpu"]))

    wide = sorted_frame(m.frame(per_cpu="wide"), "key")
    assert list(wide.columns) == ["key"] + [f"value_cpu{c}" for c in range(cpus)]
    for c in range(cpus):
        assert wide[f"value_cpu{c}"].tolist() == (keys * 10 + c).tolist()

    total = sorted_frame(m.frame({"key": "id", "value": "total"}, per_cpu="sum"), "id")
    assert list(total.columns) == ["id", "total"]
    assert total["total"].tolist() == (keys * 10 * cpus + sum(range(cpus))).tolist()

    renamed = m.frame({"value": "n"}, per_cpu="wide")
    assert f"n_cpu{cpus - 1}" in renamed.columns
    with pytest.raises(bpfkit.core.errors.UsageError):
        m.frame(per_cpu="tall")


def test_per_cpu_struct_values_and_arrays(prog):
    m = prog["per_cpu_pair"]
    cpus = m.cpus
    base = m.value_dtype.base["v"]
    values = np.zeros((3, cpus), dtype=base)
    for c in range(cpus):
        values[:, c]["packets"] = [1 + c, 2 + c, 3 + c]
        values[:, c]["bytes"] = [100 * (c + 1)] * 3
    m.update_batch(np.array([1, 2, 3], dtype=np.uint32), values)
    total = sorted_frame(m.frame(per_cpu="sum"), "key")
    assert total["packets"].tolist() == [sum(k + c for c in range(cpus)) for k in (1, 2, 3)]
    assert total["bytes"].tolist() == [100 * sum(range(1, cpus + 1))] * 3
    wide = m.frame(per_cpu="wide")
    assert {f"packets_cpu{c}" for c in range(cpus)} <= set(wide.columns)

    a = prog["per_cpu_slots"]
    a.update_batch(np.arange(1000, dtype=np.int32), np.stack([np.arange(1000) + c for c in range(cpus)], 1))
    summed = a.frame(per_cpu="sum")
    assert summed.iloc[:, -1].tolist() == [cpus * i + sum(range(cpus)) for i in range(1000)]
    pd.testing.assert_frame_equal(a.frame(), a.frame(method="iterate"))


# -- mmapable arrays -----------------------------------------------------------------------------

def test_mmap_view_equals_the_frame(prog):
    m = prog["mapped"]
    assert m.mmapable and not prog["slots"].mmapable
    idx = np.arange(m.max_entries, dtype=np.uint32)
    m.update_batch(idx, idx.astype(np.uint64) * 5)
    view = m.view()
    assert not view.flags.writeable
    assert np.array_equal(view, idx.astype(np.uint64) * 5)
    stats = {}
    m.snapshot(stats=stats)
    assert stats["method"] == "mmap" and stats["calls"] == 0
    frame = m.frame()
    pd.testing.assert_frame_equal(frame, m.frame(method="batch"))
    assert np.array_equal(frame.iloc[:, -1].to_numpy(), view)
    m[7] = 123456  # a write through the syscall shows in the view at once, no read needed
    assert view[7] == 123456
    assert frame.iloc[7, -1] == 35  # while the frame is a snapshot and does not change
    writable = m.view(writable=True)
    writable[8] = 99
    assert m[8] == 99
    with pytest.raises(MapError):
        prog["slots"].view()


def test_mmap_struct_values(prog):
    m = prog["mapped_pairs"]
    values = np.zeros(m.max_entries, dtype=m.value_dtype)
    values["packets"] = np.arange(m.max_entries)
    values["bytes"] = 7
    m.update_batch(np.arange(m.max_entries, dtype=np.uint32), values)
    view = m.view()
    assert view["packets"][999] == 999 and view["bytes"][0] == 7
    pd.testing.assert_frame_equal(m.frame(), m.frame(method="batch"))


def test_a_held_view_does_not_keep_the_map(no_leaks):
    prog = bpfkit.load('BPF_F_TABLE("array", u32, u64, live, 4096, BPF_F_MMAPABLE);', name="test_view")
    m = prog["live"]
    m[3] = 42
    view = m.view()
    assert view[3] == 42
    prog.close()  # no_leaks then checks that the kernel freed the map although `view` lives on
    assert view[3] == 0  # the view now reads zeros instead of crashing
    del view
