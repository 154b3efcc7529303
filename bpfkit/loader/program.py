"""`Program`: one BPF C source compiled by BCC, loaded, attached, and closed again.

A notebook re-runs cells, so a program is registered under a name (in `lifetime`) and
loading the same name again closes the earlier one once the new one runs: programs never
stack up in the kernel. Closing detaches every hook and frees every map. Failures come out as
bpfkit errors with hints, and a failure halfway through a load frees what the load had
already made.

Maps the program does not declare itself (made with `bpfkit.create_map`, for the types BCC
cannot declare) are passed in with `maps={"seen": m}`: bpfkit writes each one's file
descriptor into the C text as `seen`, a map pointer for helpers such as
`bpf_map_push_elem(seen, &value, 0)`, and `prog["seen"]` is that Map.
"""
from __future__ import annotations

import contextlib
import ctypes as ct
import errno
import hashlib
import os
import re
import warnings
from pathlib import Path

from ..access import _bcc, kernel, refusal, system
from ..core import atomic, errors
from ..core.guard import Guard, Guarded, held
from . import compiler, diagnostics, verifier
from .diagnostics import maps as map_diagnostics
from ..host import lifetime
from ..core.errors import (AttachError, BpfkitError, MapNotFound, NotFound, TracepointNotFound,
                           UsageError, did_you_mean, nearest)
from ..maps import Map

_HERE = Path(__file__).resolve().parents[1]
# The lessons' C programs: bpf/ beside the package in a checkout, bpfkit/bpf/ once installed.
PROGRAMS = next((d for d in (_HERE.parent / "bpf", _HERE / "bpf") if d.is_dir()), _HERE / "bpf")


def bpf_dirs() -> list[Path]:
    """Where a bare name like "counter" is looked up: the kit's programs (those several lessons
    share, then each lesson's folder, bpf/14_cgroup_maps/), then ./bpf, ../bpf."""
    here = Path.cwd()
    lessons = sorted(d for d in PROGRAMS.iterdir() if d.is_dir()) if PROGRAMS.is_dir() else []
    return [PROGRAMS, *lessons, here / "bpf", here.parent / "bpf", here]


def source(name: str) -> str:
    """The C text of one of the kit's programs ("counter" for bpf/counter.c): to show with
    IPython's `Code(...)`, or to start a `%%bpf` cell from."""
    text, _, _ = resolve(name)
    return text


def resolve(source, suffix: str = ".c") -> tuple[str, Path | None, str]:
    """(C text, file or None, a name for messages) for a program's name (`suffix` after it in
    bpf/: ".c" for BCC's C, ".bpf.c" for libbpf's), a path, or C text. One lookup for both
    kinds, so a name means the same file wherever a learner types it."""
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and not re.search(r"[;{}()]", source)):
        path = Path(source)
        candidates = [path] if path.suffix == ".c" or path.is_absolute() or path.parent != Path(".") \
            else [d / f"{source}{suffix}" for d in bpf_dirs()] + [path]
        for c in candidates:
            try:
                if c.is_dir() and c == path:
                    inside = sorted(p.name[:-len(suffix)] for p in c.glob(f"*{suffix}")
                                    if suffix == ".bpf.c" or not p.name.endswith(".bpf.c"))
                    raise UsageError(f"{_short(str(source))} is a folder, not a C file.",
                                     f"pass one of its programs: {', '.join(inside)}." if inside
                                     else "pass a .c file, a program's name, or the C code itself.")
                if c.is_file():
                    return c.read_text(), c, _shown_path(c)
            except UsageError:   # a ValueError too, but ours: said already
                raise
            except (OSError, ValueError) as e:  # a name too long, a NUL in it, unreadable, not text
                if isinstance(e, UnicodeDecodeError) or (isinstance(e, OSError) and os.path.exists(c)):
                    raise UsageError(f"Could not read {_short(str(c))} as C source: {e}.",
                                     "pass a text file of C code, or the C code itself.",
                                     errno=getattr(e, "errno", None)) from None
        raise _not_found(source, suffix, candidates)
    if not isinstance(source, str):
        raise UsageError(f"load() takes a file name or C text, not {type(source).__name__}.",
                         'pass "counter" for bpf/counter.c, a path, or the C code as a str.')
    return source, None, "your C code"


