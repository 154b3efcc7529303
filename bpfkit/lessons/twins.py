"""What BCC writes for you: lessons 01-07's programs beside their libbpf twins, as a short diff.

A learner who leaves the kit writes libbpf C (CO-RE, `SEC(".maps")`, vmlinux.h), the form
libbpf-bootstrap and most tools use. BCC hides most of what differs, so one cell per lesson,
`twins.twin("counter")`, shows only the lines that change between `bpf/counter.c` and its twin
`bpf/01_hash_map_counter/counter.bpf.c`, under a few bullets naming what BCC did there. The twins
load through `bpfkit.loader.bpfobject.load(NAME)`; tests/test_libbpf_twins.py runs each next to
the BCC program under the same workload.
"""
from __future__ import annotations

import difflib
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import NotFound, did_you_mean
from ..loader.program import PROGRAMS, resolve

SHOWN = 40   # diff lines a cell shows: enough for the changes, short enough to read at once


@dataclass(frozen=True)
class Twin:
    """One lesson's pair: its stem, what BCC writes for you there (3-5 bullets, HTML-safe
    Markdown-ish text with `code`), BCC functions the twin leaves out (shown as a note, not as
    a wall of deletions), and maps the twin had to name differently."""
    lesson: str
    bullets: tuple[str, ...]
    left_out: tuple[str, ...] = ()
    renamed: dict = field(default_factory=dict)


TWINS: dict[str, Twin] = {
    "counter": Twin("01_hash_map_counter", (
        '`BPF_HASH(counter_table)` → a `struct { __uint(type, BPF_MAP_TYPE_HASH); ... } '
        'counter_table SEC(".maps")`, with BCC\'s defaults written out: a u64 key, a u64 value, '
        '10240 entries.',
        '`TRACEPOINT_PROBE(syscalls, sys_enter_execve)` → a `SEC("tp/syscalls/sys_enter_execve")` '
        'function; its context, `struct trace_event_raw_sys_enter`, comes from vmlinux.h, where '
        'BCC generated `args`.',
        '`counter_table.lookup(&uid)` → `bpf_map_lookup_elem(&counter_table, &uid)`; `.update()` → '
        '`bpf_map_update_elem(..., BPF_ANY)`.',
        'The licence: BCC told the kernel "GPL" itself; libbpf reads `char LICENSE[] SEC("license")`.',
    )),
    "read_histogram": Twin("02_array_histogram", (
        '`BPF_ARRAY(read_sizes, u64, 32)` → a `BPF_MAP_TYPE_ARRAY` struct whose key is a `__u32`: '
        'the index.',
        '`config` is called `read_config` here: vmlinux.h already has a type named `config`, and '
        'a map takes its variable\'s name.',
        '`bpf_log2l()` is BCC\'s own (its helpers.h), not the kernel\'s: the twin copies it.',
        '`read_sizes.atomic_increment(slot)` → `bpf_map_lookup_elem` and `__sync_fetch_and_add`: an '
        'array\'s slots all exist, so there is nothing to insert.',
        '`args->ret` → `ctx->ret`, of `struct trace_event_raw_sys_exit` from vmlinux.h.',
    ), renamed={"config": "read_config"}),
    "tail_calls": Twin("03_prog_array_tail_calls", (
        '`BPF_PROG_ARRAY(handlers, 4)` → a `BPF_MAP_TYPE_PROG_ARRAY` struct, u32 keys and values '
        '(a program\'s fd goes in, its id comes out).',
        '`handlers.call(args, *slot)` → `bpf_tail_call(ctx, &handlers, *slot)`.',
        'BCC compiled `count_a` and `count_b` as plain functions for `load_func`; libbpf needs each '
        'in a section: `SEC("tp")`, a tracepoint program that names no tracepoint, loaded and '
        'attached nowhere.',
        '`hits.atomic_increment(0)` → a lookup and an atomic add, written once as `add_one()`.',
    )),
    "map_of_maps": Twin("04_map_of_maps", (
        '`BPF_ARRAY_OF_MAPS(active, "config_a", 1)` names a map as the template; libbpf takes a '
        'type, `__array(values, struct config_map)`, the struct both configurations are made of.',
        '`active.lookup(&slot)` → `bpf_map_lookup_elem(&active, &slot)`, which gives the inner '
        'map to look up in.',
        '`counts.lookup_or_try_init(&uid, &zero)` → a lookup, and if it missed, an insert with '
        '`BPF_NOEXIST` and a second lookup: BCC\'s method, written once as a helper.',
        '`BPF_HASH(counts, u32, u64)` had BCC\'s default size; the twin writes 10240 out.',
    )),
    "sockmap_redirect": Twin("05_sockmap_sockhash", (
        'The lesson\'s `BPF_SOCKHASH_U64` macro (BCC\'s table struct, with a u64 value) → a '
        '`BPF_MAP_TYPE_SOCKHASH` struct: `__type(value, __u64)` says it in one line.',
        '`sock_hash.sock_hash_update(skops, &key, BPF_NOEXIST)` → `bpf_sock_hash_update(skops, '
        '&sock_hash, &key, BPF_NOEXIST)`; `msg_redirect_hash(...)` → `bpf_msg_redirect_hash(msg, '
        '&sock_hash, ...)`.',
        'The types come from `SEC("sockops")` and `SEC("sk_msg")`, where BCC\'s user space named '
        'them; neither attaches by its section (a cgroup, a map to attach to), so both are only '
        'loaded.',
        '`msg_stats.lookup_or_try_init(&me, &zero)` → a lookup, and if it missed, an insert with '
        '`BPF_NOEXIST` and a second lookup (a helper in the twin).',
        '`AF_INET` is written out: vmlinux.h has the kernel\'s types and enums, not its `#define`s.',
    )),
    "devmap_redirect": Twin("06_devmap_xdp_redirect", (
        'The lesson\'s `tx_port` table struct (BCC\'s `BPF_DEVMAP` with `lookup()` added) → a '
        '`BPF_MAP_TYPE_DEVMAP` struct: to libbpf a devmap is a map like any other.',
        '`tx_port.redirect_map(slot, 0)` → `bpf_redirect_map(&tx_port, slot, 0)`; '
        '`redirected.atomic_increment(slot)` → a lookup and `__sync_fetch_and_add`.',
        '`<uapi/linux/*.h>` → vmlinux.h\'s `struct ethhdr`, `iphdr`, `udphdr`; `ETH_P_IP` is a '
        '`#define`, so the twin writes it; `htons` → `bpf_htons` (bpf_endian.h).',
        '`SEC("xdp")` gives the type; the interface is user space\'s choice, so libbpf loads the '
        'program and attaches it nowhere.',
    )),
    "map_cost": Twin("07_map_cost_in_kernel", (
        'Each plain function BCC compiled (its type, XDP, chosen by user space at `load_func`) → '
        'a `SEC("xdp")` program, loaded with the object.',
        '`hash_map.lookup(&key)` → `bpf_map_lookup_elem(&hash_map, &key)`.',
        '`hash_map.atomic_increment(key)` → a lookup and `__sync_fetch_and_add`, or an insert of 1 '
        'with `BPF_NOEXIST`.',
        'The twin keeps `empty`, `lookup_hash`, `lookup_array` and `count_hash`: the per-CPU, LRU '
        'and update functions follow the same pattern.',
    ), left_out=("lookup_percpu_hash", "lookup_lru_hash", "update_hash", "update_percpu_hash",
                 "update_lru_hash", "update_array", "percpu_hash_map", "lru_hash_map")),
}


