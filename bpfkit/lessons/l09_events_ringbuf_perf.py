"""Lesson 09's exercise (a ring buffer that holds a burst) and its check.

The check makes its own burst: `BURST` openat() calls by a watched child while nobody reads
(`opens_in_child`), then reads the ring buffer and the program's drop counter. It
knows how many events were sent, so received + dropped must add up to exactly that, and it
knows how the kernel sizes a ring buffer's records, so it can say how many pages were needed.
"""
from __future__ import annotations

import ctypes as ct
import os
import warnings

from ..observe import events as event_readers
from ..lab.children import Child
from ..core.errors import UsageError
from ..maps.layout import round_up
from .breaking import Break
from .checker import Checker, exercise, learners

BURST = 300
BURST_PATHS = [f"/no/such/l09/burst-{i:03d}" for i in range(BURST)]
RINGBUF_HEADER = 8  # BPF_RINGBUF_HDR_SZ: the kernel's header before every record


def opens_in_child(config, paths: list[str], *, cpus=None, every: float = 0.0, during=None,
                   timeout: float = 30.0) -> int:
    """Exactly one openat() per entry of `paths`, in that order, by a child process whose pid
    is in `config[0]` while it runs (a path that does not exist still makes its call, which
    fails with ENOENT). Returns the child's pid.

    `cpus`: one CPU for every call, or a list with one CPU (or None) per call; the child moves
    to that CPU just before the call, so a program sees the call on exactly that CPU.
    `every`: seconds the child sleeps after each call. `during`: called over and over while
    the child runs (a reader's poll, say), so user space works while the events come."""
    paths = [os.fspath(p) for p in paths]
    if not paths or any(not isinstance(p, str) or not p or "\0" in p for p in paths):
        raise UsageError("opens_in_child() needs at least one path, each a non-empty str "
                         "without NUL.", 'give paths like ["/etc/hostname"].')
    cpus = [cpus] * len(paths) if cpus is None or isinstance(cpus, int) else list(cpus)
    if len(cpus) != len(paths):
        raise UsageError(f"cpus has {len(cpus)} entries for {len(paths)} paths.",
                         "give one CPU for every call, or one per call.")
    allowed = os.sched_getaffinity(0)
    bad = sorted({c for c in cpus if c is not None and c not in allowed})
    if bad:
        raise UsageError(f"CPU {bad[0]} is not one this process may run on.",
                         f"pick from {sorted(allowed)} (os.sched_getaffinity(0)).")
    with Child(watch=config, timeout=timeout) as child:
        child.open(paths, cpus=cpus, every=every, during=during)
        return child.pid


def record_size(event_size: int) -> int:
    """Bytes of ring buffer one event of `event_size` bytes takes: the 8-byte header, then the
    event, rounded up to a multiple of 8."""
    return RINGBUF_HEADER + round_up(event_size)


def ring_capacity(ring_size: int, record: int) -> int:
    """Records of `record` bytes an empty ring buffer of `ring_size` bytes takes before the next
    reserve fails: the kernel never lets the data reach its last byte (size - 1 at most)."""
    return (ring_size - 1) // record


def fewest_pages(events: int, record: int, page: int) -> int:
    """The smallest power-of-two number of pages whose ring buffer holds `events` records."""
    pages = 1
    while ring_capacity(pages * page, record) < events:
        pages *= 2
    return pages


@exercise("A ring buffer that holds a burst",
          "Each record is an 8-byte header plus the event rounded up to 8 bytes, a ring buffer "
          "holds (size - 1) // record of them, and its size is a power of two pages: the burst "
          "fits, in no more memory than it needs.")
