"""Events a program sends to user space (ring buffer, perf buffer), as a DataFrame, with drops counted.

A buffer between the kernel and Python has a size. When a program sends events faster than
Python reads them, the buffer fills and the kernel drops what does not fit: silently, unless
someone counts. A lesson that shows a table of events and not the drops teaches that nothing
was lost, so these readers always report both.

- Ring buffer (`BPF_RINGBUF_OUTPUT(events, pages)`): the kernel does not count drops; the
  program sees `ringbuf_reserve()` return NULL (or `ringbuf_output()` fail) and must count
  them itself, in an array map that the reader sums::

      BPF_RINGBUF_OUTPUT(events, 1);
      BPF_ARRAY(dropped, u64, 1);
      ...
      struct event *e = events.ringbuf_reserve(sizeof(struct event));
      if (!e) { int zero = 0; u64 *d = dropped.lookup(&zero); if (d) __sync_fetch_and_add(d, 1); return 0; }

      reader = bpfkit.observe.events.ring(prog["events"], dropped=prog["dropped"])

- Perf buffer (`BPF_PERF_OUTPUT(events)`, one buffer per CPU): the kernel counts drops and
  reports them, with the next event it manages to write on that CPU, to `lost_cb`; the
  reader adds them up. `reader = bpfkit.observe.events.perf(prog["events"], pages=8)`.

Then `reader.poll()` (or `reader.drain()`), `reader.frame()`, `reader.received`, `reader.dropped`.
`reader.frame(arrival=True)` adds when Python received each event (`arrival_ns`, on the clock
of `bpf_ktime_get_ns()`, CLOCK_MONOTONIC), to set against a time the program put in the event.

A reader takes the buffer's Map (`prog["events"]`), as `bpfkit.sample` and `live` do.
One reader per map: opening a reader again on the same program's map (a notebook cell run
twice) replaces the earlier one, which then refuses to poll. (BCC alone would register a
second consumer of the same ring buffer and free the first one's callback while the kernel
side still calls it.)
"""
from __future__ import annotations

import ctypes as ct
import time
import warnings

import numpy as np
import pandas as pd

from ..access import _bcc
from ..core import waiting
from ..core.errors import Closed, UsageError
from ..maps import Map, layout


class DroppedEvents(UserWarning):
    """Some events did not fit in the buffer and were lost."""


