"""Python keys and values to C bytes and back, checked against the map's types.

ctypes truncates an out-of-range int silently and BCC passes any buffer to the kernel, so a
learner's `m[-1] = 2**70` would write garbage. Here each value is checked and a wrong one is
refused with a message naming the C type the map expects. `ctype()` reads the C type names a
learner writes (`"u32"`, `"char[16]"`) for maps made from Python.
"""
from __future__ import annotations

import ctypes as ct
import re

import numpy as np

from ..core.errors import KeyTypeError, UsageError
from . import layout

_NAMED = {
    "u8": ct.c_uint8, "u16": ct.c_uint16, "u32": ct.c_uint32, "u64": ct.c_uint64,
    "s8": ct.c_int8, "s16": ct.c_int16, "s32": ct.c_int32, "s64": ct.c_int64,
    "__u8": ct.c_uint8, "__u16": ct.c_uint16, "__u32": ct.c_uint32, "__u64": ct.c_uint64,
    "__s8": ct.c_int8, "__s16": ct.c_int16, "__s32": ct.c_int32, "__s64": ct.c_int64,
    "char": ct.c_char, "int": ct.c_int, "unsigned int": ct.c_uint, "long": ct.c_long,
    "unsigned long": ct.c_ulong, "short": ct.c_short, "unsigned short": ct.c_ushort,
    "long long": ct.c_longlong, "unsigned long long": ct.c_ulonglong,
    "float": ct.c_float, "double": ct.c_double,
}

_INT_RANGES = {}
for _t in (ct.c_int8, ct.c_int16, ct.c_int32, ct.c_int64, ct.c_uint8, ct.c_uint16, ct.c_uint32,
           ct.c_uint64, ct.c_long, ct.c_ulong, ct.c_int, ct.c_uint, ct.c_short, ct.c_ushort,
           ct.c_byte, ct.c_ubyte, ct.c_longlong, ct.c_ulonglong):
    bits = ct.sizeof(_t) * 8
    signed = _t(-1).value == -1
    _INT_RANGES[_t] = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def ctype(spec, role: str = "value"):
    """A ctypes type from what a learner passes: a ctypes type itself, or a C name such as
    "u32", "u64", "int", "char[16]" or "u64[127]"."""
    if spec is None or isinstance(spec, type) and issubclass(spec, ct._SimpleCData | ct.Array
                                                             | ct.Structure | ct.Union):
        return spec
    if isinstance(spec, str):
        m = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_ ]*?)\s*(?:\[\s*(\d+)\s*\])?\s*", spec)
        base = _NAMED.get(" ".join(m.group(1).split())) if m else None
        if base is not None:
            return base * int(m.group(2)) if m.group(2) else base
    raise KeyTypeError(f"{spec!r} does not name a C type for the map's {role}.",
                       "write a C type name such as \"u32\", \"u64\", \"int\" or \"char[16]\", "
                       "or pass a ctypes type (a ctypes.Structure for a struct).")


def c_name(ctype) -> str:
    """A C spelling of a ctypes type, for messages."""
    if ctype in _INT_RANGES:
        lo, hi = _INT_RANGES[ctype]
        return f"{'s' if lo < 0 else 'u'}{ct.sizeof(ctype) * 8}"
    if issubclass(ctype, ct.Array):
        return f"{c_name(ctype._type_)}[{ctype._length_}]" if ctype._type_ is not ct.c_char \
            else f"char[{ctype._length_}]"
    if issubclass(ctype, (ct.Structure, ct.Union)):
        fields = ", ".join(f"{c_name(t)} {n}" for n, t, *_ in ctype._fields_ if not n.startswith("__pad"))
        return f"struct {{{fields}}}"
    if ctype is ct.c_char:
        return "char"
    if ctype in (ct.c_float, ct.c_double):
        return ctype.__name__[2:]
    return ctype.__name__


def to_c(ctype, value, role: str = "key"):
    """An instance of `ctype` holding `value`, or KeyTypeError saying what fits."""
    if isinstance(value, ctype):
        return value
    try:
        return _convert(ctype, value)
    except KeyTypeError:
        raise
    except (TypeError, ValueError, OverflowError, AttributeError) as e:
        raise _mismatch(ctype, value, role, str(e)) from None


def _mismatch(ctype, value, role: str, why: str = "") -> KeyTypeError:
    shown = repr(value)
    shown = shown if len(shown) < 60 else shown[:57] + "..."
    return KeyTypeError(
        f"The map's {role} is a C {c_name(ctype)} ({ct.sizeof(ctype)} bytes); {shown} does not fit"
        + (f": {why}" if why else "."),
        _example(ctype, role))


