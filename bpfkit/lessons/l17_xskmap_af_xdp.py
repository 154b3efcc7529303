"""Lesson 17's exercise: hand the frames of two UDP ports to one AF_XDP socket."""
from __future__ import annotations

from ..core import waiting
from .checker import Checker, exercise

PORTS = {7000: "socket", 7001: "socket", 7002: "stack"}   # where each port's frames belong
PER_PORT = 4
SENDER_MAC, SENDER_IP = "02:00:00:00:17:01", "192.0.2.1"


@exercise("Two ports to one AF_XDP socket",
          "Ports 7000 and 7001 reach user space through the xskmap, and 7002 still reaches the "
          "kernel's UDP socket: one map slot, one socket, two flows.")
def check_two_ports(c: Checker, program, lab, sock, host: str = "m") -> None:
    """Sends PER_PORT frames to each of PORTS into host `host`'s eth0 and checks that those to
    7000 and 7001 arrive at the AF_XDP socket `sock`, and those to 7002 at the host's stack."""
    from ..lab import net, xsk
    from ..host.netns import inside
    c.require(host in getattr(lab, "hosts", {}), f"pass the lesson's lab, with its host {host}.")
    h = lab.hosts[host]
    c.require(getattr(sock, "closed", True) is False,
              "pass the lesson's AF_XDP socket (xsk.XskSocket), still open.")
    maps = {name: program[name].type for name in ("xsks",) if name in program.map_names()}
    c.require(maps.get("xsks") == "xskmap",
              "your program needs the xskmap `xsks`: BPF_XSKMAP(xsks, 4).")
    with inside(h.netns):
        attached = net.xdp_prog_id("eth0")
    c.require(attached in program.program_ids(),
              f"your program is not the XDP program of eth0 in {h.netns}: "
              f"lab.attach_xdp(<your program>, \"eth0\", \"xdp_to_socket\", netns=m.netns).")

    receivers = {port: h.receiver(port) for port in PORTS}
    stack_before = {port: r.count() for port, r in receivers.items()}
    socket_before = sock.count
    frames = [xsk.udp_frame(SENDER_MAC, h.mac, SENDER_IP, h.address, 40000, port,
                            b"exercise %d" % port) for port in PORTS for _ in range(PER_PORT)]
    xsk.send_frames(h.port, frames)
    total = len(frames)
    waiting.until(lambda: sock.count - socket_before
                  + sum(r.count() - stack_before[p] for p, r in receivers.items()) >= total,
                  1.0, every=0.002)
    new = sock.frames[socket_before:]
    at_socket = {port: sum(1 for f in new if f[36:38] == port.to_bytes(2, "big")) for port in PORTS}
    at_stack = {port: r.count() - stack_before[port] for port, r in receivers.items()}
    lost = total - sum(at_socket.values()) - sum(at_stack.values())
    for port, where in PORTS.items():
        if where == "socket":
            c.expect(at_socket[port] == PER_PORT,
                     f"of {PER_PORT} frames to port {port}, {at_socket[port]} reached the AF_XDP "
                     f"socket and {at_stack[port]} the stack: redirect port {port} too "
                     "(xsks.redirect_map(ctx->rx_queue_index, XDP_PASS)), and put the socket in "
                     "your program's xsks[0].")
        else:
            c.expect(at_stack[port] == PER_PORT,
                     f"of {PER_PORT} frames to port {port}, {at_stack[port]} reached the stack "
                     f"and {at_socket[port]} the AF_XDP socket: only 7000 and 7001 belong to "
                     "the socket; let every other frame pass.")
    c.expect(lost <= 0, f"{lost} of {total} frames arrived nowhere: a redirect to a slot whose "
             "socket is bound to another queue (or a full RX ring) drops the frame.")


def xdp_sockets_listed(netns: str) -> str:
    """One sentence on this kernel: how many AF_XDP sockets the `XDP` line of /proc/net/protocols
    counts in `netns` (every kernel has it), and how many `ss --xdp` lists there. ss needs
    CONFIG_XDP_SOCKETS_DIAG, which some kernels are built without, so the lesson says what
    this one does instead of stating one kernel's build as every kernel's."""
    import shutil
    import subprocess
    from ..host.netns import inside
    with inside(netns):
        line = next(x for x in open("/proc/net/protocols") if x.startswith("XDP "))
        ss = shutil.which("ss")
        out = subprocess.run([ss, "--xdp", "-a"], capture_output=True, text=True).stdout if ss else None
    counted = int(line.split()[2])
    said = f"/proc/net/protocols counts {counted} AF_XDP socket{'s' if counted != 1 else ''} here"
    if out is None:
        return said + "; there is no `ss` on this machine to ask."
    listed = max(0, len([x for x in out.splitlines() if x.strip()]) - 1)   # less the header
    if listed == 0 and counted:
        return said + ("; `ss --xdp` lists none: this kernel has no AF_XDP socket diagnostics "
                       "(CONFIG_XDP_SOCKETS_DIAG).")
    return said + f"; `ss --xdp` lists {listed}."
