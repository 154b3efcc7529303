"""Programs BCC cannot build: libbpf-style C (`*.bpf.c`), compiled with clang, loaded with libbpf.

Some BPF features need what BCC 0.26 does not offer: helpers that take a callback
(`bpf_user_ringbuf_drain`, `bpf_loop`), `struct_ops` maps (a kernel ops table, such as a TCP
congestion control, filled with BPF programs) and the BTF of kernel types. Those programs are
written as libbpf expects (`#include "vmlinux.h"`, `SEC(...)` names, maps declared in `.maps`),
compiled by the distribution's clang into an object file, and loaded by libbpf:

    obj = bpfkit.loader.bpfobject.load("l19_uring")          # bpf/19_beyond_bcc/l19_uring.bpf.c
    obj["totals"].frame({"index": "slot", "value": "total"})   # its maps are bpfkit Maps
    obj.run("drain")                                     # a SEC("syscall") program, run once
    obj.close()                                          # links, programs and maps go

`load()` attaches what libbpf can attach by its section name (tracepoints, ...; a section that
names no target, SEC("xdp") or SEC("sk_msg"), is loaded and listed in `obj.unattached`) and registers
every `struct_ops` map (a link: closing it unregisters the ops). The object is registered with
`bpfkit.host.lifetime` like a Program, so `bpfkit.close_all()` frees it. `vmlinux.h` is made once
per kernel with bpftool, in a cache folder of the kit (never in the repository). In a notebook,
`%load_ext bpfkit` adds the `%%bpfobject NAME` cell magic, which runs this module's `bpfobject`.

Compiler errors come back at the learner's line; what libbpf or the verifier said comes back
as a `LoadError` or `VerifierError`, never as a ctypes traceback.
"""
from __future__ import annotations

import contextlib
import ctypes as ct
import errno
import hashlib
import mmap
import os
import platform
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

from ..access import kernel, refusal, system
from ..access._libbpf import TestRunOpts, has, lib, messages
from ..core import atomic, maptypes
from ..core.guard import Guard, Guarded, Shared, held
from ..core.errors import (BpfkitError, Closed, CompileError, KernelError, LoadError, MapFull,
                           MapNotFound, NotFound, ProgramClosed, SetupError, UsageError,
                           did_you_mean)
from ..host import lifetime
from ..maps import Map, btf
from . import verifier
from .diagnostics import libbpf_load
from .diagnostics.clang import DIAGNOSTIC
from .diagnostics.libbpf_c import bcc_style, written_for
from .program import resolve

MAP_TYPE_STRUCT_OPS = maptypes.get("struct_ops").number
BPF_F_LINK = 1 << 13   # a struct_ops map registered through a link (Linux 6.4 and later)
INSTALL = ("install clang and libbpf's headers (Debian/Ubuntu: sudo apt-get install clang "
           "libbpf-dev bpftool), then run the cell again.")
NEEDED = ["bpf_object__open_file", "bpf_object__load", "bpf_map__attach_struct_ops"]


def struct_ops_attach_type() -> int | None:
    """The attach type of a struct_ops link in this kernel (`BPF_STRUCT_OPS` of its BTF), or None
    where it has none: such a kernel registers struct_ops only without a link."""
    return (btf.vmlinux_enum("bpf_attach_type") or {}).get("BPF_STRUCT_OPS")


# -- the toolchain --------------------------------------------------------------------------

def clang() -> str | None:
    """The distribution's clang: `clang`, else the newest `clang-NN` on the PATH."""
    found = shutil.which("clang")
    if found:
        return found
    versions = sorted((int(m.group(1)), p) for p in
                      {str(p) for d in os.environ.get("PATH", "/usr/bin").split(":")
                       for p in Path(d or ".").glob("clang-[0-9]*")}
                      if (m := re.search(r"clang-(\d+)$", p)))
    return versions[-1][1] if versions else None


