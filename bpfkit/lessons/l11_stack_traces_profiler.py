"""Lesson 11's exercise (who calls the hot function?) and its check.

The mystery program has one helper, `mix()`, that does all the work, and two callers:
`encode()` calls it 100 times with 1000 rounds, `decode()` once with 300000 rounds. The learner
changes only `main()` so that `encode()` becomes the hotter caller, with about three quarters
of `mix()`'s samples, and predicts what the profile will say before looking. The check reads
the folded stacks of the learner's own profile, so what it compares is what the kernel saw.
"""
from __future__ import annotations

import contextlib
import numbers
import os
import secrets
import select
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pandas as pd

from ..core.errors import SetupError, UsageError, WorkloadError
from ..host import lifetime
from ..observe.folding import callers, top_functions
from .checker import Checker, exercise

# The exercise's mystery program, as the lesson hands it out: decode() is the hotter caller.
MYSTERY = r"""
volatile unsigned long sink;       // volatile: the compiler keeps every round

void mix(int rounds) {             // the shared helper: all the real work is here
    for (int i = 0; i < rounds; i++)
        sink = sink * 31 + i;
}

void encode(void) {                // many small calls: 100 x 1000 rounds
    for (int block = 0; block < 100; block++)
        mix(1000);
}

void decode(void) {                // one big call: 300000 rounds
    mix(300000);
}

int main(void) {
    for (;;) {                     // change only main()
        encode();
        decode();
    }
}
"""

HELPER, WANTED, OTHER = "mix", "encode", "decode"
BAND = (0.55, 0.95)       # "about three quarters", with room for the noise of ~70 samples
TOLERANCE = 0.2           # how far a predicted share may be from the measured one
MIN_SAMPLES = 30


@exercise("Who calls the hot function?",
          "The flat profile only says mix(); the stacks say who made it hot. Calls are not "
          "time: encode() calls mix() 100 times as often, but it is the rounds that cost.")
def check_hotter_caller(c: Checker, folded: pd.DataFrame, prediction: dict) -> None:
    """`folded`: the profile of the learner's changed mystery program (`fold(...)`);
    `prediction`: {"hottest": function with the most self samples, "hotter_caller": the caller
    of mix() with more of its samples, "share": that caller's fraction of mix()'s samples}.
    Each problem says what the profile showed against what the exercise asks, then a question
    that points at the lesson's words; a hint from the second try, the code from the third."""
    c.require(isinstance(folded, pd.DataFrame) and {"stack", "samples"} <= set(folded.columns),
              f"The check got a {type(folded).__name__}, not a folded profile (a table with columns "
              "`stack` and `samples`). Which variable holds your program's profile? The cell that "
              "profiles the mystery program makes it.",
              hint="The profiling cell stores the result of `fold()` in `mystery`.",
              fix="result = check_hotter_caller(mystery, prediction)")
    total = int(folded["samples"].sum())
    c.require(total >= MIN_SAMPLES,
              f"The profile has {total} samples; telling two callers apart needs at least "
              f"{MIN_SAMPLES}. Is `do_sample` still attached? The cell under 'Sample the CPU clock' "
              "attaches it.",
              hint="If that cell printed that this kernel refused the perf events, the profile stays "
                   "empty and this exercise cannot be checked here.",
              fix='Run `attach_cpu_clock(profile, "do_sample", hz=99)` again, then the cell that '
                  "profiles MYSTERY for 0.7 s of CPU time.")
    top = top_functions(folded)
    hottest, hottest_n = top["function"].iloc[0], int(top["self"].iloc[0])
    counted = _mix_callers(c, folded, total)
    share = counted[WANTED] / (counted[WANTED] + counted[OTHER])
    actual = WANTED if counted[WANTED] >= counted[OTHER] else OTHER
    actual_share = max(share, 1 - share)
    _check_split(c, share)
    _check_prediction(c, prediction, (hottest, hottest_n, total), (actual, actual_share))