def _no_comment(line: str) -> str:
    return re.sub(r"\s*//.*$", "", line)


def _code(text: str, left_out=()) -> list[str]:
    """The lines worth comparing, so that a diff shows what BCC writes and nothing else: no
    comment-only lines (each file explains itself in its own words), no blank lines,
    none of `left_out`'s functions or map declarations, and each multi-line block that stands
    for one BCC line as one line: a `SEC(".maps")` struct (BPF_HASH(...)'s twin), a helper the
    twin writes out (`static ... { ... }`), a macro continued over lines."""
    for name in left_out:
        text = re.sub(rf"^(?://[^\n]*\n)*int {name}\(.*?^}}\n", "", text, flags=re.M | re.S)
        text = re.sub(rf"^[^\n]*\b{name}\b[^\n]*;[^\n]*\n", "", text, flags=re.M)
    text = re.sub(r"^(struct (?:\w+ )?)\{[^\n]*\n((?:[ \t]+__[^\n]*\n)+?)\}([^\n]*;)[^\n]*$",
                  lambda m: m.group(1) + "{ " + " ".join(_no_comment(line).strip() for line in
                                                       m.group(2).splitlines()) + " }" + m.group(3),
                  text, flags=re.M)
    text = re.sub(r"^(static [^\n]*\{)[^\n]*\n(?:[^\n]*\n)*?\}[^\n]*$",
                  lambda m: m.group(1) + f" ... }}   // {m.group(0).count(chr(10)) + 1} lines",
                  text, flags=re.M)
    text = re.sub(r"^(#define [^\n]*?)\s*\\\n(?:[^\n]*\\\n)*[^\n]*$",
                  lambda m: m.group(1) + f" ...   // {m.group(0).count(chr(10)) + 1} lines",
                  text, flags=re.M)
    lines: list[str] = []
    for line in text.splitlines():
        if line.strip().startswith("//"):
            continue
        if not line.strip():   # blank lines: a diff line each, and nothing to compare
            continue
        lines.append(line.rstrip())
    return lines


