"""Lesson 12 on the real kernel: an XDP program counts frames under the longest stored prefix of
their source address in an LPM trie; exact counts, live re-classification, user-space lookups,
the workload that sends from chosen source addresses, and the exercise's check."""
from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

import bpfkit
from bpfkit.host import lifetime
from bpfkit.lab import net, traffic
from bpfkit.core.errors import BpfkitError, UsageError
from bpfkit.lessons import l12_lpm_trie as lpm_trie
from bpfkit.lessons.l12_lpm_trie import check_prefix_exercise
from notebook_runs import solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
DST, DST_MAC = lpm_trie.DST, "02:00:00:00:0c:01"
PREFIXES = ["0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24"]
PLAN = {"10.1.2.3": 6, "10.1.2.77": 4, "10.1.9.1": 5, "10.200.0.5": 3, "203.0.113.9": 2}
RIGHT = {"10.1.2.20": "10.1.2.0/24", "10.1.2.127": "10.1.2.64/26", "10.1.2.128": "10.1.2.0/24",
         "10.1.3.1": "10.1.0.0/16", "10.2.0.1": "10.0.0.0/8", "11.1.2.3": "0.0.0.0/0"}


def key(prefix: str) -> dict:
    network = ipaddress.ip_network(prefix)
    return {"prefixlen": network.prefixlen, "addr": list(network.network_address.packed)}


def hits(trie) -> dict[str, int]:
    frame = trie.frame()
    return {lpm_trie.label(n, a): int(v) for n, a, v in zip(frame["prefixlen"], frame["addr"], frame["value"])}


def send(trie, host, plan) -> int:
    """Send the plan and wait until the trie has counted every datagram (or 2 s)."""
    before = sum(hits(trie).values())
    sent = traffic.udp_from(host, plan, DST)
    net.wait_until(lambda: sum(hits(trie).values()) >= before + sent)
    return sent


@pytest.fixture
def host(no_leaks):
    """Host t12 of lab "l12-test": a default route out of eth0 and a known MAC for DST. The
    lab closes (detaching XDP) before `no_leaks` looks; its names must be gone after."""
    with net.Lab("l12-test") as lab:
        h = lab.host("t12")
        h.run("ip", "route", "add", "default", "dev", "eth0")
        h.neighbour(DST, DST_MAC)
        yield h
    assert h.netns not in net.netns_names() and h.port not in net.link_names()


@pytest.fixture
def classify(host):
    """The lesson's program, attached to the host's port, with the lesson's four prefixes."""
    with bpfkit.load("prefix_classify", name="l12-test-classify") as prog:
        host.lab.attach_xdp(prog, host.port, "xdp_classify")
        for prefix in PREFIXES:
            prog["prefixes"][key(prefix)] = 0
        yield prog


def test_the_trie_is_an_lpm_trie_with_a_struct_key(host):
    with bpfkit.load("prefix_classify", name="l12-test-classify") as prog:
        trie = prog["prefixes"]
        assert (trie.type, trie.key_size, trie.value_size, trie.max_entries) == ("lpm_trie", 8, 8, 64)
        assert trie.flags & 1                                  # BPF_F_NO_PREALLOC, set by BCC
        assert trie.frame().empty
        trie[key("10.1.2.0/24")] = 7
        trie[{"prefixlen": 8, "addr": [10, 0, 0, 0]}] = 1
        frame = trie.frame()
        assert list(frame.columns) == ["prefixlen", "addr", "value"]
        assert sorted(zip(frame["prefixlen"], frame["addr"], frame["value"])) == [
            (8, (10, 0, 0, 0), 1), (24, (10, 1, 2, 0), 7)]
        # keys() gives the stored keys as dicts that can be written back
        for stored in trie.keys():
            trie[stored] = 0
        assert hits(trie) == {"10.0.0.0/8": 0, "10.1.2.0/24": 0}
        with pytest.raises(BpfkitError):
            trie[{"prefixlen": 33, "addr": [10, 0, 0, 0]}] = 1  # an IPv4 prefix has 32 bits at most