def _check_prediction(c: Checker, prediction, top: tuple, hotter: tuple) -> None:
    """The learner's prediction against the profile: `top` (the function with the most self
    samples, its samples, all samples), `hotter` (mix()'s hotter caller, its share)."""
    (hottest, hottest_n, total), (actual, actual_share) = top, hotter
    c.require(isinstance(prediction, dict),
              f"`prediction` is a {type(prediction).__name__}, not a dict with the keys `hottest`, "
              "`hotter_caller` and `share`. The cell that defines `prediction` shows its form.",
              fix='prediction = {"hottest": "function", "hotter_caller": "function", "share": 0.5}, '
                  "with your own answers.")
    said = str(prediction.get("hottest", "")).strip().removesuffix("()")
    # A prediction is checked without giving the answer away: the first try says whether it
    # matched; the profile's own answer comes with the fix.
    c.expect(said == hottest,
             f"{_predicted(said, 'the function with the most samples of its own')}; the profile "
             f"disagrees ({total} samples). Whose instructions was the CPU running when the clock "
             "struck? The flat profile after 'The flame graph' counts only the innermost frame, the "
             "self samples.",
             hint="encode(), decode() and main() mostly call; the loop that does the rounds is "
                  "somewhere else.",
             fix=f'prediction["hottest"] = "{hottest}" ({hottest_n} of {total} samples)')
    said = str(prediction.get("hotter_caller", "")).strip().removesuffix("()")
    c.expect(said == actual,
             f"{_predicted(said, f'the hotter caller of {HELPER}()')}; your program's profile "
             f"disagrees. Which caller hands {HELPER}() more rounds per pass of main()'s loop?",
             hint="Count rounds, not calls.",
             fix=f'prediction["hotter_caller"] = "{actual}" ({actual_share:.0%} of {HELPER}()\'s samples)')
    guess = prediction.get("share")
    if not isinstance(guess, numbers.Real) or isinstance(guess, bool) or not 0 <= guess <= 1:
        c.expect(False, f"\"share\" is {guess!r}; the exercise asks for a number between 0 and 1: "
                 f"the fraction of {HELPER}()'s samples that come through the hotter caller. What "
                 "fraction did you aim for?",
                 hint="Three quarters is 0.75, as a number, not a string.",
                 fix='prediction["share"] = 0.5, with your own fraction in place of 0.5.')
    else:
        c.expect(abs(float(guess) - actual_share) <= TOLERANCE,
                 f"You predicted that {guess:.2f} of {HELPER}()'s samples come through {actual}(); "
                 f"the samples put it {'higher' if actual_share > guess else 'lower'}, by more than "
                 f"{TOLERANCE:.2f}. How many rounds does each caller hand to {HELPER}() in one pass "
                 "of main()'s loop?",
                 hint=f"The share is {actual}()'s rounds divided by all of {HELPER}()'s rounds, in "
                      f"one pass of main()'s loop; the samples say {actual_share:.2f}.",
                 fix=f'prediction["share"] = {actual_share:.2f}')


def _predicted(said: str, what: str) -> str:
    return (f"No prediction yet for {what}" if said in ("", "?", "None")
            else f"You predicted {said!r} as {what}")


def _mix_callers(c: Checker, folded: pd.DataFrame, total: int) -> dict[str, int]:
    """{caller of mix(): its samples}, both callers there, or the check ends."""
    by_caller = callers(folded, HELPER)
    c.require(len(by_caller) > 0,
              f"{HELPER}() appears in none of the {total} samples; the exercise expects it on most "
              f"of them. Does your main() still call {WANTED}() and {OTHER}()? The exercise says "
              "which part of the program may change.",
              hint="Keep the three helpers as they are: only main()'s loop changes.",
              fix=f"Inside main()'s `for (;;)` loop, call {WANTED}() and {OTHER}(), {WANTED}() "
                  f"several times for each call of {OTHER}().")
    counted = dict(zip(by_caller["caller"], by_caller["samples"].astype(int)))
    missing = [f for f in (WANTED, OTHER) if f not in counted]
    c.require(not missing,
              f"{' and '.join(f + '()' for f in missing)} no longer calls {HELPER}() in the profile "
              f"(its callers: {', '.join(f'{k}() {v}' for k, v in counted.items())}); the exercise "
              f"keeps both callers. What may you change, by the exercise's first step?",
              hint="Change how often main() calls each helper, not whether it calls it.",
              fix=f"Call both {WANTED}() and {OTHER}() in main()'s loop, {WANTED}() several times "
                  f"for each {OTHER}().")
    return counted


