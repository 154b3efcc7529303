"""Every refusal of a libbpf-style object (`%%bpfobject`, `bpfobject.load`) leads with its reason,
at the learner's line where it has one, never with the kit's temporary object file; and C
written for the other loader is named as such, with the magic that takes it.

The kernel tests compile and load each mistake for real (as a `%%bpfobject` cell does: line 1 of
the text is line 2 of the cell) and check the error's class, its first line's words, the line
it names and that nothing stays loaded. The unit tests read libbpf's and the verifier's words
(captured from this kit's loads) without a kernel.
"""
from __future__ import annotations

import re

from pathlib import Path

import pytest

import bpfkit
from bpfkit.core.errors import (BpfkitError, CompileError, LoadError, TracepointNotFound,
                                VerifierError)
from bpfkit.loader import bpfobject, verifier
from bpfkit.loader.diagnostics import libbpf_c, libbpf_load
from conftest import kernel_state, leftovers

ROOT = Path(__file__).resolve().parents[1]
LACKING = bpfobject.missing()
needs_toolchain = pytest.mark.skipif(LACKING is not None, reason=f"this machine has no {LACKING}")

HEAD = '#include "vmlinux.h"\n#include <bpf/bpf_helpers.h>\n'          # cell lines 2-3
LICENSE = 'char LICENSE[] SEC("license") = "GPL";\n'
WHERE = "the %%bpfobject t cell"


def program(section: str, body: str, *, before: str = "", license: str = LICENSE) -> str:
    """A libbpf program: the headers (cell lines 2-3), `before` (maps, declarations), then
    SEC(section) and a function whose body's first line is cell line 6 + lines of `before`."""
    return HEAD + before + f'SEC("{section}")\nint run(void *ctx) {{\n    {body}\n}}\n' + license


def a_map(kind: str, *fields: str, name: str = "things") -> str:
    lines = [f"    __uint(type, BPF_MAP_TYPE_{kind});", *(f"    {f};" for f in fields)]
    return "struct {\n" + "\n".join(lines) + f'\n}} {name} SEC(".maps");\n'


HASH = a_map("HASH", "__uint(max_entries, 8)", "__type(key, __u32)", "__type(value, __u64)")
_CC = (ROOT / "bpf/19_beyond_bcc/l19_cc.bpf.c").read_text().replace('"bpfkit_l19"', '"load_t_cc"')
_OPS = '    .ssthresh = (void *)l19_ssthresh, .undo_cwnd = (void *)l19_undo_cwnd,\n'
CC_WITHOUT_TWO_OPS = (_CC[:_CC.index('SEC("struct_ops/l19_ssthresh")')]
                      + _CC[_CC.index('SEC(".struct_ops")'):]).replace(_OPS, "")
CC_OP_UNUSED = _CC.replace(_OPS, "")


def line_of(source: str, text: str) -> int:
    """The cell's line number of the first line of `source` holding `text` (the cell's line 1
    is the magic)."""
    return next(i for i, l in enumerate(source.splitlines(), 2) if text in l)