def test_each_frame_is_counted_under_its_longest_prefix_exactly(host, classify):
    trie = classify["prefixes"]
    assert net.xdp_prog_id(host.port) in classify.program_ids()
    assert send(trie, host, PLAN) == 20
    assert hits(trie) == {"0.0.0.0/0": 2, "10.0.0.0/8": 3, "10.1.0.0/16": 5, "10.1.2.0/24": 10}
    # Without the default, an address outside every prefix is counted nowhere.
    del trie[key("0.0.0.0/0")]
    traffic.udp_from(host, {"203.0.113.9": 3, "10.1.2.3": 1}, DST)
    assert net.wait_until(lambda: hits(trie)["10.1.2.0/24"] == 11)
    assert hits(trie) == {"10.0.0.0/8": 3, "10.1.0.0/16": 5, "10.1.2.0/24": 11}


def test_user_space_lookups_match_the_longest_prefix_deletes_the_exact_one(host, classify):
    trie = classify["prefixes"]
    send(trie, host, PLAN)
    assert trie[key("10.1.2.3/32")] == 10 and trie[key("10.200.0.5/32")] == 3
    assert trie[key("10.1.0.0/16")] == 5                       # a stored prefix finds itself
    assert key("10.1.2.3/32") in trie
    with pytest.raises(KeyError):
        del trie[key("10.1.2.3/32")]                           # no such prefix stored
    del trie[key("0.0.0.0/0")]
    assert key("203.0.113.9/32") not in trie
    assert len(trie.frame()) == 3


def test_a_more_specific_prefix_takes_its_traffic_at_once(host, classify):
    trie = classify["prefixes"]
    send(trie, host, PLAN)
    trie[key("10.1.2.64/26")] = 0                              # 10.1.2.77 is in it, 10.1.2.3 not
    send(trie, host, PLAN)
    assert hits(trie) == {"0.0.0.0/0": 4, "10.0.0.0/8": 6, "10.1.0.0/16": 10,
                          "10.1.2.0/24": 10 + 6, "10.1.2.64/26": 4}
    del trie[key("10.1.2.64/26")]                              # and back
    send(trie, host, PLAN)
    assert hits(trie)["10.1.2.0/24"] == 26


