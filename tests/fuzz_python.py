"""A fuzzer for the Python side, next to the C mutation fuzzer (tests/mutants.py).

Random sequences of what a learner does from Python: Map operations on every map type this
kernel allows, `create_map` with random and wrong arguments, pins and `open_pinned`, event
readers, libbpf objects and their user ring buffers, sockets into socket maps, wrong types and
sizes of keys and values, closes from another thread in the middle of an operation, a thread that
keeps writing to a map while it is closed and new maps are made, and Stop (KeyboardInterrupt) at
random moments. Four kinds of fault are found:

* crash: the worker process died by a signal (or hung);
* raw: an exception reached the caller that is not a BpfkitError with a hint, or whose text is a
  bare errno or strerror;
* leak: after `bpfkit.close_all()` and exit, a kernel object the worker held, a pin it made, its
  /run/bpfkit record, or an fd opened during the run is still there;
* wrong: a map the fuzzer holds changed although no operation was aimed at it (a write that went
  through a reused fd number).

Operations are data (JSON), made from (seed, index) only, so a finding is reproduced by its seed
and minimised to the shortest sequence that still shows it:

    python -m tests.fuzz_python --seed 1 --ops 200 --workers 4
    python tests/fuzz_python.py replay < finding.json

Each sequence runs in its own worker process (`python tests/fuzz_python.py worker`), which
writes one JSON line per step on a private copy of stdout, so a worker killed by a signal still
says which step it was in.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PIN_ROOT = Path("/sys/fs/bpf/bpfkit-fuzz")
OWNERS = Path("/run/bpfkit")
SLOTS = 4            # maps a sequence holds at once, by slot number
TAG_KEY = 7          # every checkable map carries its signature at this key
WRITER_KEY = 5       # where the writer thread writes its own mark
WRITER_MARK = 0x5757_5757
LIBBPF_OBJECTS = ["l19_uring", "counter"]   # bpf/**/<name>.bpf.c: one user ring buffer, one twin
WORKER_MEMORY = 4 << 30   # bytes of address space a worker may map
STEP_TIMEOUT = 30.0
OBJ_MAPS = ["inbox", "totals", "counter_table", "nope"]   # the objects' maps, and one that is not  # seconds a worker may spend in one step before it counts as hung

# ---- the generator (pure: no bpfkit, no kernel) --------------------------------------------------

MAP_OPS = ["get", "set", "del", "update", "frame", "keys", "items", "push", "pop", "peek", "add",
           "in", "clear", "update_batch", "lookup_batch", "raw", "len", "values", "pin", "unpin",
           "close", "open_pinned", "reader"]
# how often each kind of step is drawn
WEIGHTS = {"make": 10, "map": 50, "create_wrong": 6, "close_thread": 6, "writer_start": 3,
           "writer_stop": 2, "writer_race": 5, "stop": 5, "renew": 3, "obj_load": 1, "obj_op": 4}
CHECKABLE = ["hash", "array", "lru_hash"]   # u32 -> u64 maps whose whole contents are compared


def _value(rng: random.Random) -> dict:
    """A key or value as JSON: right ones mostly, wrong types and sizes often."""
    kind = rng.choice(["int", "int", "int", "int", "neg", "huge", "float", "str", "bytes", "none",
                       "list", "tuple", "dict", "bool", "socket", "closed_socket", "fd_num", "nan"])
    if kind == "int":
        return {"k": "int", "v": rng.choice([0, 1, 2, 3, TAG_KEY, WRITER_KEY, rng.randrange(64),
                                              rng.randrange(2 ** 32)])}
    if kind == "neg":
        return {"k": "int", "v": -rng.randrange(1, 2 ** 40)}
    if kind == "huge":
        return {"k": "int", "v": rng.choice([2 ** 32, 2 ** 64, 2 ** 64 + 1, 2 ** 200])}
    if kind == "bytes":
        return {"k": "bytes", "n": rng.choice([0, 1, 4, 7, 8, 9, 16, 4096])}
    if kind in ("list", "tuple"):
        return {"k": kind, "items": [rng.randrange(2 ** 16) for _ in range(rng.choice([0, 1, 2, 3, 64]))]}
    return {"k": kind, "v": rng.choice(["abc", "", "é" * 5, "x" * 300]) if kind == "str" else None}


def _map_step(rng: random.Random) -> dict:
    op = rng.choice(MAP_OPS)
    step = {"do": "map", "op": op, "slot": rng.randrange(SLOTS)}
    if op in ("get", "set", "del", "update", "in", "raw", "push", "add"):
        step["key"] = _value(rng)
        step["value"] = _value(rng)
    if op in ("update", "push"):
        step["flags"] = rng.choice([0, 1, 2, 4, 3, -1, 2 ** 40]) if op == "update" else rng.random() < 0.3
    if op == "update_batch":
        n = rng.choice([0, 1, 2, 5])
        step["keys"] = [_value(rng) for _ in range(n + rng.choice([0, 0, 1]))]
        step["values"] = [_value(rng) for _ in range(n)]
        step["flags"] = rng.choice([0, 0, 1, 2, 7])
    if op == "lookup_batch":
        step["count"] = rng.choice([0, 1, 64, -1, 2 ** 33])
        step["cursor"] = rng.choice([None, None, {"k": "bytes", "n": 4}, {"k": "bytes", "n": 3}])
    if op == "frame":
        step["columns"] = rng.choice([None, None, {"key": "k", "value": "v"}, ["a"], "x", 7])
    if op in ("pin", "open_pinned"):
        step["pin"] = rng.choice(["p0", "p1", "p1", "missing", "bad", "outside"])
    return step


def sequence(seed: int, count: int, types: list[str]) -> list[dict]:
    """`count` steps for `seed`, over the map types `types` (those this kernel allows)."""
    rng = random.Random(seed)
    kinds, weights = zip(*WEIGHTS.items())
    steps = [{"do": "make", "slot": slot, "type": rng.choice(CHECKABLE + types)} for slot in range(min(SLOTS, count))]
    while len(steps) < count:
        kind = rng.choices(kinds, weights)[0]
        if kind == "make":
            typ = rng.choice(CHECKABLE) if rng.random() < 0.5 else rng.choice(types)
            steps.append({"do": "make", "slot": rng.randrange(SLOTS), "type": typ})
        elif kind == "map":
            steps.append(_map_step(rng))
        elif kind == "create_wrong":
            args = {"type": rng.choice(types + ["hsah", "", 7, None, "ARRAY"])}
            for name, choices in (("key", ["u32", "u64", "char[3]", "char[0]", "u8[4096]", "float", 4, "struct x",
                                           "u32 u32", None]),
                                  ("value", ["u64", "char[16]", "u8[70000]", "double", "void", 0, None, ("u32", "u16")]),
                                  ("max_entries", [1, 8, 0, -1, 2 ** 32, 2 ** 64, None, "8", 1.5]),
                                  ("flags", [0, 1, 2, 4, 8, 64, 1024, 2 ** 31, -1, None]),
                                  ("name", ["fz_ok", "fz_" + "x" * 20, "fz bad", "", None, "fz_é"]),
                                  ("extra", [None, None, {"hashes": 3}, {"hashes": 99}, {"inner": 1}, {"bogus": 1},
                                             {"map_extra": -1}])):
                if rng.random() < 0.6:
                    args[name] = rng.choice(choices)
            steps.append({"do": "create_wrong", "args": args})
        elif kind == "close_thread":
            inner = _map_step(rng)
            steps.append({"do": "close_thread", "slot": inner["slot"], "delay": rng.choice([0, 0.0002, 0.001, 0.003]),
                          "during": inner})
        elif kind == "writer_start":
            steps.append({"do": "writer_start", "slot": rng.randrange(SLOTS)})
        elif kind == "writer_race":
            steps.append({"do": "writer_race", "slot": rng.randrange(SLOTS), "delay": rng.choice([0, 0.0005, 0.002]),
                          "new": rng.choice([1, 2, 3])})
        elif kind == "writer_stop":
            steps.append({"do": "writer_stop"})
        elif kind == "stop":
            inner = rng.choice([_map_step(rng), {"do": "make", "slot": rng.randrange(SLOTS), "type": rng.choice(types)},
                                {"do": "obj_load", "name": rng.choice(LIBBPF_OBJECTS)}])
            steps.append({"do": "stop", "delay": rng.choice([0, 0.0001, 0.0005, 0.002, 0.01]), "during": inner})
        elif kind == "renew":
            steps.append({"do": "renew"})
        elif kind == "obj_load":
            steps.append({"do": "obj_load", "name": rng.choice(LIBBPF_OBJECTS)})
        else:
            steps.append({"do": "obj_op", "op": rng.choice(["send", "send", "send_wrong", "map", "close",
                                                            "close_during_send", "run", "arena", "names"]),
                          "slot": rng.randrange(SLOTS), "size": rng.choice([8, 0, 3, 4096, 8192])})
    return steps


# ---- the worker (bpfkit, the kernel) ---------------------------------------------------------------

_BARE = re.compile(r"^\s*(\[Errno \d+\][^\n]*|-?\d+|Errno \d+|[A-Z][a-z ]+ \(os error \d+\))\s*$")


def judge(exc: BaseException) -> str | None:
    """Why `exc` is not an explained refusal (None: it is one)."""
    import bpfkit
    if isinstance(exc, KeyboardInterrupt):
        return None
    if not isinstance(exc, bpfkit.BpfkitError):
        return f"{type(exc).__module__}.{type(exc).__name__}"
    if not (exc.hint or "").strip():
        return f"{type(exc).__name__} without a hint"
    if not exc.what.strip() or _BARE.match(exc.what) or exc.what.strip() in _STRERRORS:
        return f"{type(exc).__name__} says only an errno"
    return None


def _own_fault(exc: BaseException) -> bool:
    """Raised in this file's own code, not in the kit (a misspelt step or method, a lost name)?"""
    import traceback
    frames = traceback.extract_tb(exc.__traceback__)
    return (isinstance(exc, (AttributeError, NameError, KeyError, AssertionError)) and bool(frames)
            and Path(frames[-1].filename).resolve() == Path(__file__).resolve())


