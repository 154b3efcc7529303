"""A codec's table as the DataFrame a lesson gets: renamed once, the same way for every family.

Renaming is one step, after the codec has named the columns and before per-CPU columns are
spread out, so `frame({"value": "count"})` names the value column of a hash, of a per-CPU map's
"wide" layout (count_cpu0, count_cpu1, ...) and of a sampled frame alike.

Renames are one dict (or a list in column order), never keywords: a struct's field may be called
`ports` or `method` like an option, and it must be as easy to rename as any other column.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..core.errors import ColumnError, UsageError, did_you_mean, nearest
from .codecs import PerCpuColumn, Table


def renaming(names: list[str], columns=None) -> dict[str, str]:
    """{old: new} for the columns `names`, from `columns` (a dict, or a list in column order);
    a name the frame does not have is an error, with the nearest."""
    mapping: dict[str, str] = {}
    if isinstance(columns, dict):
        mapping.update(columns)
    elif columns is not None:
        if isinstance(columns, (str, bytes)) or not hasattr(columns, "__iter__"):
            raise ColumnError(f"columns= renames the frame's columns: a dict {{old: new}} or a list "
                              f"of new names, not {type(columns).__name__} {columns!r}.",
                              f"for example frame({{{names[0]!r}: 'new_name'}}); options such as "
                              "method= are given by name." if names else
                              "give a dict {old: new}.")
        columns = list(columns)
        if len(columns) != len(names):
            raise ColumnError(f"columns= names {len(columns)} columns, the frame has "
                              f"{len(names)}: {names}",
                              "give one name per column, in order, or a dict {old: new}.")
        mapping.update(zip(names, columns))
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


def build(table: Table, *, extra: dict | None = None, columns=None) -> pd.DataFrame:
    """The DataFrame of `table`: `extra` columns first (one value per snapshot entry, such as
    the time of a sample), then keys, then values; renamed by `columns`.
    `frame.attrs["key_columns"]` names the columns that identify a row (after renaming)."""
    values = {}
    for name, column in table.values.items():  # a value field named like a key column
        values[f"value.{name}" if name in table.keys else name] = column
    extra = dict(extra or {})
    if table.entry is not None:
        extra = {name: np.asarray(col)[table.entry] for name, col in extra.items()}
    names = [*extra, *table.keys, *values]
    mapping = renaming(names, columns) if columns is not None else {}
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


def rename(frame: pd.DataFrame, columns=None, **misplaced) -> pd.DataFrame:
    """Rename any frame's columns the way `Map.frame()` does (for frames a lesson builds)."""
    if misplaced:
        raise keywords_refused("rename", misplaced, [], "rename(frame, {...})")
    return frame.rename(columns=renaming(list(frame.columns), columns))


def keywords_refused(call: str, given: dict, options, form: str) -> UsageError:
    """The error for keywords that are neither an option of `call` nor a way to rename: the
    renames spelled as the dict they now are (`form` shows where it goes), and the nearest
    option for a misspelled one."""
    as_dict = "{" + ", ".join(f"{k!r}: {v!r}" if isinstance(v, str) else f"{k!r}: ..."
                              for k, v in given.items()) + "}"
    first = next(iter(given))
    close = nearest(first, options, n=1, cutoff=0.7)
    hint = f"did you mean {close[0]}=? " if close else ""
    hint += f"To rename columns, give one dict: {form.replace('{...}', as_dict)}."
    return UsageError(f"{call}() has no option {', '.join(f'{k}=' for k in given)}.", hint)