def missing() -> str | None:
    """What this machine lacks to build and load libbpf-style programs, in words (None: nothing)."""
    lacking = []
    if clang() is None:
        lacking.append("clang")
    if not Path("/usr/include/bpf/bpf_helpers.h").is_file():
        lacking.append("libbpf's headers (bpf/bpf_helpers.h, in libbpf-dev)")
    if system.bpftool() is None:
        lacking.append("bpftool (to write vmlinux.h)")
    if not system.BTF_VMLINUX.is_file():
        lacking.append("the kernel's BTF (/sys/kernel/btf/vmlinux)")
    if not all(has(fn) for fn in NEEDED):
        lacking.append("a libbpf with bpf_object__open_file and struct_ops (libbpf1)")
    return ", ".join(lacking) or None


def require_toolchain() -> None:
    lacking = missing()
    if lacking:
        raise SetupError(f"This machine has no {lacking}, which programs beyond BCC need.", INSTALL)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "bpfkit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def vmlinux_h() -> Path:
    """The folder holding vmlinux.h for the running kernel (made by bpftool once, then reused)."""
    btf = system.BTF_VMLINUX
    tag = hashlib.sha256(f"{platform.release()}:{btf.stat().st_size}".encode()).hexdigest()[:12]
    folder = cache_dir() / f"vmlinux-{tag}"
    header = folder / "vmlinux.h"
    if not header.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([system.bpftool(), "btf", "dump", "file", str(btf), "format", "c"],
                              capture_output=True, text=True)
        if done.returncode:
            raise SetupError(f"bpftool could not write vmlinux.h: {done.stderr.strip()}",
                             "check that /sys/kernel/btf/vmlinux is readable (run as root).")
        tmp = header.with_suffix(f".{os.getpid()}")
        tmp.write_text(done.stdout)
        tmp.replace(header)
    return folder


# -- compiling ----------------------------------------------------------------------------

def compile_object(text: str, out: Path, *, where: str = "your C code", first_line: int = 1,
                   cflags=()) -> None:
    """clang -target bpf: `text` into the object file `out`. Errors come back at the learner's
    lines (line 1 of `text` is line `first_line` of `where`)."""
    require_toolchain()
    src = out.with_name(out.name[:-2] + ".c")
    src.write_text(text)
    # BPF_NO_KFUNC_PROTOTYPES: a newer bpftool (7.5, Debian 13) also writes every kfunc's
    # prototype into vmlinux.h, where Debian 12's writes none; a program declares the kfuncs it
    # calls itself, so they would clash (vmlinux.h comes first, as a precompiled header).
    flags = ["-g", "-O2", "-target", "bpf", "-mcpu=v3", f"-D__TARGET_ARCH_{_arch()}",
             "-DBPF_NO_KFUNC_PROTOTYPES"]
    argv = [clang(), *flags, "-I", str(vmlinux_h()), *_pch(flags), *cflags,
            "-c", str(src), "-o", str(out)]
    # A source compiled before (same text, flags, kernel and clang) is not compiled again.
    key = hashlib.sha256("\0".join([text, *argv[:-4], *cflags]).encode()).hexdigest()[:24]
    kept = cache_dir() / "objects" / f"{key}.o"
    if kept.is_file():
        shutil.copyfile(kept, out)
        return
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode == 0:
        kept.parent.mkdir(exist_ok=True)
        tmp = kept.with_suffix(f".{os.getpid()}")
        shutil.copyfile(out, tmp)
        tmp.replace(kept)
        return
    said = done.stderr
    if written_for(text) == "bcc":   # clang's errors about BCC's macros would say nothing
        raise bcc_style(text, where, first_line)
    errors, shown = [], []
    for line in said.splitlines():
        m = DIAGNOSTIC.match(line)
        if m and m.group(1) == str(src):
            n = int(m.group(2)) + first_line - 1
            line = f"line {n}: {m.group(4)}: {m.group(5)}"
            if m.group(4) in ("error", "fatal error"):
                errors.append(line)
        elif line.startswith(("PLEASE submit", "Stack dump")):
            break
        shown.append(line.replace(str(src), where).replace(f"{vmlinux_h()}/", ""))
    first = errors[0] if errors else (said.strip().splitlines() or ["clang failed"])[0]
    raise CompileError(f"clang could not compile {where}: {first}",
                       libbpf_load.compile_hint(first, text) or
                       "fix that line and run the cell again (clang's messages are above; "
                       "the first error is usually the one to fix).",
                       detail="\n".join(shown[:30]))


