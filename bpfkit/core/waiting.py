"""Waiting for something the kernel does a moment later: one deadline-and-poll loop.

A frame crosses a veth pair in softirq context after `sendto()` returns, a closed socket frees
its queue from a worker, a cgroup refuses rmdir while a process just moved out is still leaving:
the kit asks again until the answer comes or a deadline passes. Written once here, so every
such wait measures its deadline on the same clock and says the same thing when it runs out.
"""
from __future__ import annotations

import time


def until(condition, timeout: float, every: float = 0.005):
    """Call `condition()` until it returns something true or `timeout` seconds pass; return
    what it returned last (so a caller that wants the answer, not a yes, gets it)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        if every:
            time.sleep(every)
    return value
