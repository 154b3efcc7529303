"""Devmaps and the network lab on the real kernel: exact redirect counts, live steering, and a
lab that leaves no namespace, interface or XDP program behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import bpfkit
from bpfkit.access import kernel
from bpfkit.host import lifetime
from bpfkit.lab import net
from bpfkit.core.errors import MapError
from bpfkit.lessons.l06_devmap_xdp_redirect import check_source_port_balancing
from conftest import BPFTOOL, needs_bpftool
from notebook_runs import bpf_cell, solution_only_lines

ROOT = Path(__file__).resolve().parents[2]
LESSON = ROOT / "notebooks" / "06_devmap_xdp_redirect.ipynb"
SOLUTION = ROOT / "notebooks" / "solutions" / "06_devmap_xdp_redirect.ipynb"
SERVICE, SERVICE_MAC = "192.0.2.100", "02:00:00:00:00:64"

def udp_xdp(name: str, decide: str, maps: str = "") -> str:
    """An XDP program `name` that passes everything but IPv4 UDP, and returns `decide` (C, with
    `udp` in scope) for that."""
    return r"""
#include <uapi/linux/if_ether.h>
#include <uapi/linux/in.h>
#include <uapi/linux/ip.h>
#include <uapi/linux/udp.h>
""" + maps + r"""
int """ + name + r"""(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end || eth->h_proto != htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
        return XDP_PASS;
    struct udphdr *udp = (void *)(ip + 1);
    if ((void *)(udp + 1) > data_end)
        return XDP_PASS;
    """ + decide + "\n}\n"


BALANCE = udp_xdp("xdp_redirect", "if (udp->dest != htons(9000))\n        return XDP_PASS;\n"
                  "    u32 slot = SLOT;\n    return tx_port.redirect_map(slot, 0);",
                  maps="BPF_DEVMAP(tx_port, 4);")
# by_port is not declared: it is a devmap_hash made from Python and passed with maps=.
BY_PORT = udp_xdp("xdp_by_port", "return bpf_redirect_map(by_port, ntohs(udp->dest), XDP_PASS);")


@pytest.fixture
def clean_network():
    """Fails the test if it leaves a network namespace or an interface behind."""
    before = (net.netns_names(), net.link_names())
    yield
    lifetime.close_all("lab")
    after = (net.netns_names(), net.link_names())
    assert after == before, f"network changed: before {before}, after {after}"


@pytest.fixture
def lab(clean_network, no_leaks):
    """Host a sends to SERVICE; hosts b and c both are SERVICE (same address and MAC). It closes
    (detaching XDP programs) before `no_leaks` looks for leftovers."""
    with net.Lab("test") as lab:
        a = lab.host("a", "192.0.2.1/24")
        lab.host("b", f"{SERVICE}/24", mac=SERVICE_MAC)
        lab.host("c", f"{SERVICE}/24", mac=SERVICE_MAC)
        a.neighbour(SERVICE, SERVICE_MAC)
        yield lab


def _rx_packets(host: net.Host) -> int:
    out = host.run("ip", "-s", "-j", "link", "show", host.dev).stdout
    return json.loads(out)[0]["stats64"]["rx"]["packets"]


def _udp_checksum_errors(host: net.Host) -> int:
    lines = [l.split() for l in host.run("cat", "/proc/net/snmp").stdout.splitlines() if l.startswith("Udp:")]
    return int(dict(zip(lines[0], lines[1]))["InCsumErrors"])


# -- the reader ------------------------------------------------------------------------------
def test_devmap_frame_maps_slots_to_ifindex_and_name(lab):
    b, c = lab.hosts["b"], lab.hosts["c"]
    with bpfkit.load("devmap_redirect") as prog:
        tx = prog["tx_port"]
        assert tx.type == "devmap" and tx.map_type.values == "device"
        assert tx.frame().empty and list(tx.frame().columns) == ["index", "ifindex", "name"]
        tx[0] = b.port                       # by name
        tx[3] = c.port_ifindex               # by ifindex
        assert tx[0] == b.port_ifindex and tx[3] == c.port_ifindex
        assert tx.frame().to_dict("records") == [
            {"index": 0, "ifindex": b.port_ifindex, "name": b.port},
            {"index": 3, "ifindex": c.port_ifindex, "name": c.port}]
        assert 1 not in tx
        # Inside host b's namespace those ifindexes name nothing (b has only lo and eth0).
        assert tx.frame(netns=b.netns)["name"].isna().all()
        del tx[0]
        assert tx.frame()["index"].tolist() == [3]
        full = tx.frame(empty=True)
        assert full["index"].tolist() == [0, 1, 2, 3] and full["ifindex"].tolist() == [0, 0, 0, c.port_ifindex]
        assert full["name"].isna().tolist() == [True, True, True, False]  # no interface: missing
        assert full["name"].iloc[3] == c.port


def test_devmap_refuses_what_is_not_an_interface_here(lab):
    with bpfkit.load("devmap_redirect") as prog:
        tx = prog["tx_port"]
        with pytest.raises(MapError, match="no interface named 'bpfkit-nope'"):
            tx[0] = "bpfkit-nope"
        unused = 1 + max(int((Path("/sys/class/net") / n / "ifindex").read_text())
                         for n in net.link_names())
        with pytest.raises(MapError, match="no interface with ifindex") as err:
            tx[0] = unused
        assert "namespace" in err.value.hint
        with pytest.raises(MapError, match="past the end of 'tx_port'"):
            tx[4] = lab.hosts["b"].port
        with pytest.raises(MapError, match="a name or an ifindex"):
            tx[0] = 1.5
        assert tx.frame().empty


def test_devmap_hash_reader_keys_by_key(lab):
    with bpfkit.create_map("devmap_hash", max_entries=8, name="by_port") as m:
        assert m.type == "devmap_hash" and not m.map_type.bcc_declares
        m[9000] = lab.hosts["b"].port
        m[7777] = lab.hosts["c"].port
        frame = m.frame().sort_values("key").reset_index(drop=True)
        assert frame.to_dict("records") == [
            {"key": 7777, "ifindex": lab.hosts["c"].port_ifindex, "name": lab.hosts["c"].port},
            {"key": 9000, "ifindex": lab.hosts["b"].port_ifindex, "name": lab.hosts["b"].port}]


def test_a_devmap_hash_made_here_steers_a_loaded_program(lab):
    """BCC cannot declare a devmap_hash: made from Python, passed with maps=, it routes by key."""
    a, b, c = (lab.hosts[h] for h in "abc")
    with bpfkit.create_map("devmap_hash", max_entries=8, name="by_port") as by_port, \
            bpfkit.load(BY_PORT, name="by_port", maps={"by_port": by_port}) as prog:
        lab.attach_xdp(prog, a.port, "xdp_by_port")
        by_port[9000], by_port[9001] = b.port, c.port
        got = {(h.name, p): h.receiver(p) for h in (b, c) for p in (9000, 9001)}
        a.send_udp(SERVICE, 9000, 5)
        a.send_udp(SERVICE, 9001, 3)
        assert net.wait_until(lambda: sum(r.count() for r in got.values()) == 8)
        assert {k: r.count() for k, r in got.items()} == {
            ("b", 9000): 5, ("b", 9001): 0, ("c", 9000): 0, ("c", 9001): 3}
        assert prog["by_port"].frame().sort_values("key")["name"].tolist() == [b.port, c.port]
        lab.detach_xdp(a.port)


def _bpftool_dump(map_id: int) -> list[tuple[int, int]]:
    out = subprocess.run([BPFTOOL, "map", "dump", "id", str(map_id), "-j"], capture_output=True,
                         text=True, check=True).stdout
    number = lambda raw: int.from_bytes(bytes(int(b, 16) for b in raw), "little")  # noqa: E731
    return sorted((number(e["key"]), number(e["value"])) for e in json.loads(out)
                  if isinstance(e.get("value"), list))   # empty slots come as {"error": ...}


@needs_bpftool
def test_devmap_frame_agrees_with_bpftool(lab):
    with bpfkit.load("devmap_redirect") as prog:
        tx = prog["tx_port"]
        tx[1] = lab.hosts["b"].port
        tx[2] = lab.hosts["c"].port
        frame = tx.frame()
        ours = sorted(zip(frame["index"].tolist(), frame["ifindex"].tolist()))
        assert ours == [(1, lab.hosts["b"].port_ifindex), (2, lab.hosts["c"].port_ifindex)]
        assert _bpftool_dump(tx.id) == ours


# -- redirecting -----------------------------------------------------------------------------
def test_redirect_counts_are_exact_and_one_write_steers_a_flow(lab):
    a, b, c = (lab.hosts[h] for h in "abc")
    with bpfkit.load("devmap_redirect") as prog:
        lab.attach_xdp(prog, a.port, "xdp_redirect")
        assert net.xdp_prog_id(a.port) in prog.program_ids()
        tx, redirected = prog["tx_port"], prog["redirected"]
        tx[0], tx[1] = b.port, c.port
        got = {(h.name, p): h.receiver(p) for h in (b, c) for p in (9000, 9001)}
        count = lambda: {k: r.count() for k, r in got.items()}  # noqa: E731
        a.send_udp(SERVICE, 9000, 7)
        a.send_udp(SERVICE, 9001, 11)
        assert net.wait_until(lambda: sum(count().values()) == 18)
        assert count() == {("b", 9000): 7, ("b", 9001): 0, ("c", 9000): 0, ("c", 9001): 11}
        assert redirected.frame()["value"].tolist() == [7, 11, 0, 0]
        sent_to = lambda: prog["sent_to"].frame().set_index("key")["value"].to_dict()  # noqa: E731
        assert sent_to() == {b.port_ifindex: 7, c.port_ifindex: 11}   # per egress interface
        tx[1] = b.port                                   # the steer
        a.send_udp(SERVICE, 9000, 7)
        a.send_udp(SERVICE, 9001, 11)
        assert net.wait_until(lambda: sum(count().values()) == 36)
        assert count() == {("b", 9000): 14, ("b", 9001): 11, ("c", 9000): 0, ("c", 9001): 11}
        assert redirected.frame()["value"].tolist() == [14, 22, 0, 0]
        assert sent_to() == {b.port_ifindex: 7 + 18, c.port_ifindex: 11}   # slot 1 now counts for b
        lab.detach_xdp(a.port)
        assert net.xdp_prog_id(a.port) is None


def test_an_empty_slot_drops_the_frame(lab):
    a, b, c = (lab.hosts[h] for h in "abc")
    with bpfkit.load("devmap_redirect") as prog:
        lab.attach_xdp(prog, a.port, "xdp_redirect")
        prog["tx_port"][0] = b.port
        rx = {h.name: _rx_packets(h) for h in (b, c)}
        a.send_udp(SERVICE, 9002, 4)                     # slot 2: empty
        assert net.wait_until(lambda: prog["redirected"][2] == 4)
        time.sleep(0.1)
        assert {h.name: _rx_packets(h) for h in (b, c)} == rx
        assert len(prog["sent_to"].frame()) == 0         # the lookup found no interface to count


def test_no_xdp_program_means_no_redirect(lab):
    a, b = lab.hosts["a"], lab.hosts["b"]
    with bpfkit.load("devmap_redirect") as prog:
        prog["tx_port"][0] = b.port
        a.send_udp(SERVICE, 9000, 3)
        time.sleep(0.1)
        assert b.receiver(9000).count() == 0 and prog["redirected"][0] == 0


def test_native_mode_on_veth_needs_an_xdp_program_on_the_receiving_end(lab):
    """Why the lesson uses generic mode: measured facts about native XDP redirect into veth."""
    a, b = lab.hosts["a"], lab.hosts["b"]
    with bpfkit.load("devmap_redirect") as prog:
        lab.attach_xdp(prog, a.port, "xdp_redirect", mode="native")
        prog["tx_port"][0] = b.port
        rx, bad = _rx_packets(b), _udp_checksum_errors(b)
        a.send_udp(SERVICE, 9000, 3)
        assert net.wait_until(lambda: prog["redirected"][0] == 3)
        time.sleep(0.1)
        assert _rx_packets(b) == rx, "without an XDP program on b's eth0, veth drops the frames"
        lab.attach_xdp(prog, b.dev, "xdp_pass", mode="native", netns=b.netns)
        a.send_udp(SERVICE, 9000, 3)
        assert net.wait_until(lambda: _rx_packets(b) == rx + 3)
        # They arrive, but the sender's checksum offload did not survive the native path.
        assert net.wait_until(lambda: _udp_checksum_errors(b) == bad + 3)
        assert b.receiver(9000).count() == 0


def test_exercise_check(lab):
    a, b, c = (lab.hosts[h] for h in "abc")
    with bpfkit.load(BALANCE.replace("SLOT", "0"), name="balance") as starter:
        result = check_source_port_balancing(starter, lab)
        assert not result.passed and "not the XDP program" in str(result)
        lab.attach_xdp(starter, a.port, "xdp_redirect")
        starter["tx_port"][0], starter["tx_port"][1] = b.port, c.port
        result = check_source_port_balancing(starter, lab)
        assert not result.passed and "41001 -> b" in str(result)
    with bpfkit.load(BALANCE.replace("SLOT", "ntohs(udp->source) & 1"), name="balance") as solved:
        lab.attach_xdp(solved, a.port, "xdp_redirect")
        solved["tx_port"][0], solved["tx_port"][1] = b.port, c.port
        before = {h.name: dict(h.receiver(9000).by_source) for h in (b, c)}
        result = check_source_port_balancing(solved, lab)
        assert result.passed, result
        after = {h.name: dict(h.receiver(9000).by_source) for h in (b, c)}
        new = {(h, p): after[h].get(p, 0) - before[h].get(p, 0) for h in after for p in after[h]}
        assert {k: v for k, v in new.items() if v} == {
            ("b", 41000): 5, ("b", 41002): 5, ("c", 41001): 5, ("c", 41003): 5}




def test_exercise_check_asks_about_byte_order_before_it_shows_the_code(lab):
    a, b, c = (lab.hosts[h] for h in "abc")
    with bpfkit.load(bpf_cell(LESSON, "balance"), name="balance") as starter:
        lab.attach_xdp(starter, a.port, "xdp_redirect")
        starter["tx_port"][0], starter["tx_port"][1] = b.port, c.port
        first = str(check_source_port_balancing(starter, lab))
    assert "41001 -> b" in first and "byte order" in first and "'The program'" in first
    assert not [line for line in solution_only_lines(LESSON) if line in first], first
    assert "ntohs" not in first and "Hint" not in first
    # The raw field's lowest bit is bit 8 of the port: every sender lands on b, and is refused.
    with bpfkit.load(BALANCE.replace("SLOT", "udp->source & 1"), name="balance") as raw:
        lab.attach_xdp(raw, a.port, "xdp_redirect")
        raw["tx_port"][0], raw["tx_port"][1] = b.port, c.port
        second, third = (check_source_port_balancing(raw, lab) for _ in range(2))
    assert not second.passed and "41001 -> b, 41002 -> b, 41003 -> b" in str(second)
    assert "Hint: Take the slot from the lowest bit" in str(second) and "Fix:" not in str(second)
    assert "Fix: u32 slot = ntohs(udp->source) & 1;" in str(third)


# -- the lab itself --------------------------------------------------------------------------
def test_lab_makes_and_removes_everything(clean_network, no_leaks):
    with net.Lab("t") as lab:
        h = lab.host("h", "192.0.2.7/24")
        assert h.netns in net.netns_names() and h.port in net.link_names()
        assert h.run("ip", "-o", "-4", "addr", "show", "eth0").stdout.split()[3] == "192.0.2.7/24"
        prog = bpfkit.load("devmap_redirect")
        lab.attach_xdp(prog, h.port, "xdp_pass")
        attached = net.xdp_prog_id(h.port)
        prog.close()                                     # the attachment keeps it alive ...
        assert attached in kernel.prog_ids()
    # ... until the lab detaches it (no_leaks checks it is gone).
    assert h.netns not in net.netns_names() and h.port not in net.link_names()


def test_making_a_lab_again_replaces_the_earlier_one(clean_network):
    first = net.Lab("again")
    first.host("r")
    second = net.Lab("again")
    assert first.closed and not second.closed
    assert "bpfkit-r" not in net.netns_names()
    second.host("r")
    assert "bpfkit-r" in net.netns_names()
    second.close()


def _lab_in_another_process(name: str) -> subprocess.Popen:
    code = ("import sys; from bpfkit.lab import net; lab = net.Lab('other'); "
            f"lab.host({name!r}); print('ready', flush=True); sys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.stdout.readline().strip() == "ready"
    return child


def test_cleanup_stale_spares_live_labs_and_removes_crashed_ones(clean_network):
    alive = _lab_in_another_process("liv")
    try:
        assert "bpfkit-liv" not in net.cleanup_stale()
        assert "bpfkit-liv" in net.netns_names()
        with pytest.raises(bpfkit.core.errors.InUse, match="another running process"):
            net.Lab("mine").host("liv")
    finally:
        alive.communicate("\n", timeout=10)              # exits normally: its atexit cleans up
    assert "bpfkit-liv" not in net.netns_names() and "bpfkit-liv-port" not in net.link_names()

    crashed = _lab_in_another_process("cra")
    crashed.send_signal(signal.SIGKILL)
    crashed.wait(timeout=10)
    assert "bpfkit-cra" in net.netns_names()             # a crash leaves it behind
    removed = net.cleanup_stale()
    assert {"bpfkit-cra", "bpfkit-cra-port"} <= set(removed)
    assert "bpfkit-cra" not in net.netns_names() and "bpfkit-cra-port" not in net.link_names()