def _not_found(source, suffix: str, candidates: list[Path]) -> BpfkitError:
    """No file for a program's name: the programs of that kind there are, and a close one."""
    if suffix == ".bpf.c":
        names = sorted({p.name[:-len(".bpf.c")] for d in bpf_dirs() if d.is_dir() for p in d.glob("*.bpf.c")})
        return NotFound(f"No libbpf program named {source!r} (looked for bpf/{source}.bpf.c).",
                        f"the libbpf programs in bpf/ are: {', '.join(names) or 'none'}.")
    names = sorted({p.stem for d in bpf_dirs() if d.is_dir() for p in d.glob("*.c")
                    if not p.name.endswith(".bpf.c")})
    libbpf_c = [c for d in bpf_dirs() for c in [d / f"{source}.bpf.c"] if _is_file(c)]
    if libbpf_c:
        return UsageError(f"{_shown_path(libbpf_c[0])} is libbpf C, which BCC cannot build.",
                          f"load it with bpfkit.loader.bpfobject.load({str(source)!r}), or in a "
                          f"%%bpfobject {source} cell (lesson 19).")
    return NotFound(f"No BPF program named {_short(str(source))!r}: looked for "
                    f"{', '.join(_short(str(c)) for c in candidates[:3])}.",
                    (did_you_mean(_short(str(source)), names) + " "
                     if did_you_mean(_short(str(source)), names) else "")
                    + f"The programs in bpf/ are: {', '.join(names) or 'none'}.")


def _is_file(path: Path) -> bool:
    """Path.is_file(), and False for a name the system cannot even look up (too long, a NUL)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown_path(path: Path) -> str:
    """A file as the learner knows it: bpf/counter.c, not this machine's absolute path."""
    for base in (Path.cwd(), PROGRAMS.parent):
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


