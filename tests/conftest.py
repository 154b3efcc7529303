"""Shared fixtures: every test here runs on the real kernel, as root, with the distro's BCC."""
from __future__ import annotations

import time

import pytest

import bpfkit
from bpfkit import kernel, workload


def settled_snapshot(expected: dict | None = None, timeout: float = 3.0) -> dict:
    """The kernel's BPF ids, after letting deferred frees finish.

    The kernel frees a closed program's maps after an RCU grace period, so right after a close
    a map can still be listed for a moment; wait until the picture matches `expected` (or
    stops changing)."""
    deadline = time.monotonic() + timeout
    snap = kernel.snapshot()
    while time.monotonic() < deadline:
        if expected is not None and all(snap[k] <= expected[k] for k in snap):
            return snap
        time.sleep(0.05)
        new = kernel.snapshot()
        if expected is None and new == snap:
            return new
        snap = new
    return snap


@pytest.fixture
def uid() -> int:
    """A uid nobody else on the machine runs as: counts for it are exact."""
    return workload.unused_uid()


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves BPF programs, maps or links behind."""
    before = settled_snapshot()
    yield
    bpfkit.close_all()
    after = settled_snapshot(before)
    left = {k: sorted(after[k] - before[k]) for k in after if after[k] - before[k]}
    assert not left, f"left in the kernel: {left}"
