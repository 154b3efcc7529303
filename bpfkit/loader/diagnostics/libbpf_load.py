"""What libbpf says when it cannot open, load, attach or register a libbpf-style object
(`bpfkit.loader.bpfobject`), put as the learner's mistake.

libbpf's last words are always "failed to load object '<a temporary file>'": the file is the
kit's, not the learner's, so a message never leads with it. Each message's first line names the
reason (the first line of libbpf or the verifier that names the problem, said in words), at the
learner's own line of C where the mistake has one; libbpf's lines follow as the detail.
"""
from __future__ import annotations

import errno
import functools
import os
import re
import subprocess

from ...access import system
from ...core import maptypes
from ...core.errors import BpfkitError, LoadError, TracepointNotFound, nearest
from .libbpf_c import declared_maps

# The program types of libbpf's section names, the part before the first "/" (libbpf's
# documentation, "Program Types and ELF Sections"); a section's first part must be one of them.
SECTION_KINDS = [
    "socket", "sk_reuseport", "kprobe", "kretprobe", "uprobe", "uretprobe", "kprobe.multi",
    "kretprobe.multi", "uprobe.multi", "uretprobe.multi", "ksyscall", "kretsyscall", "usdt", "tc",
    "tcx", "netkit", "classifier", "action", "tracepoint", "tp", "raw_tracepoint", "raw_tp",
    "raw_tracepoint.w", "raw_tp.w", "tp_btf", "fentry", "fmod_ret", "fexit", "fentry.s",
    "fmod_ret.s", "fexit.s", "freplace", "lsm", "lsm.s", "lsm_cgroup", "iter", "iter.s", "syscall",
    "xdp", "xdp.frags", "perf_event", "lwt_in", "lwt_out", "lwt_xmit", "lwt_seg6local", "sockops",
    "sk_skb", "sk_msg", "lirc_mode2", "flow_dissector", "cgroup_skb", "cgroup", "struct_ops",
    "struct_ops.s", "sk_lookup", "netfilter",
]
# libbpf's lines that follow a problem rather than name one
_ECHOES = re.compile(r"failed to load object|failed to load: -?\d+$|Retrying without BTF|"
                     r"BPF program load failed|PROG LOAD LOG|^\s*$")


def libbpf_lines(said: str) -> list[str]:
    """libbpf's own lines, without its prefix, and with the kit's temporary object file named
    by its file's name alone."""
    return [_no_paths(line.removeprefix("libbpf: ").rstrip())
            for line in said.splitlines() if line.strip()]


def first_reason(said: str) -> str:
    """The first libbpf line that names a problem (not an echo of one)."""
    lines = [l for l in libbpf_lines(said) if not _ECHOES.search(l)] or libbpf_lines(said)
    return lines[0] if lines else ""


def _no_paths(text: str) -> str:
    return re.sub(r"/[^'\s]*/([\w.-]+\.bpf\.o)\b", r"\1", text)


def at_line(source: str, pattern: str, where: str, first_line: int) -> tuple[int | None, str]:
    """(the learner's number of the first line of `source` that `pattern` finds, or None;
    ", at line N of WHERE:\\n    code\\n" for a message, or ".")."""
    for row, line in enumerate(source.splitlines(), 1):
        if re.search(pattern, line):
            shown = row + first_line - 1
            return shown, f", at line {shown} of {where}:\n    {line.strip()}\n"
    return None, ". "


def section_of(source: str, function: str) -> str:
    """The SEC("...") name written above `function` (also BPF_PROG(function, ...))."""
    m = re.search(r'SEC\(\s*"([^"]+)"\s*\)[^;{}]*?\b' + re.escape(function) + r"\b", source)
    return m.group(1) if m else ""


# -- before any program runs: sections, externs, maps -----------------------------------------

