"""bpfkit: load BPF programs, watch their maps fill live, as DataFrames and plots.

    import bpfkit
    prog = bpfkit.load("counter")            # bpf/counter.c, compiled and attached
    prog["counter_table"].frame({"key": "uid", "value": "count"})
    prog.close()

    seen = bpfkit.create_map("bloom_filter", value="u32")   # a type BCC cannot declare
    prog = bpfkit.load(source, maps={"seen": seen})         # `seen` in the C code
    bpfkit.map_types()                                      # every map type of this kernel
    bpfkit.allowed("arena map")                             # does this kernel allow it? why not
    bpfkit.progress()                                       # which exercises are solved
    bpfkit.lessons_here()                                   # which lesson parts this kernel skips

In a notebook, `%load_ext bpfkit` adds the `%%bpf NAME` and `%%bpfobject NAME` cell magics
(BCC C and libbpf C). `bpfkit.close_all()`
frees everything the kit made: programs, maps, pins, cgroups, network labs; with `check=True`
it then raises an error naming anything still left.
"""
from .core.errors import BpfkitError
from .host.lifetime import close_all
from .lab import cgroup as _cgroup, net as _net   # their undoers: the next load frees a dead run's labs
del _cgroup, _net
from .lessons.checker import progress
from .lessons.here import doctor, lessons_here
from .loader.features import allowed, helpers, program_types
from .loader.program import Program, load, loaded, source
from .maps import Map, create_map, map_types, open_pinned
from .maps.spec import possible_cpus
from .observe import plot
from .observe.sampling import live, sample


def load_ipython_extension(ip):
    from .magic import load_ipython_extension as _load
    _load(ip)


__all__ = ["load", "source", "Program", "Map", "create_map", "open_pinned", "map_types",
           "program_types", "helpers", "allowed", "possible_cpus",
           "sample", "live", "plot", "doctor", "lessons_here", "loaded", "close_all", "progress", "BpfkitError"]
