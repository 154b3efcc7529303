"""The guard that frees an object only when no call uses it (bpfkit.core.guard): pure Python,
threads and a real pipe's fds, no kernel object."""
from __future__ import annotations

import os
import threading

import pytest

from bpfkit.core.errors import Closed
from bpfkit.core.guard import Fd, Guard, Shared, held, unreleased

pytestmark = pytest.mark.unit


def refused():
    return Closed("gone", "make another")


class Thing:
    def __init__(self):
        self.freed = 0
        self._guard = Guard(self.free, refused)

    def free(self):
        self.freed += 1

    @held
    def call(self, inside=None):
        if inside:
            inside()
        return "done"


def test_close_with_no_call_in_flight_releases_at_once_and_only_once():
    t = Thing()
    assert t._guard.close() is True
    assert t.freed == 1
    assert t._guard.close() is False
    assert t.freed == 1
    with pytest.raises(Closed, match="gone"):
        t.call()


def test_a_call_in_flight_delays_the_release_to_its_end_in_its_own_thread():
    t = Thing()
    entered, go_on = threading.Event(), threading.Event()
    released_in = []
    t._guard._release = lambda: (released_in.append(threading.current_thread().name), t.free())

    worker = threading.Thread(target=t.call, args=(lambda: (entered.set(), go_on.wait(5)),),
                              name="worker")
    worker.start()
    assert entered.wait(5)
    t._guard.close()                 # returns at once: the worker still uses the object
    assert t.freed == 0 and t._guard.closed
    with pytest.raises(Closed):
        t.call()                     # a new call is refused meanwhile
    go_on.set()
    worker.join(5)
    assert t.freed == 1 and released_in == ["worker"]


def test_the_closing_threads_own_interrupted_entries_do_not_keep_the_object():
    # A Stop that cut a call off between enter() and leave() must not leak the object.
    t = Thing()
    t._guard.enter()                 # never left, as if KeyboardInterrupt came in between
    t._guard.close()
    assert t.freed == 1


def test_entries_of_threads_that_ended_do_not_keep_the_object():
    t = Thing()
    worker = threading.Thread(target=t._guard.enter)
    worker.start()
    worker.join()
    t._guard.close()
    assert t.freed == 1


def test_a_shared_guard_refuses_in_its_own_words_and_never_closes_the_owner():
    t = Thing()
    part = Shared(t._guard, lambda: Closed("the part is gone", "reload"))
    assert part.close() is False and not t._guard.closed
    with part:
        pass
    t._guard.close()
    assert part.closed
    with pytest.raises(Closed, match="the part is gone"):
        part.enter()


def test_many_threads_calling_while_one_closes_release_exactly_once():
    for _ in range(50):
        t = Thing()
        stop = threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    t.call()
                except Closed:
                    return

        workers = [threading.Thread(target=hammer) for _ in range(4)]
        for w in workers:
            w.start()
        t._guard.close()
        stop.set()
        for w in workers:
            w.join(5)
        assert t.freed == 1


def test_an_fd_is_closed_once_after_its_last_user_and_tracked_until_then(monkeypatch):
    monkeypatch.setenv("BPFKIT_TRACK_FDS", "1")
    r, w = os.pipe()
    os.close(w)
    fd = Fd(r, refused, "pipe")
    assert fd in unreleased() and "test_guard.py" in fd.origin
    entered, go_on = threading.Event(), threading.Event()

    def use():
        with fd:
            assert fd.number == r
            entered.set()
            go_on.wait(5)

    worker = threading.Thread(target=use)
    worker.start()
    assert entered.wait(5)
    fd.close()
    os.fstat(r)                      # still open: the call in flight holds the number
    with pytest.raises(Closed):
        fd.number
    go_on.set()
    worker.join(5)
    with pytest.raises(OSError):
        os.fstat(r)                  # closed when the call left
    assert fd not in unreleased() and "test_guard.py" in fd.closed_at
