"""Lesson 09, events out of the kernel: bpf/09_events_ringbuf_perf/open_events.c streams exactly the watched child's
openat() calls through a ring buffer and per-CPU perf buffers; a burst that does not fit is
counted exactly (sent = received + dropped); the ring buffer keeps one order for all CPUs and
the perf buffers one per CPU; readers opened again on the same map replace the earlier ones;
`opens_in_child` does what it says; the exercise check tells the starter from the
solution."""
from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import pytest

import bpfkit
from bpfkit.observe import events
from bpfkit.core.errors import Closed, UsageError
from bpfkit.lessons.l09_events_ringbuf_perf import (BURST, BURST_PATHS, check_burst_fits,
                                                    fewest_pages, opens_in_child, record_size,
                                                    ring_capacity)
from notebook_runs import bpf_cell, solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
PAGE = os.sysconf("SC_PAGE_SIZE")
CPUS = sorted(os.sched_getaffinity(0))
EVENT = 80                      # sizeof(struct event) in bpf/09_events_ringbuf_perf/open_events.c
RING_RECORD = 8 + EVENT         # the ring buffer's 8-byte header, then the event
PERF_RECORD = 96                # perf header (8) + size (4) + event (80), rounded up to 8


STARTER = bpf_cell("notebooks/09_events_ringbuf_perf.ipynb", "burst_ring")
SOLVED = bpf_cell("notebooks/solutions/09_events_ringbuf_perf.ipynb", "burst_ring")


def readers(prog, pages: int = 1):
    return (events.ring(prog["ring_buf"], dropped=prog["ring_dropped"]),
            events.perf(prog["perf_buf"], pages=pages))


def read_all(*readers_) -> None:
    for r in readers_:
        r.drain(quiet=0.01)


def quiet_frame(reader):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", events.DroppedEvents)
        return reader.frame()


def test_the_childs_opens_arrive_through_both_buffers_in_order(no_leaks):
    files = ["/etc/passwd", "/no/such/l09/file", "/dev/null", "/proc/self/status"]
    with bpfkit.load("open_events") as prog:
        assert prog["ring_buf"].type == "ringbuf" and prog["ring_buf"].max_entries == PAGE
        assert prog["perf_buf"].type == "perf_event_array"
        ring, perf = readers(prog)
        pid = opens_in_child(prog["config"], files)
        assert prog["config"][0] == 0
        read_all(ring, perf)
        frame = ring.frame(arrival=True)
        assert list(frame.columns) == ["ts", "pid", "cpu", "file", "arrival_ns"]
        assert frame["file"].tolist() == files and (frame["pid"] == pid).all()
        assert frame["ts"].is_monotonic_increasing
        assert (frame["arrival_ns"] >= frame["ts"]).all()  # one clock: nothing read before it happened
        assert list(ring.frame().columns) == ["ts", "pid", "cpu", "file"]  # arrival only when asked
        assert sorted(perf.frame()["file"]) == sorted(files)
        assert (ring.dropped, perf.dropped) == (0, 0)

        # Our own openat() calls are not watched: nothing more arrives.
        (ROOT / "README.md").read_bytes()
        read_all(ring, perf)
        assert (ring.received, perf.received) == (len(files), len(files))

        # Across CPUs: the child alternates CPUs call by call.
        pair = CPUS[:2]
        plan = [pair[i % len(pair)] for i in range(10)]
        names = [f"/no/such/l09/order-{i}" for i in range(10)]
        ring.clear()
        perf.clear()
        opens_in_child(prog["config"], names, cpus=plan)
        read_all(ring, perf)
        in_ring, in_perf = ring.frame(), perf.frame()
        assert in_ring["file"].tolist() == names and in_ring["cpu"].tolist() == plan
        assert in_ring["ts"].is_monotonic_increasing
        assert in_perf.sort_values("ts")["file"].tolist() == names
        for cpu in set(plan):
            assert in_perf.loc[in_perf["cpu"] == cpu, "file"].tolist() == \
                [n for n, c in zip(names, plan) if c == cpu]
        if len(pair) == 2:
            # Read after the fact, BCC empties one CPU's buffer, then the other's.
            assert in_perf["cpu"].tolist() == sorted(plan)
            assert not in_perf["ts"].is_monotonic_increasing


