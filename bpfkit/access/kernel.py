"""The kernel's own view of BPF objects: programs, maps and links by id, with their info.

BCC hands out file descriptors; the kernel names objects by id, and that is what `bpftool`,
the program array and the map-of-maps show. These calls go through libbpf (which BCC itself
links against) so that lessons and tests can see what is loaded without shelling out.
"""
from __future__ import annotations

import ctypes as ct
import os
import re
from contextlib import contextmanager

from ..core import maptypes
from ._libbpf import has, lib

PROG_TYPES = [
    "unspec", "socket_filter", "kprobe", "sched_cls", "sched_act", "tracepoint", "xdp",
    "perf_event", "cgroup_skb", "cgroup_sock", "lwt_in", "lwt_out", "lwt_xmit", "sock_ops",
    "sk_skb", "cgroup_device", "sk_msg", "raw_tracepoint", "cgroup_sock_addr", "lwt_seg6local",
    "lirc_mode2", "sk_reuseport", "flow_dissector", "cgroup_sysctl", "raw_tracepoint_writable",
    "cgroup_sockopt", "tracing", "struct_ops", "ext", "lsm", "sk_lookup", "syscall", "netfilter",
]


class ProgInfo(ct.Structure):
    _fields_ = [
        ("type", ct.c_uint32), ("id", ct.c_uint32), ("tag", ct.c_uint8 * 8),
        ("jited_prog_len", ct.c_uint32), ("xlated_prog_len", ct.c_uint32),
        ("jited_prog_insns", ct.c_uint64), ("xlated_prog_insns", ct.c_uint64),
        ("load_time", ct.c_uint64), ("created_by_uid", ct.c_uint32), ("nr_map_ids", ct.c_uint32),
        ("map_ids", ct.c_uint64), ("name", ct.c_char * 16), ("ifindex", ct.c_uint32),
        ("gpl_compatible", ct.c_uint32), ("netns_dev", ct.c_uint64), ("netns_ino", ct.c_uint64),
        ("nr_jited_ksyms", ct.c_uint32), ("nr_jited_func_lens", ct.c_uint32),
        ("jited_ksyms", ct.c_uint64), ("jited_func_lens", ct.c_uint64), ("btf_id", ct.c_uint32),
        ("func_info_rec_size", ct.c_uint32), ("func_info", ct.c_uint64),
        ("nr_func_info", ct.c_uint32), ("nr_line_info", ct.c_uint32), ("line_info", ct.c_uint64),
        ("jited_line_info", ct.c_uint64), ("nr_jited_line_info", ct.c_uint32),
        ("line_info_rec_size", ct.c_uint32), ("jited_line_info_rec_size", ct.c_uint32),
        ("nr_prog_tags", ct.c_uint32), ("prog_tags", ct.c_uint64), ("run_time_ns", ct.c_uint64),
        ("run_cnt", ct.c_uint64), ("recursion_misses", ct.c_uint64), ("verified_insns", ct.c_uint32),
    ]


class MapInfo(ct.Structure):
    _fields_ = [
        ("type", ct.c_uint32), ("id", ct.c_uint32), ("key_size", ct.c_uint32),
        ("value_size", ct.c_uint32), ("max_entries", ct.c_uint32), ("map_flags", ct.c_uint32),
        ("name", ct.c_char * 16), ("ifindex", ct.c_uint32),
        ("btf_vmlinux_value_type_id", ct.c_uint32), ("netns_dev", ct.c_uint64),
        ("netns_ino", ct.c_uint64), ("btf_id", ct.c_uint32), ("btf_key_type_id", ct.c_uint32),
        ("btf_value_type_id", ct.c_uint32), ("btf_vmlinux_id", ct.c_uint32), ("map_extra", ct.c_uint64),
    ]