def _example(ctype, role: str) -> str:
    if ctype in _INT_RANGES:
        lo, hi = _INT_RANGES[ctype]
        return f"pass a whole number from {lo} to {hi} as the {role}."
    if issubclass(ctype, ct.Array) and ctype._type_ is ct.c_char:
        return f"pass a str of at most {ctype._length_ - 1} characters as the {role}."
    if issubclass(ctype, (ct.Structure, ct.Union)):
        names = [n for n, *_ in ctype._fields_ if not n.startswith("__pad")]
        return (f"pass a dict with the fields {names} (or a tuple in that order) as the {role}.")
    return f"pass a {c_name(ctype)} as the {role}."


def _convert(ctype, value):
    if ctype in _INT_RANGES:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"expected a whole number, got {type(value).__name__}")
        lo, hi = _INT_RANGES[ctype]
        if not lo <= int(value) <= hi:
            raise ValueError(f"{value} is outside {lo}..{hi}")
        return ctype(int(value))
    if ctype in (ct.c_float, ct.c_double):
        return ctype(float(value))
    if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == ct.sizeof(ctype) \
            and not (issubclass(ctype, ct.Array) and ctype._type_ is ct.c_char):
        return ctype.from_buffer_copy(bytes(value))
    if issubclass(ctype, ct.Array):
        if ctype._type_ is ct.c_char:
            raw = value.encode() if isinstance(value, str) else bytes(value)
            if len(raw) > ctype._length_ or (isinstance(value, str) and len(raw) == ctype._length_):
                raise ValueError(f"{len(raw)} bytes do not fit in char[{ctype._length_}]"
                                 + (" with its ending NUL" if isinstance(value, str) else ""))
            return ctype.from_buffer_copy(raw.ljust(ct.sizeof(ctype), b"\0"))
        items = list(value)
        if len(items) > ctype._length_:
            raise ValueError(f"{len(items)} items do not fit in {ctype._length_} slots")
        return ctype(*(_convert(ctype._type_, v) for v in items))
    if issubclass(ctype, (ct.Structure, ct.Union)):
        fields = [(n, t) for n, t, *_ in ctype._fields_ if not n.startswith("__pad")]
        if isinstance(value, dict):
            unknown = set(value) - {n for n, _ in fields}
            if unknown:
                raise ValueError(f"no field {sorted(unknown)[0]!r}")
            pairs = value.items()
        elif isinstance(value, (tuple, list)):
            if len(value) != len(fields):
                raise ValueError(f"{len(value)} items for {len(fields)} fields")
            pairs = zip((n for n, _ in fields), value)
        else:
            raise TypeError(f"expected a dict or tuple, got {type(value).__name__}")
        types = dict(fields)
        out = ctype()
        for name, v in pairs:
            c_value = _convert(types[name], v)
            if isinstance(c_value, ct.Array) and c_value._type_ is ct.c_char:
                c_value = c_value.raw
            elif not isinstance(c_value, (ct.Array, ct.Structure, ct.Union)):
                c_value = c_value.value
            setattr(out, name, c_value)
        return out
    raise TypeError(f"cannot convert {type(value).__name__}")


def from_c(ctype, raw) -> object:
    """A C value (an instance or its bytes) as a plain Python int, str or dict."""
    data = bytes(raw)
    return layout.to_python(np.frombuffer(data, dtype=layout.dtype_of(ctype), count=1)[0])


def check_declared(name: str, key_type, value_type, key_size: int, value_size: int,
                   where: str) -> None:
    """Refuse C types declared for a map (`where`) whose sizes differ from the map's own: a
    u16 read from an 8-byte value shows its low two bytes, 0 for 420000, without an error."""
    for role, ctype, size in (("key", key_type, key_size), ("value", value_type, value_size)):
        if ctype is None or ct.sizeof(ctype) == size:
            continue
        fits = [n for n in ("u8", "u16", "u32", "u64") if ct.sizeof(_NAMED[n]) == size]
        raise UsageError(
            f"{where} declares the {role} of map {name!r} as {c_name(ctype)} "
            f"({ct.sizeof(ctype)} bytes), but the map's {role} is {size} bytes"
            + (" (it has none)" if not size else "") + ": every entry would read wrong.",
            (f"declare a {role} type of {size} bytes, such as {' or '.join(fits + ['a struct'])} "
             f"of {size} bytes, " if size else f"leave the {role} out, ")
            + f"as the C declaration has it; or leave {name!r} out of types= to read raw numbers.")
