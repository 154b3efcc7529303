"""The fast paths give exactly what the plain ones give (their speed is in `make bench`):
names decoded once per distinct value, the compiling thread with its short kallsyms, the check
compile that makes no maps, live() sampling in a thread of its own, a lazy pyplot."""
from __future__ import annotations

import ctypes as ct
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import bpfkit
from bpfkit.loader import compiler
from bpfkit.observe import liveplot, sampling
from bpfkit.access import system
from bpfkit.maps import layout

ROOT = Path(__file__).resolve().parent.parent


# ---- char arrays decoded once per distinct value ---------------------------------------------------

AWKWARD = [b"ab\0cd", b"ab\0xy", b"\xff\xfe", b"caf\xc3\xa9", b"x" * 16, b"", b"\0zz", b"a\xc3",
           b"\xe2\x82", b"tab\there", b"\0" * 16]


def _plain(values: np.ndarray) -> list[str]:
    return [v.split(b"\0", 1)[0].decode("utf-8", "replace") for v in values.tolist()]


@pytest.mark.unit
@pytest.mark.parametrize("width", [16, 8, 12, 7])
def test_factorized_decoding_equals_decoding_each_value(width):
    rng = np.random.default_rng(width)
    names = np.array([v[:width] for v in AWKWARD] + [b"p%d" % i for i in range(150)], dtype=f"S{width}")
    values = names[rng.integers(0, len(names), 50_000)]
    fast = layout.texts(values)
    assert isinstance(fast, np.ndarray) == (width % 4 == 0)  # 7-byte names take the plain path
    assert list(fast) == _plain(values)
    assert "ab" in list(fast) and "\ufffd\ufffd" in list(fast)  # cut at NUL; invalid UTF-8 replaced


@pytest.mark.unit
def test_names_that_hardly_repeat_take_the_plain_path_with_the_same_result():
    values = np.array([b"comm-%09d" % i for i in range(40_000)], dtype="S16")
    codes, firsts = layout._factorized(values)
    assert codes is None and firsts is None
    assert list(layout.texts(values)) == _plain(values)


class Task(ct.Structure):
    _fields_ = [("pid", ct.c_uint32), ("comm", ct.c_char * 16)]


def test_a_struct_keyed_map_frames_the_same_names_either_way(no_leaks):
    with bpfkit.create_map("hash", key=Task, value="u64", max_entries=20_000, name="tasks") as m:
        keys = np.zeros(20_000, dtype=m.key_dtype)
        keys["pid"] = np.arange(20_000)
        keys["comm"] = np.array(AWKWARD, dtype="S16")[np.arange(20_000) % len(AWKWARD)]
        m.update_batch(keys, np.arange(20_000, dtype=np.uint64))
        fast = m.frame().sort_values("pid", ignore_index=True)
        saved = layout._FACTORIZE_FROM
        layout._FACTORIZE_FROM = 10**12
        try:
            plain = m.frame().sort_values("pid", ignore_index=True)
        finally:
            layout._FACTORIZE_FROM = saved
        assert fast.equals(plain)
        assert fast["comm"].iloc[0] == "ab" and fast["comm"].iloc[2] == "\ufffd\ufffd"


# ---- the compiling thread and the check compile -----------------------------------------------------

def _kallsyms_lines() -> int:
    with open("/proc/kallsyms", "rb") as f:
        return sum(1 for _ in f)


def test_the_compiling_thread_sees_a_short_kallsyms_and_the_process_the_real_one():
    if compiler._compiling_thread() is None:
        pytest.skip("this process may not make a mount namespace (no CAP_SYS_ADMIN)")
    inside = compiler.run(_kallsyms_lines)
    assert 1 <= inside <= 32
    assert _kallsyms_lines() > 1000
    with open("/proc/self/mountinfo") as f:
        assert "kallsyms" not in f.read()  # the bind mount never reached the process's mounts
    with open("/proc/kallsyms") as f:
        real = {l.split()[2] for l in f if " bpf_probe_read_" in l}
    shown = compiler.run(lambda: {l.split()[2] for l in open("/proc/kallsyms")})
    assert shown == real


