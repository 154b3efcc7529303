"""Turning what clang, BCC and LLVM print about a compile into a learner's error, one module
per source of words: `clang` (its diagnostics, at the learner's own line), `llvm` (its fatal
errors that end the compiling process), `libbpf_c` (libbpf-style C handed to BCC, BCC C handed
to clang), `libbpf_load` (what libbpf says when it cannot load, attach or register an object),
`maps` (a map the kernel refused to create), `check_compile` (how the throwaway compile ended)
and `shared` (BCC's stderr caught, and the words all of them use).

The functions below trim that output to the lines that matter, point at the learner's own file
or cell, and add a hint in words. The verifier's log has a module of its own, `verifier`.
"""
from __future__ import annotations

from .check_compile import compile_failed, compiler_crashed  # noqa: F401
from .clang import compile_error  # noqa: F401
from .llvm import compiler_exited  # noqa: F401
from .shared import captured_stderr, describe_function, norm, pass_a_pointer, title  # noqa: F401
