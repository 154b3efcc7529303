"""The learner's process never dies and the kernel never keeps what a cell half-made.

Each test makes the failure for real: C that makes LLVM end the process with exit(1), a compile
that never returns, Stop (a real SIGINT) pressed at stepped moments of a load, a close and a
map creation, and loads from several threads at once.
"""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import bpfkit
from bpfkit.loader import compiler
from bpfkit.access import kernel
from bpfkit.core.errors import BpfkitError, CompileError
from conftest import _descendants, held_elsewhere, kernel_state, leftovers, settled_snapshot

COUNTER = """\
BPF_HASH(counter_table, u32, u64);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    u32 uid = bpf_get_current_uid_gid();
    u64 zero = 0;
    u64 *p = counter_table.lookup_or_try_init(&uid, &zero);
    if (p) {
        __sync_fetch_and_add(p, 1);
    }
    return 0;
}
"""


def _ours(before: dict) -> dict:
    """BPF objects in the kernel now that were not there before and no other process holds."""
    after = settled_snapshot(before)
    held = held_elsewhere()
    return {k: sorted(after[k] - before[k] - held[k]) for k in after if after[k] - before[k] - held[k]}


def _programs_settle_to(ids: set[int], before: dict, timeout: float = 3.0) -> bool:
    """Do our programs in the kernel come to be exactly `ids` (a replaced program's objects
    are freed a moment after its close)?"""
    deadline = time.monotonic() + timeout
    while True:
        now = kernel.snapshot()["programs"] - before["programs"] - held_elsewhere()["programs"]
        if now == ids or time.monotonic() > deadline:
            return now == ids
        time.sleep(0.02)


def _fd2() -> tuple[int, int, int]:
    st = os.fstat(2)
    return st.st_dev, st.st_ino, st.st_nlink


# ---- LLVM ends the compiling process: never this one ------------------------------------------

@pytest.mark.parametrize("body, words, hint", [
    ("    char name[600];\n"
     "    bpf_probe_read_user_str(name, sizeof(name), args->filename);\n"
     "    bpf_trace_printk(\"%s\\n\", name);\n",
     ["512 bytes", "char name[600] (600 bytes), at line 3", "LLVM said: Looks like the BPF stack limit"],
     "BPF_PERCPU_ARRAY"),
    ("    bpf_trace_printk(\"%d %d %d %d\\n\", 1, 2, 3, args->flags);\n",
     ["at most three values", "line 3", "bpf_trace_printk(\"%d %d %d %d\\n\", 1, 2, 3, args->flags);",
      "LLVM said: ", "too many arg"],  # LLVM 14: "too many args to", LLVM 19: "too many arguments"
     "split it into two calls"),
])
def test_llvm_exit_is_a_compile_error_with_llvms_words_and_this_process_survives(body, words, hint, no_leaks):
    source = "// a learner's program\nTRACEPOINT_PROBE(syscalls, sys_enter_openat) {\n" + body + "    return 0;\n}\n"
    before = kernel_state()
    with pytest.raises(CompileError) as e:
        bpfkit.load(source, name="llvm_exit")
    for w in words:
        assert w in e.value.what, e.value.what
    assert hint in e.value.hint
    assert "separate process" in e.value.what
    assert not leftovers(before)
    with bpfkit.load(COUNTER, name="after_exit") as prog:  # this process compiles on
        assert "counter_table" in prog


def test_a_compile_that_never_returns_is_stopped_and_explained(tmp_path, monkeypatch, no_leaks):
    fifo = tmp_path / "never.h"
    os.mkfifo(fifo)  # opening it for reading waits for a writer that never comes
    monkeypatch.setattr(compiler, "TIMEOUT", 3.0)
    children_before = _children()
    start = time.monotonic()
    with pytest.raises(CompileError) as e:
        bpfkit.load(f'#include "{fifo}"\n' + COUNTER, name="hangs")
    assert 2.5 < time.monotonic() - start < 20
    assert "did not finish compiling" in e.value.what and "after 3 s" in e.value.what
    assert "pipe" in e.value.hint
    assert _children() == children_before  # the compiling child was killed and reaped


def _children() -> set[int]:
    return _descendants(os.getpid()) - {os.getpid()}


# ---- Stop at any moment -------------------------------------------------------------------------

def _stop_after(delay: float, action):
    """Run `action` with a real SIGINT sent to this process `delay` seconds in: "done" if the
    action returned, "stopped" if the interrupt ended it; either way once it was handled."""
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    finished = False
    try:
        timer.start()
        action()
        finished = True
        timer.join()
        for _ in range(20):  # the handler runs between bytecodes: give it some
            time.sleep(0.001)
    except KeyboardInterrupt:
        timer.join()
    return "done" if finished else "stopped"


def _load_time(source: str) -> float:
    start = time.monotonic()
    bpfkit.load(source, name="timing").close()
    return time.monotonic() - start