def _pch(flags: list[str]) -> list[str]:
    """vmlinux.h precompiled once (its 100,000+ lines are most of a compile's time): the flags
    that use it, or none where clang could not make it."""
    header = vmlinux_h() / "vmlinux.h"
    pch = header.with_name(f"vmlinux-{hashlib.sha256(' '.join(flags).encode()).hexdigest()[:8]}.pch")
    if not pch.is_file():
        tmp = pch.with_suffix(f".{os.getpid()}")
        done = subprocess.run([clang(), *flags, "-x", "c-header", str(header), "-o", str(tmp)],
                              capture_output=True)
        if done.returncode:
            tmp.unlink(missing_ok=True)
            return []
        tmp.replace(pch)
    return ["-include-pch", str(pch)]


def _arch() -> str:
    return {"x86_64": "x86", "aarch64": "arm64", "arm64": "arm64", "s390x": "s390",
            "ppc64le": "powerpc", "riscv64": "riscv"}.get(platform.machine(), "x86")


# -- the loaded object ---------------------------------------------------------------------

class UserRingBuffer:
    """User space's end of a `BPF_MAP_TYPE_USER_RINGBUF`: `send(record)` reserves room, copies
    the record (bytes or a ctypes object) in and submits it for a program to drain."""

    def __init__(self, owner: "BpfObject", name: str, fd: int):
        self.owner, self.name = owner, name
        # The ring's memory is its object's: a send holds the object, so a close from another
        # thread frees the ring only after the copy (freed under it, the process would crash).
        self._guard = Shared(owner._guard, self._closed_error)
        self._sending = threading.Lock()   # libbpf's producer side is for one thread at a time
        info = kernel.map_info_by_fd(fd)
        kind = maptypes.get(info["type"])
        if kind.name != "user_ringbuf":
            raise UsageError(f"{owner.name}'s map {name!r} is {kind.a}, not a user ring buffer, "
                             "so ring() cannot send records into it.",
                             f"ring() takes a map declared with BPF_MAP_TYPE_USER_RINGBUF; read or "
                             f"write {name!r} as a map: {owner.name}[{name!r}].")
        # libbpf puts an 8-byte header before each record, rounded up to 8 bytes in all: a
        # record larger than this never fits, however empty the ring is.
        self.largest = info["max_entries"] - RINGBUF_HEADER
        try:
            self._rb = lib.user_ring_buffer__new(fd, None)
        except OSError as e:
            raise LoadError(f"libbpf could not open the user ring buffer {name!r}: {e.strerror}.",
                            "is it a BPF_MAP_TYPE_USER_RINGBUF?", errno=e.errno) from None

    def send(self, record) -> None:
        """Send one record: its bytes, as the program's C struct lays them out (a ctypes
        Structure, bytes, or anything with the buffer protocol). A number is refused, not
        sent as that many zero bytes, which is what bytes(42) would make of it."""
        data = _record_bytes(record, self.name)
        with self._guard, self._sending:
            self._send(data)

    def _closed_error(self):
        return Closed(f"The user ring buffer {self.name!r} is closed (its object "
                      f"{self.owner.name!r} was closed or replaced).", "load the program again.")

    def _send(self, data: bytes) -> None:
        if self._rb is None:
            raise self._closed_error()
        if len(data) > self.largest:
            raise MapFull(f"A record of {len(data)} bytes can never fit in the user ring buffer "
                          f"{self.name!r}: it holds {self.largest + RINGBUF_HEADER} bytes, and each "
                          f"record takes 8 more for its header, so the largest record it takes is "
                          f"{self.largest} bytes.",
                          f"send records of at most {self.largest} bytes (split a large one), or "
                          "declare the ring with a larger max_entries (a power of 2 pages) in C.",
                          errno=errno.E2BIG)
        try:
            slot = lib.user_ring_buffer__reserve(self._rb, len(data))
        except OSError as e:
            raise MapFull(f"No room in the user ring buffer {self.name!r} for {len(data)} "
                          f"bytes now: {e.strerror}. It holds records the program has not "
                          "drained yet.",
                          "let the program drain it first (run it), or send fewer records.",
                          errno=e.errno) from None
        ct.memmove(slot, data, len(data))
        lib.user_ring_buffer__submit(self._rb, slot)

    def close(self) -> None:
        if self._rb is not None:
            lib.user_ring_buffer__free(self._rb)
            self._rb = None


