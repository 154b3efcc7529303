"""A minimal AF_XDP receiver: the user-space end of an xskmap.

An XDP program that returns `xsks.redirect_map(ctx->rx_queue_index, XDP_PASS)` hands the frame to
the AF_XDP socket user space stored in that slot. The socket is four shared rings and one buffer:

- the UMEM, a buffer of equal chunks in this process's memory, registered with the socket;
- the fill ring: user space puts the addresses of free chunks in it (it produces, the kernel
  consumes); the kernel copies each arriving frame into one of them;
- the RX ring: the kernel puts a descriptor (address in the UMEM, length) of each frame it
  delivered (the kernel produces, user space consumes), and user space gives the chunk back
  through the fill ring once it has read it;
- the completion ring (and a TX ring) are for sending; the kernel asks for a completion ring
  even when nothing is sent, so it exists here, unused.

Each ring is a power-of-two array with a producer and a consumer index (free-running u32; the
slot is index & (size - 1)), mapped from the socket at the page offsets if_xdp.h names. The
kernel writes the descriptors before it advances the producer (a release), and reads a slot only
after the consumer says it is free: so user space reads the producer first, then the slots,
then writes the consumer. On x86 an aligned 32-bit load or store is already acquire or release,
which is all this order needs; real tools (libxdp) add the explicit barriers other CPUs require.

Here the socket binds in copy mode (XDP_COPY), which works on any interface, with XDP in
generic (skb) mode. `XskSocket.close()` frees the socket, the ring mappings and the UMEM; the
socket registers with bpfkit.host.lifetime, so `bpfkit.close_all()` (and interpreter exit) frees it.
"""
from __future__ import annotations

import ctypes as ct
import errno
import mmap
import os
import socket
import struct
import contextlib
import warnings
from contextlib import nullcontext

from ..core import atomic, waiting
from ..core.guard import Guard, Guarded, held
from ..host import lifetime
from ..access import refusal
from ..access._libc import libc
from ..core.errors import BpfkitError, Closed, KernelError, NotFound, UsageError
from ..host.netns import inside

AF_XDP = 44
SOL_XDP = 283
XDP_MMAP_OFFSETS, XDP_RX_RING, XDP_UMEM_REG = 1, 2, 4
XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_STATISTICS = 5, 6, 7
XDP_COPY = 1 << 1
XDP_PGOFF_RX_RING = 0
XDP_UMEM_PGOFF_FILL_RING = 0x100000000


class RingOffset(ct.Structure):
    _fields_ = [("producer", ct.c_uint64), ("consumer", ct.c_uint64), ("desc", ct.c_uint64),
                ("flags", ct.c_uint64)]


class MmapOffsets(ct.Structure):
    _fields_ = [("rx", RingOffset), ("tx", RingOffset), ("fr", RingOffset), ("cr", RingOffset)]


class UmemReg(ct.Structure):
    _fields_ = [("addr", ct.c_uint64), ("len", ct.c_uint64), ("chunk_size", ct.c_uint32),
                ("headroom", ct.c_uint32), ("flags", ct.c_uint32), ("tx_metadata_len", ct.c_uint32)]


class SockaddrXdp(ct.Structure):
    _fields_ = [("sxdp_family", ct.c_uint16), ("sxdp_flags", ct.c_uint16),
                ("sxdp_ifindex", ct.c_uint32), ("sxdp_queue_id", ct.c_uint32),
                ("sxdp_shared_umem_fd", ct.c_uint32)]


class XdpDesc(ct.Structure):
    _fields_ = [("addr", ct.c_uint64), ("len", ct.c_uint32), ("options", ct.c_uint32)]


STATISTICS = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
              "rx_fill_ring_empty_descs", "tx_ring_empty_descs")


class _Ring:
    """One mapped ring: producer and consumer indices and `size` slots of `slot_type`."""

    def __init__(self, fd: int, offsets: RingOffset, size: int, slot_type, pgoff: int):
        self.length = offsets.desc + size * ct.sizeof(slot_type)
        try:
            addr = libc.mmap(None, self.length, mmap.PROT_READ | mmap.PROT_WRITE,
                             mmap.MAP_SHARED | mmap.MAP_POPULATE, fd, pgoff)
        except OSError as e:
            raise _oserror("mmap of an AF_XDP ring", e.errno) from None
        self.addr = addr
        self.mask = size - 1
        self.producer = ct.c_uint32.from_address(addr + offsets.producer)
        self.consumer = ct.c_uint32.from_address(addr + offsets.consumer)
        self.slots = (slot_type * size).from_address(addr + offsets.desc)

    def unmap(self) -> None:
        self.slots = self.producer = self.consumer = None
        with contextlib.suppress(OSError):   # as munmap's -1 always was: nothing to do about it
            libc.munmap(self.addr, self.length)