_STRERRORS = {os.strerror(n) + end for n in range(1, 134) for end in ("", ".")}


class Worker:
    """Runs one sequence, step by step, and tells its driver what each step did."""

    def __init__(self, out, seed: int):
        import bpfkit
        from bpfkit.access import kernel
        from bpfkit.host import lifetime
        self.bpfkit, self.kernel, self.lifetime = bpfkit, kernel, lifetime
        self.out, self.seed = out, seed
        self.rng = random.Random(seed * 7919 + 1)
        self.maps: dict[int, object] = {}          # slot -> Map
        self.objs: dict[int, object] = {}          # slot -> BpfObject
        self.shadow: dict[int, dict] = {}          # map id -> its contents as last seen
        self.checkable: set[int] = set()           # ids of the maps whose contents are compared
        self.in_stop = False                       # inside a step that Stop may interrupt
        self.names: dict[int, str] = {}            # map id -> its name, for the report
        self.witness = None
        self.writer = None
        self.raw_in_threads: list[str] = []
        self.seen = {"programs": set(), "maps": set(), "links": set()}
        self.pins = PIN_ROOT / str(os.getpid())
        self.count = 0
        self.sockets: list = []

    # -- what the sequence's values become
    def make_value(self, v: dict):
        import socket
        k = v["k"]
        if k == "int":
            return v["v"]
        if k == "bytes":
            return bytes(v["n"])
        if k == "list":
            return list(v["items"])
        if k == "tuple":
            return tuple(v["items"])
        if k == "float":
            return 1.5
        if k == "nan":
            return float("nan")
        if k == "str":
            return v["v"]
        if k == "none":
            return None
        if k == "dict":
            return {"a": 1}
        if k == "bool":
            return True
        if k in ("socket", "closed_socket", "fd_num"):
            s = socket.socket(socket.AF_INET, self.rng.choice([socket.SOCK_STREAM, socket.SOCK_DGRAM]))
            self.sockets.append(s)
            if k == "closed_socket":
                s.close()
            return s.fileno() if k == "fd_num" else s
        raise AssertionError(k)

    def pin_path(self, which: str) -> str:
        return {"p0": str(self.pins / "fz_p0"), "p1": str(self.pins / "fz_p1"),
                "missing": str(self.pins / "fz_missing"), "bad": str(self.pins / "no" / "dir" / "fz_x"),
                "outside": "/tmp/fz_not_bpffs"}[which]

    # -- signatures and the wrong-object check
    def _new_map(self, type_: str, name: str):
        checkable = type_ in CHECKABLE
        m = self.bpfkit.create_map(type_, name=name, **({"key": "u32", "value": "u64", "max_entries": 8}
                                                         if checkable else {}))
        self.names[m.id] = name
        if checkable:
            self.checkable.add(m.id)
            self.count += 1
            m[TAG_KEY] = (self.seed << 20) | self.count   # the map's signature
            # Under Stop its contents are first read after the step (check_others): an interrupt
            # inside the fuzzer's own reading would leak the fd it reads through.
            if not self.in_stop:
                self.shadow[m.id] = self.contents(m.id)
        return m

    def contents(self, map_id: int) -> dict | None:
        """A map's contents read through an fd of its own (not the Map's), by id."""
        import ctypes as ct
        from bpfkit.access._libbpf import lib
        try:
            fd = lib.bpf_map_get_fd_by_id(map_id)
        except OSError:
            return None
        try:
            out, key, nxt, val = {}, ct.c_uint32(), ct.c_uint32(), ct.c_uint64()
            first = True
            while True:
                try:
                    lib.bpf_map_get_next_key(fd, None if first else ct.byref(key), ct.byref(nxt))
                except OSError:
                    return out
                first = False
                key.value = nxt.value
                try:
                    lib.bpf_map_lookup_elem(fd, ct.byref(key), ct.byref(val))
                except OSError:
                    continue
                out[key.value] = val.value
        finally:
            os.close(fd)

    def held_ids(self) -> set[int]:
        ids = {m.id for m in self.maps.values() if not m.closed}
        if self.witness is not None and not self.witness.closed:
            ids.add(self.witness.id)
        return ids

    def check_others(self, touched: set[int]) -> list[str]:
        """Maps changed though no step aimed at them: their ids and what changed."""
        wrong = []
        writer_id = self.writer.target_id if self.writer is not None else None
        for map_id in self.held_ids():
            if map_id not in self.checkable:
                continue
            now = self.contents(map_id)
            if now is None:
                continue
            if map_id in touched or map_id == writer_id or map_id not in self.shadow:
                self.shadow[map_id] = now
                continue
            if now != self.shadow[map_id]:
                before = self.shadow[map_id]
                diff = {k: (before.get(k), now.get(k)) for k in set(before) | set(now) if before.get(k) != now.get(k)}
                wrong.append(f"map {self.names.get(map_id)!r} (id {map_id}) changed: {diff}")
                self.shadow[map_id] = now
        return wrong

    # -- steps
    def slot_map(self, slot: int):
        return self.maps.get(slot) or self.witness

    def do(self, step: dict, touched: set[int]):
        do = step["do"]
        if do == "make":
            old = self.maps.get(step["slot"])
            self.maps[step["slot"]] = m = self._new_map(step["type"], f"fz_{step['slot']}_{step['type'][:8]}")
            touched.add(m.id)
            if old is not None:
                old.close()
        elif do == "map":
            m = self.slot_map(step["slot"])
            if m is None:
                return
            if not m.closed:
                touched.add(m.id)
            self.map_op(m, step)
        elif do == "create_wrong":
            a = dict(step["args"])
            extra = a.pop("extra", None) or {}
            if "inner" in extra:
                extra = {"inner": self.slot_map(0) or 1}
            m = self.bpfkit.create_map(a.pop("type"), **a, **extra)
            m.close()
        elif do == "close_thread":
            self.close_during(step)
        elif do == "writer_start":
            m = self.maps.get(step["slot"])
            if m is not None and self.writer is None and not m.closed and m.id in self.checkable:
                self.writer = Writer(m, self)
        elif do == "writer_stop":
            if self.writer is not None:
                touched.add(self.writer.target_id)   # its own writes are expected there
            self.stop_writer()
        elif do == "writer_race":
            self.writer_race(step, touched)
        elif do == "stop":
            self.stop_during(step, touched)
        elif do == "renew":
            old = self.witness
            self.witness = self._new_map("hash", "fz_witness")
            if old is not None:
                old.close()
        elif do == "obj_load":
            from bpfkit.loader import bpfobject
            slot = len(self.objs) % SLOTS
            old = self.objs.get(slot)
            self.objs[slot] = bpfobject.load(step["name"], name=f"fz_{step['name']}")
            if old is not None:
                old.close()
        elif do == "obj_op":
            self.obj_op(step)
        elif do == "selftest":
            self.selftest(step["fault"])
        else:
            raise AssertionError(f"no such step: {do}")

    def selftest(self, fault: str):
        """A fault of each kind made on purpose, for the fuzzer's own tests: each must be found."""
        import ctypes as ct
        from bpfkit.access._libbpf import lib
        if fault == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif fault == "raw":
            raise OSError(22, os.strerror(22))
        elif fault == "leak":   # a pin the kit does not know of, and an fd nobody closes
            self.pins.mkdir(parents=True, exist_ok=True)
            lib.bpf_obj_pin(self.witness.fd, str(self.pins / "fz_selftest").encode())
            self.leaked_fd = os.open(os.devnull, os.O_RDONLY)
        elif fault == "wrong":  # a write into the witness that no step was aimed at
            fd = lib.bpf_map_get_fd_by_id(self.witness.id)
            key, value = ct.c_uint32(WRITER_KEY), ct.c_uint64(WRITER_MARK)
            lib.bpf_map_update_elem(fd, ct.byref(key), ct.byref(value), 0)
            os.close(fd)

    def map_op(self, m, step: dict):
        op = step["op"]
        val = lambda name: self.make_value(step[name])  # noqa: E731
        if op == "get":
            m.get(val("key"))
        elif op == "set":
            m[val("key")] = val("value")
        elif op == "del":
            del m[val("key")]
        elif op == "update":
            m.update(val("key"), val("value"), flags=step["flags"])
        elif op == "frame":
            m.frame(step["columns"]) if step["columns"] is not None else m.frame()
        elif op == "keys":
            m.keys()
        elif op == "items":
            m.items()
        elif op == "values":
            m.values()
        elif op == "len":
            len(m)
        elif op == "push":
            m.push(val("value"), overwrite=step["flags"])
        elif op == "pop":
            m.pop(None)
        elif op == "peek":
            m.peek()
        elif op == "add":
            m.add(val("value"))
        elif op == "in":
            val("key") in m  # noqa: B015
        elif op == "clear":
            m.clear()
        elif op == "update_batch":
            m.update_batch([self.make_value(k) for k in step["keys"]],
                           [self.make_value(v) for v in step["values"]], flags=step["flags"])
        elif op == "lookup_batch":
            cursor = self.make_value(step["cursor"]) if step["cursor"] else None
            m.lookup_batch(cursor, step["count"])
        elif op == "raw":
            m.raw(val("key"))
        elif op == "pin":
            self.pins.mkdir(parents=True, exist_ok=True)
            m.pin(self.pin_path(step["pin"]))
        elif op == "unpin":
            m.unpin()
        elif op == "close":
            m.close()
        elif op == "open_pinned":
            opened = self.bpfkit.open_pinned(self.pin_path(step["pin"]))
            old = self.maps.get(step["slot"])
            self.maps[step["slot"]] = opened
            self.names[opened.id] = f"opened {step['pin']}"
            if old is not None and old is not opened:
                old.close()
        elif op == "reader":
            from bpfkit.observe import events
            (events.ring if self.rng.random() < 0.5 else events.perf)(m)
        else:
            raise AssertionError(f"no such map operation: {op}")

    def obj_op(self, step: dict):
        obj = self.objs.get(step["slot"] % max(1, len(self.objs))) if self.objs else None
        if obj is None:
            return
        op = step["op"]
        if op == "send":
            obj.ring("inbox").send(bytes(step["size"]))
        elif op == "send_wrong":
            obj.ring("inbox").send(self.rng.choice([42, "abc", None, 1.5]))
        elif op == "map":
            obj[self.rng.choice(OBJ_MAPS)].items()
        elif op == "names":
            obj.map_names(), obj.program_names()
        elif op == "close":
            obj.close()
        elif op == "run":
            obj.run(self.rng.choice(["drain", "sys_enter_execve", "nope"]))
        elif op == "arena":
            obj.arena(self.rng.choice(OBJ_MAPS))
        elif op != "close_during_send":
            raise AssertionError(f"no such object operation: {op}")
        else:
            import threading
            ring = obj.ring("inbox")
            done = threading.Event()

            def tx():
                while not done.is_set():
                    try:
                        ring.send(bytes(8))
                    except BaseException as e:   # noqa: BLE001 - judged below
                        why = judge(e)
                        if why:
                            self.raw_in_threads.append(f"send from a thread: {why}: {str(e)[:200]}")
                            return
            t = threading.Thread(target=tx, daemon=True)
            t.start()
            time.sleep(0.002)
            obj.close()
            done.set()
            t.join(5)

    def close_during(self, step: dict):
        """Another thread closes the slot's map while this thread runs a step on it."""
        import threading
        m = self.maps.get(step["slot"])
        if m is None:
            return

        def closer():
            time.sleep(step["delay"])
            try:
                m.close()
            except BaseException as e:   # noqa: BLE001 - judged below
                why = judge(e)
                if why:
                    self.raw_in_threads.append(f"close from a thread: {why}: {str(e)[:200]}")
        t = threading.Thread(target=closer, daemon=True)
        t.start()
        try:
            self.map_op(m, step["during"])
        finally:
            t.join(5)
            # the next map made takes the freed fd number: it must not see the step's writes
            self.do({"do": "renew"}, set())

    def stop_during(self, step: dict, touched: set[int]):
        """Stop (KeyboardInterrupt in the main thread) `delay` seconds into a step."""
        import _thread
        import threading
        state = {"armed": True, "fired": False}
        lock = threading.Lock()

        def stopper():
            time.sleep(step["delay"])
            with lock:
                if state["armed"]:
                    state["fired"] = True
                    _thread.interrupt_main()
        t = threading.Thread(target=stopper, daemon=True)
        caught = False
        self.in_stop = True
        try:
            t.start()
            try:
                self.do(step["during"], touched)
            except KeyboardInterrupt:
                caught = True
            finally:
                with lock:
                    state["armed"] = False
                if state["fired"] and not caught:
                    deadline = time.monotonic() + 1
                    while time.monotonic() < deadline:   # the interrupt is pending: take it here
                        time.sleep(0.001)
        except KeyboardInterrupt:
            pass
        finally:
            self.in_stop = False
            t.join(5)

    def writer_race(self, step: dict, touched: set[int]):
        """The issue's round: a thread writes to a map, this thread closes it and makes new maps."""
        m = self.maps.get(step["slot"])
        if m is None or m.closed or m.id not in self.checkable:
            return
        if self.writer is not None:   # an earlier writer's last writes, after the last check
            touched.add(self.writer.target_id)
        self.stop_writer()
        self.writer = Writer(m, self)
        time.sleep(step["delay"])
        m.close()
        for _ in range(step["new"]):
            self.do({"do": "renew"}, set())
        touched.add(self.writer.target_id)
        self.stop_writer()

    def stop_writer(self):
        if self.writer is not None:
            self.writer.stop()
            self.raw_in_threads.extend(self.writer.raw)
            self.writer = None

    def note_held(self):
        for kind, ids in self.kernel.held_by(os.getpid()).items():
            self.seen[kind] |= ids

    def run(self, steps: list[dict]):
        fds_before = _fds()
        self.witness = self._new_map("hash", "fz_witness")
        for i, step in enumerate(steps):
            self.emit({"i": i, "at": "start"})
            touched: set[int] = set()
            outcome, why, text = "ok", None, ""
            try:
                self.do(step, touched)
            except KeyboardInterrupt:
                outcome = "stopped"
            except BaseException as e:   # noqa: BLE001 - every exception is judged
                why = judge(e)
                if why and _own_fault(e):
                    why = "the fuzzer's own error (not the kit's: fix tests/fuzz_python.py)"
                outcome = "raw" if why else "explained"
                text = f"{type(e).__name__}: {str(e)[:400]}"
            wrong = self.check_others(touched)
            raws, self.raw_in_threads = self.raw_in_threads, []
            self.note_held()
            self.emit({"i": i, "at": "end", "outcome": outcome, "why": why, "text": text,
                       "wrong": wrong, "thread_raw": raws})
        self.stop_writer()
        for s in self.sockets:
            s.close()
        self.note_held()
        try:
            self.bpfkit.close_all()
            closing = None
        except BaseException as e:   # noqa: BLE001
            closing = f"{type(e).__name__}: {str(e)[:300]}"
        self.maps.clear(), self.objs.clear()
        self.witness = self.writer = None
        import gc
        gc.collect()
        left = {fd: target for fd, target in _fds().items() if fd not in fds_before}
        self.emit({"at": "done", "seen": {k: sorted(v) for k, v in self.seen.items()},
                   "mark": self.lifetime.me(), "fds": left, "close_all": closing})


