"""Column cleaning shared by the label-table readers (:mod:`starlabels.io.allstar` for DR14–17
allStar tables, :mod:`starlabels.io.astra` for SDSS-V astraAllStar tables)."""

from __future__ import annotations

from typing import Any

import numpy as np

from starlabels.constants import MISSING

__all__ = ["flag_values", "missing_to_sentinel", "stripped_strings"]


def missing_to_sentinel(values: Any) -> np.ndarray:
    """(N,) float64 copy of a label column with NaN/inf and values ≤ −9999 set to MISSING (−9999.0)."""
    x = np.array(values, dtype=np.float64)
    x[~np.isfinite(x) | (x <= MISSING)] = MISSING
    return x


def stripped_strings(values: Any) -> np.ndarray:
    """(N,) str of a text column (bytes decoded as UTF-8), leading and trailing blanks removed."""
    a = np.asarray(values)
    if a.dtype.kind == "S":
        a = np.char.decode(a, "utf-8", errors="replace")
    return np.char.strip(a.astype(str))


def flag_values(values: Any | None, n_rows: int, dtype: Any = np.int64) -> np.ndarray:
    """(n_rows,) flag column as ``dtype`` (bit flags: int64; yes/no flags: bool): zeros when the
    table has no such column (``values`` None); NaN/inf in a float column (e.g. an empty CSV
    cell) read as 0."""
    if values is None:
        return np.zeros(n_rows, dtype)
    v = np.asarray(values)
    if v.dtype.kind == "f":
        v = np.where(np.isfinite(v), v, 0)
    return v.astype(dtype)
