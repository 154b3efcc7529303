"""Lesson 16 on the real kernel: a cpumap hands each UDP flow to the CPU user space picks, with
exact counts of frames landed per CPU; a devmap_hash keyed by UDP port sends frames out of the
interface stored under that port; the exercise check fails on the starter and passes on the
solution (both taken from the notebooks)."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

import bpfkit
from bpfkit.host import lifetime
from bpfkit.lab import net
from bpfkit.lessons.l16_cpumap_devmap_hash import ROUTES, check_ifindex_forward, expected_received
from notebook_runs import bpf_cell

ROOT = Path(__file__).resolve().parents[2]
SERVICE, SERVICE_MAC = "192.0.2.100", "02:00:00:00:00:64"


def fwd_source(notebook: str) -> str:
    """The C of the `%%bpf fwd` cell of a lesson-16 notebook (after its `# needs:` line)."""
    return bpf_cell(ROOT / "notebooks" / notebook, "fwd")


@pytest.fixture
def lab():
    """Sender p and two receivers q, r with one service address and MAC; nothing left after."""
    before = (set(net.netns_names()), set(net.link_names()))
    the_lab = net.Lab("l16")
    p = the_lab.host("p", "192.0.2.1/24")
    the_lab.host("q", f"{SERVICE}/24", mac=SERVICE_MAC)
    the_lab.host("r", f"{SERVICE}/24", mac=SERVICE_MAC)
    p.neighbour(SERVICE, SERVICE_MAC)
    yield the_lab
    the_lab.close()
    lifetime.close_all("lab")
    mine = {"bpfkit-p", "bpfkit-q", "bpfkit-r", "bpfkit-p-port", "bpfkit-q-port", "bpfkit-r-port"}
    assert not mine & (set(net.netns_names()) | set(net.link_names()))
    assert set(net.netns_names()) & mine <= before[0]


def total_landed(landed) -> int:
    return landed[0] + landed[1]


def test_cpumap_steers_flows_to_cpus_exactly(lab, no_leaks):
    p = lab.hosts["p"]
    prog = bpfkit.load("cpu_steer", name="l16_cpu_steer")
    lab.attach_xdp(prog, p.port, "xdp_to_cpu")
    cpus, flow_cpu, landed = prog["cpus"], prog["flow_cpu"], prog["landed"]
    assert (cpus.type, cpus.max_entries, cpus.value_size) == ("cpumap", 2, 4)
    cpus[0] = cpus[1] = 192
    assert cpus.frame({"index": "cpu"}).to_dict("list") == {"cpu": [0, 1], "qsize": [192, 192]}
    flow_cpu[0], flow_cpu[1] = 0, 1

    p.send_udp(SERVICE, 9000, 4)
    p.send_udp(SERVICE, 9001, 6)
    assert net.wait_until(lambda: total_landed(landed) == 10)
    assert landed.frame({"index": "cpu", "value": "frames"}).to_dict("list") == {"cpu": [0, 1], "frames": [4, 6]}

    flow_cpu[1] = 0                                  # one write moves flow 1 to CPU 0
    p.send_udp(SERVICE, 9001, 7)
    assert net.wait_until(lambda: total_landed(landed) == 17)
    assert [landed[0], landed[1]] == [11, 6]

    p.send_udp(SERVICE, 9002, 3)                     # no flow: passes, lands nowhere
    flow_cpu[1] = 1
    del cpus[1]                                      # CPU 1 has no queue: its frames are dropped
    p.send_udp(SERVICE, 9001, 5)
    p.send_udp(SERVICE, 9000, 2)
    assert net.wait_until(lambda: total_landed(landed) == 19)
    time.sleep(0.05)
    assert [landed[0], landed[1]] == [13, 6]
    assert cpus.frame()["index"].tolist() == [0]
    with pytest.raises(bpfkit.BpfkitError, match="size of the queue"):
        cpus[0] = "eth0"                             # a cpumap value is a queue size


def test_devmap_hash_sends_by_port_key(lab, no_leaks):
    p, q, r = (lab.hosts[h] for h in "pqr")
    ports = bpfkit.create_map("devmap_hash", key="u32", value="u32", max_entries=8, name="l16_ports")
    prog = bpfkit.load("devmap_by_port", name="l16_by_port", maps={"ports": ports})
    lab.attach_xdp(prog, p.port, "xdp_by_port")
    ports[9053] = q.port
    ports[9080] = r.port_ifindex                     # a name or an ifindex
    frame = ports.frame({"key": "port"}).sort_values("port")
    assert frame.to_dict("list") == {"port": [9053, 9080], "ifindex": [q.port_ifindex, r.port_ifindex],
                                     "name": [q.port, r.port]}
    rq, rr, rq80 = q.receiver(9053), r.receiver(9080), q.receiver(9080)
    for port, n in {9053: 4, 9080: 6, 9999: 2}.items():
        p.send_udp(SERVICE, port, n)
    assert net.wait_until(lambda: rq.count() + rr.count() == 10)
    assert (rq.count(), rr.count(), rq80.count()) == (4, 6, 0)
    sent = prog["sent_to"].frame({"key": "ifindex", "value": "frames"}).set_index("ifindex")["frames"].to_dict()
    assert sent == {q.port_ifindex: 4, r.port_ifindex: 6}

    ports[9080] = q.port                             # one write moves the key
    p.send_udp(SERVICE, 9080, 3)
    assert net.wait_until(lambda: rq80.count() == 3)
    assert rr.count() == 6
    del ports[9053]                                  # no key: the frame passes, q gets nothing
    p.send_udp(SERVICE, 9053, 2)
    time.sleep(0.05)
    assert rq.count() == 4
    with pytest.raises(bpfkit.BpfkitError):
        for key in range(100, 110):                  # 8 keys at most
            ports[key] = r.port
    result = check_ifindex_forward(prog, ports, lab)  # a program with no route: words, no raise
    assert not result and "no hash map `route`" in str(result)
    assert not check_ifindex_forward(prog, ports, None)


def test_forward_check_fails_on_starter_and_passes_on_solution(lab, no_leaks):
    p, q, r = (lab.hosts[h] for h in "pqr")
    assert expected_received() == {"q": 7, "r": 6} and len(ROUTES) == 3
    ifaces = bpfkit.create_map("devmap_hash", key="u32", value="u32", max_entries=4, name="l16_ifaces")
    starter = bpfkit.load(fwd_source("16_cpumap_devmap_hash.ipynb"), name="l16_fwd", maps={"ifaces": ifaces})
    lab.attach_xdp(starter, p.port, "xdp_fwd")
    result = check_ifindex_forward(starter, ifaces, lab)
    told = str(result)
    assert not result and result.tries == 1
    assert "`ifaces` has keys none" in told and "q received 0 and r 0" in told
    assert "Hint" not in told and "Fix" not in told and "bpf_redirect_map(ifaces" not in told

    ifaces[9053] = q.port                            # keyed by port, as devmap_by_port was
    result = check_ifindex_forward(starter, ifaces, lab)
    assert f"holds key 9053 -> {q.port} (ifindex {q.port_ifindex})" in str(result)
    assert result.tries == 2 and "Hint: " in str(result) and "Fix: " not in str(result)
    del ifaces[9053]

    ifaces[q.port_ifindex] = q.port                  # entries right, the program still passes
    ifaces[r.port_ifindex] = r.port
    result = check_ifindex_forward(starter, ifaces, lab)
    assert "never reached it" in str(result)
    assert result.tries == 3 and "Fix: In `xdp_fwd`" in str(result)   # the third try shows the code

    solved = bpfkit.load(fwd_source("solutions/16_cpumap_devmap_hash.ipynb"), name="l16_fwd_solved",
                         maps={"ifaces": ifaces})
    result = check_ifindex_forward(solved, ifaces, lab)
    assert not result and "is not this one's `xdp_fwd`" in str(result)
    lab.attach_xdp(solved, p.port, "xdp_fwd")
    result = check_ifindex_forward(solved, ifaces, lab)
    assert result, result
    assert q.receiver(9099).count() == r.receiver(9099).count() == 0

    del ifaces[r.port_ifindex]                       # a route with no entry: dropped, nobody gets it
    result = check_ifindex_forward(solved, ifaces, lab)
    assert not result and "q received 7 and r 0" in str(result)