class Writer:
    """A thread that keeps writing to one map, the main sequence closing it under its feet."""

    def __init__(self, m, worker: Worker):
        import threading
        self.m, self.target_id, self.raw = m, m.id, []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        n = 0
        while not self.done.is_set():
            n += 1
            try:
                self.m[WRITER_KEY] = WRITER_MARK
                self.m[TAG_KEY] = WRITER_MARK + n
            except BaseException as e:   # noqa: BLE001 - judged here
                why = judge(e)
                if why and not self.raw:
                    self.raw.append(f"write from a thread: {why}: {str(e)[:200]}")
                time.sleep(0.0001)

    def stop(self):
        self.done.set()
        self.thread.join(5)


def _fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    return fds


def worker_main():
    """Reads one job {"seed", "steps"} on stdin; JSON lines on a private copy of stdout."""
    import resource
    job = json.loads(sys.stdin.read())
    # A step that asks for a huge buffer must fail in this worker (MemoryError, a finding), never
    # push the shared machine into its OOM killer.
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY, WORKER_MEMORY))
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)     # BCC, clang and libbpf print at the C level: not into the report
    w = Worker(out, job["seed"])
    w.emit = lambda record: out.write(json.dumps(record) + "\n")
    w.run(job["steps"])
    out.flush()
    os._exit(0)