def _check_split(c: Checker, share: float) -> None:
    """encode()'s `share` of mix()'s samples is about three quarters."""
    rounds_fix = (f"One call of {WANTED}() hands {HELPER}() 100 x 1000 = 100,000 rounds, one call of "
                  f"{OTHER}() 300,000: in main()'s loop call {WANTED}() N times for each {OTHER}(), "
                  "with N x 100,000 three times 300,000.")

    if share < 0.5:
        c.expect(False, f"{OTHER}() is still the hotter caller: {1 - share:.0%} of {HELPER}()'s "
                 f"samples come through it; the exercise wants {WANTED}() with about three quarters. "
                 f"{WANTED}() calls {HELPER}() 100 times for each time {OTHER}() calls it once, but "
                 "how many rounds does each call do? The exercise's first paragraph gives them.",
                 hint=f"Samples follow rounds, not calls: compare the rounds {WANTED}() and {OTHER}() "
                      f"hand {HELPER}() in one pass of main()'s loop.",
                 fix=rounds_fix)
    elif share < BAND[0]:
        c.expect(False, f"{WANTED}() is ahead, but only just: {share:.0%} of {HELPER}()'s samples, "
                 "against about 75% wanted. With some seventy samples, is that too close to call? "
                 "How many rounds does one pass of main()'s loop hand each caller?",
                 hint=f"Aim for {WANTED}() handing {HELPER}() three times the rounds {OTHER}() does.",
                 fix=rounds_fix)
    elif share > BAND[1]:
        c.expect(False, f"{WANTED}() now has {share:.0%} of {HELPER}()'s samples, well over the "
                 f"three quarters wanted: {OTHER}() is nearly gone. How many rounds does one pass of "
                 "main()'s loop hand each caller?",
                 hint=f"Call {WANTED}() a little less often for each {OTHER}().",
                 fix=rounds_fix)


# -- the C program the lesson profiles ----------------------------------------------------------

HARNESS = Path(__file__).with_name("l11_stack_traces_profiler_harness.c")


def _compile(source: str, cflags, folder: str) -> str:
    """gcc builds `source` with the harness into `folder`; the binary's path."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise SetupError("There is no C compiler (gcc) on this machine.",
                         "install it: apt-get install gcc (make lab's provisioning does).")
    with open(os.path.join(folder, "program.c"), "w") as f:
        f.write(source)
    shutil.copy(HARNESS, os.path.join(folder, "harness.c"))
    binary = os.path.join(folder, "program")
    built = subprocess.run([gcc, *cflags, "-o", binary, "program.c", "harness.c"], cwd=folder,
                           capture_output=True, text=True)
    if built.returncode != 0:
        said = "\n".join(built.stderr.strip().splitlines()[:12])
        raise WorkloadError(f"gcc could not compile the C program:\n{said}",
                            "fix the line gcc names (program.c:LINE:COLUMN) and run the cell again.")
    return binary


class _Harnessed:
    """The compiled program, started under the harness: its two control pipes, read by line."""

    def __init__(self, binary: str, cpu_seconds: float):
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()
        self.said = b""
        try:
            env = dict(os.environ, BPFKIT_CONTROL=f"{to_child_r},{from_child_w}",
                       BPFKIT_CPU_SECONDS=repr(float(cpu_seconds)))
            self.process = subprocess.Popen([binary], cwd=os.path.dirname(binary), env=env,
                                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL,
                                            pass_fds=(to_child_r, from_child_w))
        except BaseException:
            self.close()
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)

    def line(self, wait: float) -> bytes:
        """The harness's next line, or b"" if none came within `wait` seconds."""
        while b"\n" not in self.said:
            ready, _, _ = select.select([self.from_child], [], [], wait)
            chunk = os.read(self.from_child, 64) if ready else b""
            if not chunk:
                return b""
            self.said += chunk
        first, _, self.said = self.said.partition(b"\n")
        return first

    def close(self) -> None:
        """Close the pipes (the harness's last read() returns: it exits), then reap it."""
        for fd in (self.to_child, self.from_child):
            os.close(fd)
        process = getattr(self, "process", None)
        if process is not None:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _profiled_run(run: _Harnessed, config, cpu_seconds: float, timeout: float) -> None:
    """Let the program go with its pid in `config[0]` until it has used its CPU time."""
    child = run.process
    if run.line(timeout) != b"ready":
        code = child.wait(5)
        raise WorkloadError(f"The C program ended (exit code {code}) before it could be watched.",
                            "does it build and start? Run it by hand to see.")
    config[0] = child.pid
    os.write(run.to_child, b"g")
    done = run.line(timeout)
    if not done and child.poll() is None:   # no CPU time used within `timeout`: end it
        child.send_signal(signal.SIGPROF)
        done = run.line(5.0)
    config[0] = 0
    if done != b"done":
        code = child.wait(5)
        reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        raise WorkloadError(f"The C program died ({reason}) before its {cpu_seconds} s of CPU "
                            "time were up.", "a crash in main()? Run it by hand to see.")


