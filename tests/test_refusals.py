"""A kernel that refuses something: every probe answers with a row, every door names the refusal
truly, and the lessons that need the refused feature skip that part and run on.

Machines of our own kind differ (one refuses `arena` maps to root with every capability, others
allow all 33 types), so the refusal paths are driven here by the kit's test switch
(BPFKIT_PRETEND_REFUSED), which makes the kit act as if the kernel had said the errno, through the
same code a real refusal takes. The first tests need no kernel at all.
"""
from __future__ import annotations

import errno
import os

import pytest

import bpfkit
from bpfkit.loader import bpfobject, features
from bpfkit.core import maptypes
from bpfkit.access import refusal, system
from bpfkit.core.errors import NotAllowedHere, NotFound, PrivilegeError, UsageError
from bpfkit.maps import create
from notebook_runs import execute, notebook_path

REFUSALS = [errno.EPERM, errno.EINVAL, errno.EOPNOTSUPP, refusal.ENOTSUPP]
EVERY_CAPABILITY = sum(1 << bit for bit in refusal.CAPABILITIES.values())


@pytest.fixture
def all_capabilities(monkeypatch):
    monkeypatch.setattr(system, "effective_caps", lambda: EVERY_CAPABILITY)


def pretend(monkeypatch, *items: str) -> None:
    monkeypatch.setenv(refusal.PRETEND, ",".join(items))


# -- without a kernel ------------------------------------------------------------------------------

@pytest.mark.unit
def test_the_switch_names_kind_name_and_errno():
    env = {refusal.PRETEND: "map:arena, program:lsm:EINVAL,map:queue:ENOTSUPP,feature:kprobes:95"}
    os.environ.update(env)
    try:
        assert refusal.pretended("map", "arena") == errno.EPERM     # EPERM when none is named
        assert refusal.pretended("map", "ARENA") == errno.EPERM
        assert refusal.pretended("program", "lsm") == errno.EINVAL
        assert refusal.pretended("map", "queue") == refusal.ENOTSUPP
        assert refusal.pretended("feature", "kprobes") == 95
        assert refusal.pretended("program", "arena") == 0 and refusal.pretended("map", "hash") == 0
    finally:
        del os.environ[refusal.PRETEND]
    assert refusal.pretended("map", "arena") == 0
    os.environ[refusal.PRETEND] = "map:arena:EPREM"
    try:
        with pytest.raises(UsageError, match="names no errno in 'map:arena:EPREM'"):
            refusal.pretended("map", "arena")
    finally:
        del os.environ[refusal.PRETEND]


@pytest.mark.unit
@pytest.mark.parametrize("err", REFUSALS)
@pytest.mark.parametrize("probe", ["map", "program", "helper", "allowed map", "allowed program",
                                   "kprobes"])
def test_each_probe_turns_a_refusal_into_a_row(probe, err, monkeypatch, all_capabilities):
    """The switch answers before any bpf() call is made, so this runs without a kernel: each
    probe gets a row (or a false Allowed) with the refusal in words, never an exception."""
    name = refusal.errno_name(err)
    if probe.endswith("map") or probe == "map":
        pretend(monkeypatch, f"map:arena:{name}")
    elif probe == "kprobes":
        pretend(monkeypatch, f"feature:kprobes:{name}")
    elif probe == "helper":
        pretend(monkeypatch, f"helper:bpf_loop:{name}")
    else:
        pretend(monkeypatch, f"program:tracepoint:{name}")
    if probe == "map":
        supported, why = create._try(maptypes.get("arena"))
    elif probe == "program":
        supported, why = refusal.attempt(lambda: features._load_nothing("tracepoint"))
    elif probe == "helper":
        supported, why = refusal.attempt(lambda: features._call_helper("tracepoint", 181, "bpf_loop"))
    else:
        here = bpfkit.allowed({"allowed map": "arena map", "allowed program": "tracepoint program",
                               "kprobes": "kprobes"}[probe])
        supported, why = bool(here), here.reason
        assert repr(here).endswith("the parts that need them are skipped.") and here.error.errno == err
    assert supported is False and name in why
    if err == errno.EPERM:
        assert "every capability" in why and "policy" in why
    else:
        assert "built without it" in why or os.strerror(err) in why or "Not supported" in why