class Program(Guarded):
    """A compiled, loaded BPF program and its maps. Use as a context manager, or `close()`."""

    def __init__(self, name: str, source: str, path: Path | None, where: str, cflags=(),
                 first_line: int = 1, maps: dict | None = None):
        self.name = name
        self.source = source
        self.path = path
        self.where = where
        self.first_line = first_line  # the number the learner sees on the source's first line
        # Its maps and readers are used inside this guard: a close from another thread frees
        # BCC's module only once no call on the program or its maps is in flight.
        self._guard = Guard(self._release, self._closed_error)
        self._maps: dict[str, Map] = {}
        self._given = _given_maps(maps or {})
        self.notes: list[str] = []
        self.attached: dict[str, str] = {}  # function -> where: "tracepoint:syscalls:sys_enter_execve"
        _bcc.module()
        system.require_privilege()
        system.require_headers()
        if "TRACEPOINT_PROBE" in source or "tracepoint__" in source:
            system.ensure_tracefs()  # BCC reads each tracepoint's fields from tracefs as it compiles
        # A misspelled helper would otherwise compile (C allows an undeclared function, with a
        # warning) and fail only in the kernel, as an obscure "jump out of range".
        flags = ["-Werror=implicit-function-declaration", *cflags]
        if path is not None:
            flags.append(f"-I{path.parent}")
        text = _with_given_maps(source, self._given).encode()
        failed = compiler.check(_bcc.quiet_bpf_class(), text, flags)  # Stop here costs nothing
        if failed is not None:
            raise diagnostics.compile_failed(failed, source, where, first_line)
        with atomic.step() as step:  # from here on, Stop waits until the kernel is consistent
            self._open(text, flags)
            if step.interrupted:
                self._free()  # leave the kernel as if the cell had not run; the step raises
            else:
                previous = lifetime.add("program", name, self)
                if previous is not None:
                    previous.close()

    def _open(self, text: bytes, flags: list[str]) -> None:
        """Compile for real (the check compile succeeded), create the maps, load and attach the
        functions that attach by their names; on any failure free all of it and raise."""
        with diagnostics.captured_stderr() as out:
            before = kernel.bpf_fds()
            try:
                self.bpf = compiler.run(lambda: _bcc.quiet_bpf_class()(text=text, cflags=flags))
                failed = None
            except Exception as e:  # BCC raises bare Exceptions
                failed = e
                # A map the kernel refuses (max_entries 0, say) fails BCC's load after it made
                # the maps before it, and BCC keeps their fds open: close what it left. We hold
                # the kit's lock, so no other load of ours opened any of these meanwhile.
                for fd in kernel.bpf_fds() - before:
                    with contextlib.suppress(OSError):
                        os.close(fd)
        if failed is not None:
            self._guard.close()   # nothing was made: releases nothing
            raise diagnostics.compile_error(out[0], self.source, self.where, self.first_line) from None
        try:
            self._maps_allowed()
            self._autoload()
        except BaseException:
            self._free()
            raise

    def _maps_allowed(self) -> None:
        """Each map BCC made for the program, by its type (read from the kernel), passed through
        `refusal.used`: recorded for the test that finds which types a lesson makes, and refused
        here, with the words a real refusal gets, where the test switch pretends the kernel
        refuses that type. BCC makes every map as it builds the module, before any function
        loads: the moment a kernel that forbids the type says no."""
        for table in _bcc.table_names(self.bpf):
            kind = kernel.map_info_by_fd(_bcc.table(self.bpf, table)[0])["type"]
            err = refusal.used("map", kind)
            if err:
                raise map_diagnostics.refused(table, kind, err, self.where) or \
                    errors.MapError(f"The kernel refused to create map {table!r} declared in "
                                    f"{self.where}: {refusal.strerror(err)}.", errno=err)

    def _free(self) -> None:
        """Detach and free everything (once no call on the program is in flight)."""
        self._guard.close()

    @atomic.whole
    def _release(self) -> None:
        """The release itself, in whichever thread leaves the program last; a detach BCC
        fails at does not keep the rest alive."""
        if "bpf" not in self.__dict__:
            return
        with diagnostics.captured_stderr():
            try:
                self.bpf.cleanup()
                return
            except Exception as e:  # BCC raises bare Exceptions, and stops at the first
                failed = e
            _bcc.force_close(self.bpf)
        warnings.warn(f"bpfkit: BCC failed while closing {self.name!r} ({failed}); everything it "
                      "had made was freed anyway.", stacklevel=3)

    # -- loading and attaching -------------------------------------------------------------
    def _function_names(self) -> list[str]:
        return _bcc.function_names(self.bpf)

    @held
    def load_func(self, fn_name: str, prog_type, **kw):
        """Load one function as a program of `prog_type`, the kernel's name of it ("xdp",
        "tracepoint", "cgroup_skb", ...: `bpfkit.access.kernel.PROG_TYPES`), explaining a refusal.
        BCC's numbers (`BPF.XDP`) are still taken."""
        number = _bcc.prog_type(prog_type)
        names = self._function_names()
        if fn_name not in names:
            raise NotFound(f"There is no function {fn_name!r} in {self.where}.",
                           did_you_mean(fn_name, names) or f"its functions are {names}.")
        fake = refusal.used("program", _bcc.prog_type_name(number))
        with atomic.step(), diagnostics.captured_stderr() as out:
            try:
                if fake:   # the test switch: the kernel's answer, as if it had said it
                    raise OSError(fake, os.strerror(fake))
                fn = self.bpf.load_func(fn_name.encode(), number, **kw)
                failed = None
            except Exception as e:
                failed = e
        if failed is not None:
            err = fake or ct.get_errno() or (errno.EPERM if "super-user" in str(failed) else 0)
            license = _bcc.license(self.bpf)
            raise verifier.load_error(out[0], fn_name, self.source, self.where, err,
                                      self.first_line, license,
                                      _bcc.prog_type_name(number)) from None
        return fn

    @held
    def function(self, fn_name: str):
        """Function `fn_name` of this program, loaded (once) with the type of the functions
        loaded so far: what a program array slot takes by name, since a tail call only
        reaches programs of the caller's type."""
        loaded = self.bpf.funcs
        if fn_name.encode() in loaded:
            return loaded[fn_name.encode()]
        types = {kernel.prog_info_by_fd(fn.fd)["type"] for fn in loaded.values()}
        if len(types) != 1:
            raise errors.MapError(
                f"Cannot tell which program type to load {fn_name!r} as: the program has "
                + (f"functions of types {sorted(types)} loaded." if types else "no function loaded yet."),
                "load it yourself with the caller's type and store that: "
                f"m[slot] = prog.load_func({fn_name!r}, \"tracepoint\") (or \"xdp\", ...).")
        return self.load_func(fn_name, types.pop())

    def _autoload(self) -> None:
        for fn in self._function_names():
            if fn.startswith("tracepoint__"):
                category, _, event = fn[len("tracepoint__"):].partition("__")
                self.attach_tracepoint(f"{category}:{event}", fn)
            elif fn.startswith("raw_tracepoint__"):
                self.attach_raw_tracepoint(fn[len("raw_tracepoint__"):], fn)
            elif fn.startswith("kprobe__"):
                self.attach_kprobe_or_tracepoint(fn[len("kprobe__"):], fn)

    @held
    def attach_tracepoint(self, tracepoint: str, fn_name: str) -> None:
        """Attach `fn_name` to "category:event", checking first that the kernel has it."""
        system.ensure_tracefs()
        category, _, event = tracepoint.partition(":")
        if not (system.TRACEFS / "events" / category / event).is_dir():
            raise _no_tracepoint(tracepoint)
        said = self._load_and_attach(fn_name, "tracepoint", tracepoint)
        if said is not None:
            raise AttachError(f"Could not attach {diagnostics.describe_function(fn_name)} to the "
                              f"tracepoint {tracepoint}" + (f": {said}" if said else "."),
                              system.privilege_hint() if system.missing_privileges()
                              else "run `python -m bpfkit doctor`.")

    @held
    def attach_raw_tracepoint(self, tracepoint: str, fn_name: str) -> None:
        """Attach `fn_name` to the raw tracepoint `tracepoint` (an event name, without its
        category: "sched_switch"), checking first that the kernel has it."""
        events = system.TRACEFS / "events"
        if events.is_dir() and not any(events.glob(f"*/{tracepoint}")):
            raise _no_raw_tracepoint(tracepoint)
        said = self._load_and_attach(fn_name, "raw_tracepoint", tracepoint)
        if said is not None:
            if "No such file" in said:
                raise _no_raw_tracepoint(tracepoint)
            raise AttachError(f"Could not attach {diagnostics.describe_function(fn_name)} to the raw "
                              f"tracepoint {tracepoint}" + (f": {said}" if said else "."),
                              "run `python -m bpfkit doctor`.")

    def _load_and_attach(self, fn_name: str, kind: str, tp: str) -> str | None:
        """Load `fn_name` as a program of type `kind` and attach it to `tp` with BCC's
        attach_<kind> ("tracepoint", "raw_tracepoint") as one step: None when it attached, else what BCC said about the
        refusal (maybe "")."""
        attach = getattr(self.bpf, f"attach_{kind}")
        with atomic.step(), diagnostics.captured_stderr() as out:
            self.load_func(fn_name, kind)
            try:
                attach(tp=tp.encode(), fn_name=fn_name.encode())
                self.attached[fn_name] = f"{kind}:{tp}"
                return None
            except Exception:  # BCC raises bare Exceptions; its reason is on stderr
                pass
        return " ".join(out[0].split())

    @held
    def attach_lsm(self, hook: str) -> None:
        """Attach the `LSM_PROBE(hook, ...)` function (`lsm__HOOK`) at its security hook, as BCC's
        attach_lsm does. Not done when the program is loaded: some kernels refuse LSM programs
        (lockdown, or `bpf` not among their security modules), and the load says so then, in the
        kernel's words, while the rest of the program (its maps) stays usable."""
        fn_name = hook if hook.startswith("lsm__") else f"lsm__{hook}"
        with atomic.step():
            self.load_func(fn_name, "lsm")          # a refusal is explained here
            with diagnostics.captured_stderr() as out:
                try:
                    self.bpf.attach_lsm(fn_name=fn_name.encode())
                    failed = None
                except Exception as e:  # BCC raises bare Exceptions; its reason is on stderr
                    failed = e
            if failed is not None:
                said = " ".join(out[0].split()) or str(failed)
                raise AttachError(f"The kernel loaded {fn_name} but would not attach it at the LSM "
                                  f"hook {fn_name[len('lsm__'):]}: {said}",
                                  "check the hook's name and arguments against the kernel's "
                                  "LSM_HOOK list (include/linux/lsm_hook_defs.h).",
                                  errno=ct.get_errno() or None)
            self.attached[fn_name] = f"lsm:{fn_name[len('lsm__'):]}"

    @held
    def attach_kprobe_or_tracepoint(self, event: str, fn_name: str) -> str:
        """Attach to kernel function `event` with a kprobe; where the kernel has no kprobes and
        `event` is a syscall, attach to its `syscalls:sys_enter_*` tracepoint instead and say so.
        Returns where it attached. The function must only use `ctx` as an opaque pointer."""
        syscall = re.sub(r"^(__\w+?_)?sys_", "", event)
        if system.kprobes_available():
            target = self.bpf.get_syscall_fnname(syscall.encode()).decode() if syscall != event or \
                not event.startswith("__") else event
            try:
                with atomic.step(), diagnostics.captured_stderr():
                    self.load_func(fn_name, "kprobe")
                    self.bpf.attach_kprobe(event=target.encode(), fn_name=fn_name.encode())
                    self.attached[fn_name] = f"kprobe:{target}"
                return self.attached[fn_name]
            except BpfkitError:
                raise
            except Exception as e:
                raise AttachError(f"Could not attach {fn_name!r} to kernel function {target}: {e}",
                                  "check the function's name in /proc/kallsyms.") from None
        tracepoint = f"syscalls:sys_enter_{syscall}"
        if not (system.TRACEFS / "events" / "syscalls" / f"sys_enter_{syscall}").is_dir():
            raise AttachError(f"This kernel has no kprobes, and {event!r} is not a syscall with a "
                              "tracepoint to fall back to.",
                              "use TRACEPOINT_PROBE(category, event) with a tracepoint from "
                              f"{system.TRACEFS}/available_events.")
        self.attach_tracepoint(tracepoint, fn_name)
        note = (f"kprobes are not available in this kernel: attached {fn_name!r} to the "
                f"tracepoint {tracepoint} instead (it fires at the same moment).")
        self.notes.append(note)
        print(note)
        return f"tracepoint:{tracepoint}"

    # -- maps ------------------------------------------------------------------------------
    @held
    def map_names(self) -> list[str]:
        self._check_open()
        return _bcc.table_names(self.bpf) + list(self._given)

    @held
    def __getitem__(self, name: str) -> Map:
        self._check_open()
        if name in self._maps:
            return self._maps[name]
        names = self.map_names()
        if name not in names:
            hint = did_you_mean(name, names)
            raise MapNotFound(
                f"Program {self.name!r} has no map named {name!r}. Its maps are: "
                f"{', '.join(names) or 'none'}.",
                (hint + " " if hint else "") + "Map names are the first argument of BPF_HASH(...), "
                "BPF_ARRAY(...) and friends in the C code.")
        self._maps[name] = self._given[name] if name in self._given else self._make_map(name)
        return self._maps[name]

    def _make_map(self, name: str) -> Map:
        fd, key_type, value_type = _bcc.table(self.bpf, name)
        return Map(fd, name=name, key_type=key_type, value_type=value_type, owner=self)

    @property
    def maps(self) -> dict[str, Map]:
        return {n: self[n] for n in self.map_names()}

    @held
    def __contains__(self, name: str) -> bool:
        return name in self.map_names()

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: a typo like prog.maps_names or prog.counter_table.
        if name.startswith("_") or name in ("bpf", "closed", "name", "source", "where"):
            raise AttributeError(name)
        extra = ""
        if "_guard" in self.__dict__ and not self._guard.closed and "bpf" in self.__dict__:
            maps = self.map_names()
            if name in maps:
                raise errors.no_attribute(self, name, [], f"{name!r} is a map: write prog[{name!r}].")
            close = nearest(name, maps, n=1)
            if close:
                extra = f"(For the map {close[0]!r}, write prog[{close[0]!r}].)"
        raise errors.no_attribute(self, name, dir(type(self)) + list(self.__dict__), extra)

    # -- lifetime --------------------------------------------------------------------------

    def _closed_error(self):
        from ..core.errors import ProgramClosed
        return ProgramClosed(f"Program {self.name!r} is closed: its maps and hooks are gone.",
                             "load it again with bpfkit.load(...).")


    @held
    def program_ids(self) -> list[int]:
        """Kernel ids of this program's loaded functions."""
        return [kernel.prog_info_by_fd(fn.fd)["id"] for fn in self.bpf.funcs.values()]

    def close(self) -> None:
        """Detach every hook and free the programs and maps. Safe to call twice."""
        with atomic.step():  # another thread may be closing it too; Stop waits for the end
            if self.closed:
                return
            lifetime.discard("program", self.name, self)
            for name, m in self._maps.items():
                if name not in self._given:
                    m.release()  # e.g. unmap an mmapable array, which would keep the map alive
            self._free()

    def __enter__(self) -> "Program":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"maps: {', '.join(self.map_names())}"
        return f"<bpfkit.Program {self.name!r} from {self.where} ({state})>"