RINGBUF_HEADER = 8


def _record_bytes(record, ring: str) -> bytes:
    if isinstance(record, (int, float, str)) or record is None:
        raise UsageError(f"A record for the user ring buffer {ring!r} is the bytes of a C struct, "
                         f"not {type(record).__name__} {record!r}"
                         + (f": bytes({record}) would send {record} zero bytes." if
                            isinstance(record, int) and not isinstance(record, bool) else "."),
                         "send a ctypes.Structure laid out like the program's struct (e.g. "
                         "Message(kind=1, value=42)), or its bytes: struct.pack('<II', 1, 42).")
    try:
        return memoryview(record).tobytes()
    except TypeError:
        raise UsageError(f"A record for the user ring buffer {ring!r} is the bytes of a C struct; "
                         f"{type(record).__name__} has none.",
                         "send a ctypes.Structure laid out like the program's struct, or bytes "
                         "(struct.pack).") from None


class LoadedProgram(NamedTuple):
    name: str
    fd: int
    type: str


class BpfObject(Guarded):
    """A loaded libbpf object: its programs, maps and links. `obj["map"]` is a bpfkit Map."""
    place = ("your C code", 1)   # (where its source is, the number of its first line): for errors

    def __init__(self, name: str, source: str, types: dict | None = None):
        self.name, self.source = name, source
        # Its maps, rings and programs are used inside this guard: a close from another thread
        # frees the object once no call on it or them is in flight.
        self._guard = Guard(self._release, self._closed_error)
        self.types = dict(types or {})  # {map: (key, value)}, read at a map's first use
        self._obj = None
        self._links: list = []
        self._link_fds: list[int] = []   # struct_ops links the kit made where libbpf makes none
        self._claims: list[str] = []     # "map id:name" of the struct_ops registered (lifetime)
        self._rings: dict[str, UserRingBuffer] = {}
        self._maps: dict[str, Map] = {}
        self.struct_ops: list[str] = []
        self.unattached: list[str] = []   # programs loaded whose section names no target

    # what it holds
    def _each(self, next_fn):
        item = None
        while True:
            item = next_fn(self._obj, item)
            if not item:
                return
            yield item

    @held
    def map_names(self) -> list[str]:
        return [lib.bpf_map__name(m).decode() for m in self._each(lib.bpf_object__next_map)]

    @held
    def program_names(self) -> list[str]:
        return [lib.bpf_program__name(p).decode() for p in self._each(lib.bpf_object__next_program)]

    def _find_map(self, name: str):
        self._check_open()
        for m in self._each(lib.bpf_object__next_map):
            if lib.bpf_map__name(m).decode() == name:
                return m
        names = self.map_names()
        hint = did_you_mean(name, names)
        raise MapNotFound(f"{self.name} has no map named {name!r}. Its maps are: "
                          f"{', '.join(names) or 'none'}.",
                          (hint + " " if hint else "") + 'Map names are the C names of the '
                          'variables declared in SEC(".maps").')

    @held
    def __getitem__(self, name: str) -> Map:
        m = self._find_map(name)
        if name not in self._maps:
            key, value = self.types.get(name, (None, None))
            from ..maps import convert
            key_type = convert.ctype(key, "key") if key else None
            value_type = convert.ctype(value, "value") if value else None
            info = kernel.map_info_by_fd(lib.bpf_map__fd(m))
            convert.check_declared(name, key_type, value_type, info["key_size"],
                                   info["value_size"], f"types={{{name!r}: ...}}")
            self._maps[name] = Map(lib.bpf_map__fd(m), name=name, key_type=key_type,
                                   value_type=value_type, owner=self)
        return self._maps[name]

    @held
    def ring(self, name: str) -> UserRingBuffer:
        """The user ring buffer `name`, to `send()` records into."""
        m = self._find_map(name)
        if name not in self._rings:
            self._rings[name] = UserRingBuffer(self, name, lib.bpf_map__fd(m))
        return self._rings[name]

    @held
    def arena(self, name: str) -> mmap.mmap:
        """The arena map `name`, mapped into this process (its pages, shared with the program)."""
        m = self._find_map(name)
        kind = maptypes.get(lib.bpf_map__type(m))
        if kind.name != "arena":
            raise UsageError(f"{self.name}'s map {name!r} is {kind.a}, not an arena, so arena() "
                             "cannot map its pages.",
                             f"arena() takes a map declared with BPF_MAP_TYPE_ARENA; read {name!r} "
                             f"as a map: {self.name}[{name!r}].frame()"
                             + (f", or {self.name}[{name!r}].view() for an array made with "
                                "BPF_F_MMAPABLE." if kind.name == "array" else "."))
        info_pages = self[name].max_entries
        try:
            return mmap.mmap(lib.bpf_map__fd(m), info_pages * mmap.PAGESIZE)
        except OSError as e:
            raise KernelError(f"The kernel refused to map the arena {name!r} ({info_pages} pages) "
                              f"into this process: {e.strerror}.",
                              "an arena maps once per process at the address the program expects: "
                              "use the mapping arena() gave before, or load the object again.",
                              errno=e.errno) from None

    @held
    def program_fd(self, name: str) -> int:
        self._check_open()
        for p in self._each(lib.bpf_object__next_program):
            if lib.bpf_program__name(p).decode() == name:
                return lib.bpf_program__fd(p)
        raise NotFound(f"{self.name} has no program {name!r}.",
                       f"its programs are: {', '.join(self.program_names())}.")

    @held
    def load_func(self, name: str, prog_type: str | None = None) -> "LoadedProgram":
        """The program `name`, loaded with the object, as a BCC Program's `load_func` gives one
        (an object with its `.fd`): so `bpfkit.observe.testrun.run(obj, name)` and a program
        array's `handlers[0] = obj.load_func("count_a")` take either kind. libbpf chose its type
        from the section; a different `prog_type` is refused rather than silently ignored."""
        fd = self.program_fd(name)
        kind = kernel.prog_info_by_fd(fd)["type"]
        wanted = (kernel.PROG_TYPES[prog_type] if isinstance(prog_type, int) and
                  0 <= prog_type < len(kernel.PROG_TYPES) else
                  str(prog_type).lower().removeprefix("bpf_prog_type_"))
        if prog_type is not None and wanted != kind:
            raise UsageError(f"{name!r} is a {kind} program: its section (SEC) chose that type.",
                             f"change its SEC(...) to load it as {prog_type}, or pass "
                             f"prog_type={kind!r}.")
        return LoadedProgram(name, fd, kind)

    @held
    def run(self, program: str) -> int:
        """Run a SEC("syscall") program once (BPF_PROG_TEST_RUN); its return value."""
        opts = TestRunOpts(sz=ct.sizeof(TestRunOpts))
        try:
            lib.bpf_prog_test_run_opts(self.program_fd(program), ct.byref(opts))
        except OSError as e:
            raise KernelError(f"The kernel could not run {program!r}: {e.strerror}.",
                              'only SEC("syscall") programs run on demand like this.',
                              errno=e.errno) from None
        return ct.c_int32(opts.retval).value


    def _closed_error(self):
        return ProgramClosed(f"{self.name} is closed (or was replaced when its cell ran again).",
                             "load it again, or use the new object.")


    def __repr__(self) -> str:
        if self.closed:
            return f"<bpfkit.BpfObject {self.name!r} (closed)>"
        loaded_only = f" unattached={self.unattached}" if self.unattached else ""
        return (f"<bpfkit.BpfObject {self.name!r} programs={self.program_names()} "
                f"maps={self.map_names()} struct_ops={self.struct_ops}{loaded_only}>")

    # loading and closing
    def _open_and_load(self, path: Path) -> None:
        err = 0
        with messages() as said:
            try:
                self._obj = lib.bpf_object__open_file(str(path).encode(), None)
                self._pretend()
                self._struct_ops_as_links()
                lib.bpf_object__load(self._obj)
            except OSError as e:
                err = e.errno
        if err:
            # open failed: no object to ask for its maps (libbpf's next_map(NULL) would crash)
            raise _load_error(self.name, err, "".join(said), self._map_types() if self._obj else {},
                              self.source, *self.place)

    def _struct_ops_as_links(self) -> None:
        """Register struct_ops through a link (BPF_F_LINK) wherever the kernel can: a link goes
        with the last fd to it, so a congestion control never outlives the process that
        registered it, however that process ends. Without it (libbpf 1.1 on its own, kernels
        before link struct_ops) a registration stays until someone unregisters it."""
        if struct_ops_attach_type() is None:
            return
        for m in self._each(lib.bpf_object__next_map):
            if lib.bpf_map__type(m) == MAP_TYPE_STRUCT_OPS:
                with contextlib.suppress(OSError):   # registered without a link, as before 6.4
                    lib.bpf_map__set_map_flags(m, lib.bpf_map__map_flags(m) | BPF_F_LINK)

    def _map_types(self) -> dict[str, str]:
        return {lib.bpf_map__name(m).decode(): maptypes.name_of(lib.bpf_map__type(m))
                for m in self._each(lib.bpf_object__next_map)}

    def _pretend(self) -> None:
        """The test switch (refusal.PRETEND): a map or program type it names is refused here
        as the kernel would refuse it, before libbpf asks the kernel."""
        for kind in set(self._map_types().values()):
            if err := refusal.used("map", kind):
                raise refusal.explain(err, f"{kind} maps")
        for p in self._each(lib.bpf_object__next_program):
            number = lib.bpf_program__type(p)
            kind = kernel.PROG_TYPES[number] if 0 <= number < len(kernel.PROG_TYPES) else ""
            if kind and (err := refusal.used("program", kind)):
                raise refusal.explain(err, f"{kind} programs")

    def _attach(self) -> None:
        for p in self._each(lib.bpf_object__next_program):
            section = lib.bpf_program__section_name(p).decode()
            if section.startswith(("struct_ops", "syscall", "?")):
                continue
            if "/" not in section:
                # SEC("xdp"), SEC("sockops"), SEC("sk_msg"), a bare SEC("tp"): a type and no
                # target, so nothing to attach to by name (libbpf's skeletons skip them too).
                # Loaded: user space attaches it, or puts it in a program array.
                self.unattached.append(lib.bpf_program__name(p).decode())
                continue
            try:
                with messages() as said:
                    link = lib.bpf_program__attach(p)
            except OSError as e:
                name = lib.bpf_program__name(p).decode()
                raise libbpf_load.attach_refused(name, section, e.errno, "".join(said), self.source,
                                                 *self.place) from None
            self._links.append(link)
        for m in self._each(lib.bpf_object__next_map):
            if lib.bpf_map__type(m) != MAP_TYPE_STRUCT_OPS:
                continue
            name = lib.bpf_map__name(m).decode()
            claim = f"{kernel.map_info_by_fd(lib.bpf_map__fd(m))['id']}:{name}"
            lifetime.claim("struct_ops", claim)   # before: a kill now leaves a record to undo
            self._claims.append(claim)
            try:
                with messages() as said:
                    link = lib.bpf_map__attach_struct_ops(m)
            except OSError as e:
                raise _register_refused(name, e.errno, "".join(said), self.source, *self.place) from None
            self._links.append(link)
            if lib.bpf_map__map_flags(m) & BPF_F_LINK and lib.bpf_link__fd(link) == lib.bpf_map__fd(m):
                # libbpf 1.1 only stored the ops (a link map waits, not registered): the link is ours
                try:
                    fd = lib.bpf_link_create(lib.bpf_map__fd(m), 0, struct_ops_attach_type(), None)
                except OSError as e:
                    raise _register_refused(name, e.errno, "", self.source, *self.place) from None
                self._link_fds.append(fd)
            self.struct_ops.append(name)
            lifetime.made("struct_ops")

    def close(self) -> None:
        with atomic.step():
            if self._guard.close():
                lifetime.discard("program", self.name, self)

    @atomic.whole
    def _release(self) -> None:
        """The release itself, in whichever thread leaves the object last."""
        for ring in self._rings.values():
            ring.close()
        while self._link_fds:   # unregisters the struct_ops
            os.close(self._link_fds.pop())
        for link in reversed(self._links):
            with contextlib.suppress(OSError):   # freed whatever it answers
                lib.bpf_link__destroy(link)
        if self._claims:
            lifetime.release("struct_ops", *self._claims)
            self._claims.clear()
        self._links.clear()
        if self._obj:
            lib.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _register_refused(name: str, err: int, said: str = "", source: str = "",
                      where: str = "your C code", first_line: int = 1) -> LoadError:
    return libbpf_load.register_refused(name, err, said, source, where, first_line)