class _Reader:
    kind = "buffer"

    def __init__(self, events: Map, event_type=None):
        self.program = _program_of(events, self.kind)
        self.map_name = events.name
        self.event_type = event_type
        self.replaced = False
        self._records: list[bytes] = []
        self._arrivals: list[int] = []
        self._reported = 0

    def _on_event(self, data, size) -> None:
        self._arrivals.append(time.monotonic_ns())  # the clock of bpf_ktime_get_ns()
        if self.event_type is None:
            try:
                self.event_type = type(self._table().event(data))
            except Exception:
                self.event_type = ct.c_ubyte * size  # BCC could not tell the struct: keep bytes
        self._records.append(ct.string_at(data, min(size, ct.sizeof(self.event_type))))

    def _take_over(self):
        """Become the reader of this map: the earlier one (if any) is marked replaced and
        returned. The mark lives on BCC's table object, which lives as long as the program."""
        table = self._table()
        earlier = _bcc.reader_of(table)
        if earlier is not None:
            earlier.replaced = True
        _bcc.set_reader(table, self)
        return earlier

    def _check_polling(self) -> None:
        self.program._check_open()
        if self.replaced:
            raise Closed(f"This reader of {self.map_name!r} was replaced by a newer one on the "
                         "same map: the newer reader gets the events now.",
                         "poll the reader you opened last (this one keeps what it read).")

    def _table(self):
        return _bcc.events_table(self.program.bpf, self.map_name)

    @property
    def received(self) -> int:
        """Events read so far."""
        return len(self._records)

    @property
    def dropped(self) -> int:  # pragma: no cover - each kind defines it
        raise NotImplementedError

    def drain(self, quiet: float = 0.05, limit: float = 5.0) -> int:
        """Poll until the buffer stays empty for `quiet` seconds, or for `limit` seconds at
        most (both in seconds, like every duration in the kit); returns the events read."""
        if not (quiet > 0 and limit >= 0):
            raise UsageError(f"drain() needs quiet > 0 and limit >= 0 (both in seconds), not "
                             f"quiet={quiet}, limit={limit}.", "for example drain(quiet=0.01).")
        before = self.received

        def stayed_empty() -> bool:
            seen = self.received
            self.poll(max(1, round(quiet * 1000)))
            return self.received == seen

        waiting.until(stayed_empty, limit, every=0)
        return self.received - before

    def records(self) -> list[bytes]:
        """The events read so far, each as the bytes the program sent: what a consumer of the
        buffer gets before it decodes anything (lesson 09's exercise decodes them by hand)."""
        return list(self._records)

    def frame(self, *, arrival: bool = False) -> pd.DataFrame:
        """The events read so far, one row each in the order they arrived, columns named after
        the C struct's fields; with `arrival`, an `arrival_ns` column too: when Python got each
        one, in ns on the clock of `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).

        `frame().attrs` holds "received" and "dropped"; a DroppedEvents warning says how many
        were lost since the last report, so a lesson never shows a partial table as whole."""
        if self.event_type is None:
            out = pd.DataFrame()
        else:
            dtype = layout.dtype_of(self.event_type)
            size = dtype.itemsize
            raw = b"".join(r.ljust(size, b"\0") for r in self._records)
            values = np.frombuffer(raw, dtype=dtype, count=len(self._records))
            out = pd.DataFrame(layout.columns_of(values, "", "value"))
        if arrival:
            out["arrival_ns"] = np.array(self._arrivals, dtype=np.int64)
        dropped = self.dropped
        out.attrs.update(received=self.received, dropped=dropped)
        if dropped > self._reported:
            warnings.warn(f"{dropped - self._reported} events were dropped because the {self.kind} "
                          f"{self.map_name!r} was full ({dropped} in all, {self.received} received): "
                          "poll more often, or give the buffer more pages.", DroppedEvents,
                          stacklevel=2)
            self._reported = dropped
        return out

    def clear(self) -> None:
        """Forget the events read so far (the drop counts stay)."""
        self._records.clear()
        self._arrivals.clear()

    def __repr__(self) -> str:
        return (f"<bpfkit.observe.events {self.kind} {self.map_name!r}: {self.received} received, "
                f"{self.dropped} dropped>")


class RingReader(_Reader):
    kind = "ring buffer"

    def __init__(self, events: Map, dropped: Map | str | None, event_type=None):
        super().__init__(events, event_type)
        self.drop_map = self.program[dropped] if isinstance(dropped, str) else dropped
        with self.program._guard:   # BCC's tables stay while the reader opens on them
            self._open_ring()

    def _open_ring(self) -> None:
        if self._take_over() is None:
            # Registered with BCC once per map: the callback hands each event to whichever
            # reader of the map is the newest.
            table = self._table()

            def callback(ctx, data, size):
                _bcc.reader_of(table)._on_event(data, size)
                return 0

            try:
                table.open_ring_buffer(callback)
            except BaseException:
                _bcc.set_reader(table, None)  # not registered: the next reader tries again
                raise

    def poll(self, timeout_ms: int = 100) -> int:
        """Read what the ring buffer holds, waiting up to `timeout_ms` for the first event."""
        before = self.received
        self._check_polling()
        with self.program._guard:   # a close from another thread waits for this poll's end
            self.program.bpf.ring_buffer_poll(timeout_ms)
        return self.received - before

    @property
    def dropped(self) -> int:
        """Events the program could not reserve room for, from its own counter map."""
        if self.drop_map is None:
            return 0
        total = 0
        for value in self.drop_map.values():
            total += sum(value) if isinstance(value, list) else value
        return total


