"""C written for libbpf (SEC(...) sections, BTF-defined maps) handed to BCC, which does not read
it: each of its pieces said in BCC's words, instead of clang's errors about BCC's rewrite."""
from __future__ import annotations

import math
import re

from ...core import maptypes
from ...core.errors import CompileError
from .shared import title

_STYLE = re.compile(r'\bSEC\s*\(\s*"|__uint\s*\(\s*type\b|<bpf/bpf_helpers\.h>|"vmlinux\.h"')


def is_libbpf_c(source: str) -> bool:
    return bool(_STYLE.search(source))


def libbpf_style(source: str, where: str) -> CompileError:
    """C written for libbpf (SEC(...) sections, BTF-defined maps), which BCC does not read:
    what each of its pieces is in BCC's words."""
    steps = []
    for body, name in re.findall(r"struct\s*\{(.*?)\}\s*(\w+)\s+SEC\s*\(\s*\"\.maps\"\s*\)", source, re.S):
        steps.append(_bcc_map(name, dict(re.findall(r"__(?:uint|type)\s*\(\s*(\w+)\s*,\s*([^)]*?)\s*\)", body))))
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
        'struct { __uint(type, ...) } name SEC(".maps")), and BCC, which bpfkit compiles with, '
        "says those things its own way.",
        "rewrite each piece as listed above; the lessons' programs in bpf/ show every form.",
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