def test_stop_at_any_moment_of_a_load_leaves_the_old_program_or_the_new_one_whole(no_leaks):
    before = settled_snapshot()
    old = bpfkit.load(COUNTER, name="stop")
    old_ids = set(old.program_ids())
    # A new source each time, so each load runs the check compile too, as a new cell does.
    span = _load_time(COUNTER + "// timing\n") * 1.3
    outcomes = []
    for i in range(24):
        source = COUNTER + f"// attempt {i}\n"
        outcomes.append(_stop_after(span * i / 23, lambda: bpfkit.load(source, name="stop")))
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        now = bpfkit.loaded()["stop"]
        assert not now.closed
        ids = set(now.program_ids())
        assert len(ids) == 1, "a program in the registry has all its functions loaded"
        if now is old:
            assert ids == old_ids and not old.closed
        else:
            assert old.closed, "the new program replaced the old one only once it was whole"
            old, old_ids = now, ids
        # in the kernel: exactly the registered program, nothing half-made
        assert _programs_settle_to(ids, before), (i, outcomes[-1], ids, _ours(before))
    assert "stopped" in outcomes and "done" in outcomes, outcomes
    bpfkit.close_all()
    assert not _ours(before)


def test_stop_while_closing_making_or_reading_maps_leaves_nothing_half_done(no_leaks):
    before = settled_snapshot()
    outcomes = []
    for i in range(12):
        prog = bpfkit.load(COUNTER, name="stop_close")
        outcomes.append(_stop_after(i * 0.0015, prog.close))
        if not prog.closed:  # Stop came before the close began: it may be closed again
            prog.close()
        assert not _ours(before), f"a close stopped at {i * 1.5} ms left objects"
    for i in range(12):
        holder = []
        outcomes.append(_stop_after(i * 0.01, lambda: holder.append(
            bpfkit.create_map("hash", key="u32", value="u64", max_entries=200_000))))
        bpfkit.close_all()
        assert not _ours(before), f"a map creation stopped at {i * 10} ms left a map"
    with bpfkit.create_map("hash", key="u32", value="u64", max_entries=300_000, name="big") as m:
        m.update_batch(range(300_000), range(300_000))
        for i in range(8):
            outcomes.append(_stop_after(i * 0.004, m.frame))
            assert len(m.frame()) == 300_000  # the map is untouched and still reads whole
    bpfkit.close_all()
    assert not _ours(before)
    assert "stopped" in outcomes, outcomes
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_stop_inside_a_step_waits_for_its_end_then_stops():
    from bpfkit.core import atomic
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with atomic.step():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # a KeyboardInterrupt would land here without the step
            reached.append("end of step")
    assert reached == ["end of step"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


# ---- several threads ----------------------------------------------------------------------------

def test_loads_and_closes_from_several_threads_at_once(no_leaks):
    before = settled_snapshot()
    fd2 = _fd2()
    problems: list[str] = []

    def good(t: int) -> None:
        for j in range(3):
            try:
                with bpfkit.load(COUNTER + f"// thread {t} round {j}\n", name=f"thread{t}") as prog:
                    prog["counter_table"].frame()
            except Exception as e:
                problems.append(f"thread {t} round {j}: {type(e).__name__}: {e}")

    def bad(t: int) -> None:
        for j in range(3):
            try:
                bpfkit.load(COUNTER.replace("return 0;", "return 0") + f"// {t} {j}\n", name=f"bad{t}")
                problems.append("a program with a syntax error loaded")
            except CompileError as e:
                if "expected ';'" not in e.what or "line 10, column 13" not in e.what:
                    problems.append(f"wrong compile error in thread {t}: {e.what}")
            except Exception as e:
                problems.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=good, args=(t,)) for t in range(3)]
    threads += [threading.Thread(target=bad, args=(t,)) for t in range(3, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not problems, "\n".join(problems)
    assert _fd2() == fd2, "file descriptor 2 must be the file it was"
    bpfkit.close_all()
    assert not _ours(before)


def test_a_detach_bcc_fails_at_does_not_keep_the_rest_of_the_program(no_leaks):
    before = settled_snapshot()
    prog = bpfkit.load(COUNTER + "RAW_TRACEPOINT_PROBE(sched_switch) { return 0; }\n", name="half")
    assert len(prog.program_ids()) == 2

    def refuse(*args, **kwargs):
        raise Exception("Failed to detach BPF from tracepoint")
    prog.bpf.detach_tracepoint = refuse  # the first thing BCC's cleanup does, failing
    with pytest.warns(UserWarning, match="BCC failed while closing 'half'"):
        prog.close()
    assert prog.closed and "half" not in bpfkit.loaded()
    assert not _ours(before)


def test_a_map_the_kernel_refuses_after_others_were_made_leaves_none_of_them(no_leaks):
    """BCC makes the maps in order and keeps the fds of those it made when a later one is
    refused; the load must close them (the check compile makes no maps, so it cannot tell)."""
    before = settled_snapshot()
    fds = kernel.bpf_fds()
    source = ("BPF_ARRAY(made, u32, 1);\nBPF_HASH(refused, u32, u64, 0);\n"
              "BPF_PERCPU_ARRAY(also_made, u64, 1);\n"
              "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }\n")
    with pytest.raises(BpfkitError) as e:
        bpfkit.load(source, name="refused_map")
    assert "refused" in e.value.what and "max_entries" in e.value.hint
    assert kernel.bpf_fds() == fds
    assert not _ours(before)