@pytest.mark.unit
def test_eperm_with_every_capability_is_the_kernels_policy_not_a_privilege(all_capabilities):
    e = refusal.explain(errno.EPERM, "arena maps", since="6.9")
    assert type(e) is NotAllowedHere and e.errno == errno.EPERM
    assert e.what.startswith("This kernel does not allow arena maps here")
    assert "CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN, so no privilege is missing" in e.what
    assert "lockdown" in e.what and "root" not in e.hint and "dmesg" in e.hint and "bpftool" in e.hint


@pytest.mark.unit
def test_eperm_without_bpf_capabilities_is_a_privilege(monkeypatch):
    monkeypatch.setattr(system, "effective_caps", lambda: 1 << 12)   # CAP_NET_ADMIN alone
    e = refusal.explain(errno.EPERM, "arena maps")
    assert type(e) is PrivilegeError and "lacks CAP_BPF and CAP_PERFMON" in e.what


@pytest.mark.unit
def test_eperm_without_cap_net_admin_names_it(monkeypatch):
    monkeypatch.setattr(system, "effective_caps", lambda: EVERY_CAPABILITY & ~(1 << 12))
    e = refusal.explain(errno.EPERM, "devmap maps")
    assert type(e) is PrivilegeError and "lacks CAP_NET_ADMIN" in e.what


@pytest.mark.unit
@pytest.mark.parametrize("err", [errno.EINVAL, errno.EOPNOTSUPP, refusal.ENOTSUPP])
def test_a_feature_the_kernel_lacks_says_since_when(err, all_capabilities):
    e = refusal.explain(err, "bloom_filter maps", since="5.16")
    assert type(e) is NotAllowedHere and e.what.startswith("This kernel does not have bloom_filter maps")
    assert "older than Linux 5.16" in e.hint and "older than Linux 5.16" in e.short


