"""The course: every lesson, in order, by the one stem that names all of its files.

A lesson is found by its stem everywhere (libbpf-bootstrap's rule of one name): the notebook
`notebooks/14_cgroup_maps.ipynb`, its solution `notebooks/solutions/14_cgroup_maps.ipynb`, its own
programs `bpf/14_cgroup_maps/`, its check `bpfkit/lessons/l14_cgroup_maps.py` and its tests
`tests/lessons/test_14_cgroup_maps.py`. Programs that several lessons load stay at `bpf/`'s root.
The atlas (which lesson teaches a map type), `reset`, `progress` and the tests read this list, so a
lesson is added here once and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Lesson:
    stem: str                          # "14_cgroup_maps"
    title: str                         # the notebook's heading, without its number
    map_types: tuple[str, ...] = ()    # the map types it teaches (the atlas links them here)
    exercise: bool = True              # 00 checks the machine and has no exercise

    @property
    def module(self) -> str | None:
        """The lesson's module: its check and the helpers only it needs."""
        return f"bpfkit.lessons.l{self.stem}" if self.exercise else None

    def notebook(self, kit: Path) -> Path:
        return kit / "notebooks" / f"{self.stem}.ipynb"

    def solution(self, kit: Path) -> Path | None:
        return kit / "notebooks" / "solutions" / f"{self.stem}.ipynb" if self.exercise else None


def _l(stem, title, types="", exercise=True) -> Lesson:
    return Lesson(stem, title, tuple(types.split()), exercise)


LESSONS: tuple[Lesson, ...] = (
    _l("00_check_your_setup", "Check your setup", exercise=False),
    _l("01_hash_map_counter", "The hash map: counting execve() per user", "hash"),
    _l("02_array_histogram", "The array: a histogram of read() sizes", "array"),
    _l("03_prog_array_tail_calls", "The program array: tail calls", "prog_array"),
    _l("04_map_of_maps", "Maps of maps: swap a whole configuration at once",
       "array_of_maps hash_of_maps"),
    _l("05_sockmap_sockhash", "Sockmap and sockhash: a shortcut between local sockets", "sockhash"),
    _l("06_devmap_xdp_redirect", "The devmap: XDP sends frames out of another interface", "devmap"),
    _l("07_map_cost_in_kernel", "What a map costs inside the kernel"),
    _l("08_percpu_lru", "Per-CPU and LRU maps",
       "percpu_hash percpu_array lru_hash lru_percpu_hash"),
    _l("09_events_ringbuf_perf", "Getting events out: perf buffers and ring buffers",
       "perf_event_array ringbuf"),
    _l("10_queue_stack_bloom", "Maps without keys: queue, stack and bloom filter",
       "queue stack bloom_filter"),
    _l("11_stack_traces_profiler", "Stack traces and a profiler", "stack_trace"),
    _l("12_lpm_trie", "Longest-prefix match: classifying traffic with an LPM trie", "lpm_trie"),
    _l("13_sharing_pinning", "Sharing maps between programs, and keeping them"),
    _l("14_cgroup_maps", "Cgroup maps: which cgroup, and a value per cgroup",
       "cgroup_array cgroup_storage percpu_cgroup_storage cgrp_storage"),
    _l("15_local_storage", "Local storage: a value that lives on a socket, a task, a file",
       "sk_storage inode_storage task_storage"),
    _l("16_cpumap_devmap_hash", "XDP targets: hand frames to a CPU, to a device by key",
       "cpumap devmap_hash"),
    _l("17_xskmap_af_xdp", "The xskmap: AF_XDP, frames straight to a user-space socket", "xskmap"),
    _l("18_reuseport_sockmap", "Socket steering: the reuseport socket array, and the plain sockmap",
       "sockmap reuseport_sockarray"),
    _l("19_beyond_bcc", "Beyond BCC: struct_ops, user ring buffers and arenas",
       "struct_ops user_ringbuf arena"),
    _l("20_map_type_atlas", "The map-type atlas: every map type this kernel has"),
)
BY_STEM = {lesson.stem: lesson for lesson in LESSONS}


def teaching(map_type: str) -> Lesson | None:
    """The lesson that teaches a map type (by its kit name, "cgrp_storage"); None if none does."""
    return next((lesson for lesson in LESSONS if map_type in lesson.map_types), None)