class LinkInfo(ct.Structure):
    _fields_ = [("type", ct.c_uint32), ("id", ct.c_uint32), ("prog_id", ct.c_uint32),
                ("_pad", ct.c_uint32), ("_union", ct.c_uint8 * 64)]


def _ids(next_id) -> list[int]:
    out, cur, nxt = [], 0, ct.c_uint32()
    while True:
        try:
            next_id(cur, ct.byref(nxt))
        except OSError:   # ENOENT after the last one
            return out
        cur = nxt.value
        out.append(cur)


def prog_ids() -> list[int]:
    return _ids(lib.bpf_prog_get_next_id)


def map_ids() -> list[int]:
    return _ids(lib.bpf_map_get_next_id)


def link_ids() -> list[int]:
    return _ids(lib.bpf_link_get_next_id)


def fd_info(fd: int, struct_type):
    info = struct_type()
    size = ct.c_uint32(ct.sizeof(info))
    lib.bpf_obj_get_info_by_fd(fd, ct.byref(info), ct.byref(size))
    return info


def _info_by_id(get_fd, obj_id: int, struct_type):
    try:
        fd = get_fd(obj_id)
    except OSError:
        return None  # gone since it was listed
    try:
        return fd_info(fd, struct_type)
    finally:
        os.close(fd)


def prog_info(prog_id: int) -> dict | None:
    info = _info_by_id(lib.bpf_prog_get_fd_by_id, prog_id, ProgInfo)
    if info is None:
        return None
    return {"id": info.id, "name": info.name.decode(errors="replace"),
            "type": _name(PROG_TYPES, info.type), "tag": bytes(info.tag).hex(),
            "run_time_ns": info.run_time_ns, "run_cnt": info.run_cnt}


def map_info(map_id: int) -> dict | None:
    info = _info_by_id(lib.bpf_map_get_fd_by_id, map_id, MapInfo)
    return None if info is None else _map_dict(info)


def map_info_by_fd(fd: int) -> dict:
    return _map_dict(fd_info(fd, MapInfo))


def prog_info_by_fd(fd: int) -> dict:
    info = fd_info(fd, ProgInfo)
    return {"id": info.id, "name": info.name.decode(errors="replace"),
            "type": _name(PROG_TYPES, info.type), "run_time_ns": info.run_time_ns,
            "run_cnt": info.run_cnt}


def link_info(link_id: int) -> dict | None:
    info = _info_by_id(lib.bpf_link_get_fd_by_id, link_id, LinkInfo)
    return None if info is None else {"id": info.id, "type": info.type, "prog_id": info.prog_id}


def _map_dict(info: MapInfo) -> dict:
    return {"id": info.id, "name": info.name.decode(errors="replace"),
            "type": maptypes.name_of(info.type), "key_size": info.key_size,
            "value_size": info.value_size, "max_entries": info.max_entries, "flags": info.map_flags,
            "map_extra": info.map_extra, "btf_id": info.btf_id}


def _name(names: list[str], number: int) -> str:
    return names[number] if number < len(names) else f"type {number}"


def snapshot() -> dict[str, set[int]]:
    """Ids of every BPF program, map and link in the kernel now (to compare before and after)."""
    return {"programs": set(prog_ids()), "maps": set(map_ids()), "links": set(link_ids())}


BPF_STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"
BPF_STATS_RUN_TIME = 0   # enum bpf_stats_type


@contextmanager
def bpf_stats():
    """Count run_time_ns and run_cnt for every BPF program (see `prog_info`) inside the `with`
    block. Off by default because timing each run costs a little on every program in the kernel.

    Where the kernel has BPF_ENABLE_STATS (5.8), statistics stay on while an fd is open: the
    kernel turns them off when it closes, also when the process is killed, and the sysctl is not
    touched. Elsewhere the sysctl is set, and its earlier value recorded with this process as
    owner first (`lifetime.claim`), so the next load after a kill writes it back."""
    fd = _enable_stats()
    if fd is not None:
        try:
            owner.made("sysctl")
            yield
        finally:
            os.close(fd)
        return
    yield from _sysctl_stats()