# (id, source, error class, words of the first line, the text of the line it must name or None)
CASES = [
    ("section kind misspelled", program("tracepont/syscalls/sys_enter_openat", "return 0;"),
     LoadError, ["no section", "tracepont", "not a program type"], 'SEC("tracepont'),
    ("section kind misspelled (xdp)", program("xpd", "return 0;"),
     LoadError, ["no section", "xpd"], 'SEC("xpd")'),
    ("tracepoint misspelled", program("tracepoint/syscalls/sys_enter_opnat", "return 0;"),
     TracepointNotFound, ["no tracepoint", "syscalls/sys_enter_opnat"], "sys_enter_opnat"),
    ("tracepoint category misspelled", program("tp/syscall/sys_enter_openat", "return 0;"),
     TracepointNotFound, ["no tracepoint", "syscall/sys_enter_openat"], "syscall/"),
    ("raw tracepoint misspelled", program("raw_tp/sched_swich", "return 0;"),
     TracepointNotFound, ["no tracepoint", "sched_swich"], "sched_swich"),
    ("no license, bpf_printk", program("tracepoint/syscalls/sys_enter_openat",
                                       'bpf_printk("open");\n    return 0;', license=""),
     VerifierError, ["bpf_trace_printk", "GPL", "no license"], "bpf_printk"),
    ("a license not GPL, a GPL helper",
     program("tracepoint/syscalls/sys_enter_openat",
             "struct task_struct *t = bpf_get_current_task_btf();\n    return t->pid;",
             license='char LICENSE[] SEC("license") = "BSD";\n'),
     VerifierError, ["bpf_get_current_task_btf", "GPL", "'BSD'"], "bpf_get_current_task_btf"),
    ("an undeclared kfunc", program("syscall", "struct task_struct *t = bpf_task_acquire_nope(0);\n"
                                    "    return t != 0;"),
     LoadError, ["no kfunc", "bpf_task_acquire_nope"], "bpf_task_acquire_nope(0)"),
    ("a __ksym kfunc the kernel lacks",
     program("syscall", "return bpf_cgroup_frob(0) != 0;",
             before="extern struct cgroup *bpf_cgroup_frob(struct cgroup *c) __ksym;\n"),
     LoadError, ["no kfunc", "bpf_cgroup_frob"], "extern struct cgroup"),
    ("a misspelled call of the code's own function",
     program("syscall", "return twice(2);", before="static __noinline int double_it(int x) "
             "{ return 2 * x; }\n".replace("double_it", "twice_it")),
     LoadError, ["twice()", "not a function of the code"], "return twice(2);"),
    ("a misspelled field of a map declaration",
     program("syscall", "return 0;", before=a_map("HASH", "__uint(max_entries, 8)",
                                                  "__type(key, __u32)", "__type(avlue, __u64)")),
     LoadError, ["'things'", "field libbpf does not know", "'avlue'"], "__type(avlue"),
    ("a map declaration without a type",
     program("syscall", "return 0;", before='struct {\n    __uint(max_entries, 8);\n'
             '    __type(key, __u32);\n    __type(value, __u64);\n} things SEC(".maps");\n'),
     LoadError, ["'things'", "declares no type"], "} things SEC"),
    ("a hash lookup without a NULL check",
     program("tracepoint/syscalls/sys_enter_openat",
             "__u32 k = 1;\n    __u64 *v = bpf_map_lookup_elem(&things, &k);\n    *v += 1;\n    return 0;",
             before=HASH),
     VerifierError, ["map_value_or_null"], "*v += 1;"),
    ("bpf_user_ringbuf_drain without a callback",
     program("syscall", "return bpf_user_ringbuf_drain(&inbox, NULL, NULL, 0);",
             before=a_map("USER_RINGBUF", "__uint(max_entries, 4096)", name="inbox")),
     VerifierError, ["no function", "bpf_user_ringbuf_drain", "callback"], "NULL, NULL"),
    ("bpf_loop without a callback", program("syscall", "return bpf_loop(4, NULL, NULL, 0);"),
     VerifierError, ["no function", "bpf_loop", "callback"], "bpf_loop(4"),
    ("a ring buffer with a key and a value",
     program("syscall", "return bpf_ringbuf_output(&things, &ctx, 8, 0);",
             before=a_map("RINGBUF", "__uint(max_entries, 4096)", "__type(key, __u32)",
                          "__type(value, __u64)")),
     LoadError, ["'things'", "ringbuf", "no key"], "} things SEC"),
    ("an array without max_entries",
     program("syscall", "__u32 k = 0;\n    return bpf_map_lookup_elem(&things, &k) != 0;",
             before=a_map("ARRAY", "__type(key, __u32)", "__type(value, __u64)")),
     LoadError, ["'things'", "array", "no max_entries"], "} things SEC"),
    ("a queue with a key",
     program("syscall", "__u64 v = 1;\n    return bpf_map_push_elem(&things, &v, 0);",
             before=a_map("QUEUE", "__uint(max_entries, 4)", "__type(key, __u32)",
                          "__type(value, __u64)")),
     LoadError, ["'things'", "queue", "no key"], "} things SEC"),
    ("a hash without a key type",
     program("syscall", "__u32 k = 0;\n    return bpf_map_lookup_elem(&things, &k) != 0;",
             before=a_map("HASH", "__uint(max_entries, 4)", "__type(value, __u64)")),
     LoadError, ["'things'", "no key type"], "} things SEC"),
    ("BCC C in %%bpfobject",
     'BPF_HASH(counts, u32, u64);\nTRACEPOINT_PROBE(syscalls, sys_enter_openat) {\n'
     '    u32 k = 0;\n    counts.increment(k);\n    bpf_trace_printk("hi\\n");\n    return 0;\n}\n',
     CompileError, ["is BCC C"], None),
    ("BCC C with perf_submit in %%bpfobject",
     'BPF_PERF_OUTPUT(events);\nint kprobe__do_sys_openat2(struct pt_regs *ctx) {\n'
     '    u32 pid = 1;\n    events.perf_submit(ctx, &pid, sizeof(pid));\n    return 0;\n}\n',
     CompileError, ["is BCC C"], None),
    ("a congestion control without ssthresh and undo_cwnd", CC_WITHOUT_TWO_OPS,
     LoadError, ["register", ".ssthresh", ".undo_cwnd"], "struct tcp_congestion_ops l19"),
    ("a struct_ops program no table names", CC_OP_UNUSED,
     LoadError, ["l19_ssthresh()", "no struct_ops table"], 'SEC("struct_ops/l19_ssthresh")'),
]