@dataclass
class TwinDiff:
    """A lesson's BCC program against its libbpf twin, ready for a notebook cell."""
    name: str
    twin: Twin
    bcc_path: str
    libbpf_path: str
    lines: list[str]          # the whole unified diff, headers first, a line of context
    tight: list[str]          # the same without context lines

    @property
    def shown(self) -> list[str]:
        """At most SHOWN lines: a cell that scrolls is a cell nobody reads. Context goes first,
        then the tail (with a line saying how to see it)."""
        for lines in (self.lines, self.tight):
            if len(lines) <= SHOWN:
                return lines
        rest = len(self.tight) - (SHOWN - 1)
        return self.tight[:SHOWN - 1] + [f"... {rest} more lines: print(twins.twin({self.name!r}).full)"]

    @property
    def full(self) -> str:
        return "\n".join(self.lines)

    def _note(self) -> str:
        return (f"(the twin leaves out {', '.join(self.twin.left_out)})" if self.twin.left_out
                else "")

    def __str__(self) -> str:
        head = f"What BCC writes for you in {self.bcc_path} (libbpf twin: {self.libbpf_path})"
        bullets = [f"  - {b}" for b in self.twin.bullets]
        note = [self._note()] if self.twin.left_out else []
        return "\n".join([head, *bullets, *note, "", *self.shown])

    def _repr_html_(self) -> str:
        def inline(text: str) -> str:   # `code` spans, everything else escaped
            return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))
        colours = {"+": "#e6ffec", "-": "#ffebe9", "@": "#ddf4ff"}
        rows = []
        for line in self.shown:
            bg = colours.get(line[:1], "") if not line.startswith(("+++", "---")) else ""
            style = f' style="background:{bg}"' if bg else ""
            rows.append(f"<span{style}>{html.escape(line) or ' '}</span>")
        note = f"<p><em>{html.escape(self._note())}</em></p>" if self.twin.left_out else ""
        return (f'<div class="bpfkit-twin"><p><strong>What BCC writes for you</strong> in '
                f"<code>{html.escape(self.bcc_path)}</code>, against its libbpf twin "
                f"<code>{html.escape(self.libbpf_path)}</code>:</p><ul>"
                + "".join(f"<li>{inline(b)}</li>" for b in self.twin.bullets)
                + f"</ul>{note}<pre style=\"line-height:1.25\">" + "\n".join(rows) + "</pre></div>")


def _shown_path(path: Path | None, fallback: str) -> str:
    """bpf/... as the lessons name the kit's files, wherever the kit is installed."""
    if path is None:
        return fallback
    try:
        return "bpf/" + path.resolve().relative_to(PROGRAMS.resolve()).as_posix()
    except ValueError:   # a file of the learner's own (./bpf): its name is enough
        return path.name


def diff(name: str, bcc_text: str, libbpf_text: str, *, bcc_path: str = "", libbpf_path: str = "",
         context: int = 1) -> TwinDiff:
    """The diff of two texts as `twin()` shows it: pure, so its shape is tested without files."""
    entry = TWINS[name]
    bcc_path = bcc_path or f"{name}.c"
    libbpf_path = libbpf_path or f"{name}.bpf.c"
    old, new = _code(bcc_text, entry.left_out), _code(libbpf_text)
    return TwinDiff(name, entry, bcc_path, libbpf_path,
                    _unified(old, new, bcc_path, libbpf_path, context),
                    _unified(old, new, bcc_path, libbpf_path, 0))


def _unified(old: list[str], new: list[str], old_name: str, new_name: str, n: int) -> list[str]:
    """A unified diff that compares code, not comments: a line whose code is the same in both
    files is context, however its comments differ (the twin's comment wins: it says what BCC
    did). Removed BCC lines lose their comments too: the learner has them in the lesson."""
    def key(line: str) -> str:
        return " ".join(_no_comment(line).split())
    matcher = difflib.SequenceMatcher(None, [key(x) for x in old], [key(x) for x in new],
                                      autojunk=False)
    out = [f"--- {old_name}", f"+++ {new_name}"]
    for group in matcher.get_grouped_opcodes(n):
        (_, i1, _, j1, _), (_, _, i2, _, j2) = group[0], group[-1]
        out.append(f"@@ -{i1 + 1},{i2 - i1} +{j1 + 1},{j2 - j1} @@")
        for tag, a1, a2, b1, b2 in group:
            if tag == "equal":
                out += [" " + line for line in new[b1:b2]]
                continue
            out += ["-" + (_no_comment(line) or line) for line in old[a1:a2]]
            out += ["+" + line for line in new[b1:b2]]
    return out if len(out) > 2 else []


def twin(name: str) -> TwinDiff:
    """Lesson NN's program `name` against its libbpf twin: shows in a cell as bullets and a diff."""
    if name not in TWINS:
        hint = did_you_mean(name, list(TWINS))
        raise NotFound(f"No libbpf twin for {name!r}.",
                       (hint + " " if hint else "") + f"The twins are: {', '.join(TWINS)}.")
    bcc_text, bcc_file, _ = resolve(name, ".c")
    libbpf_text, libbpf_file, _ = resolve(name, ".bpf.c")
    return diff(name, bcc_text, libbpf_text, bcc_path=_shown_path(bcc_file, f"{name}.c"),
                libbpf_path=_shown_path(libbpf_file, f"{name}.bpf.c"))