def _libbpf_lines(said: str) -> str:
    return "\n".join(libbpf_load.libbpf_lines(said))[-3000:]


def _load_error(name: str, err: int, said: str, map_types: dict[str, str], source: str = "",
                where: str = "your C code", first_line: int = 1) -> BpfkitError:
    """What libbpf said while opening and loading `name`, as the learner's mistake: the first
    line is the reason, at the learner's line where it has one (never libbpf's last words, which
    name the kit's temporary object file)."""
    log = re.search(r"prog '(\w+)': -- BEGIN PROG LOAD LOG --\n(.*?)-- END PROG LOAD LOG --", said, re.S)
    if log:
        program, text = log.groups()
        section = libbpf_load.section_of(source, program)
        if not re.search(r"^\d+: ", text, re.M) and section.startswith("struct_ops"):
            return libbpf_load.unused_struct_ops(program, section, source, where, first_line,
                                                 _libbpf_lines(said), err)
        license = re.search(r'SEC\(\s*"license"\s*\)\s*=\s*"([^"]*)"', source)
        return verifier.load_error(text, program, source, where, err, first_line,
                                   license=license.group(1) if license else "", style="libbpf")
    known = libbpf_load.load_refused(name, err, said, source, where, first_line)
    if known is not None:   # libbpf's own reading of the source: before any kernel's answer
        return known
    # A map the kernel would not make, or a program it would not take, before any verifier
    # ran: the kernel's policy or a feature it lacks, named as everywhere else in the kit; a
    # declaration the kernel cannot make a map of, named with what it lacks.
    made = re.search(r"map '([\w.]+)': failed to create: .*?\((-?\d+)\)", said)
    if made and abs(int(made.group(2))) not in (errno.EINVAL, errno.E2BIG, errno.ENOMEM):
        kind = map_types.get(made.group(1), "such")
        return refusal.explain(abs(int(made.group(2))), f"{kind} maps")
    if made:
        return libbpf_load.map_declaration(made.group(1), map_types.get(made.group(1), "such"),
                                           abs(int(made.group(2))), source, where, first_line,
                                           _libbpf_lines(said))
    if err in (errno.EPERM, errno.EOPNOTSUPP, refusal.ENOTSUPP):
        return refusal.explain(err, f"loading {name}")
    reason = libbpf_load.first_reason(said) or os.strerror(err)
    older = re.search(r"unknown|unrecognized|not supported", reason, re.I) and "map" in reason
    return LoadError(f"libbpf could not load {name}: {reason}",
                     "an unknown map type means this libbpf is older than the feature: "
                     "`python -m bpfkit doctor` names its version." if older else
                     "libbpf's lines above, first to last, say what it tried; the first names "
                     "the problem.",
                     detail=_libbpf_lines(said), errno=err)