def test_a_burst_nobody_reads_is_counted_exactly(no_leaks):
    burst = [f"/no/such/l09/burst-{i:03d}" for i in range(300)]
    with bpfkit.load("open_events") as prog:
        ring, perf = readers(prog, pages=1)
        opens_in_child(prog["config"], burst, cpus=CPUS[0])
        read_all(ring, perf)
        ring_fits = ring_capacity(PAGE, RING_RECORD)
        perf_fits = (PAGE - 1) // PERF_RECORD
        assert (ring.received, ring.dropped) == (ring_fits, 300 - ring_fits)
        assert perf.received == perf_fits and perf.dropped == 0   # the kernel has not told yet
        opens_in_child(prog["config"], ["/dev/null"], cpus=CPUS[0])
        read_all(ring, perf)
        assert (ring.received, ring.dropped) == (ring_fits + 1, 300 - ring_fits)
        assert (perf.received, perf.dropped) == (perf_fits + 1, 300 - perf_fits)
        if PAGE == 4096:
            assert (ring_fits, perf_fits) == (46, 42)
        with pytest.warns(events.DroppedEvents, match=f"{300 - ring_fits} events were dropped"):
            kept = ring.frame()["file"].tolist()
        assert kept == burst[:ring_fits] + ["/dev/null"]          # the oldest stay
        assert quiet_frame(perf)["file"].tolist() == burst[:perf_fits] + ["/dev/null"]
        assert prog["ring_dropped"][0] == ring.dropped


def perf_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]"
        except OSError:
            pass
    return count


def test_a_reader_opened_again_replaces_the_earlier_one(no_leaks):
    outside = perf_fds()
    with bpfkit.load("open_events") as prog:
        before = perf_fds()                            # (the tracepoint's own perf event included)
        ring1, perf1 = readers(prog, pages=1)
        opened = perf_fds() - before
        assert opened >= 1
        ring2, perf2 = readers(prog, pages=2)
        assert perf_fds() - before == opened          # the first perf buffers were freed
        assert ring1.replaced and perf1.replaced and not ring2.replaced and not perf2.replaced
        for old in (ring1, perf1):
            with pytest.raises(Closed, match="replaced by a newer one"):
                old.poll(0)
        opens_in_child(prog["config"], ["/dev/null", "/no/such/l09/x"])
        read_all(ring2, perf2)
        assert ring2.frame()["file"].tolist() == ["/dev/null", "/no/such/l09/x"]
        assert sorted(perf2.frame()["file"]) == ["/dev/null", "/no/such/l09/x"]
        assert ring1.received == perf1.received == 0
        assert perf2.pages == 2
        ring3 = events.ring(prog["ring_buf"])           # and again: still one consumer
        opens_in_child(prog["config"], ["/dev/null"])
        ring3.drain(quiet=0.01)
        assert (ring3.received, ring2.received) == (1, 2)
    assert perf_fds() == outside                      # closing the program frees the rest
    with pytest.raises(bpfkit.core.errors.ProgramClosed):
        ring3.poll(0)


def test_opens_in_child_checks_what_it_is_given():
    config = {0: 0}                                    # any mapping with a slot 0 will do
    calls = []

    def during():
        calls.append(time.monotonic())
        time.sleep(0.01)

    pid = opens_in_child(config, ["/dev/null"] * 4, every=0.02, during=during)
    assert pid > 0 and config[0] == 0 and len(calls) >= 2   # `during` ran while the child worked
    with pytest.raises(bpfkit.core.errors.UsageError, match="at least one path"):
        opens_in_child(config, [])
    with pytest.raises(bpfkit.core.errors.UsageError, match="NUL"):
        opens_in_child(config, ["/dev/\0null"])
    with pytest.raises(bpfkit.core.errors.UsageError, match="cpus has 1 entries for 2 paths"):
        opens_in_child(config, ["/dev/null", "/dev/null"], cpus=[CPUS[0]])
    with pytest.raises(UsageError, match="not one this process may run on"):
        opens_in_child(config, ["/dev/null"], cpus=max(CPUS) + 1000)
    assert config[0] == 0


@pytest.mark.unit
def test_ring_buffer_sizing_rules():
    assert record_size(80) == 88 and record_size(81) == 96 and record_size(1) == 16
    assert ring_capacity(4096, 88) == 46 and ring_capacity(4096, 64) == 63   # never the last byte
    assert fewest_pages(300, 88, 4096) == 8 and fewest_pages(300, 48, 4096) == 4
    assert fewest_pages(1, 88, 4096) == 1
    assert len(BURST_PATHS) == BURST == 300 and len(set(BURST_PATHS)) == BURST




