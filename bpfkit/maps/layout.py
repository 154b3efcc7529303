"""How a map's C key and value types become numpy dtypes and DataFrame columns.

BCC describes each map's key and value as ctypes types. numpy reads those layouts directly
(offsets and padding included), so a whole snapshot can land in one structured array and turn
into columns without a Python loop per entry: struct fields become columns, nested structs
become `outer.inner`, `char[]` becomes `str`.
"""
from __future__ import annotations

import ctypes as ct

import numpy as np
import pandas as pd


def dtype_of(ctype) -> np.dtype:
    """The numpy dtype with the same bytes as `ctype` (BCC's padding fields included)."""
    try:
        return _strings(np.dtype(ctype))
    except (TypeError, ValueError, NotImplementedError):
        # Bitfields and other layouts numpy cannot mirror: keep the raw bytes.
        return np.dtype((np.void, ct.sizeof(ctype)))


def _strings(dt: np.dtype) -> np.dtype:
    """numpy reads `char[16]` as sixteen 1-byte strings; make it one 16-byte string."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        if base == np.dtype("S1") and len(shape) == 1:
            return np.dtype(f"S{shape[0]}")
        return np.dtype((_strings(base), shape))
    if dt.names is None:
        return dt
    return np.dtype({"names": list(dt.names),
                     "formats": [_strings(dt.fields[n][0]) for n in dt.names],
                     "offsets": [dt.fields[n][1] for n in dt.names],
                     "itemsize": dt.itemsize})


def _visible(name: str) -> bool:
    return not name.startswith("__pad") and name != ""


def columns_of(values: np.ndarray, prefix: str, scalar_name: str) -> dict[str, object]:
    """Flatten a structured array into named 1-D columns."""
    dt = values.dtype
    if dt.names is None:
        return {scalar_name: _column(values)}
    out: dict[str, object] = {}
    for field in dt.names:
        if not _visible(field):
            continue
        sub = values[field]
        name = f"{prefix}{field}"
        if sub.dtype.names is not None:
            out.update(columns_of(sub, f"{name}.", name))
        else:
            out[name] = _column(sub)
    return out


def _column(values: np.ndarray):
    kind = values.dtype.kind
    if kind == "S":
        return pd.array([v.split(b"\0", 1)[0].decode("utf-8", "replace") for v in values.tolist()],
                        dtype=object)
    if kind == "V" and values.dtype.names is None and values.dtype.subdtype is None:
        return [bytes(v) for v in values.tolist()]
    if values.ndim > 1:  # a C array field: one tuple per row
        return [tuple(row) for row in values.tolist()]
    return values


def to_python(record: np.ndarray | np.void | object):
    """One key or value as a plain Python object: an int, a str, or a dict of fields."""
    if isinstance(record, np.void) and record.dtype.names is not None:
        return {name: to_python(record[name]) for name in record.dtype.names if _visible(name)}
    if isinstance(record, bytes):
        return record.split(b"\0", 1)[0].decode("utf-8", "replace")
    if isinstance(record, np.ndarray):
        return [to_python(x) for x in record]
    if isinstance(record, np.generic):
        return record.item() if not isinstance(record, np.bytes_) else to_python(bytes(record))
    return record