def load(source: str, *, name: str | None = None, types: dict | None = None,
         where: str | None = None, first_line: int = 1, cflags=()) -> BpfObject:
    """Compile `source` (a name in bpf/ without .bpf.c, a path, or C text) with clang, load it
    with libbpf, attach its programs and register its struct_ops. `types={"map": (key, value)}`
    gives the C types of a map's key and value (names or ctypes types) for its frames. The
    object of the same `name` loaded before is closed once this one has compiled and loaded,
    before it attaches (so a congestion control can keep its name across reloads)."""
    lifetime.free_dead()  # what a killed notebook left (a struct_ops of the same name...) goes first
    text, path, _ = resolve(source, ".bpf.c")
    name = name or (path.name.split(".")[0] if path else "prog")
    obj = BpfObject(name, text, types)
    obj.place = (where or name, first_line)
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        out = Path(tmp) / f"{name}.bpf.o"
        compile_object(text, out, where=where or f"{name}", first_line=first_line, cflags=cflags)
        with atomic.step():  # Stop between load and registration would leak the object
            try:
                obj._open_and_load(out)
                # The earlier object of this name goes before this one attaches: a struct_ops
                # name (a congestion control's) can be registered only once at a time.
                previous = lifetime.get("program", name)
                if previous is not None and previous is not obj:
                    previous.close()
                obj._attach()
            except BaseException:
                obj.close()
                raise
            lifetime.add("program", name, obj)
    return obj