def test_exercise_check_tells_starter_and_solution_apart(no_leaks):
    assert "BPF_RINGBUF_OUTPUT(ring_buf, 1);" in STARTER and "ringbuf_reserve" in STARTER
    assert "BPF_RINGBUF_OUTPUT(ring_buf, 8);" in SOLVED
    with bpfkit.load(STARTER, name="l09_burst_ring") as prog:
        result = check_burst_fits(prog)
        text = str(result)
        assert not result.passed and result.tries == 1 and len(result.problems) == 2
        assert "No prediction yet" in text and "Step 1 of the exercise" in text
        assert f"{300 - 42 if PAGE == 4096 else ''} of 300 events were lost" in text
        assert "How many pages hold all 300" in text and "'A burst that does not fit'" in text
        assert "Hint" not in text and "Fix" not in text and "BPF_RINGBUF_OUTPUT" not in text
        shown = [line for line in solution_only_lines(ROOT / "notebooks" / "09_events_ringbuf_perf.ipynb") if line in text]
        assert not shown, shown                            # the first try asks, it does not tell
        result = check_burst_fits(prog, record_bytes=92)   # the fields' sum, without the padding
        text = str(result)
        assert not result.passed and "each record took 96 bytes" in text
        assert "Hint: `sizeof(struct event)` is 88" in text and "Fix" not in text
        result = check_burst_fits(prog, ring="config")     # a wrong map: words, not an exception
        assert not result.passed and "where the check expected a ring buffer" in str(result)
        result = check_burst_fits(prog, ring="nope")
        assert not result.passed and "no map named 'nope'" in str(result)
    with bpfkit.load(SOLVED, name="l09_burst_ring") as prog:
        result = check_burst_fits(prog, record_bytes=96)
        assert result.passed, str(result)
        assert check_burst_fits(prog, record_bytes=96).passed   # run twice: the same answer
    too_big = SOLVED.replace("ring_buf, 8)", "ring_buf, 16)")
    with bpfkit.load(too_big, name="l09_burst_ring") as prog:
        result = check_burst_fits(prog, record_bytes=96)
        assert not result.passed and "Nothing was lost, with 16 pages" in str(result)
        assert "is that the fewest pages" in str(result)
    cut = STARTER.replace("ring_buf, 1)", "ring_buf, 4)").replace("file[64]", "file[16]")
    with bpfkit.load(cut, name="l09_burst_ring") as prog:
        result = check_burst_fits(prog, record_bytes=48)   # 36 bytes of fields, padded to 40
        assert not result.passed and "cut short" in str(result) and "23 bytes" in str(result)


def test_the_third_try_of_the_exercise_check_shows_the_code(no_leaks):
    with bpfkit.load(STARTER, name="l09_burst_ring") as prog:
        first, second, third = (check_burst_fits(prog, record_bytes=96) for _ in range(3))
    assert [r.tries for r in (first, second, third)] == [1, 2, 3]
    assert "Hint" not in str(first) and "Hint" in str(second) and "Fix" not in str(second)
    if PAGE == 4096:
        assert "Fix: `BPF_RINGBUF_OUTPUT(ring_buf, 8);`: 8 pages hold 341 records" in str(third)
    assert third.problems == first.problems             # the question stays; help is added


def test_the_decode_check_takes_a_decoder_that_agrees_with_frame_and_refuses_others(no_leaks):
    """Lesson 09's user-space exercise: a learner's `decode(record)` is compared, event by event,
    with the reader's frame(); a wrong layout and a raising decoder are refused, and the first try
    names what differs without the unpack call the third try shows."""
    import struct
    from bpfkit.lessons.l09_events_ringbuf_perf import check_decoder

    def right(record):
        ts, pid, cpu, file = struct.unpack_from("=QII64s", record)
        return {"ts": ts, "pid": pid, "cpu": cpu, "file": file.split(b"\0")[0].decode()}

    def swapped(record):
        ts, cpu, pid, file = struct.unpack_from("=QII64s", record)
        return {"ts": ts, "pid": pid, "cpu": cpu, "file": file.split(b"\0")[0].decode()}

    with bpfkit.load("open_events") as prog:
        ring = events.ring(prog["ring_buf"], dropped=prog["ring_dropped"])
        opens_in_child(prog["config"], ["/dev/null", "/no/such/l09/decode"])
        ring.drain(quiet=0.01)
        assert len(ring.records()) == 2
        wrong = check_decoder(swapped, ring)                              # the first try
        assert not wrong.passed and "'pid'" in str(wrong) and "unpack_from" not in str(wrong)
        assert check_decoder(right, ring).passed
        raising = check_decoder(lambda record: struct.unpack("=Q", record), ring)   # the third
        assert "error" in str(raising) and "Fix:" in str(raising) and "unpack_from" in str(raising)
        ring.clear()
        empty = check_decoder(right, ring)
        assert not empty.passed and "no events" in str(empty)