def _enable_stats() -> int | None:
    """An fd that keeps statistics on, or None where this kernel or libbpf has no such call
    (found out by trying)."""
    if not has("bpf_enable_stats"):
        return None
    try:
        return lib.bpf_enable_stats(BPF_STATS_RUN_TIME)
    except OSError:
        return None


class _NoRecord:
    """Until bpfkit.host.lifetime (a layer above) plugs in its owner record."""
    def claim(self, kind, *names): pass
    def release(self, kind, *names): pass
    def made(self, kind): pass


owner = _NoRecord()   # bpfkit.host.lifetime sets itself here on import


def _sysctl_stats():
    with open(BPF_STATS_SYSCTL) as f:
        before = f.read().strip()
    entry = f"{BPF_STATS_SYSCTL}={before}"
    owner.claim("sysctl", entry)
    with open(BPF_STATS_SYSCTL, "w") as f:
        f.write("1")
    owner.made("sysctl")
    try:
        yield
    finally:
        with open(BPF_STATS_SYSCTL, "w") as f:
            f.write(before)
        owner.release("sysctl", entry)


# Attach types (enum bpf_attach_type) that lessons attach with bpf_prog_attach.
ATTACH_TYPES = {"cgroup_inet_ingress": 0, "cgroup_inet_egress": 1, "cgroup_inet_sock_create": 2,
                "cgroup_sock_ops": 3, "sk_skb_stream_parser": 4, "sk_skb_stream_verdict": 5,
                "cgroup_device": 6, "sk_msg_verdict": 7, "sk_skb_verdict": 38}


def attach(prog_fd: int, target_fd: int, attach_type: int, flags: int = 0) -> None:
    """Attach a program to a cgroup or a sockmap (by fd); OSError if the kernel refuses."""
    lib.bpf_prog_attach(prog_fd, target_fd, attach_type, flags)


def detach(prog_fd: int, target_fd: int, attach_type: int) -> None:
    lib.bpf_prog_detach2(prog_fd, target_fd, attach_type)


def attached_prog_ids(target_fd: int, attach_type: int) -> list[int]:
    """Ids of the programs attached to a cgroup or sockmap (by fd) at `attach_type`, as
    `bpftool cgroup show` lists them; links count too. Empty when nothing is attached."""
    ids = (ct.c_uint32 * 64)()
    count, flags = ct.c_uint32(64), ct.c_uint32()
    lib.bpf_prog_query(target_fd, attach_type, 0, ct.byref(flags), ids, ct.byref(count))
    return list(ids[:count.value])


_FDINFO_ID = re.compile(r"^(prog_id|map_id|link_id):\s*(\d+)", re.M)
_FDINFO_KIND = {"prog_id": "programs", "map_id": "maps", "link_id": "links"}


def _bpf_fds(pid: int | str, kinds=("anon_inode:bpf",)) -> list[int]:
    """Process `pid`'s file descriptors whose target starts with one of `kinds`."""
    found = []
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(kinds):
                found.append(int(fd))
        except OSError:
            continue
    return found


def bpf_fds() -> set[int]:
    """This process's file descriptors that name a BPF object or a BTF object."""
    return set(_bpf_fds("self", ("anon_inode:bpf", "anon_inode:btf")))


def held_by(pid: int) -> dict[str, set[int]]:
    """Ids of the BPF programs, maps and links process `pid` holds an fd to (none if it is gone).

    An object some process holds is that process's to free (it goes when the process exits);
    a leak is an object nobody holds that is still in the kernel."""
    held = {"programs": set(), "maps": set(), "links": set()}
    for fd in _bpf_fds(pid):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:
            continue
        for kind, number in _FDINFO_ID.findall(info):
            held[_FDINFO_KIND[kind]].add(int(number))
    return held