def test_the_short_kallsyms_is_named_by_its_owner_and_a_dead_process_s_is_removed(tmp_path):
    """A process killed before its atexit ran leaves its short kallsyms behind: the next one
    made removes it, and one whose pid a new process got (the start time differs), and the
    pid-less names of kits before; never a live process's, nor a live older kit's (pid alone)."""
    if compiler._compiling_thread() is None:
        pytest.skip("this process may not make a mount namespace (no CAP_SYS_ADMIN)")
    from bpfkit.host import lifetime
    mark = lifetime.me().replace(":", "-")
    own = Path(tempfile.gettempdir()) / f"{compiler.KALLSYMS_PREFIX}{mark}"
    assert own.is_file() and b" bpf_probe_read_" in own.read_bytes()
    dead = subprocess.Popen(["true"])
    dead.wait()
    parent = f"{os.getppid()}-{lifetime.start_time(os.getppid())}"
    names = [f"{compiler.KALLSYMS_PREFIX}{dead.pid}-123", f"{compiler.KALLSYMS_PREFIX}{dead.pid}",
             f"{compiler.KALLSYMS_PREFIX}{os.getppid()}-1", f"{compiler.KALLSYMS_PREFIX}x1y2z3",
             f"{compiler.KALLSYMS_PREFIX}{parent}", f"{compiler.KALLSYMS_PREFIX}{os.getppid()}",
             "bpfkit-other-1"]
    for name in names:
        (tmp_path / name).write_text("")
    removed = compiler.remove_orphans(str(tmp_path))
    assert sorted(removed) == sorted(str(tmp_path / n) for n in names[:4])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[4:])


def test_a_relative_include_folder_is_found_from_the_callers_folder(tmp_path, monkeypatch, no_leaks):
    (tmp_path / "inc").mkdir()
    (tmp_path / "inc" / "limits.h").write_text("#define LIMIT 7\n")
    monkeypatch.chdir(tmp_path)
    source = ('#include "limits.h"\nBPF_ARRAY(cfg, u64, LIMIT);\n'
              "TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { return 0; }\n")
    with bpfkit.load(source, name="relative", cflags=["-Iinc"]) as prog:
        assert prog["cfg"].max_entries == 7


def test_the_check_compile_makes_no_maps(no_leaks):
    """A map the kernel cannot make (2^31 preallocated 8-byte entries) fails only when the
    program is really loaded: the check child never asks for it, it only compiles."""
    from bpfkit.access._libc import seccomp
    if seccomp is None:
        pytest.skip("libseccomp is missing: the check compile makes the maps too")
    bcc = system.bcc()
    text = (b"BPF_HASH(huge, u64, u64, 2147483647);\n"
            b"TRACEPOINT_PROBE(syscalls, sys_enter_getppid) { u64 k = 1; huge.lookup(&k); return 0; }\n"
            + f"// {time.time()}\n".encode())
    assert compiler.check(bcc.BPF, text, []) is None
    with pytest.raises(bpfkit.core.errors.LoadError) as e:
        bpfkit.load(text.decode(), name="huge")
    assert "refused to create map 'huge'" in e.value.what


# ---- live() -------------------------------------------------------------------------------------------

def test_live_keeps_every_tick_when_redraws_are_slow(monkeypatch, no_leaks):
    """A redraw that lasts several sampling intervals does not hold the snapshots up: each redraw
    here lasts until the sampler has taken three more (or finished), which it could never do if
    redraws and snapshots took turns; and the frame keeps every snapshot taken. (How many fit in
    the second depends on the machine, so that is not what is asserted.)"""
    taken, draws = [], []
    take = sampling.Sampler.take

    def counted_take(self, now=None):
        take(self, now)
        taken.append(time.monotonic())

    def slow_draw(self):
        start, seen = time.monotonic(), len(taken)
        sampling_runs = lambda: any(t.name == "bpfkit-live" and t.is_alive() for t in threading.enumerate())
        while len(taken) < seen + 3 and sampling_runs() and time.monotonic() - start < 30:
            time.sleep(0.005)
        draws.append((seen, len(taken), sampling_runs()))

    monkeypatch.setattr(sampling.Sampler, "take", counted_take)
    monkeypatch.setattr(liveplot.LivePlot, "draw", slow_draw)
    with bpfkit.create_map("hash", key="u32", value="u64", max_entries=10, name="slow") as m:
        m[1] = 1
        frame = bpfkit.live(m, every=0.05, duration=1.0, redraw=0.1)
    assert len(draws) >= 2, draws                          # at least one while sampling, and the last
    assert all(after >= seen + 3 or not running for seen, after, running in draws), draws
    assert frame["time"].nunique() == len(taken), (frame["time"].tolist(), len(taken))
    assert frame["time"].is_monotonic_increasing and frame["time"].max() >= 1.0


