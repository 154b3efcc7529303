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


def round_up(size: int, multiple: int = 8) -> int:
    """`size` rounded up to a multiple of `multiple`. The kernel keeps what a map holds 8-byte
    aligned (a per-CPU value's slot, an mmap-able array's element, a ring buffer's record), and
    maps memory in whole pages."""
    return -(-size // multiple) * multiple


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
        return pd.array(texts(values), dtype=object, copy=False)
    if kind == "V" and values.dtype.names is None and values.dtype.subdtype is None:
        return [bytes(v) for v in values.tolist()]
    if values.ndim > 1:  # a C array field: one tuple per row
        return [tuple(row) for row in values.tolist()]
    return values


def text(raw: bytes) -> str:
    """A C char array as a str: up to the first NUL, as UTF-8 (a byte that is not, as U+FFFD)."""
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


# Decoding 16 bytes into a str costs more than reading them from the kernel did. A map keyed by
# {pid, comm} holds a million keys but a few hundred distinct names: decode each name once.
_FACTORIZE_FROM = 4096   # rows; below this, decoding each is as quick
_SAMPLE = 16384          # rows looked at first, to see whether names repeat at all


def texts(values: np.ndarray):
    """Every value of a char-array column as a str (a list, or an object array)."""
    if len(values) >= _FACTORIZE_FROM:
        codes, firsts = _factorized(values)
        if codes is not None:
            used = np.flatnonzero(firsts >= 0)
            table = np.empty(len(firsts), dtype=object)
            table[used] = [text(v) for v in values[firsts[used]].tolist()]
            return table[codes]
    return [text(v) for v in values.tolist()]


def _factorized(values: np.ndarray):
    """(a code per row, the first row of each code or -1 for a code no row has): equal bytes,
    equal code. None, None when the values hardly repeat (a sample says so), or their width
    is not whole words."""
    width = values.dtype.itemsize
    word = next((w for w in (8, 4) if width % w == 0), None)
    if word is None:
        return None, None
    words = np.ascontiguousarray(values).view(f"<u{word}").reshape(len(values), width // word)
    sample, kinds = _codes(words[:: max(1, len(values) // _SAMPLE)])
    if np.unique(sample).size > len(sample) // 2:
        return None, None
    codes, kinds = _codes(words)
    firsts = np.full(kinds, -1, dtype=np.int64)
    firsts[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)  # the last write is the first row
    return codes, firsts


def _codes(words: np.ndarray) -> tuple[np.ndarray, int]:
    """(a code per row of a 2-D array of words, how many codes there can be): rows alike have
    the same code. Each column's codes are folded into one number, c = c * k + code, which is
    exact; it is renumbered only when the numbers grow past a few per row."""
    codes, kinds = np.zeros(len(words), dtype=np.int64), 1
    for column in words.T:
        c, uniques = pd.factorize(column)
        if len(uniques) == 1:
            continue
        if kinds * len(uniques) > 4 * len(words) + 1024:
            codes, renumbered = pd.factorize(codes)
            kinds = len(renumbered)
        codes, kinds = codes * len(uniques) + c, kinds * len(uniques)
    return codes, kinds


def to_python(record: np.ndarray | np.void | object):
    """One key or value as a plain Python object: an int, a str, or a dict of fields."""
    if isinstance(record, np.void) and record.dtype.names is not None:
        return {name: to_python(record[name]) for name in record.dtype.names if _visible(name)}
    if isinstance(record, bytes):
        return text(record)
    if isinstance(record, np.ndarray):
        return [to_python(x) for x in record]
    if isinstance(record, np.generic):
        return record.item() if not isinstance(record, np.bytes_) else to_python(bytes(record))
    return record