def _no_raw_tracepoint(tracepoint: str) -> TracepointNotFound:
    events = system.TRACEFS / "events"
    names = sorted({p.name for p in events.glob("*/*") if p.is_dir()}) if events.is_dir() else []
    close = nearest(tracepoint, names, n=5)
    return TracepointNotFound(
        f"This kernel has no raw tracepoint {tracepoint!r}."
        + (f" The nearest are: {', '.join(close)}." if close else ""),
        "a raw tracepoint has the name of a tracepoint without its category: "
        f"RAW_TRACEPOINT_PROBE({close[0] if close else 'sched_switch'}); the names are the "
        f"folders under {events}/*/.")


def _no_tracepoint(tracepoint: str) -> TracepointNotFound:
    events = system.TRACEFS / "events"
    category, _, event = tracepoint.partition(":")
    if (events / category).is_dir():
        choices = [f"{category}:{p.name}" for p in (events / category).iterdir() if p.is_dir()]
    else:
        choices = [c.name for c in events.iterdir() if c.is_dir()] if events.is_dir() else []
    word = tracepoint if (events / category).is_dir() else category
    # difflib ranks "vsyscall" above "syscalls" for "syscall": names that extend it come first.
    close = sorted(nearest(word, choices, n=8),
                   key=lambda c: not (c.startswith(word) or word.startswith(c)))[:5]
    return TracepointNotFound(
        f"This kernel has no tracepoint {tracepoint!r}."
        + (f" The nearest are: {', '.join(close)}." if close else ""),
        f"pick one from {events} (category/event), e.g. syscalls:sys_enter_execve, "
        "and write TRACEPOINT_PROBE(category, event).")