def check_burst_fits(c: Checker, program, record_bytes: int | None = None, ring: str = "ring_buf",
                     dropped: str = "ring_dropped", config: str = "config") -> None:
    """Lesson 09's exercise: a burst of BURST openat() calls, made while nobody reads, must all
    fit in ring buffer `ring`, which must be no bigger than it needs to be; `record_bytes` is
    the learner's prediction of the bytes one event takes in the ring."""
    m = program[ring]
    c.require(m.type == "ringbuf",
              f"`{ring}` is {m.map_type.a}, where the check expected a ring buffer: which BCC macro "
              "declares one? The cell 'The program' declares `ring_buf`.",
              hint="A ring buffer is declared with its size in pages; the perf buffer's macro makes "
                   "a perf event array instead.",
              fix=f"`BPF_RINGBUF_OUTPUT({ring}, pages);`, pages a power of two.")
    page = os.sysconf("SC_PAGE_SIZE")
    pages = m.max_entries // page
    reader = event_readers.ring(m, dropped=program[dropped])
    reader.drain(quiet=0.01)             # whatever waited from before is not part of the burst
    reader.clear()
    program[dropped].clear()
    opens_in_child(program[config], BURST_PATHS)   # nobody reads meanwhile
    reader.drain(quiet=0.01)
    got, lost = reader.received, reader.dropped
    c.require(got > 0,
              f"No event arrived for {BURST} openat() calls, where {BURST} were expected: does the "
              "program still send one event per call of the process in `config[0]`? The cell "
              "'The program' walks through what it does per call.",
              hint="An event reserved in the ring buffer reaches the reader only once it is "
                   "submitted.",
              fix="After filling the event: `ring_buf.ringbuf_submit(e, 0);`")
    size = ct.sizeof(reader.event_type)
    record = record_size(size)

    _check_prediction(c, record_bytes, size)

    c.require(got + lost == BURST,
              f"The program sent {got + lost} events ({got} received + {lost} counted as dropped) "
              f"for {BURST} openat() calls, where {BURST} were expected: where does an event go "
              "missing, or get counted twice? The cell 'The program' sends one event per call and "
              "counts each one that does not fit.",
              hint=f"Each call of the watched process should reserve one event, then either submit "
                   f"it or, when there is no room, add 1 to `{dropped}[0]`: never both.",
              fix=f"When `ringbuf_reserve` returns NULL: `__sync_fetch_and_add(dropped, 1); return "
                  f"0;` (with `dropped` from `{dropped}.lookup(&zero)`); else fill the event and "
                  "`ringbuf_submit(e, 0)`.")
    _check_room(c, got, lost, pages, record, ring)
    _check_paths(c, reader, got)


def _check_prediction(c: Checker, record_bytes: int | None, size: int) -> None:
    """The learner's prediction of one record's bytes, for an event of `size` bytes."""
    record = record_size(size)
    if record_bytes is None:
        c.expect(False, "No prediction yet (`record_bytes=None`): how many bytes of ring buffer does "
                 "one event take? Step 1 of the exercise lists what a record is made of.",
                 hint="A record is the kernel's 8-byte header, then `sizeof(struct event)` rounded up "
                      "to a multiple of 8; the compiler pads the struct to a multiple of its widest "
                      "field.",
                 fix=f"`check_burst_fits(burst_ring, record_bytes={record})`: {RINGBUF_HEADER} bytes "
                     f"of header + `sizeof(struct event)` = {size}, rounded up to a multiple of 8.")
    else:
        c.expect(record_bytes == record,
                 f"You predicted {record_bytes} bytes per record; each record took {record} bytes of "
                 "ring buffer. What did the prediction leave out: the header, the struct's padding, "
                 "or the rounding? Step 1 of the exercise lists them.",
                 hint=f"`sizeof(struct event)` is {size} here, and its fields add up to less: the "
                      "compiler pads a struct to a multiple of its widest field (`ts`, 8 bytes).",
                 fix=f"`record_bytes={record}`: {RINGBUF_HEADER} bytes of header + "
                     f"`sizeof(struct event)` = {size}, rounded up to a multiple of 8.")


def _check_room(c: Checker, got: int, lost: int, pages: int, record: int, ring: str) -> None:
    """The burst fitted (nothing `lost`) in the fewest pages that hold it."""
    page = os.sysconf("SC_PAGE_SIZE")
    need = fewest_pages(BURST, record, page)
    plural = "s" if pages > 1 else ""
    if lost:
        c.expect(False, f"{lost} of {BURST} events were lost: the ring buffer of {pages} "
                 f"page{plural} ({pages * page:,} bytes) held {got} of them. How many pages hold all "
                 f"{BURST}? The cell 'A burst that does not fit' works out how many records one "
                 "page holds.",
                 hint=f"A ring of `size` bytes holds (size − 1) // {record} records, and its size "
                      f"is a power of two pages ({page:,} bytes each).",
                 fix=f"`BPF_RINGBUF_OUTPUT({ring}, {need});`: {need} pages hold "
                     f"{ring_capacity(need * page, record)} records of {record} bytes.")
    elif pages > need:
        c.expect(False, f"Nothing was lost, with {pages} pages ({pages * page:,} bytes) for a burst of "
                 f"{BURST}: is that the fewest pages (a power of two) that hold it? Step 3 of the "
                 "exercise asks for the fewest.",
                 hint=f"A ring buffer's memory is allocated in full when the map is made, used or not. "
                      f"{pages} pages hold {ring_capacity(pages * page, record)} records of "
                      f"{record} bytes: would half as many still hold {BURST}?",
                 fix=f"`BPF_RINGBUF_OUTPUT({ring}, {need});`: {need} pages hold "
                     f"{ring_capacity(need * page, record)} records of {record} bytes.")