def unknown_section(program: str, section: str, source: str, where: str, first_line: int,
                    detail: str) -> LoadError:
    """libbpf found no program type for a SEC() name (a misspelled kind: "tracepont/...")."""
    kind, _, rest = section.partition("/")
    close = nearest(kind, SECTION_KINDS, n=1, cutoff=0.6)
    guess = (f'did you mean SEC("{close[0]}{"/" + rest if rest else ""}")? A' if close else "a")
    _, place = at_line(source, r'SEC\(\s*"' + re.escape(section) + '"', where, first_line)
    return LoadError(
        f'libbpf knows no section SEC("{section}"): "{kind}" is not a program type'
        f"{place}(libbpf chooses the program type of {program}() from the first part of the "
        "section's name.)",
        guess + " section's name starts with a program type libbpf knows: tracepoint/CATEGORY/"
        "EVENT, raw_tracepoint/EVENT, kprobe/FUNCTION, fentry/FUNCTION, xdp, tc, syscall, "
        "struct_ops/NAME, ... (libbpf's documentation lists them all under \"Program Types and "
        "ELF Sections\").", detail=detail, errno=errno.EINVAL)


@functools.cache
def kernel_kfuncs() -> tuple[str, ...]:
    """The kfuncs of the running kernel (its BTF tags each one "bpf_kfunc"), read with bpftool;
    empty where there is no bpftool or BTF."""
    tool = system.bpftool()
    if not tool or not system.BTF_VMLINUX.is_file():
        return ()
    done = subprocess.run([tool, "btf", "dump", "file", str(system.BTF_VMLINUX)],
                          capture_output=True, text=True)
    funcs = dict(re.findall(r"^\[(\d+)\] FUNC '(\w+)'", done.stdout, re.M))
    return tuple(sorted({funcs[i] for i in re.findall(r"DECL_TAG 'bpf_kfunc' type_id=(\d+)",
                                                       done.stdout) if i in funcs}))


def missing_kfunc(kfunc: str, declared: bool, source: str, where: str, first_line: int,
                  detail: str) -> LoadError:
    """A function the program calls that is not BPF's and not the kernel's kfunc: libbpf looked
    for it in the kernel's BTF (as an extern, declared `__ksym` or not declared at all)."""
    _, place = at_line(source, rf"\b{re.escape(kfunc)}\s*\(", where, first_line)
    own = nearest(kfunc, re.findall(r"\b(\w+)\s*\([^;{}()]*\)\s*\{", source), n=1, cutoff=0.7)
    if own and not declared:   # a misspelled call of the code's own function
        return LoadError(
            f"{kfunc}() is not a function of the code{place}(libbpf then looked for it among "
            "the kernel's kfuncs, and this kernel has none of that name either.)",
            f"did you mean {own[0]}()? Call it by the name it is defined with.",
            detail=detail, errno=errno.ENOENT)
    kfuncs = kernel_kfuncs()
    close = nearest(kfunc, kfuncs, n=3, cutoff=0.7)
    known = (f" Did you mean {' or '.join(close)}?" if close else "")
    how = ("declare it above its use as the kernel declares it, with __ksym (e.g. `extern "
           "struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;`); " if not declared
           else "")
    return LoadError(
        f"This kernel has no kfunc {kfunc}(){place}"
        f"libbpf looked for it in the kernel's BTF{'' if declared else ' (the code does not declare it)'}"
        f" and found none: it is not a BPF helper either.{known}",
        f"check its name; {how}check that this kernel has it: `bpftool btf dump file "
        f"/sys/kernel/btf/vmlinux | grep {kfunc}` (kfuncs are tagged bpf_kfunc; "
        f"{len(kfuncs) or 'none'} here).", detail=detail, errno=errno.ENOENT)


# the fields of a map declared in SEC(".maps") that libbpf reads (libbpf's documentation)
MAP_FIELDS = ["type", "max_entries", "key", "value", "key_size", "value_size", "map_flags",
              "numa_node", "pinning", "map_extra", "values"]


def unknown_map_field(name: str, field: str, source: str, where: str, first_line: int,
                      detail: str) -> LoadError:
    """A map declaration with a field libbpf does not know (a misspelled __type(avlue, ...))."""
    _, place = at_line(source, rf"__\w+\(\s*{re.escape(field)}\s*,", where, first_line)
    close = nearest(field, MAP_FIELDS, n=1)
    return LoadError(
        f"The map {name!r} declares a field libbpf does not know, {field!r}{place}",
        (f"did you mean {close[0]!r}? " if close else "") + "a map's fields are "
        f"{', '.join(MAP_FIELDS[:6])}, ... (__uint(type, ...), __type(key, ...), ...).",
        detail=detail, errno=errno.EINVAL)