# -- the %%bpfobject cell magic --------------------------------------------------------------

def bpfobject(line: str, cell: str):
    """%%bpfobject NAME [types=VAR] [--try]: compile the cell (libbpf-style C) with clang, load it with
    libbpf and bind the object to NAME. `types=VAR` names a notebook dict {map: (key, value)}
    of C types for the maps' frames; with --try, a refusal is printed and NAME is None
    (for features this machine may lack). Without clang or libbpf-dev it says what to install, and
    NAME is None."""
    from IPython import get_ipython
    ip = get_ipython()
    args = line.split()
    if not args or not args[0].isidentifier():
        raise UsageError("%%bpfobject needs a name, a Python identifier.",
                         "write %%bpfobject l19_cc on the cell's first line.")
    name, types = args[0], None
    trying = "--try" in args[1:]
    for arg in args[1:]:
        if arg.startswith("types="):
            var = arg[len("types="):]
            if var not in ip.user_ns:
                raise NotFound(f"%%bpfobject {name} {arg}: there is no variable {var!r}.",
                               f"define it in a cell above: {var} = {{\"map\": (\"u32\", \"u64\")}}.")
            types = ip.user_ns[var]
    lacking = missing()
    if lacking:
        print(f"Skipped: this machine has no {lacking}. To run this part, {INSTALL}")
        ip.user_ns[name] = None
        return None
    try:
        ip.user_ns[name] = load(cell, name=name, types=types,
                                where=f"the %%bpfobject {name} cell", first_line=2)
    except BpfkitError as e:
        if not trying:
            raise
        ip.user_ns[name] = None   # --try: say why, and go on (the lesson explains)
        print(f"Not loaded: {e.what}\n\n{e.detail}".rstrip())
    return None

