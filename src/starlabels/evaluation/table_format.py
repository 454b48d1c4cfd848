"""Tables as text: numbers to significant figures, GitHub Markdown tables, CSV/Markdown files,
and tidy → wide reshaping (no ``tabulate`` needed).

The tidy DataFrames of :mod:`starlabels.evaluation.metrics` (one row per label × group × bin)
become report tables here: :func:`to_markdown`, :func:`write_table` and :func:`pivot`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from starlabels.constants import MISSING
from starlabels.errors import InputDataError

__all__ = ["format_number", "pivot", "to_markdown", "write_table"]




def pivot(df: pd.DataFrame, index: Sequence[str], columns: str, values: str) -> pd.DataFrame:
    """Wide table keeping the order of first appearance of index rows and columns."""
    index = list(index)
    rcode, rows = pd.factorize(pd.MultiIndex.from_frame(df[index]), sort=False)
    ccode, cols = pd.factorize(df[columns], sort=False)
    grid = np.full((len(rows), len(cols)), np.nan)
    grid[rcode, ccode] = df[values].to_numpy(dtype=float)
    wide = pd.DataFrame(list(rows), columns=index)
    for k, c in enumerate(cols):
        wide[str(c)] = grid[:, k]
    return wide


def _as_frame(table: pd.DataFrame | Any) -> pd.DataFrame:
    if isinstance(table, pd.DataFrame):
        return table
    if hasattr(table, "to_pandas"):
        return table.to_pandas()
    return pd.DataFrame(table)


def format_number(x: Any, digits: int = 4) -> str:
    """A cell as text: integers as is, floats to ``digits`` significant figures without exponent
    for 1e-4 ≤ |x| < 1e7 (e.g. 144.8, 0.07690, 12346), NaN/None/MISSING as empty."""
    if x is None or (isinstance(x, float | np.floating) and not np.isfinite(x)):
        if isinstance(x, float | np.floating) and np.isinf(x):
            return "inf" if x > 0 else "-inf"
        return ""
    if isinstance(x, bool | np.bool_):
        return str(bool(x))
    if isinstance(x, int | np.integer):
        return str(int(x))
    if isinstance(x, float | np.floating):
        if x == MISSING:
            return ""
        ax = abs(float(x))
        if ax == 0:
            return "0"
        if ax < 1e-4 or ax >= 1e7:
            return f"{x:.{digits - 1}e}"
        decimals = max(0, digits - 1 - math.floor(math.log10(ax)))
        return f"{x:.{decimals}f}"
    return str(x)


def to_markdown(
    table: pd.DataFrame | Any,
    *,
    digits: int = 4,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    index: bool = False,
) -> str:
    """A GitHub-flavoured Markdown table (no ``tabulate`` needed).

    Numbers get ``digits`` significant figures (:func:`format_number`) unless ``formats`` gives
    a column a format spec (``".1f"``) or a callable. Numeric columns are right-aligned; ``|``
    in cells is escaped. ``index=True`` writes the DataFrame index as the first column(s).
    """
    df = _as_frame(table)
    if index:
        df = df.reset_index()
    formats = dict(formats or {})
    cols = [str(c) for c in df.columns]
    cells = []
    for c, name in zip(df.columns, cols, strict=True):
        f = formats.get(name)
        vals = df[c].tolist()
        if f is None:
            out = [format_number(v, digits) for v in vals]
        elif callable(f):
            out = [f(v) for v in vals]
        else:
            out = [format_number(v, digits) if _is_missing(v) else format(v, f) for v in vals]
        cells.append([s.replace("|", r"\|").replace("\n", " ") for s in out])
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])
               for c in df.columns]
    header = [h.replace("|", r"\|") for h in cols]
    widths = [max([len(h), 3, *(len(s) for s in col)]) for h, col in zip(header, cells, strict=True)]

    def row(items: list[str]) -> str:
        return "| " + " | ".join(
            s.rjust(w) if num else s.ljust(w) for s, w, num in zip(items, widths, numeric, strict=True)
        ) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if num else ("-" * (w + 2))
                         for w, num in zip(widths, numeric, strict=True)) + "|"
    lines = [row(header), sep]
    lines += [row([col[i] for col in cells]) for i in range(len(df))]
    return "\n".join(lines) + "\n"


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float | np.floating) and (not np.isfinite(v) or v == MISSING))


def write_table(
    table: pd.DataFrame | Any, path: str | Path, *, digits: int = 4, index: bool = False
) -> Path:
    """Write a table as Markdown (``.md``) or CSV (``.csv``, full precision), by suffix."""
    path = Path(path)
    df = _as_frame(table)
    suffix = path.suffix.lower()
    if suffix == ".md":
        text = to_markdown(df, digits=digits, index=index)
        path.write_text(text, encoding="utf-8")
    elif suffix == ".csv":
        df.to_csv(path, index=index)
    else:
        raise InputDataError(f"{path}: table format must be .md or .csv, not {suffix or 'none'!r}")
    return path