def compile_hint(error: str, source: str) -> str:
    """The hint for clang's first error on libbpf C where it is a call of a function the code
    does not declare (clang 16 and later refuse it; clang 14 leaves it to libbpf, above)."""
    m = re.search(r"(?:implicit declaration of|call to undeclared) function '(\w+)'", error)
    if not m:
        return ""
    own = nearest(m.group(1), re.findall(r"\b(\w+)\s*\([^;{}()]*\)\s*\{", source), n=1, cutoff=0.7)
    if own:
        return f"did you mean {own[0]}()? Call it by the name it is defined with."
    return (f"{m.group(1)} is not declared: a BPF helper comes from <bpf/bpf_helpers.h> (check "
            "its spelling); a kfunc of the kernel is declared above its use with __ksym, e.g. "
            "`extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;`.")


def _declaration_faults(kind: str, mt, fields: dict) -> list[tuple[str, str]]:
    """(what is wrong, what to write) for each rule of map type `mt` the declaration breaks."""
    wrong: list[tuple[str, str]] = []
    if mt is None:
        return wrong
    if mt.key == "none":
        extra = [f"__type({f}, ...)" for f in ("key", "value") if f in fields
                 and not (f == "value" and mt.values == "data")]
        extra += [f"__uint({f}, ...)" for f in ("key_size", "value_size") if f in fields
                  and not (f == "value_size" and mt.values == "data")]
        if extra:
            what = "no key and no value type" if mt.values in ("events", "memory") else "no key"
            wrong.append((f"{_a(kind)} map has {what}, and the declaration gives {' and '.join(extra)}",
                          f"delete {' and '.join(extra)}"))
    if mt.values == "events" and mt.name.endswith("ringbuf"):
        size = fields.get("max_entries", "")
        bytes_ = _number(size)
        if bytes_ is None or bytes_ < 4096 or bytes_ & (bytes_ - 1):
            wrong.append(("its max_entries is its size in bytes, a power of 2 and a multiple of "
                          f"the page size (4096), and the declaration gives {size or 'none'}",
                          "write __uint(max_entries, 256 * 1024)"))
    elif mt.example.max_entries and "max_entries" not in fields:
        wrong.append(("it declares no max_entries (how many entries the kernel makes room for)",
                      "add __uint(max_entries, 1024)" + (" (an array's number of slots)"
                                                         if mt.key == "index" else "")))
    elif mt.key == "fd" and _number(fields.get("max_entries", "0")) not in (0, None):
        owner = {"task": "task", "sk": "socket", "inode": "inode", "cgrp": "cgroup"}.get(
            kind.split("_")[0], "object")
        wrong.append((f"{_a(kind)} map keeps one value per {owner}, so it takes "
                      f"no max_entries, and the declaration gives {fields['max_entries']}",
                      "delete __uint(max_entries, ...)"))
    elif mt.example.max_entries and _number(fields.get("max_entries", "")) == 0:
        wrong.append(("its max_entries is 0", "give it at least 1 entry"))
    if mt.key in ("index", "stored") and mt.values == "data":
        for part in ("key", "value"):
            if part not in fields and f"{part}_size" not in fields:
                wrong.append((f"it declares no {part} type", f"add __type({part}, __u32)" if part
                              == "key" else "add __type(value, __u64) (or the struct it holds)"))
    if mt.key == "fd" and "BPF_F_NO_PREALLOC" not in fields.get("map_flags", ""):
        wrong.append((f"{_a(kind)} map must be declared with the flag BPF_F_NO_PREALLOC",
                      "add __uint(map_flags, BPF_F_NO_PREALLOC)"))
    if mt.values in _FD_VALUES and re.search(r"64|long|struct|\[", fields.get("value", "")):
        wrong.append((f"its values are {_FD_VALUES[mt.values]} (4 bytes), and the declaration gives "
                      f"__type(value, {fields['value']})", "write __type(value, __u32)"))
    if mt.key in ("index", "stored") and mt.values == "data":
        if mt.key == "index" and re.search(r"64|long", fields.get("key", "")):
            wrong.append((f"its key is {fields['key']}, where {_a(kind)} map's key is a 32-bit index",
                          "write __type(key, __u32)"))
    return wrong