def test_udp_from_sends_from_each_address_and_adds_missing_ones_once(host, classify):
    trie = classify["prefixes"]
    assert send(trie, host, {"10.1.2.3": 2, "10.1.2.4": 1}) == 3
    assert send(trie, host, {"10.1.2.3": 1}) == 1              # the address is there: not added again
    shown = host.run("ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    assert sorted(line.split()[3] for line in shown.splitlines()) == ["10.1.2.3/32", "10.1.2.4/32"]
    assert hits(trie)["10.1.2.0/24"] == 4
    with pytest.raises(UsageError, match="not an IPv4 address"):
        traffic.udp_from(host, {"10.1.2.300": 1}, DST)




def _lesson_trie(prog) -> None:
    for prefix in lpm_trie.LESSON_PREFIXES:
        prog["prefixes"][key(prefix)] = 0


def test_exercise_check_says_what_is_wrong_and_passes_the_solution(host, classify):
    _lesson_trie(classify)
    starter = {source: "?" for source in RIGHT}
    result = check_prefix_exercise(classify, host, starter)
    assert not result.passed and result.tries == 1 and "Fix:" not in str(result)
    assert "6 of the 6 sources have no prediction yet (10.1.2.20, 10.1.2.127" in str(result)
    assert not [line for line in solution_only_lines(ROOT / "notebooks" / "12_lpm_trie.ipynb") if line in str(result)], str(result)
    # with the predictions still open, the check does not name the sources that share the /24
    assert "10.1.2.3 still lands in 10.1.2.0/24, together with 2 other sources" in str(result)
    result = check_prefix_exercise(classify, host, RIGHT)
    assert not result.passed and len(result.problems) == 1
    assert "10.1.2.3 still lands in 10.1.2.0/24, together with 10.1.2.20, 10.1.2.128" in str(result)
    assert "Hint: Write the last bytes in binary" in str(result) and "Fix:" not in str(result)  # try 2

    wrong = {**RIGHT, "10.1.2.127": "10.1.2.0/24", "10.1.3.1": "10.1.2.0/24", "10.2.0.1": "10.2.0.0/16"}
    trie = classify["prefixes"]
    trie[key("10.1.2.0/27")] = 0                               # too wide: holds 10.1.2.20 too
    result = check_prefix_exercise(classify, host, wrong)
    text = str(result)
    assert not result.passed and len(result.problems) == 4, text
    assert "10.1.2.127: not 10.1.2.0/24. 10.1.2.0/24 contains 10.1.2.127, but so does a longer" in text
    assert "10.1.3.1: not 10.1.2.0/24. 10.1.2.0/24 does not contain 10.1.3.1" in text
    assert "10.2.0.0/16 is not one of the trie's prefixes" in text
    assert "10.1.2.0/27 catches 10.1.2.20 too: it is too wide" in text
    assert 'Fix: prediction["10.1.2.127"] = "10.1.2.64/26"' in text         # try 3: the code

    del trie[key("10.1.2.0/27")]
    trie[key("10.1.2.3/32")] = 0                               # works, but narrower than needed
    result = check_prefix_exercise(classify, host, RIGHT)
    assert not result.passed and len(result.problems) == 1
    assert "narrower than it needs to be" in str(result)

    trie[key("10.1.2.0/28")] = 0                               # two prefixes added: one too many
    result = check_prefix_exercise(classify, host, RIGHT)
    assert not result.passed and "prefixes beyond the lesson's five (10.1.2.0/28, 10.1.2.3/32)" in str(result)

    del trie[key("10.1.2.3/32")]
    result = check_prefix_exercise(classify, host, RIGHT)
    assert result.passed, result
    # the check sent PER_SOURCE datagrams from 10.1.2.3 (the /32 took them before): the /28 has those
    assert hits(trie)["10.1.2.0/28"] == lpm_trie.PER_SOURCE
    wrong_host = check_prefix_exercise(classify, "s12", RIGHT)
    assert wrong_host.problems[0].startswith("The check got a str as the host")
    assert "Fix: result = check_prefix_exercise(prefix_classify, s12, prediction)" in str(wrong_host)
    # host bits in the learner's own key are fine: the kernel compares only the prefix's bits
    del trie[key("10.1.2.0/28")]
    trie[{"prefixlen": 28, "addr": [10, 1, 2, 3]}] = 0
    assert check_prefix_exercise(classify, host, RIGHT).passed


def test_exercise_check_never_raises_on_a_wrong_setup(host):
    with bpfkit.load("prefix_classify", name="l12-test-classify") as prog:
        result = check_prefix_exercise(prog, host, RIGHT)       # not attached
        assert not result.passed and "is not this program's `xdp_classify`" in str(result)
        host.lab.attach_xdp(prog, host.port, "xdp_classify")
        prog["prefixes"][key("10.0.0.0/8")] = 0
        result = check_prefix_exercise(prog, host, RIGHT)       # the lesson's prefixes are missing
        assert not result.passed and "Were the cells above run in order?" in str(result)
        result = check_prefix_exercise(prog, host, RIGHT, map_name="nope")
        assert not result.passed and "no map named 'nope'" in str(result)
    with bpfkit.load("BPF_HASH(prefixes, u32, u64, 4);", name="l12-test-hash") as other:
        result = check_prefix_exercise(other, host, RIGHT)
        assert not result.passed and "is a hash map" in str(result)


@pytest.mark.filterwarnings("ignore:not a bytes object:DeprecationWarning")
def test_the_lessons_plain_bcc_script_works(host):
    """The lesson shows the same work in plain BCC: it must run as written."""
    from bcc import BPF
    b = BPF(src_file=str(ROOT / "bpf" / "12_lpm_trie" / "prefix_classify.c"))
    try:
        fn = b.load_func("xdp_classify", BPF.XDP)
        BPF.attach_xdp(host.port, fn, BPF.XDP_FLAGS_SKB_MODE)
        try:
            trie = b["prefixes"]
            k = trie.Key()
            k.prefixlen, k.addr[:] = 24, [10, 1, 2, 0]
            trie[k] = trie.Leaf(0)
            traffic.udp_from(host, {"10.1.2.3": 3}, DST)
            assert net.wait_until(lambda: [v.value for v in trie.values()] == [3])
            rows = [(".".join(map(str, k.addr)) + f"/{k.prefixlen}", v.value) for k, v in trie.items()]
            assert rows == [("10.1.2.0/24", 3)]
        finally:
            BPF.remove_xdp(host.port, BPF.XDP_FLAGS_SKB_MODE)
    finally:
        b.cleanup()
    assert net.xdp_prog_id(host.port) is None
    assert "l12-test" in lifetime.held("lab")
