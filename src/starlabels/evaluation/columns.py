"""Column access for catalogs and label arrays: one float column, star ids, ``(N, L)`` label
matrices, and reference rows matched by star id.

Inputs are plain arrays — ``(N, L)`` with ``labels`` naming the L columns, or ``(N,)`` for one
label — or tables with the catalog columns of ``docs/DESIGN.md`` (``TEFF``, ``TEFF_ERR``, ``SNR``,
…): an astropy ``Table``, a pandas ``DataFrame``, a mapping of column name to array, or a numpy
structured array. Float columns come back with ``MISSING`` (−9999,
:data:`starlabels.constants.MISSING`) and masked entries as NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from starlabels.constants import MISSING
from starlabels.errors import InputDataError

__all__ = [
    "TableLike", "clean_missing", "get_column", "has_column", "ids_of", "is_table", "label_matrix",
    "match_reference", "per_star_vector", "table_columns", "uncertainty_matrix",
]

TableLike = Any  # astropy Table | pandas DataFrame | Mapping[str, array] | structured ndarray


def is_table(obj: Any) -> bool:
    """True for the table types accepted as catalogs (astropy Table, DataFrame, mapping, recarray)."""
    if isinstance(obj, pd.DataFrame | Mapping):
        return True
    if isinstance(obj, np.ndarray):
        return obj.dtype.names is not None
    return hasattr(obj, "colnames") and hasattr(obj, "columns")


def table_columns(table: TableLike) -> list[str]:
    """Column names of a table-like object."""
    if isinstance(table, pd.DataFrame):
        return [str(c) for c in table.columns]
    if isinstance(table, Mapping):
        return [str(c) for c in table]
    if isinstance(table, np.ndarray) and table.dtype.names is not None:
        return list(table.dtype.names)
    if hasattr(table, "colnames"):
        return list(table.colnames)
    raise InputDataError(f"expected a table (astropy Table, DataFrame, mapping), got {type(table)!r}")


def has_column(table: TableLike, name: str) -> bool:
    """True when ``table`` is a table with a column ``name`` (False for arrays)."""
    return is_table(table) and name in table_columns(table)


def get_column(table: TableLike, name: str, *, dtype: Any = float) -> np.ndarray:
    """One column as a numpy array. Floats: masked entries and ``MISSING`` become NaN.

    ``dtype=None`` keeps the column's own type (e.g. strings for ids).
    """
    if not has_column(table, name):
        raise InputDataError(
            f"table has no column {name!r}; columns: {', '.join(table_columns(table)) or 'none'}"
        )
    col = table[name]
    if isinstance(col, pd.Series):
        col = col.to_numpy()
    if np.ma.isMaskedArray(col) or hasattr(col, "mask"):
        data = np.ma.asarray(col)
        if dtype is float:
            return clean_missing(np.ma.filled(data.astype(float), np.nan))
        out = np.asarray(np.ma.getdata(data))
        return out if dtype is None else out.astype(dtype)
    arr = np.asarray(col)
    if dtype is None:
        return arr
    if dtype is float:
        return clean_missing(arr.astype(float))
    return arr.astype(dtype)


def clean_missing(a: np.ndarray) -> np.ndarray:
    """Float copy of ``a`` (any shape) with ``MISSING`` (−9999) replaced by NaN."""
    a = np.array(a, dtype=float)
    a[a == MISSING] = np.nan
    return a


def ids_of(obj: TableLike | Sequence | np.ndarray, id_column: str = "APOGEE_ID") -> np.ndarray:
    """Star ids as a 1-D array of stripped strings: from ``obj[id_column]`` or ``obj`` itself."""
    raw = get_column(obj, id_column, dtype=None) if is_table(obj) else np.asarray(obj)
    if raw.ndim != 1:
        raise InputDataError(f"star ids must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind == "S":
        raw = np.char.decode(raw, "ascii")
    return np.char.strip(raw.astype(str))


def label_matrix(
    data: TableLike | np.ndarray, labels: Sequence[str] | str | None = None, *, suffix: str = "",
    what: str = "predictions",
) -> tuple[np.ndarray, list[str]]:
    """``(N, L)`` float array (MISSING/masked → NaN) and the label names.

    ``data`` is a table (columns ``label + suffix``, e.g. ``suffix="_ERR"``), an ``(N, L)`` array
    with ``labels`` naming its columns, or an ``(N,)`` array for one label.
    """
    if isinstance(labels, str):
        labels = [labels]
    if is_table(data):
        if labels is None:
            raise InputDataError(f"name the labels to read from the {what} table")
        labels = list(labels)
        cols = [get_column(data, f"{name}{suffix}") for name in labels]
        return np.stack(cols, axis=1) if cols else np.empty((0, 0)), labels
    arr = np.asarray(data, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputDataError(f"{what} must be (N,) or (N, L), got shape {arr.shape}")
    if labels is None:
        labels = [f"label_{i}" for i in range(arr.shape[1])]
    labels = list(labels)
    if len(labels) != arr.shape[1]:
        raise InputDataError(f"{what} have {arr.shape[1]} columns but {len(labels)} label names")
    return clean_missing(arr), labels


def per_star_vector(
    value: TableLike | np.ndarray | str | None, n: int, what: str, *tables: TableLike
) -> np.ndarray | None:
    """A per-star vector: an array of length n, or a column name looked up in ``tables``."""
    if value is None:
        return None
    if isinstance(value, str):
        for t in tables:
            if has_column(t, value):
                arr = get_column(t, value, dtype=None)
                break
        else:
            raise InputDataError(f"{what}: no table has a column {value!r}")
    else:
        arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputDataError(f"{what} must have shape ({n},), got {arr.shape}")
    return arr


def match_reference(
    catalog: TableLike, reference: TableLike, columns: Sequence[str] | None = None, *,
    id_column: str = "APOGEE_ID", reference_id_column: str | None = None,
) -> pd.DataFrame:
    """Rows of ``reference`` aligned to the rows of ``catalog`` by star id.

    Returns a DataFrame with ``len(catalog)`` rows and the requested float ``columns`` (all
    columns shared with the catalog except the id, by default); stars absent from the reference
    get NaN. Duplicate ids in the reference raise :class:`InputDataError`.
    """
    ref_id_col = reference_id_column or id_column
    cat_ids = ids_of(catalog, id_column)
    ref_ids = ids_of(reference, ref_id_col)
    index = pd.Index(ref_ids)
    if not index.is_unique:
        dup = index[index.duplicated()].unique()[:5].tolist()
        raise InputDataError(f"reference has duplicate ids in {ref_id_col!r}, e.g. {dup}")
    pos = index.get_indexer(cat_ids)
    if columns is None:
        columns = [c for c in table_columns(reference)
                   if c != ref_id_col and c in table_columns(catalog)]
    out = {}
    for c in columns:
        col = get_column(reference, c)
        vals = np.full(cat_ids.shape[0], np.nan)
        ok = pos >= 0
        vals[ok] = col[pos[ok]]
        out[c] = vals
    return pd.DataFrame(out)




def uncertainty_matrix(
    err: TableLike | np.ndarray | str | None, table: TableLike | np.ndarray, names: Sequence[str], n: int
) -> np.ndarray | None:
    """Uncertainty matrix ``(n, len(names))`` in label units from an array, an error table (its
    ``X_ERR`` columns), or ``"columns"``: the ``X_ERR`` columns of ``table``. ``None`` for ``None``.
    Raises :class:`InputDataError` for another string or a wrong shape."""
    if err is None:
        return None
    if isinstance(err, str):
        if err != "columns":
            raise InputDataError(f"uncertainties must be an array, a table or 'columns', got {err!r}")
        if not is_table(table):
            raise InputDataError("uncertainties='columns' needs a table with X_ERR columns")
        E, _ = label_matrix(table, names, suffix="_ERR", what="uncertainties")
    else:
        E, _ = label_matrix(err, names, suffix="_ERR" if is_table(err) else "", what="uncertainties")
    if E.shape != (n, len(names)):
        raise InputDataError(f"uncertainties must have shape {(n, len(names))}, got {E.shape}")
    return E