# ---- the driver ----------------------------------------------------------------------------------

def _alive_ids(seen: dict) -> dict[str, list[int]]:
    sys.path.insert(0, str(ROOT))
    from bpfkit.access import kernel
    info = {"maps": kernel.map_info, "programs": kernel.prog_info, "links": kernel.link_info}
    return {kind: [i for i in ids if info[kind](i) is not None] for kind, ids in seen.items()}


def run_one(seed: int, steps: list[dict]) -> dict:
    """Runs `steps` in a fresh worker; returns {"findings": [...], "steps_done": n, "seconds": s}."""
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "worker"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdin.write(json.dumps({"seed": seed, "steps": steps}).encode())
    proc.stdin.close()
    findings, records, current, buf = [], [], None, b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    last = time.monotonic()
    hung = False
    while True:
        if not sel.select(timeout=1.0):
            if time.monotonic() - last > STEP_TIMEOUT:
                hung = True
                proc.kill()
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        last = time.monotonic()
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            rec = json.loads(line)
            records.append(rec)
            if rec.get("at") == "start":
                current = rec["i"]
            elif rec.get("at") == "end":
                current = None
                step = steps[rec["i"]]
                if rec["outcome"] == "raw":
                    findings.append(_finding("raw", rec["i"], step, f"{rec['why']}: {rec['text']}"))
                for text in rec["thread_raw"]:
                    findings.append(_finding("raw", rec["i"], step, text))
                for text in rec["wrong"]:
                    findings.append(_finding("wrong", rec["i"], step, text))
    sel.close()
    rc = proc.wait()
    done = next((r for r in records if r.get("at") == "done"), None)
    if hung or rc != 0 or done is None:
        at = current if current is not None else len(steps) - 1
        how = ("hung" if hung else f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}")
        findings.append(_finding("crash", at, steps[at] if steps else {}, how))
        # what it pinned goes with it (the crash is the finding); its /run/bpfkit record is the
        # kit's to clear, as it clears any dead process's, at the next load
        if (PIN_ROOT / str(proc.pid)).is_dir():
            _unpin(PIN_ROOT / str(proc.pid))
    else:
        findings.extend(_leaks(done, len(steps) - 1))
    ended = sum(1 for r in records if r.get("at") == "end")
    return {"findings": findings, "steps_done": ended, "seconds": time.monotonic() - started}


