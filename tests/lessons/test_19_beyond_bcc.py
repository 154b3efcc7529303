"""Lesson 19: libbpf-style programs (bpfkit.loader.bpfobject): a struct_ops congestion control, a user
ring buffer drained by a callback, an arena; the exercise check; the notebook's cells."""
from __future__ import annotations

import ctypes as ct
import errno
import json
import mmap
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bpfkit
from bpfkit.loader import bpfobject
from bpfkit.lessons import l19_beyond_bcc as beyond_bcc
from bpfkit.loader.features import needs_of
from conftest import skip_unless_allowed
from notebook_runs import notebook_path, solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
LACKING = bpfobject.missing()
pytestmark = pytest.mark.skipif(LACKING is not None, reason=f"this machine has no {LACKING}: "
                                f"{bpfobject.INSTALL}")
AVAILABLE = Path("/proc/sys/net/ipv4/tcp_available_congestion_control")




def assert_no_solution_code(words: str, stem: str) -> None:
    shown = [line for line in solution_only_lines(ROOT / "notebooks" / f"{stem}.ipynb") if line in words]
    assert not shown, f"the first try shows the solution's code {shown}: {words}"


class CwndSample(ct.Structure):
    _fields_ = [("ns", ct.c_uint64), ("cwnd", ct.c_uint32), ("acked", ct.c_uint32)]


TYPES = {"samples": ("u32", CwndSample)}
SOURCE = (ROOT / "bpf" / "19_beyond_bcc" / "l19_cc.bpf.c").read_text()
STARTER = SOURCE.replace('"bpfkit_l19"', '"bpfkit_l19t"')
SOLVED = STARTER.replace("++tp->snd_cwnd_cnt >= tp->snd_cwnd", "++tp->snd_cwnd_cnt >= 2 * tp->snd_cwnd")


def test_the_congestion_control_registers_records_and_unregisters(no_leaks):
    cc = bpfobject.load("l19_cc", types=TYPES)
    assert cc.struct_ops == ["l19"] and "bpfkit_l19" in AVAILABLE.read_text().split()
    assert bpfkit.loaded()["l19_cc"] is cc
    sent, acks = beyond_bcc.record(cc, "bpfkit_l19", steps=3)
    assert sent["congestion"] == "bpfkit_l19" and sent["received"] == sent["sent"] >= 16_000_000
    assert len(acks) > 100 and list(acks["ack"]) == list(range(1, len(acks) + 1))
    steps = beyond_bcc.avoidance_runs(acks["cwnd"])
    assert len(steps) >= 3 and all(n == k for k, n in steps.items()), steps   # Reno: k ACKs at k
    cc.close()
    assert "bpfkit_l19" not in AVAILABLE.read_text().split()
    with pytest.raises(OSError):   # the name is gone: a socket can no longer choose it
        socket.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"bpfkit_l19")


@pytest.mark.unit
@pytest.mark.parametrize("cwnd, steps", [
    # slow start, then Reno steps; the last (cut off by the transfer's end) is not complete
    ([10, 20, 30, 33] + [33] * 32 + [34] * 34 + [35] * 35 + [36] * 7, {34: 34, 35: 35}),
    # a loss at 64 (ssthresh 64/2+1 = 33) ends that step early: seen in a CI run
    ([60] * 60 + [61] * 61 + [62] * 62 + [63] * 63 + [64] * 10 + [33], {61: 61, 62: 62, 63: 63}),
    # after a loss the window climbs again from half: complete steps there count too
    ([68] * 68 + [69] * 69 + [70] * 5 + [36] * 3 + [37] * 37 + [38] * 38 + [39],
     {69: 69, 37: 37, 38: 38}),
    # a window lowered outside cong_avoid (idle restart) ends a step: neither side counts
    ([36] * 36 + [37] * 37 + [36] * 30 + [37] * 37 + [38] * 38 + [39], {37: 37, 38: 38}),
])
def test_only_complete_steps_of_congestion_avoidance_are_counted(cwnd, steps):
    assert beyond_bcc.avoidance_runs(cwnd, ssthresh=32) == steps


def test_a_reload_keeps_the_name_and_close_all_frees_it(no_leaks):
    first = bpfobject.load("l19_cc", types=TYPES)
    second = bpfobject.load("l19_cc", types=TYPES)   # a re-run cell: the earlier one goes first
    assert first.closed and not second.closed and list(bpfkit.loaded()) == ["l19_cc"]
    with pytest.raises(bpfkit.core.errors.LoadError) as e:
        bpfobject.load("l19_cc", name="l19_other")   # the same algorithm name, twice
    assert e.value.errno == errno.EEXIST
    assert list(bpfkit.loaded()) == ["l19_cc"]
    bpfkit.close_all()
    assert bpfkit.host.lifetime.held() == {} and "bpfkit_l19" not in AVAILABLE.read_text()


