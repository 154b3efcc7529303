"""A codec's table as the DataFrame a lesson gets: renamed once, the same way for every family.

Renaming is one step, after the codec has named the columns and before per-CPU columns are
spread out, so `frame(value="count")` names the value column of a hash, of a per-CPU map's
"wide" layout (count_cpu0, count_cpu1, ...) and of a sampled frame alike.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ColumnError, did_you_mean
from .codecs import PerCpuColumn, Table


def renaming(names: list[str], columns=None, renames: dict | None = None) -> dict[str, str]:
    """{old: new} for the columns `names`, from `columns=` (a dict, or a list in column order)
    and keyword renames; a name the frame does not have is an error, with the nearest."""
    mapping: dict[str, str] = {}
    if isinstance(columns, dict):
        mapping.update(columns)
    elif columns is not None:
        columns = list(columns)
        if len(columns) != len(names):
            raise ColumnError(f"columns= names {len(columns)} columns, the frame has "
                              f"{len(names)}: {names}",
                              "give one name per column, in order, or a dict {old: new}.")
        mapping.update(zip(names, columns))
    mapping.update(renames or {})
    unknown = [c for c in mapping if c not in names]
    if unknown:
        raise ColumnError(f"There is no column {unknown[0]!r} to rename; the frame has "
                          f"{list(map(str, names))}.",
                          did_you_mean(str(unknown[0]), map(str, names)) or
                          "rename the columns the frame has.")
    final = [mapping.get(n, n) for n in names]
    twice = sorted({str(n) for n in final if final.count(n) > 1})
    if twice:
        raise ColumnError(f"After renaming, two columns would be called {twice[0]!r}: "
                          f"{[n for n in names if mapping.get(n, n) == twice[0]]}.",
                          "give each column a name of its own.")
    return mapping


def build(table: Table, *, extra: dict | None = None, columns=None,
          renames: dict | None = None) -> pd.DataFrame:
    """The DataFrame of `table`: `extra` columns first (one value per snapshot entry, such as
    the time of a sample), then keys, then values; renamed by `columns=` and `renames`.
    `frame.attrs["key_columns"]` names the columns that identify a row (after renaming)."""
    values = {}
    for name, column in table.values.items():  # a value field named like a key column
        values[f"value.{name}" if name in table.keys else name] = column
    extra = dict(extra or {})
    if table.entry is not None:
        extra = {name: np.asarray(col)[table.entry] for name, col in extra.items()}
    names = [*extra, *table.keys, *values]
    mapping = renaming(names, columns, renames) if (columns is not None or renames) else {}
    data = {}
    for name, column in (*extra.items(), *table.keys.items(), *values.items()):
        new = mapping.get(name, name)
        if isinstance(column, PerCpuColumn):
            for cpu, part in enumerate(column.per_cpu):
                data[f"{new}_cpu{cpu}"] = part
        else:
            data[new] = column
    frame = pd.DataFrame(data, copy=False)
    frame.index = pd.RangeIndex(len(frame))
    frame.attrs["key_columns"] = [mapping.get(n, n) for n in table.keys]
    return frame


def rename(frame: pd.DataFrame, columns=None, **renames) -> pd.DataFrame:
    """Rename any frame's columns the way `Map.frame()` does (for frames a lesson builds)."""
    return frame.rename(columns=renaming(list(frame.columns), columns, renames))
