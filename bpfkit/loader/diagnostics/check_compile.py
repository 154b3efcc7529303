"""The outcome of a check compile (`bpfkit.loader.compiler` compiles first in a throwaway process)
that did not end well: clang's errors, LLVM's exit, a crash, or a compile that never ended."""
from __future__ import annotations

from ...core.errors import BpfkitError, CompileError
from .clang import compile_error
from .llvm import compiler_exited
from .shared import signed_division, tail, title


def compile_failed(outcome, source: str, where: str, first_line: int = 1) -> BpfkitError:
    """The error for a check compile (see `compiler`) that did not end well."""
    said = "\n".join(l for l in outcome.said.splitlines()
                     if not l.startswith("Failed to compile BPF module"))
    if outcome.how == "error":
        return compile_error(said, source, where, first_line)
    if outcome.how == "signal":
        return compiler_crashed(outcome.signal_name, said, where)
    if outcome.how == "exit":
        return compiler_exited(said, source, where, first_line)
    return CompileError(
        f"{title(where)} did not finish compiling: after {outcome.seconds:.0f} s bpfkit stopped the "
        "compiler (it ran in a separate process, so nothing else was lost).",
        "look for an #include of something that is not a C file (a pipe or a device waits "
        "forever) or a macro that expands without end; a normal program compiles in seconds.",
        detail=tail(said))


def compiler_crashed(signal_name: str, output: str, where: str) -> CompileError:
    """BCC's compiler died (in a throwaway process) instead of reporting an error."""
    if "signed division" in output.lower():
        return signed_division(where, f"stopped with {signal_name}")
    return CompileError(
        f"{title(where)} did not compile: BCC's compiler crashed on it ({signal_name}) instead of "
        "reporting an error. bpfkit compiled it in a separate process first, so nothing else was lost.",
        "the code has a mistake BCC cannot explain: look for a stray character around the map "
        "declarations (such as `*BPF_HASH(...)`) or a macro used the wrong way; comment out parts "
        "of the program to find the line.")