class XskSocket(Guarded):
    """An AF_XDP socket bound to queue `queue` of interface `ifname` (in network namespace
    `netns`, if given), receiving in copy mode. Store it in an xskmap (`xsks[0] = xsk`), then
    `receive()` returns the frames that arrived, as bytes; `frames` keeps every one.

    Making a socket for the same interface and queue again closes the earlier one first (the
    kernel allows one per queue), so a notebook cell can run again: the cell's earlier socket
    is out of the learner's reach by then, and refusing would make every re-run fail until the
    kernel restarts. A learner who meant two sockets on one queue is told at once (a
    warning naming the queue), and the replaced socket refuses further use with a Closed error
    that says it was replaced, rather than receiving nothing in silence."""

    @atomic.whole
    def __init__(self, ifname: str, queue: int = 0, *, netns: str | None = None,
                 chunks: int = 64, chunk_size: int = 2048, ring: int = 64):
        if ring & (ring - 1) or chunks & (chunks - 1) or chunks < ring:
            raise UsageError("AF_XDP rings hold a power of two of slots, and the UMEM needs a "
                             f"chunk for each fill slot (ring={ring}, chunks={chunks}).",
                             "use powers of two, chunks >= ring.")
        self.ifname, self.queue, self.netns = ifname, queue, netns
        self.key = ("xsk", netns, ifname, queue)
        self.chunk_size, self.ring_size = chunk_size, ring
        self.frames: list[bytes] = []
        self.replaced = False   # closed because a newer socket took its queue
        # Its rings are memory shared with the kernel: a close from another thread unmaps them
        # only after a receive in flight (unmapped under it, the process would crash).
        self._guard = Guard(self._free, self._closed_error)
        self.sock = None
        self.umem = None
        self.fill = self.rx = None
        previous = lifetime.get("socket", self.key)
        if previous is not None:
            previous.replaced = True
            previous.close()
            warnings.warn(f"An AF_XDP socket on {self._where()} was open, and the kernel allows "
                          "one per queue: that socket is closed now, and this one replaces it. "
                          "Use another queue for a second socket.", stacklevel=3)
        try:
            self._open(chunks)
        except BaseException:
            self._guard.close()
            raise
        lifetime.add("socket", self.key, self)

    def _open(self, chunks: int) -> None:
        with inside(self.netns) if self.netns else nullcontext():
            try:
                self.ifindex = socket.if_nametoindex(self.ifname)
            except OSError:
                raise NotFound(f"There is no interface {self.ifname!r}"
                               + (f" in {self.netns}" if self.netns else "") + ".",
                               "list them with `ip -o link`.") from None
            try:
                self.sock = socket.socket(AF_XDP, socket.SOCK_RAW, 0)
            except OSError as e:
                raise KernelError(f"This kernel refuses AF_XDP sockets: {e.strerror}.",
                                  "AF_XDP needs CONFIG_XDP_SOCKETS and root.", errno=e.errno) from None
        fd = self.sock.fileno()
        # 1. The UMEM: page-aligned memory of `chunks` chunks, registered with the socket.
        self.umem_len = chunks * self.chunk_size
        try:
            addr = libc.mmap(None, self.umem_len, mmap.PROT_READ | mmap.PROT_WRITE,
                             mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        except OSError as e:
            raise _oserror("mmap of the UMEM", e.errno) from None
        self.umem = addr
        reg = UmemReg(addr=addr, len=self.umem_len, chunk_size=self.chunk_size, headroom=0)
        self.sock.setsockopt(SOL_XDP, XDP_UMEM_REG, bytes(reg))
        # 2. Ring sizes: fill, completion (required, unused here), RX.
        for option in (XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING, XDP_RX_RING):
            self.sock.setsockopt(SOL_XDP, option, struct.pack("I", self.ring_size))
        # 3. Where each ring's indices and slots are, then map the two we use.
        off = MmapOffsets.from_buffer_copy(
            self.sock.getsockopt(SOL_XDP, XDP_MMAP_OFFSETS, ct.sizeof(MmapOffsets)))
        self.fill = _Ring(fd, off.fr, self.ring_size, ct.c_uint64, XDP_UMEM_PGOFF_FILL_RING)
        self.rx = _Ring(fd, off.rx, self.ring_size, XdpDesc, XDP_PGOFF_RX_RING)
        # 4. Give the kernel free chunks to copy frames into: one per fill slot.
        for i in range(self.ring_size):
            self.fill.slots[i] = i * self.chunk_size
        self.fill.producer.value = self.ring_size      # after the slots: the kernel may use them now
        # 5. Bind to (interface, queue) in copy mode: libc's bind, Python's cannot say AF_XDP.
        addr = SockaddrXdp(sxdp_family=AF_XDP, sxdp_flags=XDP_COPY, sxdp_ifindex=self.ifindex,
                           sxdp_queue_id=self.queue)
        # A socket closed a moment ago frees its queue a little later (the kernel defers it to
        # a worker): a queue that is busy for that reason is free within milliseconds.
        errs = []

        def bound_or_refused() -> bool:
            try:
                libc.bind(fd, ct.byref(addr), ct.sizeof(addr))
                errs.append(0)
            except OSError as e:
                errs.append(e.errno)
            return errs[-1] != errno.EBUSY

        waiting.until(bound_or_refused, 1.0)
        err = errs[-1]
        if err:
            hint = ("another AF_XDP socket is bound to this queue: close it." if err == errno.EBUSY
                    else f"the interface has queues 0..n-1; queue {self.queue} may not exist.")
            raise KernelError(f"Could not bind the AF_XDP socket to {self.ifname} queue "
                              f"{self.queue}: {os.strerror(err)}.", hint, errno=err or None)


    @held
    def fileno(self) -> int:
        """The socket's fd: what an xskmap slot stores (`xsks[0] = xsk` passes it)."""
        return self.sock.fileno()

    def _closed_error(self) -> Closed:
        if self.replaced:
            return Closed(f"This AF_XDP socket on {self._where()} was closed when a newer "
                          "XskSocket took the same queue: the kernel allows one socket per queue.",
                          "use the newer socket, or make each socket on its own queue "
                          "(XskSocket(ifname, queue=1)).")
        return Closed("This AF_XDP socket is closed.", "make a new one.")


    def _where(self) -> str:
        return f"{self.ifname} queue {self.queue}" + (f" in {self.netns}" if self.netns else "")

    def fd_held(self) -> Guard:
        """Held while a map stores this socket's fd (see Map._value)."""
        return self._guard

    def receive(self) -> list[bytes]:
        """The frames waiting in the RX ring now (copied out), their chunks given back to the
        kernel through the fill ring. Never blocks; a closed socket has nothing waiting (one
        replaced by a newer socket on its queue says so)."""
        if self.replaced:
            self._check_open()
        try:
            self._guard.enter()
        except Closed:
            return []
        try:
            return self._receive()
        finally:
            self._guard.leave()

    def _receive(self) -> list[bytes]:
        rx, fill = self.rx, self.fill
        got = []
        start = rx.consumer.value
        end = rx.producer.value                        # read the producer first, then the slots
        n = (end - start) & 0xFFFFFFFF
        for i in range(n):
            desc = rx.slots[(start + i) & rx.mask]
            got.append(ct.string_at(self.umem + desc.addr, desc.len))
            chunk = desc.addr - desc.addr % self.chunk_size
            fill.slots[(fill.producer.value + i) & fill.mask] = chunk
        if n:
            rx.consumer.value = (start + n) & 0xFFFFFFFF         # the RX slots are free again
            fill.producer.value = (fill.producer.value + n) & 0xFFFFFFFF  # the chunks are too
        self.frames.extend(got)
        return got

    @property
    def count(self) -> int:
        """Frames received so far (reads what is waiting first)."""
        self.receive()
        return len(self.frames)

    def wait_for(self, total: int, timeout: float = 1.0) -> int:
        """Receive until `total` frames have arrived in all, or `timeout` seconds pass."""
        waiting.until(lambda: self.count >= total, timeout, every=0.002)
        return self.count

    @held
    def statistics(self) -> dict[str, int]:
        """The kernel's counters for this socket (XDP_STATISTICS): frames dropped because the
        RX ring was full, because the fill ring had no free chunk, and so on."""
        self._check_open()
        raw = self.sock.getsockopt(SOL_XDP, XDP_STATISTICS, 8 * len(STATISTICS))
        values = struct.unpack(f"{len(raw) // 8}Q", raw)
        return dict(zip(STATISTICS, values))

    @atomic.whole
    def close(self) -> None:
        """Close the socket (the kernel takes it out of every xskmap), unmap its rings and free
        the UMEM."""
        if self._guard.close():
            lifetime.discard("socket", self.key, self)

    def _free(self) -> None:
        for ring in (self.rx, self.fill):
            if ring is not None:
                ring.unmap()
        self.rx = self.fill = None
        if self.sock is not None:
            self.sock.close()
        if self.umem is not None:
            with contextlib.suppress(OSError):
                libc.munmap(self.umem, self.umem_len)
            self.umem = None

    def __enter__(self) -> "XskSocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self._where()
        state = ("replaced" if self.replaced else "closed" if self.closed
                 else f"{len(self.frames)} frames received")
        return f"<XskSocket {where}: {state}>"


def _oserror(what: str, err: int) -> BpfkitError:
    if err in (errno.EPERM, errno.EACCES):   # a missing privilege, or the kernel's own policy
        return refusal.explain(err, what[0].lower() + what[1:])
    return KernelError(f"{what} failed: {os.strerror(err)}.",
                       "check free memory (AF_XDP locks its frames in memory).", errno=err or None)


# -- frames, built and read by hand --------------------------------------------------------

def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int,
              payload: bytes) -> bytes:
    """An Ethernet + IPv4 + UDP frame (UDP checksum 0: "none", allowed in IPv4)."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, socket.IPPROTO_UDP,
                     0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip))
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    eth = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", "")) \
        + struct.pack("!H", 0x0800)
    return eth + ip + udp


def send_frames(dev: str, frames) -> int:
    """Send raw frames out of interface `dev` (in this namespace) through an AF_PACKET socket."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((dev, 0))
        n = 0
        for frame in frames:
            sock.send(frame)
            n += 1
    return n