def load(source, *, cflags=(), name: str | None = None, where: str | None = None,
         first_line: int = 1, maps: dict | None = None) -> Program:
    """Compile, load and attach a BPF program; its tracepoint probes attach automatically.

    `source` is "counter" (bpf/counter.c), a path, or C text. `maps={"seen": m}` makes Maps
    made with `bpfkit.create_map` usable in the C code as `seen` (a map pointer, for helpers
    such as `bpf_map_push_elem(seen, &v, 0)`). Loading again under the same
    `name` (by default the file's name, or the text's fingerprint) closes the earlier program
    once the new one is loaded and attached. A load that fails changes nothing: it leaves no
    new program, map or link in the kernel, and the program loaded earlier under that name
    keeps running. `where` and `first_line` name the source in error messages (the magic
    passes "the %%bpf NAME cell" and 2).
    """
    lifetime.free_dead()  # what a killed notebook left (pins, cgroups, labs...) goes before we load more
    text, path, shown = resolve(source)
    if name is None:
        name = path.stem if path else "text-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    try:
        return Program(name, text, path, where or shown, _cflags(cflags), first_line, maps)
    except BpfkitError as e:
        earlier = lifetime.get("program", name)
        if earlier is not None and not earlier.closed:
            e.hint = (e.hint + " " if e.hint else "") + (
                f"(The program loaded earlier as {name!r} is still loaded, unchanged.)")
        raise