def cpu_time(pid: int) -> float:
    """The seconds of CPU time process `pid` has used so far: the scheduler's own count in
    nanoseconds (/proc/PID/schedstat), or user + system time in clock ticks where the kernel
    keeps no schedstat."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def profiled_c_program(config, source: str, cpu_seconds: float = 1.0, *,
                       cflags=("-O0", "-g", "-fno-omit-frame-pointer"), timeout: float = 30.0):
    """C `source`, compiled now and run in a child process for `cpu_seconds` of CPU time with
    its pid in `config[0]` for exactly that time, so a profiler that watches that pid samples
    it and nothing else: `with profiled_c_program(config, SOURCE, 1.0) as child: ...`.

    gcc compiles `source` (it needs a `main()`, which may loop for ever) with `cflags` (frame
    pointers kept by default, so its stacks unwind) into a temporary directory, together with
    a small harness (l11_stack_traces_profiler_harness.c): before main() runs, the harness waits for the go;
    after `cpu_seconds` of CPU time (ITIMER_PROF, which counts in timer ticks: a busy machine
    makes the run longer, and a CPU shared with other work can end it early, 0.33 s of exact
    CPU time for 0.5 asked here with three busy loops on two CPUs), or when main() returns, it
    reports back and waits. So the `with` block runs while the child still exists, stopped,
    with its memory map intact: the moment to read its symbols
    (`bpfkit.observe.profile.Symbols(child.pid)`). Leaving the block ends the child and deletes
    the binary. Yields the child's `subprocess.Popen`, with `cpu_time`: the exact CPU seconds
    it had used when its run ended (a profiler's expected samples: its rate times that). A
    program that sleeps uses no CPU time: after `timeout` seconds of wall time its run is ended
    anyway."""
    if not cpu_seconds > 0:
        raise UsageError(f"cpu_seconds is more than 0, not {cpu_seconds}.",
                         "give the CPU time the program runs for, e.g. cpu_seconds=2.")
    folder = _own_folder()
    run = None
    try:
        binary = _compile(source, cflags, folder)
        lifetime.made("dir")   # the kill test's second moment: sources and binary written
        run = _Harnessed(binary, cpu_seconds)
        _profiled_run(run, config, cpu_seconds, timeout)
        run.process.cpu_time = cpu_time(run.process.pid)
        yield run.process
    finally:
        config[0] = 0
        if run is not None:
            run.close()
        shutil.rmtree(folder, ignore_errors=True)
        lifetime.release("dir", folder)


def _own_folder() -> str:
    """A new folder in the temporary directory for the C program's sources and binary, recorded
    with this process as its owner before it exists, so that a kill in the build (the longest
    step) leaves a record that the next load frees (lifetime.free_dead)."""
    while True:   # a name taken already (1 in 4 billion): another
        folder = os.path.join(tempfile.gettempdir(), f"bpfkit-c-{secrets.token_hex(4)}")
        lifetime.claim("dir", folder)
        try:
            os.mkdir(folder, 0o700)
        except FileExistsError:
            lifetime.release("dir", folder)
            continue
        lifetime.made("dir")
        return folder