# ---- import -------------------------------------------------------------------------------------------

def test_import_bpfkit_leaves_pyplot_until_a_plot_is_drawn():
    code = ("import sys, bpfkit; assert 'matplotlib.pyplot' not in sys.modules; "
            "import pandas as pd; bpfkit.plot.bar(pd.DataFrame({'k': [1], 'v': [2]}), 'k', 'v', title='t'); "
            "assert 'matplotlib.pyplot' in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                   env={"PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"})


def test_live_in_a_notebook_kernel_shows_one_image_and_updates_it(no_leaks):
    """The inline backend's path: a PNG displayed once, then updated in place through its
    display id, while every tick is kept."""
    from jupyter_client import KernelManager
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)})
    kc = km.client()
    kc.start_channels()
    messages = []
    try:
        kc.wait_for_ready(timeout=60)
        code = ("%matplotlib inline\nimport bpfkit\n"
                "m = bpfkit.create_map('hash', key='u32', value='u64', max_entries=10, name='nb_live')\n"
                "taken = []\ntake = bpfkit.observe.sampling.Sampler.take\n"
                "bpfkit.observe.sampling.Sampler.take = lambda self, now=None: (take(self, now), taken.append(1))\n"
                "m[1] = 5\nframe = bpfkit.live(m, every=0.05, duration=1.0, redraw=0.2)\n"
                "m.close()\nprint('ticks', frame['time'].nunique(), 'taken', len(taken))")
        reply = kc.execute_interactive(code, timeout=60, output_hook=messages.append)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    shown = [m for m in messages if m["msg_type"] == "display_data"]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1 and "image/png" in shown[0]["content"]["data"]
    display_id = shown[0]["content"]["transient"]["display_id"]
    # At least the last redraw updates the image (how many redraws fit in the second depends on
    # the machine).
    assert len(updates) >= 1 and {u["content"]["transient"]["display_id"] for u in updates} == {display_id}
    printed = "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream")
    ticks = re.search(r"ticks (\d+) taken (\d+)", printed)
    assert ticks and ticks[1] == ticks[2] and int(ticks[1]) >= 2, printed  # every tick taken is kept


@pytest.mark.skipif(shutil.which("capsh") is None,
                    reason="capsh (libcap2-bin) is installed by scripts/provision.sh --test-tools")
def test_without_cap_sys_admin_compiles_run_where_called_and_crashes_are_still_caught():
    """No mount namespace of its own (a container, a user with CAP_BPF and CAP_PERFMON only):
    the compile runs in the caller's thread with the full kallsyms, and the check still works."""
    code = ("import bpfkit\nfrom bpfkit.loader import compiler\n"
            "assert compiler._compiling_thread() is None\n"
            "bpfkit.load('counter', name='no_sys_admin').close()\n"
            "try:\n    bpfkit.load('*BPF_HASH(x);', name='no_sys_admin_crash')\n"
            "except bpfkit.core.errors.CompileError as e:\n    assert 'crashed on it' in e.what\n"
            "else:\n    raise AssertionError('the crash was not caught')\n"
            "print('ok')\n")
    out = subprocess.run([shutil.which("capsh"), "--drop=cap_sys_admin", "--", "-c", f"{sys.executable} -c \"$0\"", code],
                         cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip().endswith("ok"), out.stdout + out.stderr