@pytest.mark.unit
def test_anything_a_probe_meets_is_a_row():
    for exc in (OSError(errno.EPERM, "Operation not permitted"), ValueError("bad"), TypeError("odd"),
                NotAllowedHere("This kernel does not allow x here.", errno=errno.EPERM, short="EPERM: x")):
        def trial(exc=exc):
            raise exc
        supported, why = refusal.attempt(trial)
        assert supported is False and why
    with pytest.raises(KeyboardInterrupt):   # Stop is never swallowed
        refusal.attempt(lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


@pytest.mark.unit
def test_a_feature_bpfkit_does_not_know_is_told_with_the_nearest():
    with pytest.raises(NotFound, match="no feature 'arena_mpa'") as e:
        bpfkit.allowed("arena_mpa")
    assert "arena" in e.value.hint


@pytest.mark.unit
def test_arena_programs_is_what_clang_says_of_address_space_casts(monkeypatch):
    """The toolchain half of an arena lesson: allowed("arena programs") compiles a probe with the
    clang %%bpfobject uses, and agrees with that clang's own list of BPF features (a clang 18
    compiles __arena pointers into plain loads, which the verifier refuses)."""
    import subprocess
    clang = bpfobject.clang()
    if clang is None:
        pytest.skip("no clang here")
    macros = subprocess.run([clang, "-target", "bpf", "-dM", "-E", "-"], input="", capture_output=True,
                            text=True, check=True).stdout
    here = bpfkit.allowed("arena programs")
    assert bool(here) == ("__BPF_FEATURE_ADDR_SPACE_CAST" in macros), here
    assert bool(bpfkit.allowed("arena program")) == bool(here)
    if not here:
        assert "LLVM 19" in here.why and "clang" in repr(here)
    pretend(monkeypatch, "feature:arena_programs")
    refused = bpfkit.allowed("arena programs")
    assert not refused and "pretended" in refused.reason


# -- on the real kernel ----------------------------------------------------------------------------

def test_map_types_keeps_every_other_row_when_one_type_is_refused(monkeypatch, no_leaks):
    pretend(monkeypatch, "map:arena", "map:queue:EINVAL")
    types = bpfkit.map_types().set_index("type")
    assert not types.loc["arena", "supported"] and "EPERM" in types.loc["arena", "error"]
    assert not types.loc["queue", "supported"] and "EINVAL" in types.loc["queue", "error"]
    assert types.loc["hash", "supported"] and types.loc["stack", "supported"]
    assert bpfkit.host.lifetime.held() == {}


def test_create_map_names_a_refusal_truly_and_makes_nothing(monkeypatch, no_leaks):
    pretend(monkeypatch, "map:bloom_filter")
    with pytest.raises(NotAllowedHere) as e:
        bpfkit.create_map("bloom_filter", value="u32")
    assert e.value.errno == errno.EPERM and "no privilege is missing" in e.value.what
    assert "needs root" not in str(e.value) and bpfkit.host.lifetime.held() == {}


def test_a_refused_program_type_is_named_at_load(monkeypatch, no_leaks):
    pretend(monkeypatch, "program:socket_filter")
    with bpfkit.load("int keep(struct __sk_buff *skb) { return 0; }\n", name="l_refused") as prog:
        with pytest.raises(NotAllowedHere, match=r"does not allow loading function keep\(\) as a socket_filter program here") as e:
            prog.load_func("keep", "socket_filter")
        assert e.value.errno == errno.EPERM
    assert not features.allowed("socket_filter program")
    monkeypatch.delenv(refusal.PRETEND)
    assert features.allowed("socket_filter program")


def test_program_types_tries_each_type_and_never_raises(monkeypatch, no_leaks):
    pretend(monkeypatch, "program:xdp:EOPNOTSUPP")
    types = bpfkit.program_types().set_index("type")
    assert types.loc["tracepoint", "supported"] and types.loc["socket_filter", "supported"]
    assert not types.loc["xdp", "supported"] and "EOPNOTSUPP" in types.loc["xdp", "error"]
    assert (types["supported"] == (types["error"] == "")).all()


def test_helpers_says_which_a_program_type_may_call(monkeypatch, no_leaks):
    tracepoint = bpfkit.helpers("tracepoint").set_index("helper")
    assert tracepoint.loc["bpf_map_lookup_elem", "supported"]
    assert tracepoint.loc["bpf_get_current_pid_tgid", "supported"]
    xdp = bpfkit.helpers("xdp").set_index("helper")
    assert xdp.loc["bpf_map_lookup_elem", "supported"]
    assert not xdp.loc["bpf_override_return", "supported"]    # kprobes only, whatever the kernel
    assert "not for xdp programs here" in xdp.loc["bpf_override_return", "error"]
    assert (xdp["supported"] == (xdp["error"] == "")).all()
    pretend(monkeypatch, "program:xdp")                      # a refused type: every row says so
    refused = bpfkit.helpers("xdp")
    assert not refused["supported"].any() and refused["error"].str.contains("EPERM").all()
    with pytest.raises(NotFound, match="no program type 'xpd'"):
        bpfkit.helpers("xpd")


def test_a_libbpf_object_with_a_refused_map_leaves_nothing(monkeypatch, no_leaks):
    pretend(monkeypatch, "map:user_ringbuf")
    with pytest.raises(NotAllowedHere, match="does not allow user_ringbuf maps here"):
        bpfobject.load("l19_uring")
    assert bpfkit.loaded() == {} and bpfkit.host.lifetime.held() == {}


@pytest.mark.parametrize("lesson, refused, says", [
    ("19_beyond_bcc", ["map:arena"], ["This kernel does not allow arena maps here",
                                      "Skipped: this kernel refuses arena maps"]),
    ("19_beyond_bcc", ["feature:arena_programs"], ["cannot compile arena programs (pretended)"]),
    ("19_beyond_bcc", ["map:struct_ops:EINVAL", "map:user_ringbuf:EOPNOTSUPP"],
     ["Skipped: this kernel refuses struct_ops maps (EINVAL",
      "Skipped: this kernel refuses user_ringbuf maps (EOPNOTSUPP"]),
    ("19_beyond_bcc-solution", ["map:struct_ops"], ["Skipped: this kernel refuses struct_ops"]),
    ("14_cgroup_maps", ["map:cgrp_storage:EINVAL"], ["This kernel does not have cgrp_storage maps",
                                                     "Skipped: this kernel refuses cgrp_storage maps"]),
    ("20_map_type_atlas", ["map:arena", "map:queue"], ["arena: EPERM to a process with every capability"]),
])
def test_a_lesson_runs_on_where_the_kernel_refuses_a_feature(lesson, refused, says, monkeypatch, no_leaks):
    """Run All, top to bottom, with features refused: each part that needs one says so in one
    sentence, no cell fails (the collapsed checks and the exercise check included), nothing is
    left behind."""
    pretend(monkeypatch, *refused)   # in the environment the notebook's kernel starts with
    nb, _ = execute(notebook_path(lesson))
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert all(s in text for s in says), [s for s in says if s not in text]
    assert "Traceback" not in text


# -- the switch at every door: BCC's maps and programs ---------------------------------------------

def test_a_bcc_program_declaring_a_refused_map_type_is_refused_in_create_maps_words(monkeypatch, no_leaks):
    """BCC makes a program's maps as it builds it: the switch refuses a declared type there, by
    the type the kernel reports for the map, with the words create_map() has for that type."""
    pretend(monkeypatch, "map:hash")
    with pytest.raises(NotAllowedHere) as made:
        bpfkit.create_map("hash")
    with pytest.raises(NotAllowedHere) as declared:
        bpfkit.load("counter")
    assert declared.value.errno == errno.EPERM
    assert declared.value.what.startswith("Map 'counter_table' declared in bpf/counter.c cannot be made.")
    assert declared.value.what.endswith(made.value.what) and declared.value.hint == made.value.hint
    assert bpfkit.loaded() == {} and bpfkit.host.lifetime.held() == {}
    pretend(monkeypatch, "map:array")     # another type: the hash program loads
    with bpfkit.load("counter") as prog:
        assert prog["counter_table"].type == "hash"


@pytest.mark.parametrize("source, kind", [
    ("counter", "tracepoint"),
    ("BPF_ARRAY(n, u64, 1);\nRAW_TRACEPOINT_PROBE(sched_switch) { return 0; }\n", "raw_tracepoint"),
])
@pytest.mark.parametrize("err", ["EPERM", "EINVAL"])
def test_a_program_bcc_attaches_by_its_name_is_refused_by_its_type(source, kind, err, monkeypatch, no_leaks):
    """TRACEPOINT_PROBE and RAW_TRACEPOINT_PROBE functions load and attach as the program is
    loaded: the switch refuses their type there, named, and nothing is left."""
    pretend(monkeypatch, f"program:{kind}:{err}")
    with pytest.raises(NotAllowedHere) as e:
        bpfkit.load(source, name="l_refused_type")
    assert e.value.errno == getattr(errno, err) and kind in e.value.what
    assert ("does not allow" if err == "EPERM" else "does not have") in e.value.what
    assert bpfkit.loaded() == {} and bpfkit.host.lifetime.held() == {}


def test_the_record_switch_lists_what_the_kit_made_not_what_it_probed(monkeypatch, tmp_path, no_leaks):
    """BPFKIT_RECORD_USED is how tests/lesson_needs.py finds, by trying, what a lesson makes."""
    log = tmp_path / "used"
    monkeypatch.setenv(refusal.RECORD, str(log))
    assert features.allowed("queue map") and features.allowed("xdp program")
    bpfkit.map_types()
    assert not log.exists()                     # probes are not uses
    with bpfkit.load("counter"):
        pass
    with bpfkit.create_map("bloom_filter", value="u32"):
        pass
    assert log.read_text().splitlines() == ["map:hash", "program:tracepoint", "map:bloom_filter"]


# -- a skipped cell, and the cells that use what it would have made ----------------------------------

@pytest.fixture
def shell(monkeypatch):
    """A real IPython shell with the kit's extension, as a notebook's kernel has it."""
    from IPython.core.interactiveshell import InteractiveShell
    from bpfkit import magic
    monkeypatch.setattr(magic, "SKIPPED", {})
    ip = InteractiveShell.instance()
    magic.load_ipython_extension(ip)
    yield ip
    ip.input_transformers_cleanup.remove(magic.needs)
    for name in ("made", "uses_made", "later", "here", "guarded", "plain"):
        ip.user_ns.pop(name, None)
    InteractiveShell.clear_instance()


@pytest.mark.unit
def test_a_cell_that_uses_what_a_skipped_cell_made_is_skipped_naming_the_refusal(shell, monkeypatch, capsys):
    pretend(monkeypatch, "map:bloom_filter")
    shell.run_cell("# needs: bloom_filter map\nmade = bpfkit_not_reached()\n")
    shell.run_cell("uses_made = made + 1\nlater = 2\n")
    shell.run_cell("def guarded():\n    return later\n")
    shell.run_cell("plain = 3\n")
    said = capsys.readouterr().out.splitlines()
    assert said[0].startswith("Skipped: this kernel refuses bloom_filter maps (")
    assert said[1] == "Skipped: this kernel refuses bloom_filter maps, which made (from a skipped cell above) needs."
    assert said[2] == "Skipped: this kernel refuses bloom_filter maps, which later (from a skipped cell above) needs."
    assert len(said) == 3 and shell.user_ns["plain"] == 3
    assert not {"made", "uses_made", "later", "guarded"} & set(shell.user_ns)


@pytest.mark.unit
def test_a_cell_that_asks_allowed_itself_runs_and_a_name_made_again_is_used(shell, monkeypatch, capsys):
    pretend(monkeypatch, "map:bloom_filter")
    shell.run_cell("here = __import__('bpfkit').allowed('bloom_filter map')\n")
    shell.run_cell("# needs: bloom_filter map\nmade = 1\n")
    shell.run_cell("guarded = made if here else 'none'\n")
    assert shell.user_ns["guarded"] == "none"
    shell.run_cell("made = 5\n")
    shell.run_cell("later = made * 2\n")
    assert shell.user_ns["later"] == 10
    assert capsys.readouterr().out.count("Skipped:") == 1


@pytest.mark.unit
def test_a_guard_covers_only_what_it_guards(shell, monkeypatch, capsys):
    """Lesson 14's steering cell: `if cgrp_here:` guards one map, while `calls`, from a part a
    refusal skipped, is used outside it; the cell is skipped, and so is the next that uses it."""
    pretend(monkeypatch, "map:bloom_filter")
    shell.run_cell("here = __import__('bpfkit').allowed('bloom_filter map')\n")
    shell.run_cell("# needs: bloom_filter map\nmade = 1\nlater = 2\n")
    shell.run_cell("def guarded():\n    if here:\n        return made\n    return later\n")
    shell.run_cell("uses_made = guarded()\n")
    shell.run_cell("plain = 0 if not here else made\n")
    said = capsys.readouterr().out.splitlines()
    assert said[1:] == ["Skipped: this kernel refuses bloom_filter maps, which later (from a skipped cell above) needs.",
                        "Skipped: this kernel refuses bloom_filter maps, which guarded (from a skipped cell above) needs.",
                        "Skipped: this kernel refuses bloom_filter maps, which made (from a skipped cell above) needs."]
    assert not {"guarded", "uses_made"} & set(shell.user_ns)
    assert "plain" not in shell.user_ns      # `not here` is no guard the kit reads: skipped too
    shell.run_cell("total = 0\nfor later in range(3):\n    total += later\n")
    assert shell.user_ns["total"] == 3       # the cell's own `later`, not the skipped one


@pytest.mark.unit
def test_the_names_a_cell_makes_and_reads():
    from bpfkit.magic import _names
    assert _names(["%%bpf cgrp_calls maps=per_cgroup,seen {offsets}\n", "int x;\n"]) == \
        ({"cgrp_calls"}, {"per_cgroup", "seen", "offsets"})
    made, read = _names(["%matplotlib inline\n", "df = table.frame()\n", "def f():\n", "    return g\n"])
    assert made == {"df", "f"} and {"table", "g"} <= read
    assert _names(["this is not python(\n"]) == (set(), set())


# -- the doctor lists the lessons -------------------------------------------------------------------

def test_the_doctor_lists_the_parts_a_refusal_skips_and_why(monkeypatch, no_leaks):
    """From the lessons' `# needs:` lines and the kernel's answers: a refused type names each
    lesson part that needs it; a lesson that needs none of it runs fully."""
    import io
    from bpfkit.lessons import here
    needing = {stem for stem in (l.stem for l in bpfkit.core.catalogue.LESSONS)
               if any("hash map" in w for _, wanted in here.parts(stem) for w in wanted)}
    assert "01_hash_map_counter" in needing
    full = here.lessons_here()
    pretend(monkeypatch, "map:hash")
    table = here.lessons_here()
    skipped = table[table["refused"] == "hash maps"]
    assert "01_hash_map_counter" in set(skipped["lesson"]) and set(skipped["lesson"]) <= needing
    assert skipped["why"].str.contains("EPERM").all()
    untouched = table[~table["lesson"].isin(needing)]      # what needs no hash map is as it was
    assert untouched.reset_index(drop=True).equals(full[~full["lesson"].isin(needing)].reset_index(drop=True))
    assert "The program" in set(skipped[skipped["lesson"] == "01_hash_map_counter"]["part"])
    out = io.StringIO()
    assert here.doctor(out) == 0
    said = out.getvalue()
    runs_fully = (table.groupby("lesson")["part"].max() == "").sum()
    assert f"lessons: {runs_fully} of {len(bpfkit.core.catalogue.LESSONS)} run fully on this kernel" in said
    assert '01_hash_map_counter skips "The program"' in said and "why hash maps: EPERM" in said
