"""C written for libbpf (SEC(...) sections, BTF-defined maps) handed to BCC, which does not read
it: each of its pieces said in BCC's words, instead of clang's errors about BCC's rewrite."""
from __future__ import annotations

import math
import re

from ...core import maptypes
from ...core.errors import CompileError
from .shared import title

_STYLE = re.compile(r'\bSEC\s*\(\s*"|__uint\s*\(\s*type\b|<bpf/bpf_helpers\.h>|"vmlinux\.h"')
# BCC's own words: its map macros, probe macros, map methods and print helper
_BCC_STYLE = re.compile(r"\bBPF_(?:HASH|ARRAY|TABLE\w*|PERF_OUTPUT|RINGBUF_OUTPUT|HISTOGRAM|PERCPU_\w+|"
                        r"LRU_HASH|QUEUE|STACK|PROG_ARRAY|LPM_TRIE|STACK_TRACE|DEVMAP|CPUMAP|XSKMAP|"
                        r"SOCKMAP|SOCKHASH|TASK_STORAGE|SK_STORAGE|INODE_STORAGE|CGROUP_STORAGE|"
                        r"USER_RINGBUF)\s*\(|\b(?:RAW_)?TRACEPOINT_PROBE\s*\(|\bKFUNC_PROBE\s*\(|"
                        r"\bkprobe__\w+\s*\(|\.\s*(?:perf_submit|ringbuf_output|increment|"
                        r"atomic_increment|lookup_or_try_init|lookup|update|insert)\s*\(|"
                        r"\bbpf_trace_printk\s*\(")


def written_for(source: str) -> str | None:
    """Which loader C text is written for: "libbpf" (SEC(...) sections, BTF-defined maps,
    libbpf's headers: %%bpfobject), "bcc" (BCC's macros and map methods: %%bpf), or None where
    it shows neither. libbpf's marks win: its C may call bpf_trace_printk too."""
    if _STYLE.search(source):
        return "libbpf"
    return "bcc" if _BCC_STYLE.search(source) else None


def is_libbpf_c(source: str) -> bool:
    return written_for(source) == "libbpf"


def declared_maps(source: str) -> dict[str, dict[str, str]]:
    """Each map of SEC(".maps"), by name: its __uint/__type fields as written (type, key,
    value, max_entries, ...)."""
    return {name: dict(re.findall(r"__(?:uint|type|array)\s*\(\s*(\w+)\s*,\s*([^)]*?)\s*\)", body))
            for body, name in re.findall(r"struct\s*\{(.*?)\}\s*(\w+)\s+SEC\s*\(\s*\"\.maps\"\s*\)",
                                         source, re.S)}


def bcc_style(source: str, where: str, first_line: int = 1) -> CompileError:
    """BCC C handed to clang for libbpf (%%bpfobject): clang's errors about macros it has never
    heard of say nothing; name the other cell magic, and BCC's pieces the text uses."""
    found = []
    for row, line in enumerate(source.splitlines(), first_line):
        m = _BCC_STYLE.search(line)
        if m:
            found.append(f"  - line {row}: {line.strip()}")
    return CompileError(
        f"{title(where)} is BCC C (BCC's map macros, probe macros and map methods, such as "
        "BPF_HASH(...), TRACEPOINT_PROBE(...), map.lookup(...), events.perf_submit(...)), and "
        "%%bpfobject compiles C written for libbpf with clang alone, which knows none of them.",
        "load it with %%bpf NAME (or bpfkit.load(...)), which compiles with BCC; or rewrite it "
        "for libbpf, as the lessons' *.bpf.c programs are written (SEC(\"tracepoint/...\"), maps "
        'declared in SEC(".maps"), bpf_map_lookup_elem(&map, &key)).',
        detail="BCC's pieces in it:\n" + "\n".join(found[:8]))