def test_a_congestion_control_never_outlives_its_process(no_leaks):
    """Killed with its algorithm registered, a process leaves nothing registered: the kit
    registers struct_ops through a link where the kernel has struct_ops links (its own link on
    libbpf 1.1, libbpf's on newer ones), and a link goes with the last fd to it."""
    if bpfobject.struct_ops_attach_type() is None:
        pytest.skip("this kernel registers struct_ops without a link only (before Linux 6.4)")
    child = subprocess.run(
        [sys.executable, "-c", "import os, signal\nfrom bpfkit.loader import bpfobject\n"
         "cc = bpfobject.load('l19_cc', name='l19_killed')\nprint(cc.struct_ops, flush=True)\n"
         "os.kill(os.getpid(), signal.SIGKILL)"], capture_output=True, text=True, timeout=120)
    assert child.returncode == -signal.SIGKILL and "['l19']" in child.stdout, child.stderr[-2000:]
    deadline = time.monotonic() + 3
    while "bpfkit_l19" in AVAILABLE.read_text().split() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "bpfkit_l19" not in AVAILABLE.read_text().split()


def test_user_ring_buffer_messages_are_drained_and_summed(no_leaks):
    obj = bpfobject.load("l19_uring", types={"totals": ("u32", "u64")})
    inbox = obj.ring("inbox")
    for value in (5, 7, 30, 100):
        inbox.send(bytes(ct.c_uint32(1)) + bytes(ct.c_uint32(value)))
    assert list(obj["totals"].frame()["value"]) == [0, 0]
    assert obj.run("drain") == 4 and obj.run("drain") == 0
    assert list(obj["totals"].frame()["value"]) == [4, 142]
    with pytest.raises(bpfkit.core.errors.MapNotFound, match="Did you mean 'totals'"):
        obj["total"]                                  # as for a BCC program: a KeyError, the nearest


def test_arena_map_is_mapped_once_and_the_program_loads_or_says_why(no_leaks):
    def refused():   # the program's arena too: one message naming the refusal, nothing left loaded
        with pytest.raises(bpfkit.core.errors.NotAllowedHere, match="does not allow arena maps here"):
            bpfobject.load("l19_arena")
        assert bpfkit.loaded() == {} and bpfkit.host.lifetime.held() == {}
    skip_unless_allowed("arena map", refused)
    pages = bpfkit.create_map("arena", max_entries=2, name="l19_tpages")
    view = mmap.mmap(pages.fd, 2 * mmap.PAGESIZE)
    view[0:3] = b"abc"
    assert bytes(view[0:3]) == b"abc"
    with pytest.raises(OSError):
        mmap.mmap(pages.fd, 2 * mmap.PAGESIZE)
    view.close()
    casts = bpfkit.allowed("arena programs")      # a clang with LLVM 19's address-space casts
    try:
        obj = bpfobject.load("l19_arena")
    except bpfkit.core.errors.VerifierError as e:   # the kernel's words
        # A libbpf older than 1.4 does not map the arena before the load; a clang without the
        # casts makes plain loads of the arena pointer, which only then are invalid.
        assert ("arena's user address must be set" in e.what
                or (not casts and "invalid mem access" in e.what)), (casts, e.what)
    else:
        assert casts, "a program of plain loads from arena pointers was accepted"
        assert [obj.run("bump") for _ in range(3)] == [1, 2, 3]


def test_a_learners_c_error_is_one_message_at_the_cells_line(no_leaks):
    bad = SOURCE.replace("tp->snd_cwnd += acked;", "tp->snd_cwnd += ackd;")
    line = bad.splitlines().index(next(s for s in bad.splitlines() if "ackd" in s)) + 2
    with pytest.raises(bpfkit.core.errors.CompileError) as e:
        bpfobject.load(bad, name="l19_bad", where="the cell", first_line=2)
    assert f"line {line}: error: use of undeclared identifier 'ackd'" in e.value.what
    assert "Traceback" not in str(e.value) and bpfkit.loaded() == {}


def test_the_exercise_check_explains_the_starter_and_passes_the_solution(no_leaks):
    starter = bpfobject.load(STARTER, name="l19_tslow", types=TYPES)
    result = beyond_bcc.check_cautious(starter)                    # as the starter notebook has it
    assert not result and result.tries == 1 and "still grows like Reno" in str(result)
    assert "No prediction yet" in str(result) and "Hint" not in str(result)
    assert_no_solution_code(str(result), "19_beyond_bcc")
    solved = bpfobject.load(SOLVED, name="l19_tslow", types=TYPES)
    assert starter.closed
    assert beyond_bcc.check_cautious(solved, prediction=82)
    wrong = beyond_bcc.check_cautious(solved, prediction=41)
    assert not wrong and "prediction (41)" in str(wrong)
    assert wrong.tries == 3 and "Fix: `prediction = 82`" in str(wrong)   # the 3rd try: the code
    assert "No prediction yet" in str(beyond_bcc.check_cautious(solved))
    assert "`%%bpfobject l19_slow` cell" in str(beyond_bcc.check_cautious(None))


