"""bpfkit: load BPF programs, watch their maps fill live, as DataFrames and plots.

    import bpfkit
    prog = bpfkit.load("counter")            # bpf/counter.c, compiled and attached
    prog["counter_table"].frame(key="uid", value="count")
    prog.close()

In a notebook, `%load_ext bpfkit` adds the `%%bpf NAME` cell magic.
"""
from . import plot
from .errors import BpfkitError
from .maps import Map
from .program import Program, close_all, load, loaded
from .sampling import live, sample
from .system import doctor


def load_ipython_extension(ip):
    from .magic import load_ipython_extension as _load
    _load(ip)


__all__ = ["load", "Program", "Map", "sample", "live", "plot", "doctor", "loaded", "close_all",
           "BpfkitError"]