def map_declaration(name: str, kind: str, err: int, source: str, where: str, first_line: int,
                    detail: str) -> LoadError:
    """The kernel refused to create the map `name` (of type `kind`) as the code declares it:
    what the declaration lacks, or has that this type takes no part of."""
    fields = declared_maps(source).get(name, {})
    _, place = at_line(source, rf"\}}\s*{re.escape(name)}\s+SEC\(", where, first_line)
    try:
        mt = maptypes.get(kind)
    except KeyError:
        mt = None
    wrong = _declaration_faults(kind, mt, fields)
    why = os.strerror(err)
    if not wrong and err in (errno.E2BIG, errno.ENOMEM):
        return LoadError(f"The map {name!r} ({kind}) is too big for the kernel ({why}){place}",
                         f"lower the max_entries of {name} (or the size of its value): "
                         "max_entries x the value's size must fit in the kernel's memory.",
                         detail=detail, errno=err)
    if not wrong:
        return LoadError(f"The kernel refused to create the map {name!r} ({kind}) as declared "
                         f"({why}){place}",
                         f"check the declaration of {name}: its max_entries must be at least 1, and "
                         "its key and value types must suit its type (an array's key is a __u32 "
                         "index; a ring buffer has neither).", detail=detail, errno=err)
    return LoadError(
        f"The map {name!r} ({kind}) cannot be made as declared: {wrong[0][0]}{place}"
        f"The kernel says: {why}.",
        "; ".join(w[1] for w in wrong) + f" in the declaration of {name}.", detail=detail, errno=err)


# the maps whose values are the numbers of other objects (an fd or an index; 4 bytes)
_FD_VALUES = {"program": "programs' fds", "perf_event": "perf events' fds", "map": "maps' fds",
              "cgroup": "cgroups' fds", "xsk_socket": "AF_XDP sockets' fds"}