@pytest.mark.unit
def test_runs_and_congestion_name_without_the_kernel():
    assert beyond_bcc.runs([20, 40, 40, 41]) == [(20, 1), (40, 2), (41, 1)]
    assert beyond_bcc.avoidance_runs([20, 40, 40, 41, 41, 41, 42]) == {41: 3}
    assert beyond_bcc.congestion_name('.name = "bpfkit_l19",') == "bpfkit_l19"


def _bpfobject_cells(path) -> dict[str, str]:
    """{name: C text} of a notebook's `%%bpfobject NAME` cells."""
    cells = {}
    for cell in json.loads(Path(path).read_text())["cells"]:
        text = "".join(cell["source"])
        if needs_of(text.partition("\n")[0]) is not None:   # a `# needs: struct_ops map` line first
            text = text.partition("\n")[2]
        if cell["cell_type"] == "code" and text.startswith("%%bpfobject "):
            first, _, body = text.partition("\n")
            cells[first.split()[1]] = body.strip()
    return cells


@pytest.mark.unit
def test_bpfobject_cells_named_after_a_program_hold_that_program():
    """Each of lesson 19's programs in bpf/ (l19_*.bpf.c) is a cell of the lesson with the file's
    text; the cells named after no file are the exercise's, which the solution shows."""
    files = {p.name.removesuffix(".bpf.c"): p.read_text().strip()
             for p in (ROOT / "bpf" / "19_beyond_bcc").glob("l19_*.bpf.c")}
    lesson = _bpfobject_cells(notebook_path("19_beyond_bcc"))
    solution = _bpfobject_cells(notebook_path("19_beyond_bcc-solution"))
    assert files and set(files) <= set(lesson), (sorted(files), sorted(lesson))
    for notebook, cells in (("lesson", lesson), ("solution", solution)):
        for name in set(cells) & set(files):
            assert cells[name] == files[name], f"{notebook}: {name} differs from bpf/{name}.bpf.c"
    exercise = set(lesson) - set(files)
    assert exercise and set(solution) - set(files) == exercise, (sorted(exercise), sorted(solution))


UNCHECKED = """
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
struct {                          /* a hash: the key may be missing (an array's constant slot may not) */
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");
SEC("tracepoint/syscalls/sys_enter_getppid")
int count(void *ctx) {
    __u32 zero = 0;
    __u64 *n = bpf_map_lookup_elem(&counts, &zero);
    *n += 1;                      /* no NULL check: the verifier says no */
    return 0;
}
char LICENSE[] SEC("license") = "GPL";
"""


def test_the_verifier_s_words_come_back_after_bcc_has_loaded_a_program(no_leaks):
    """BCC sets libbpf's printer to its own on its first load, which drops libbpf's warnings
    (the verifier's log among them): bpfobject collects them whatever printer is set."""
    with bpfkit.load("BPF_ARRAY(a, u64, 1);\nint xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }\n",
                     name="l19_tbcc_first"):
        with pytest.raises(bpfkit.core.errors.VerifierError) as e:
            bpfobject.load(UNCHECKED, name="l19_tunchecked")
    assert "invalid mem access 'map_value_or_null'" in e.value.what
    assert "processed" in e.value.detail or "R0" in e.value.detail  # the log's last lines
    assert bpfkit.loaded() == {}


def test_record_sends_more_when_a_transfer_shows_too_few_steps(no_leaks):
    """A busy machine gives fewer, larger ACKs: record() tries a larger transfer, on a new
    connection, until the window shows the steps asked for (here more than 16 MB can give)."""
    cc = bpfobject.load(SOLVED.replace("bpfkit_l19t", "bpfkit_l19r"), name="l19_trecord", types=TYPES)
    sent, acks = beyond_bcc.record(cc, "bpfkit_l19r", steps=10)
    assert sent["sent"] > beyond_bcc.TRANSFER and sent["received"] == sent["sent"]
    steps = beyond_bcc.avoidance_runs(acks["cwnd"])
    assert len(steps) >= 10 and all(n == 2 * k for k, n in steps.items()), steps
    assert acks["cwnd"].iloc[0] <= 20  # one connection's samples: its slow start comes first
