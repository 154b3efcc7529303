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
    h = _ready(c, program, lab, sock, host)
    _judge(c, *_sent(h, sock))


def _ready(c: Checker, program, lab, sock, host: str):
    """What the check needs before it sends: the lab's host, an open socket, the learner's
    xskmap and XDP program attached; the host."""
    from ..lab import net
    from ..host.netns import inside
    c.require(host in getattr(lab, "hosts", {}),
              f"The check found no host `{host}` in the `lab` you passed; is it the lab the cell "
              "'A host to receive on' made?",
              hint="The check's second argument is this lesson's `net.Lab`, named `lab`.",
              fix="`check_two_ports(xsk_two_ports, lab, sock)`")
    h = lab.hosts[host]
    c.require(getattr(sock, "closed", True) is False,
              "The socket passed to the check is closed (or is no AF_XDP socket); was it made by "
              "the cell 'The AF_XDP socket', and has a clean-up closed it since?",
              hint="Run the cell that makes `sock`, an `xsk.XskSocket` on m's `eth0`, queue 0, "
                   "then the exercise's cells again.",
              fix='`sock = xsk.XskSocket("eth0", queue=0, netns=m.netns)`')
    maps = {name: program[name].type for name in ("xsks",) if name in program.map_names()}
    c.require(maps.get("xsks") == "xskmap",
              f"Your program's map `xsks` is {maps.get('xsks') or 'missing'}; the check expected "
              "an xskmap. Which map holds the sockets in the cell 'The program'?",
              hint="An xskmap is declared with BCC's `BPF_XSKMAP`, and the check looks for it by "
                   "its name, `xsks`.",
              fix="`BPF_XSKMAP(xsks, 4);`")
    with inside(h.netns):
        attached = net.xdp_prog_id("eth0")
    c.require(attached in program.program_ids(),
              f"The XDP program on `eth0` in {h.netns} (id {attached}) is not the one you passed "
              f"(ids {sorted(program.program_ids())}); did the attach cell run after your last "
              "change? The cell 'The program' says which cells to run again.",
              hint="Each run of a `%%bpf` cell loads a new program; `eth0` keeps the earlier one "
                   "until `lab.attach_xdp` attaches the new one.",
              fix='`lab.attach_xdp(xsk_two_ports, "eth0", "xdp_to_socket", netns=m.netns)`, '
                  'then `xsk_two_ports["xsks"][0] = sock`')
    return h


def _sent(h, sock) -> tuple[dict, dict, int, int]:
    """PER_PORT frames to each of PORTS into `h`'s eth0: (frames at the socket per port, at the
    stack per port, frames that arrived nowhere, frames sent)."""
    from ..lab import xsk
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
    return at_socket, at_stack, total - sum(at_socket.values()) - sum(at_stack.values()), total


def _judge(c: Checker, at_socket: dict, at_stack: dict, lost: int, total: int) -> None:
    """Each port's frames where they belong, and none lost."""
    for port, where in PORTS.items():
        if where == "socket":
            c.expect(at_socket[port] == PER_PORT,
                     f"Of {PER_PORT} frames to port {port}, {at_socket[port]} reached the AF_XDP "
                     f"socket and {at_stack[port]} the stack; the exercise wants all {PER_PORT} at "
                     f"the socket. For which ports does your program call `redirect_map`? The "
                     "cell 'The program' shows how a port's frames are redirected.",
                     hint=f"One condition in `xdp_to_socket` picks the frames to redirect: it must "
                          f"hold for port {port} as well, and the socket must be in your "
                          "program's own `xsks[0]`.",
                     fix="`if (port == 7000 || port == 7001) return xsks.redirect_map("
                         "ctx->rx_queue_index, XDP_PASS);`, and "
                         '`xsk_two_ports["xsks"][0] = sock`')
        else:
            c.expect(at_stack[port] == PER_PORT,
                     f"Of {PER_PORT} frames to port {port}, {at_stack[port]} reached the stack "
                     f"and {at_socket[port]} the AF_XDP socket; the stack should get all "
                     f"{PER_PORT}. Which frames does your program let pass? 'What to notice' "
                     "says who chooses the frames that go to user space.",
                     hint="A frame reaches the stack only when the program returns `XDP_PASS` "
                          "for it: is your condition true for more ports than 7000 and 7001?",
                     fix="Redirect only when `port == 7000 || port == 7001`; "
                         "`return XDP_PASS;` for every other frame.")
    c.expect(lost <= 0,
             f"{lost} of {total} frames arrived nowhere, neither at the AF_XDP socket nor at the "
             "stack; where can a frame the program redirected still be refused? Question 2 of "
             "the exercise is about that.",
             hint="The kernel drops a redirected frame when the socket in the slot is bound to "
                  "another queue than the frame's, or when its RX ring is full.",
             fix="Key the slot by the frame's queue, `xsks.redirect_map(ctx->rx_queue_index, "
                 "XDP_PASS)`, with the socket bound to queue 0 in `xsks[0]`.")


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