@needs_toolchain
@pytest.mark.parametrize("source, kind, words, line", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_libbpf_refusal_leads_with_its_reason_at_the_learners_line(source, kind, words, line):
    before = kernel_state()
    with pytest.raises(BpfkitError) as e:
        bpfobject.load(source, name="load_t", where=WHERE, first_line=2)
    first = e.value.what.splitlines()[0]
    if isinstance(e.value, CompileError) and "call to undeclared function" in first:
        # clang 16 and later refuse the call themselves (clang 14 leaves it to libbpf): the
        # kit's hint for it then says what the load's message would.
        called = re.search(r"undeclared function '(\w+)'", first).group(1)
        assert called in " ".join(words) and line_of(source, line) is not None
        assert f"line {line_of(source, line)}:" in first, first
        assert ("did you mean" in e.value.hint) == ("twice" in called), e.value.hint
        assert "__ksym" in e.value.hint or "did you mean" in e.value.hint
        assert bpfkit.loaded() == {} and not leftovers(before)
        return
    assert isinstance(e.value, kind), repr(e.value)
    for word in words:
        assert word in first, f"{word!r} not in the first line: {first!r}"
    assert ".bpf.o" not in first and "/tmp" not in first and "/.cache" not in first
    assert "/.cache/" not in str(e.value), "the kit's temporary folder reached the learner"
    if line is not None:
        assert f"at line {line_of(source, line)} of {WHERE}" in first, first
    assert e.value.hint and "older than the feature" not in e.value.hint
    assert bpfkit.loaded() == {}
    assert not leftovers(before), "a refused object left something in the kernel"


@needs_toolchain
def test_libbpf_c_in_bpf_names_bpfobject():
    with pytest.raises(CompileError) as e:
        bpfkit.load(CASES[0][1].replace("tracepont", "tracepoint"), name="load_t_bcc")
    assert "written for libbpf" in e.value.what and "%%bpfobject" in e.value.hint
    assert bpfkit.loaded() == {}


# ---- the words, without a kernel ---------------------------------------------------------------

# libbpf's words for a section it does not know, as this kit's load of one captured them
SAID_SECTION = """libbpf: prog 'on_open': missing BPF prog type, check ELF section name 'kprbe/do_sys_openat2'
libbpf: prog 'on_open': failed to load: -22
libbpf: failed to load object '/root/.cache/bpfkit/tmps23x1gzm/t.bpf.o'
"""
SAID_NULL = """libbpf: prog 'on_open': BPF program load failed: Permission denied
libbpf: prog 'on_open': -- BEGIN PROG LOAD LOG --
; __u32 k = 1; @ t.bpf.c:11
1: (63) *(u32 *)(r10 -4) = r1         ; R1=1 R10=fp0 fp-8=mmmm????
;  @ t.bpf.c:0
3: (07) r2 += -4                      ; R2=fp-4
; __u64 *slot = bpf_map_lookup_elem(&counts, &k); @ t.bpf.c:12
6: (85) call bpf_map_lookup_elem#1    ; R0=map_value_or_null(id=1,map=counts,ks=4,vs=8)
; return *slot; @ t.bpf.c:13
7: (79) r1 = *(u64 *)(r0 +0)
R0 invalid mem access 'map_value_or_null'
processed 7 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0
-- END PROG LOAD LOG --
libbpf: prog 'on_open': failed to load: -13
libbpf: failed to load object '/root/.cache/bpfkit/tmpxyz/t.bpf.o'
"""
NULL_SOURCE = (HEAD + HASH.replace("things", "counts") + 'SEC("tp/syscalls/sys_enter_openat")\n'
               "int on_open(void *ctx) {\n    __u32 k = 1;\n"
               "    __u64 *slot = bpf_map_lookup_elem(&counts, &k);\n    return *slot;\n}\n")


@pytest.mark.unit
def test_the_first_reason_skips_libbpfs_echoes_and_the_temporary_path():
    assert libbpf_load.first_reason(SAID_SECTION).startswith("prog 'on_open': missing BPF prog type")
    lines = libbpf_load.libbpf_lines(SAID_SECTION)
    assert lines[-1] == "failed to load object 't.bpf.o'"
    assert not any("/.cache" in l or l.startswith("libbpf:") for l in lines)


@pytest.mark.unit
def test_an_unknown_section_kind_says_which_kind_libbpf_knows():
    e = bpfobject._load_error("t", 22, SAID_SECTION, {}, program("kprbe/do_sys_openat2", "return 0;"),
                              WHERE, 2)
    assert isinstance(e, LoadError) and e.errno == 22
    assert e.what.startswith('libbpf knows no section SEC("kprbe/do_sys_openat2")')
    assert "at line 4 of" in e.what.splitlines()[0]
    assert 'did you mean SEC("kprobe/do_sys_openat2")' in e.hint


@pytest.mark.unit
def test_a_libbpf_verifier_log_leads_with_the_reason_at_the_learners_line():
    e = bpfobject._load_error("t", 13, SAID_NULL, {}, NULL_SOURCE, WHERE, 2)
    assert isinstance(e, VerifierError)
    first = e.what.splitlines()[0]
    assert "map_value_or_null" in first and f"at line {line_of(NULL_SOURCE, 'return *slot')}" in first
    assert "if (slot)" in e.hint and "bpf_map_lookup_elem() returns NULL" in e.hint
    assert "; return *slot;  (line 14)" in e.detail   # the log's line, renumbered for the cell


@pytest.mark.unit
def test_the_bcc_side_keeps_its_words_for_an_unchecked_lookup():
    hint = verifier.null_check_hint(["u64 *p = counts.lookup(&k);", "x = *p;"], 2)
    assert "lookup() returns NULL when the key is missing" in hint and "if (p)" in hint


@pytest.mark.unit
def test_a_callback_left_null_is_named_with_the_helpers_callback():
    log = ("0: R1=ctx() R10=fp0\n; return bpf_loop(4, NULL, NULL, 0); @ t.bpf.c:6\n"
           "0: (b7) r1 = 4\n5: (85) call bpf_loop#181\nR2 type=scalar expected=func\n"
           "processed 5 insns (limit 1000000)\n")
    source = program("syscall", "return bpf_loop(4, NULL, NULL, 0);")
    e = verifier.load_error(log, "run", source, WHERE, 13, 2, style="libbpf")
    assert e.what.startswith("Function run() passes no function as argument 2 of bpf_loop")
    assert "static long on_round(__u32 index, void *ctx)" in e.hint


@pytest.mark.unit
@pytest.mark.parametrize("kind, fields, words", [
    ("RINGBUF", ["__uint(max_entries, 4096)", "__type(key, __u32)"], "has no key and no value"),
    ("USER_RINGBUF", ["__uint(max_entries, 4096)", "__uint(value_size, 8)"], "has no key and no value"),
    ("RINGBUF", ["__uint(max_entries, 3000)"], "a power of 2"),
    ("ARRAY", ["__type(key, __u32)", "__type(value, __u64)"], "declares no max_entries"),
    ("LRU_HASH", ["__uint(max_entries, 8)", "__type(key, __u32)"], "declares no value type"),
    ("BLOOM_FILTER", ["__uint(max_entries, 8)", "__type(key, __u32)", "__type(value, __u32)"], "has no key"),
    ("PERCPU_ARRAY", ["__uint(max_entries, 8)", "__type(key, __u64)", "__type(value, __u64)"],
     "32-bit index"),
    ("PROG_ARRAY", ["__uint(max_entries, 8)", "__type(key, __u32)", "__type(value, __u64)"],
     "programs' fds (4 bytes)"),
    ("PERF_EVENT_ARRAY", ["__type(key, __u32)", "__type(value, struct event)"], "perf events' fds"),
    ("TASK_STORAGE", ["__uint(max_entries, 16)", "__uint(map_flags, BPF_F_NO_PREALLOC)",
                      "__type(key, int)", "__type(value, __u64)"], "one value per task"),
    ("INODE_STORAGE", ["__type(key, int)", "__type(value, __u64)"], "BPF_F_NO_PREALLOC"),
])
def test_a_map_declaration_the_kernel_refuses_says_what_it_lacks(kind, fields, words):
    source = program("syscall", "return 0;", before=a_map(kind, *fields))
    name = kind.lower()
    e = libbpf_load.map_declaration("things", name, 22, source, WHERE, 2, "")
    first = e.what.splitlines()[0]
    assert first.startswith(f"The map 'things' ({name}) cannot be made as declared") and words in first
    assert f"at line {line_of(source, '} things SEC')} of {WHERE}" in first
    assert "things" in e.hint


@pytest.mark.unit
def test_which_loader_c_is_written_for():
    assert libbpf_c.written_for(CASES[0][1]) == "libbpf"
    assert libbpf_c.written_for("BPF_ARRAY(a, u64, 4);\nint f(void *ctx) { return 0; }") == "bcc"
    assert libbpf_c.written_for("int f(void *ctx) { u64 *p = seen.lookup(&k); return 0; }") == "bcc"
    assert libbpf_c.written_for("int f(void *ctx) { return 0; }") is None
    # libbpf C may print with bpf_trace_printk: still libbpf's
    assert libbpf_c.written_for(HEAD + 'int f(void *c) { bpf_trace_printk("x", 2); return 0; }') == "libbpf"
    e = libbpf_c.bcc_style("BPF_HASH(h, u32, u64);\nint f(void *ctx) { h.increment(1); return 0; }",
                           WHERE, 2)
    assert "is BCC C" in e.what and "%%bpf NAME" in e.hint
    assert "line 2: BPF_HASH(h, u32, u64);" in e.detail and "line 3:" in e.detail


@pytest.mark.unit
@pytest.mark.parametrize("members, missing", [
    (".init = (void *)a, .cong_avoid = (void *)b,", ".ssthresh and no .undo_cwnd"),
    (".ssthresh = (void *)a, .cong_avoid = (void *)b,", ".undo_cwnd,"),
    (".ssthresh = (void *)a, .undo_cwnd = (void *)b,", ".cong_avoid or cong_control"),
])
def test_a_congestion_control_missing_a_required_operation_is_named(members, missing):
    source = (HEAD + 'SEC(".struct_ops.link")  // the table\nstruct tcp_congestion_ops cc = {\n    '
              + members + '\n    .name = "x",\n};\n' + LICENSE)
    e = libbpf_load.register_refused("cc", 22, "", source, WHERE, 2)
    assert missing in e.what and "at line 5 of" in e.what and "must be one that no" not in e.hint
    named = libbpf_load.register_refused("cc", 17, "", source, WHERE, 2)   # EEXIST: the name
    assert "name must be one that no loaded algorithm has" in named.hint


@pytest.mark.unit
def test_clangs_undeclared_function_gets_the_libbpf_hint():
    source = program("syscall", "return twice(2);", before="static int twice_it(int x) { return x; }\n")
    assert "did you mean twice_it()" in libbpf_load.compile_hint(
        "line 7: error: call to undeclared function 'twice'; ISO C99 and later do not support", source)
    assert "__ksym" in libbpf_load.compile_hint("line 7: error: call to undeclared function 'bpf_frob'",
                                                 source)
    assert libbpf_load.compile_hint("line 7: error: expected ';'", source) == ""


@pytest.mark.unit
def test_newer_libbpfs_own_words_for_an_unused_struct_ops_program_name_it():
    """libbpf 1.5 (Debian 13) refuses the object itself; libbpf 1.1 leaves it to the kernel."""
    said = ("libbpf: prog 'l19_ssthresh': SEC(\"struct_ops\") program isn't referenced anywhere, "
            "did you forget to use it?\n")
    e = libbpf_load.load_refused("load_t", 22, said, CC_OP_UNUSED, WHERE, 2)
    first = e.what.splitlines()[0]
    assert "l19_ssthresh()" in first and "no struct_ops table" in first
    line = line_of(CC_OP_UNUSED, 'SEC("struct_ops/l19_ssthresh")')
    assert f"at line {line} of {WHERE}" in first