def libbpf_style(source: str, where: str) -> CompileError:
    """C written for libbpf (SEC(...) sections, BTF-defined maps), which BCC does not read:
    what each of its pieces is in BCC's words."""
    steps = [_bcc_map(name, fields) for name, fields in declared_maps(source).items()]
    for section, fn in re.findall(r'SEC\s*\(\s*"([^"]+)"\s*\)\s*(?:static\s+)?(?:__always_inline\s+)?\w+\s+(\w+)\s*\(', source):
        steps.append(_bcc_function(section, fn))
    if re.search(r'SEC\s*\(\s*"license"\s*\)', source):
        steps.append('the license line (char LICENSE[] SEC("license") = ...): delete it; a BCC '
                     "program is GPL unless it says #define BPF_LICENSE ...")
    includes = re.findall(r'#include\s*[<"]((?:bpf/\w+|vmlinux)\.h)[>"]', source)
    if includes:
        steps.append(f"#include of {', '.join(sorted(set(includes)))}: delete them; BCC brings its "
                     "own helpers and compiles against this kernel's headers.")
    for helper, method in (("lookup", "lookup(&key)"), ("update", "update(&key, &value)"),
                           ("delete", "delete(&key)")):
        m = re.search(rf"bpf_map_{helper}_elem\s*\(\s*&(\w+)", source)
        if m:
            steps.append(f"bpf_map_{helper}_elem(&{m.group(1)}, ...): write {m.group(1)}.{method}.")
    return CompileError(
        f"{title(where)} is written for libbpf (SEC(...) sections, maps declared as "
        'struct { __uint(type, ...) } name SEC(".maps")), and %%bpf compiles with BCC, which '
        "says those things its own way.",
        "load it with %%bpfobject NAME (or bpfkit.loader.bpfobject.load(...)), which compiles "
        "libbpf C with clang; or, for %%bpf, rewrite each piece as listed above (the lessons' "
        "programs in bpf/ show every form).",
        detail="In BCC's words:\n" + "\n".join(f"  - {step}" for step in steps))


def _bcc_map(name: str, fields: dict) -> str:
    kind = fields.get("type", "").removeprefix("BPF_MAP_TYPE_").lower()
    try:
        mt = maptypes.get(kind)
    except KeyError:
        return f"map {name}: declare it with a BCC macro such as BPF_HASH({name}, key_t, value_t, 1024)."
    key, value = fields.get("key", "u32"), fields.get("value", "u64")
    size = fields.get("max_entries", "1024")
    if mt.bcc is None:
        return (f"map {name} ({mt.name}): BCC cannot declare it; make it in Python with "
                f'{name} = bpfkit.create_map("{mt.name}", ...) and pass it with '
                f'load(..., maps={{"{name}": {name}}}).')
    macro = mt.bcc.split("(")[0]
    if macro == "BPF_TABLE":
        decl = f'BPF_TABLE("{mt.name}", {key}, {value}, {name}, {size})'
    elif mt.values == "events":
        decl = f"{macro}({name}, {max(1, _int(size) // 4096)})" if mt.name == "ringbuf" else f"{macro}({name})"
    elif mt.key == "stored":
        decl = f"{macro}({name}, {key}, {value}, {size})"
    else:
        decl = f"{macro}({name}, {value}, {size})"
    return f"map {name} ({mt.name}): {decl};"


def _int(text: str) -> int:
    """A size as libbpf programs write it: "4096" or "256 * 1024"."""
    if re.fullmatch(r"[\d\s*]+", text) and re.search(r"\d", text):
        return math.prod(int(n) for n in re.findall(r"\d+", text))
    return 4096


def _bcc_function(section: str, fn: str) -> str:
    parts = section.split("/")
    if parts[0] in ("tracepoint", "tp") and len(parts) == 3:
        return (f'SEC("{section}") {fn}(...): write TRACEPOINT_PROBE({parts[1]}, {parts[2]}) '
                "{ ... } and read the tracepoint's fields as args->name.")
    if parts[0] in ("raw_tracepoint", "raw_tp") and len(parts) == 2:
        return f'SEC("{section}") {fn}(...): write RAW_TRACEPOINT_PROBE({parts[1]}) {{ ... }}.'
    if parts[0] == "kprobe" and len(parts) == 2:
        return f'SEC("{section}") {fn}(...): write int kprobe__{parts[1]}(struct pt_regs *ctx) {{ ... }}.'
    return (f'SEC("{section}") {fn}(...): drop the SEC(...) and load the function yourself, '
            f'e.g. prog.load_func("{fn}", "xdp") for an XDP program.')