class PerfReader(_Reader):
    kind = "perf buffer"

    def __init__(self, events: Map, pages: int = 8, event_type=None):
        super().__init__(events, event_type)
        if pages < 1 or pages & (pages - 1):
            raise UsageError(f"A perf buffer's size is a power of two pages, not {pages}.",
                             "pass pages=1, 2, 4, 8, ...")
        self._lost = 0

        def callback(cpu, data, size):
            self._on_event(data, size)

        def lost(count):
            self._lost += count

        self.pages = pages
        with self.program._guard:   # BCC's tables stay while the reader opens on them
            self._open_perf(callback, lost)

    def _open_perf(self, callback, lost) -> None:
        pages = self.pages
        if self._take_over() is not None:
            # The earlier reader's per-CPU buffers go (BCC frees each one as its slot is
            # deleted); this reader opens its own, of its own size.
            table = self._table()
            for cpu in _bcc.perf_buffer_cpus(table):
                del table[cpu]
        self._table().open_perf_buffer(callback, page_cnt=pages, lost_cb=lost)

    def poll(self, timeout_ms: int = 100) -> int:
        """Read what the per-CPU buffers hold, waiting up to `timeout_ms` for the first event."""
        before = self.received
        self._check_polling()
        with self.program._guard:   # a close from another thread waits for this poll's end
            self.program.bpf.perf_buffer_poll(timeout_ms)
        return self.received - before

    @property
    def dropped(self) -> int:
        """Events the kernel reported lost (it reports them with the next event on that CPU)."""
        return self._lost


def ring(events: Map, dropped: Map | str | None = None, event_type=None) -> RingReader:
    """Read ring buffer `events` (`prog["events"]`); `dropped` is the program's drop-counter
    map (`prog["dropped"]`, or its name)."""
    return RingReader(events, dropped, event_type)


def perf(events: Map, pages: int = 8, event_type=None) -> PerfReader:
    """Read perf buffer `events` (`prog["events"]`), `pages` per CPU (a power of two)."""
    return PerfReader(events, pages, event_type)


def _program_of(events, kind: str):
    """The Program whose buffer `events` is: a reader takes the Map, as `sample` and `live` do."""
    reader = "ring" if kind == "ring buffer" else "perf"
    if isinstance(events, Map):
        _check_reader(events, reader, kind)
    if isinstance(events, Map) and events.owner is not None and hasattr(events.owner, "bpf"):
        events.owner._check_open()
        return events.owner
    if hasattr(events, "bpf") and hasattr(events, "map_names"):   # the Program itself
        raise UsageError(f"bpfkit.observe.events.{reader}() takes the buffer's map, not the program.",
                         f'write bpfkit.observe.events.{reader}({getattr(events, "name", "prog")}["events"])'
                         ", with the map's name from the C code.")
    if isinstance(events, Map):
        raise UsageError(f"{events.name!r} is not a {kind} of a program loaded with bpfkit.load: "
                         "only BCC can poll one.", "read a buffer your %%bpf program declares.")
    raise UsageError(f"bpfkit.observe.events.{reader}() takes a program's {kind} map, not "
                     f"{type(events).__name__}.", f'write bpfkit.observe.events.{reader}(prog["events"]).')


# Each buffer's own reader: (map type, reader, what it is, the BCC macro that declares it).
_READERS = {"ringbuf": ("ring", "ring buffer", "BPF_RINGBUF_OUTPUT"),
            "perf_event_array": ("perf", "perf buffer", "BPF_PERF_OUTPUT")}


def _check_reader(events: Map, reader: str, kind: str) -> None:
    """Refuse a map this reader cannot read, naming the reader that can: a ring buffer and a
    perf buffer are read by different calls, and BCC's own answer to a mix-up is an
    AttributeError from deep inside it."""
    right = _READERS.get(events.type)
    if right is not None and right[0] == reader:
        return
    wanted = next(r for r in _READERS.values() if r[0] == reader)
    name = events.name
    if right is not None:
        raise UsageError(f"{name!r} is a {right[1]} ({right[2]} in the C code), not a {kind}, so "
                         f"bpfkit.observe.events.{reader}() cannot read it.",
                         f"read it with its own reader: bpfkit.observe.events.{right[0]}"
                         f"(prog[{name!r}]).")
    raise UsageError(f"{name!r} is {events.map_type.a} map, not a {kind}, so "
                     f"bpfkit.observe.events.{reader}() cannot read it.",
                     f"pass the map declared with {wanted[2]}(...) in the C code to "
                     f"bpfkit.observe.events.{reader}(); read {name!r} itself with "
                     f"prog[{name!r}].frame().")