def _leaks(done: dict, last: int) -> list[dict]:
    found = []
    if done["close_all"]:
        found.append(_finding("raw", last, {"do": "close_all"}, done["close_all"]))
    deadline = time.monotonic() + 3   # the kernel frees maps and programs after an RCU grace period
    while True:
        alive = _alive_ids({k: set(v) for k, v in done["seen"].items()})
        if not any(alive.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for kind, ids in alive.items():
        if ids:
            found.append(_finding("leak", last, {"do": "exit"}, f"{len(ids)} {kind} still in the kernel"))
    pins = PIN_ROOT / done["mark"].split(":")[0]
    if pins.is_dir():
        left = sorted(p.name for p in pins.iterdir())
        if left:
            found.append(_finding("leak", last, {"do": "exit"}, f"pins left: {left}"))
        shutil.rmtree(pins, ignore_errors=True) if not left else _unpin(pins)
    if (OWNERS / f"owner-{done['mark'].replace(':', '-')}.json").exists():
        found.append(_finding("leak", last, {"do": "exit"}, "its /run/bpfkit record is left"))
    if done["fds"]:
        kinds = sorted({re.sub(r"\[\d+\]$", "", t) for t in done["fds"].values()})
        found.append(_finding("leak", last, {"do": "exit"}, f"fds left open after close_all: {kinds}"))
    return found


def _unpin(folder: Path) -> None:
    """Removes what a finding left, so that the next run starts clean (the finding is reported)."""
    for p in folder.iterdir():
        try:
            p.unlink()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass


def _finding(kind: str, at: int, step: dict, text: str) -> dict:
    return {"kind": kind, "at": at, "step": step, "text": text}


def signature(f: dict) -> str:
    """What makes two findings the same fault: kind, the operation (whether run alone, under a
    close from another thread or under Stop) and the exception's type and first words; every
    write to the wrong map is one fault (an fd number reused), whichever step saw it."""
    if f["kind"] == "wrong":
        return "wrong | a write landed in another map"
    step = f["step"]
    inner = step.get("during", step)
    what = inner.get("do", "") + (":" + inner["op"] if "op" in inner else "")
    if f["kind"] == "crash":
        return f"crash | {what} | {f['text']}"
    text = re.sub(r"'[^']*'|b'[^']*'", "'X'", f["text"])
    text = re.sub(r"\d+(\.\d+)?", "N", re.sub(r"\bu?int\d+\b", "int", text))
    return f"{f['kind']} | {what} | {text[:70]}"


def _reproduces(seed: int, steps: list[dict], sig: str, tries: int) -> bool:
    for _ in range(tries):
        if any(signature(f) == sig for f in run_one(seed, steps)["findings"]):
            return True
    return False


def minimise(seed: int, steps: list[dict], finding: dict, budget: float = 60.0) -> list[dict]:
    """The shortest step list found (a prefix, then steps dropped) that shows the same finding."""
    sig = signature(finding)
    tries = 3 if finding["kind"] in ("wrong", "crash") else 1   # races: a few tries each
    best = steps[:finding["at"] + 1] if finding["step"].get("do") != "exit" else list(steps)
    deadline = time.monotonic() + budget
    if not _reproduces(seed, best, sig, tries):
        return best
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        i, changed = 0, False
        while i < len(best) - (0 if finding["step"].get("do") == "exit" else 1) and time.monotonic() < deadline:
            candidate = best[:i] + best[i + chunk:]
            if candidate and _reproduces(seed, candidate, sig, tries):
                best, changed = candidate, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    return best


def allowed_types() -> list[str]:
    sys.path.insert(0, str(ROOT))
    import bpfkit
    df = bpfkit.map_types()
    return sorted(df[df["supported"]]["type"])


def run(seed: int, ops: int, workers: int, per_worker: int = 40, minimise_budget: float = 60.0,
        out=sys.stdout) -> dict:
    """`ops` steps in sequences of `per_worker` steps, seeds seed, seed+1, ..., `workers` at a time.
    Returns the distinct findings, minimised, and the counts."""
    from concurrent.futures import ThreadPoolExecutor
    PIN_ROOT.mkdir(parents=True, exist_ok=True)
    types = allowed_types()
    jobs = [(seed + j, sequence(seed + j, min(per_worker, ops - j * per_worker), types))
            for j in range((ops + per_worker - 1) // per_worker)]
    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda job: run_one(*job), jobs))
    seconds = time.monotonic() - started
    steps_done = sum(r["steps_done"] for r in results)
    distinct: dict[str, dict] = {}
    counts = {"crash": 0, "raw": 0, "leak": 0, "wrong": 0}
    for (s, steps), r in zip(jobs, results):
        for f in r["findings"]:
            counts[f["kind"]] += 1
            distinct.setdefault(signature(f), {**f, "seed": s, "steps": steps, "times": 0})["times"] += 1
    report = {"ops": steps_done, "seconds": round(seconds, 1), "ops_per_second": round(steps_done / seconds, 1),
              "counts": counts, "findings": []}
    for sig, f in sorted(distinct.items()):
        small = minimise(f["seed"], f["steps"], f, minimise_budget) if minimise_budget > 0 else f["steps"][:f["at"] + 1]
        report["findings"].append({"signature": sig, "kind": f["kind"], "seed": f["seed"], "times": f["times"],
                                   "text": f["text"], "step": f["step"], "steps": small,
                                   "at": len(small) - 1 if f["step"].get("do") != "exit" else f["at"]})
        print(f"\n[{f['kind']}] seed {f['seed']} ({f['times']}x): {f['text'][:300]}\n  {len(small)} step(s):",
              file=out)
        for step in small:
            print("    " + json.dumps(step), file=out)
    print(f"\n{steps_done} operations in {seconds:.1f} s ({report['ops_per_second']}/s), {len(jobs)} workers' "
          f"sequences; findings: {counts} ({len(distinct)} distinct)", file=out)
    return report


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["worker"]:
        return worker_main()
    if argv[:1] == ["minimise"]:   # each finding of a report made with --minimise 0, minimised now
        report = json.loads(Path(argv[1]).read_text())
        for f in report["findings"]:
            small = minimise(f["seed"], f["steps"], f, float(argv[2]) if len(argv) > 2 else 20.0)
            f.update(steps=small, minimised=True)
            print(f"\n[{f['kind']}] seed {f['seed']} ({f['times']}x): {f['text'][:300]}\n  {len(small)} step(s):")
            for step in small:
                print("    " + json.dumps(step))
        Path(argv[1]).write_text(json.dumps(report, indent=1))
        return
    if argv[:1] == ["replay"]:
        f = json.loads(sys.stdin.read())
        print(json.dumps(run_one(f["seed"], f["steps"]), indent=1))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--ops", type=int, default=400)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--per-worker", type=int, default=40, help="steps in one worker's sequence")
    p.add_argument("--minimise", type=float, default=20.0, help="seconds to minimise each finding (0: none)")
    p.add_argument("--out", help="the report as JSON")
    a = p.parse_args(argv)
    report = run(a.seed, a.ops, a.workers, a.per_worker, a.minimise)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(report, indent=1))
    sys.exit(1 if any(report["counts"].values()) else 0)


if __name__ == "__main__":
    main()