def _check_paths(c: Checker, reader, got: int) -> None:
    """The events' paths are the burst's, in order, and whole."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", event_readers.DroppedEvents)
        frame = reader.frame()
    if c.expect("file" in frame.columns,
                "The events have no `file` column, where the check expected each call's path: "
                "which field did the change take out of `struct event`? The reader's columns are "
                "the struct's fields.",
                hint="Keep the path in the event, copied from the process with "
                     "`bpf_probe_read_user_str`.",
                fix="`char file[64];` in `struct event`, filled with "
                    "`bpf_probe_read_user_str(e->file, sizeof(e->file), args->filename);`"):
        files, want = frame["file"].tolist(), BURST_PATHS[:got]
        if files != want:
            cut = [(f, w) for f, w in zip(files, want) if f != w]
            f, w = cut[0] if cut else (files[:1], want[:1])
            if cut and w.startswith(f):
                c.expect(False, f"The events arrived, but their paths are cut short: {f!r} where "
                         f"the check expected {w!r}. How many bytes does `file` need for this "
                         "path? Question 4 of the exercise asks what a shorter field loses.",
                         hint=f"These paths need {len(w) + 1} bytes with the final NUL; `file` "
                              f"kept {len(f) + 1}.",
                         fix="`char file[64];` in `struct event`.")
            else:
                c.expect(False, f"The events are not the burst's openat() calls in order: the "
                         f"first that differs is {f!r}, where the check expected {w!r}. Does the "
                         "program still copy the path each call passed? The cell 'The program' "
                         "says where `file` comes from.",
                         hint="The path is the tracepoint's `filename` argument, a pointer into "
                              "the process's memory.",
                         fix="`bpf_probe_read_user_str(e->file, sizeof(e->file), args->filename);`")



# The exercise's code-level answer for lesson 09's struct event, shown from the third try on.
DECODE_FIX = ("ts, pid, cpu, file = struct.unpack_from(\"<QII64s\", record); "
              "return {\"ts\": ts, \"pid\": pid, \"cpu\": cpu, \"file\": file.split(b\"\\0\")[0].decode()}")


@exercise("Decode the events yourself",
          "Fields in the struct's order and sizes, the path cut at its first NUL byte: what the "
          "reader's frame() does for every event.")
def check_decoder(c: Checker, decode, reader) -> None:
    """`decode(record)` turns one event's bytes, as `reader.records()` holds them, into a dict
    of the program's struct event, one key per field (lesson 09's: ts, pid, cpu, file). Checked
    on every event the reader holds against its `frame()`."""
    c.require(callable(decode), f"`decode` is a {type(decode).__name__}, where the check expected "
              "a function of one event's bytes. Did the cell that defines it run?")
    records, frame = reader.records(), reader.frame()
    c.require(records, "The reader holds no events, so there is nothing to decode. Did the cells "
              "of 'A process whose files we know' run before this one?")
    fields = list(frame.columns)
    for n, (record, want) in enumerate(zip(records, frame.to_dict("records"))):
        got, error = learners(decode, record)
        c.require(error is None,
                  f"Event {n} is {len(record)} bytes; your `decode` raised {error}. How many bytes "
                  "does each field of `struct event` take, and in which order? The cell 'The "
                  "program' declares it.",
                  hint="`struct.unpack_from` reads fields from the start of the bytes; `Q` is a "
                  "u64, `I` a u32, `64s` 64 bytes.",
                  fix=DECODE_FIX)
        c.require(isinstance(got, dict), f"Your `decode` returned a {type(got).__name__} for event "
                  f"{n}; the check expected a dict with the keys {fields}.")
        wrong = {k: got.get(k) for k in fields if got.get(k) != want[k]}
        c.require(not wrong,
                  f"Event {n}: your `decode` gave {wrong}; `frame()` has "
                  f"{ {k: want[k] for k in wrong} }. Which bytes hold those fields, and where does "
                  "the path end?",
                  hint="The path is copied with its NUL byte; the bytes after it are whatever "
                  "the struct held (zeros here). A str, not bytes, compares equal to the frame's.",
                  fix=DECODE_FIX)


# Break it: a helper told to write more than its buffer holds (a missing bound on a length).
OVERSIZED_COPY = Break(
    __name__, "Tell the string copy the buffer is bigger than it is", program="open_events",
    old="bpf_probe_read_user_str(e.file, sizeof(e.file), args->filename);",
    new="bpf_probe_read_user_str(e.file, 128, args->filename);",
    question="`e.file` has 64 bytes. What does the verifier check when a helper is handed a buffer "
             "and a length?",
    hint="The verifier knows the size of every variable on the program's stack.",
    why={"verifier": "The verifier checks a helper's buffer against the length it is given: 128 "
                     "bytes from `e.file` run past the 64 it has (and past the struct on the "
                     "stack), so it refuses ('invalid indirect access to stack' or a size error).",
         "compiler": "The compiler refused the change itself: read its message.",
         "loads": "This verifier accepted an oversized copy: tell the kit's developers."})