def loaded() -> dict[str, Program]:
    """The programs bpfkit has loaded and not yet closed, by name."""
    return lifetime.held("program")


def _cflags(cflags) -> list[str]:
    """The compiler flags as a list of strings (one string would be split into characters)."""
    if isinstance(cflags, (str, bytes)):
        import shlex
        text = cflags.decode() if isinstance(cflags, bytes) else cflags
        raise UsageError(f"cflags takes a list of compiler flags, not one string ({_short(repr(text))}).",
                         f"write cflags={shlex.split(text)!r}.")
    try:
        flags = list(cflags)
    except TypeError:
        raise UsageError(f"cflags takes a list of compiler flags, not {type(cflags).__name__}.",
                         'write cflags=["-DLIMIT=10"].') from None
    bad = [f for f in flags if not isinstance(f, str)]
    if bad:
        raise UsageError(f"Each compiler flag is a string; {bad[0]!r} is a {type(bad[0]).__name__}.",
                         'write cflags=["-DLIMIT=10"], with the value inside the string.')
    # BCC's compiler does not look in the caller's folder: -Iinc means ./inc to a learner.
    return [f"-I{Path.cwd() / f[2:]}" if f.startswith("-I") and len(f) > 2 and not f[2:].startswith("/")
            else f for f in flags]


def _given_maps(maps: dict) -> dict[str, Map]:
    """The maps passed with `maps=`, checked: C names, open bpfkit Maps."""
    for name, m in maps.items():
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_]\w*", name)):
            raise UsageError(f"maps= names each map as the C code calls it; {name!r} is not a C "
                             "name.", 'use a name like "seen": load(source, maps={"seen": m}).')
        if not isinstance(m, Map):
            raise errors.not_a_map(m, f"maps={{{name!r}: ...}}", f'{name} = bpfkit.create_map("bloom_filter", value="u32")')
        m.fd  # a closed map cannot be handed to a program
    return dict(maps)


def _with_given_maps(text: str, maps: dict[str, Map]) -> str:
    """The C text with each given map's name defined as a pointer to it, by its fd: BCC passes
    `bpf_pseudo_fd(1, fd)` through to the kernel, which takes the map from this process."""
    if not maps:
        return text
    defines = "".join(f"#define {name} ((void *)bpf_pseudo_fd(1, {m.fd}))\n"
                      for name, m in maps.items())
    return defines + "#line 1\n" + text