def _a(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


def _number(text: str) -> int | None:
    """A size as libbpf programs write it: "4096", "256 * 1024", "1 << 12"; None otherwise."""
    text = text.strip().strip("()")
    if re.fullmatch(r"\d+", text):
        return int(text)
    product = re.fullmatch(r"(\d+)\s*\*\s*(\d+)(?:\s*\*\s*(\d+))?", text)
    if product:
        return int(product.group(1)) * int(product.group(2)) * int(product.group(3) or 1)
    shift = re.fullmatch(r"(\d+)\s*<<\s*(\d+)", text)
    return int(shift.group(1)) << int(shift.group(2)) if shift else None


# -- attaching and registering ----------------------------------------------------------------

def no_tracepoint(program: str, section: str, source: str, where: str, first_line: int,
                  detail: str) -> TracepointNotFound:
    """A SEC("tracepoint/CATEGORY/EVENT") that names no tracepoint of this kernel."""
    category, _, event = section.partition("/")[2].partition("/")
    events = system.TRACEFS / "events"
    if events.is_dir() and (events / category).is_dir():
        choices = [f"{category}/{p.name}" for p in (events / category).iterdir() if p.is_dir()]
    elif events.is_dir():
        choices = [c.name for c in events.iterdir() if c.is_dir()]
    else:
        choices = []
    word = f"{category}/{event}" if (events / category).is_dir() else category
    close = sorted(nearest(word, choices, n=8),
                   key=lambda c: not (c.startswith(word) or word.startswith(c)))[:3]
    _, place = at_line(source, r'SEC\(\s*"' + re.escape(section) + '"', where, first_line)
    kind = section.partition("/")[0]
    if close and "/" not in close[0]:  # a wrong category: the first near one with this event
        close = [f"{c}/{event}" for c in close if (events / c / event).is_dir()] or close
    guess = (f'did you mean SEC("{kind}/{close[0]}")? T' if close and "/" in close[0] else "t")
    return TracepointNotFound(
        f"This kernel has no tracepoint {category}/{event}, which SEC(\"{section}\") names"
        f"{place}" + (f"The nearest are: {', '.join(close)}." if close else ""),
        guess + f"he tracepoints are the folders {events}/CATEGORY/EVENT: list them with "
        f"`ls {events}/{category if (events / category).is_dir() else ''}` (or `bpftrace -l "
        f"'tracepoint:*'`), and write SEC(\"tracepoint/CATEGORY/EVENT\").",
        detail=detail, errno=errno.ENOENT)


def no_raw_tracepoint(section: str, source: str, where: str, first_line: int,
                      detail: str) -> TracepointNotFound:
    """A SEC("raw_tracepoint/EVENT") that names no tracepoint of this kernel."""
    event = section.partition("/")[2]
    events = system.TRACEFS / "events"
    names = sorted({p.name for p in events.glob("*/*") if p.is_dir()}) if events.is_dir() else []
    close = nearest(event, names, n=3)
    _, place = at_line(source, r'SEC\(\s*"' + re.escape(section) + '"', where, first_line)
    kind = section.partition("/")[0]
    return TracepointNotFound(
        f"This kernel has no tracepoint {event!r}, which SEC(\"{section}\") names{place}"
        + (f"The nearest are: {', '.join(close)}." if close else ""),
        (f'did you mean SEC("{kind}/{close[0]}")? A' if close else "a") + " raw tracepoint "
        f"is named by its event alone, without the category: the folders under {events}/*/ "
        f"(`ls {events}/sched`).", detail=detail, errno=errno.ENOENT)


def attach_refused(program: str, section: str, err: int, said: str, source: str, where: str,
                   first_line: int) -> BpfkitError:
    """libbpf could not attach `program` by its section's name."""
    detail = "\n".join(libbpf_lines(said))
    kind = section.split("/")[0]
    if err == errno.ENOENT and kind in ("tracepoint", "tp") and section.count("/") == 2:
        return no_tracepoint(program, section, source, where, first_line, detail)
    if err == errno.ENOENT and kind in ("raw_tracepoint", "raw_tp") and section.count("/") == 1:
        return no_raw_tracepoint(section, source, where, first_line, detail)
    reason = first_reason(said) or os.strerror(err)
    _, place = at_line(source, r'SEC\(\s*"' + re.escape(section) + '"', where, first_line)
    return LoadError(f"libbpf could not attach {program}() by its section SEC(\"{section}\"): "
                     f"{reason}{place}",
                     "check what the section's name points at (the function, tracepoint or "
                     "event after the program type) exists in this kernel.", detail=detail,
                     errno=err)


# What a kernel struct_ops type must have (the kernel's own check when it registers one:
# tcp_validate_congestion_control for a congestion control). A tuple: one of them.
REQUIRED_OPS = {"tcp_congestion_ops": ["ssthresh", "undo_cwnd", ("cong_avoid", "cong_control")]}


def ops_table(source: str, name: str) -> tuple[str, list[str]] | None:
    """(the struct type, the members set) of the struct_ops table `name` in the source."""
    m = re.search(r"SEC\(\s*\"\.struct_ops(?:\.link)?\"\s*\)(?:\s|//[^\n]*|/\*.*?\*/)*struct\s+(\w+)\s+" + re.escape(name)
                  + r"\s*=\s*\{(.*?)\}\s*;", source, re.S)
    return (m.group(1), re.findall(r"\.(\w+)\s*=", m.group(2))) if m else None


def register_refused(name: str, err: int, said: str, source: str, where: str,
                     first_line: int) -> LoadError:
    """The kernel would not register the struct_ops table `name`: a required operation the table
    does not set (the kernel checks them when it registers), or a name already taken."""
    detail = "\n".join(libbpf_lines(said))
    table = ops_table(source, name) if source else None
    if table and err == errno.EINVAL:
        kind, members = table
        missing = [r if isinstance(r, str) else " or ".join(r) for r in REQUIRED_OPS.get(kind, [])
                   if not (r in members if isinstance(r, str) else any(x in members for x in r))]
        if missing:
            _, place = at_line(source, rf"struct\s+{kind}\s+{re.escape(name)}\b", where, first_line)
            first = missing[0].split(" or ")[0]
            return LoadError(
                f"The kernel refused to register {name!r}: its {kind} table sets no "
                f"{' and no '.join('.' + m for m in missing)}, which every "
                f"{'TCP congestion control' if kind == 'tcp_congestion_ops' else kind} must have"
                f"{place}(The kernel's log says \"does not implement required ops\".)",
                f"write a SEC(\"struct_ops/...\") function for each and name it in the table, "
                f"e.g. .{first} = (void *){name}_{first}; lesson 19's l19_cc.bpf.c has all of "
                "them (ssthresh: the window after a loss; undo_cwnd: the window after a false "
                "alarm).", detail=detail, errno=err)
    return LoadError(
        f"The kernel refused to register the struct_ops {name!r}: {os.strerror(err)}.",
        "a congestion control's name must be one that no loaded algorithm has (see "
        "/proc/sys/net/ipv4/tcp_available_congestion_control), at most 15 characters.",
        detail=detail, errno=err)


def unused_struct_ops(program: str, section: str, source: str, where: str, first_line: int,
                      detail: str, err: int) -> LoadError:
    """A SEC("struct_ops/...") program that no struct_ops table names: the kernel cannot tell
    which operation it is, so it refuses to load it."""
    _, place = at_line(source, r'SEC\(\s*"' + re.escape(section) + '"', where, first_line)
    return LoadError(
        f"{program}() is a struct_ops program that no struct_ops table uses{place}"
        "The kernel loads such a program only as an operation of a table "
        "(SEC(\".struct_ops\")), to know its arguments.",
        f"name it in the table (e.g. .{program.split('_')[-1]} = (void *){program}), or delete "
        "the function.", detail=detail, errno=err)


def load_refused(name: str, err: int, said: str, source: str, where: str,
                 first_line: int) -> BpfkitError | None:
    """The error for what libbpf said while opening or loading the object `name`, where it names
    one of the mistakes above; None where it does not (the caller then says it plainly)."""
    detail = "\n".join(libbpf_lines(said))
    section = re.search(r"prog '(\w+)': missing BPF prog type, check ELF section name '([^']*)'", said)
    if section:
        return unknown_section(section.group(1), section.group(2), source, where, first_line, detail)
    unused = re.search(r"prog '(\w+)': SEC\(\"struct_ops[^)]*\)\s*program isn't referenced", said)
    if unused:   # newer libbpf says so itself, before the kernel's bare error 524
        program = unused.group(1)
        return unused_struct_ops(program, section_of(source, program), source, where, first_line,
                                 detail, err)
    field = re.search(r"map '([\w.]+)': unknown field '(\w+)'", said)
    if field:
        return unknown_map_field(field.group(1), field.group(2), source, where, first_line, detail)
    untyped = re.search(r"map '([\w.]+)': map type isn't specified", said)
    if untyped:
        _, place = at_line(source, rf"\}}\s*{re.escape(untyped.group(1))}\s+SEC\(", where, first_line)
        return LoadError(f"The map {untyped.group(1)!r} declares no type{place}",
                         "add __uint(type, BPF_MAP_TYPE_HASH) (or the type it is) as the first "
                         f"line of the declaration of {untyped.group(1)}.", detail=detail,
                         errno=errno.EINVAL)
    extern = (re.search(r"failed to find BTF for extern '(\w+)'", said),
              re.search(r"extern \(func ksym\) '(\w+)': not found", said))
    if extern[0] or extern[1]:
        kfunc = (extern[0] or extern[1]).group(1)
        declared = bool(re.search(rf"\b{re.escape(kfunc)}\s*\([^;]*\)\s*__ksym", source))
        return missing_kfunc(kfunc, declared, source, where, first_line, detail)
    return None
