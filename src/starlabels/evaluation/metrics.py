"""Accuracy and calibration metrics of predicted labels against reference labels.

All statistics are on residuals ``pred − ref`` (astroNN eq. 8). Entries where either value is
``MISSING`` (−9999, :data:`starlabels.constants.MISSING`) or NaN are left out, per label.

The robust scatter is σ_MAD = 1.4826 · median(|R − median(R)|) (astroNN eq. 9), which equals the
standard deviation for Gaussian residuals.

Inputs are either plain arrays — ``(N, L)`` with ``labels`` naming the L columns, or ``(N,)`` for
one label — or tables with the catalog columns of ``docs/DESIGN.md`` (``TEFF``, ``TEFF_ERR``,
``LOGG``, ``FE_H``, ``SNR``, …): an astropy ``Table``, a pandas ``DataFrame``, a mapping of column
name to array, or a numpy structured array. A reference table can be row-aligned with the
predictions or matched to them by star id with :func:`match_reference`.

Every function returns a *tidy* :class:`pandas.DataFrame` (one row per label × group × bin) that
:func:`to_markdown`, :func:`write_table` and :func:`pivot` turn into report tables:

- :func:`residual_table` — median, σ_MAD, median |R|, mean, std, RMS; per label, optionally per
  group and per bin of any variable (astroNN Tables 1–2, Figs 9–11);
- :func:`residuals_by_snr`, :func:`residuals_by_label_value` — the binned forms;
- :func:`zscore_table` — widths of z = (pred − ref)/σ for calibration checks;
- :func:`apogee_net_tables` — APOGEE Net Tables 1–3: label normalisation, combined standardised
  MSE and per-parameter scatter per group for train/dev/test.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.units import base_name as _base_name
from starlabels.units import label_unit

#: Scale factor from the median absolute deviation to a Gaussian σ (astroNN eq. 9).
MAD_TO_SIGMA = 1.4826

#: Fraction of a unit Gaussian within ±1σ and ±2σ (expected coverage of calibrated errors).
GAUSS_1SIGMA = math.erf(1 / math.sqrt(2))
GAUSS_2SIGMA = math.erf(2 / math.sqrt(2))

#: Default SNR bin edges (astroNN Fig. 11 spans SNR ≈ 0–200 for visits).
DEFAULT_SNR_BINS = np.array([0, 10, 20, 30, 40, 50, 60, 70, 80, 100, 125, 150, 200, 300, np.inf])

TableLike = Any  # astropy Table | pandas DataFrame | Mapping[str, array] | structured ndarray

# --------------------------------------------------------------------------------------------
# label names, units and display strings
# --------------------------------------------------------------------------------------------

_ELEMENT_SPELLING = {"TIII": "TiII", "CI": "CI", "ALPHA": "α", "M": "M"}


def element_name(symbol: str) -> str:
    """Element spelling from an upper-case label part: ``"MG"`` → ``"Mg"``, ``"TIII"`` → ``"TiII"``."""
    s = symbol.upper()
    return _ELEMENT_SPELLING.get(s, s.capitalize())


def label_display(name: str, tex: bool = True) -> str:
    """Human-readable label: ``TEFF`` → ``$T_\\mathrm{eff}$``, ``MG_FE`` → ``[Mg/Fe]``.

    ``tex=False`` gives plain text (``Teff``, ``log g``) for Markdown tables.
    """
    base = _base_name(name)
    if base == "TEFF":
        return r"$T_\mathrm{eff}$" if tex else "Teff"
    if base == "LOGG":
        return r"$\log g$" if tex else "log g"
    m = re.fullmatch(r"([A-Z]+)_(FE|H|M)", base)
    if m:
        return f"[{element_name(m.group(1))}/{element_name(m.group(2))}]"
    return name


def axis_label(name: str, unit: str | None = None, tex: bool = True) -> str:
    """Axis label with unit, e.g. ``"$T_\\mathrm{eff}$ (K)"``, ``"[Fe/H] (dex)"``."""
    unit = label_unit(name) if unit is None else unit
    text = label_display(name, tex=tex)
    return f"{text} ({unit})" if unit else text


# --------------------------------------------------------------------------------------------
# reading arrays and tables
# --------------------------------------------------------------------------------------------


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
            return _clean(np.ma.filled(data.astype(float), np.nan))
        out = np.asarray(np.ma.getdata(data))
        return out if dtype is None else out.astype(dtype)
    arr = np.asarray(col)
    if dtype is None:
        return arr
    if dtype is float:
        return _clean(arr.astype(float))
    return arr.astype(dtype)


def _clean(a: np.ndarray) -> np.ndarray:
    """Float copy with ``MISSING`` replaced by NaN."""
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
    return _clean(arr), labels


def _vector(
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


# --------------------------------------------------------------------------------------------
# core statistics
# --------------------------------------------------------------------------------------------


def valid(*arrays: np.ndarray) -> np.ndarray:
    """Boolean mask: finite and not ``MISSING`` in every array (arrays broadcast together)."""
    out = np.ones(np.broadcast(*arrays).shape, dtype=bool)
    for a in arrays:
        a = np.asarray(a, dtype=float)
        out &= np.isfinite(a) & (a != MISSING)
    return out


def sigma_mad(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """σ_MAD = 1.4826 · median(|x − median(x)|), ignoring NaN and ``MISSING`` (astroNN eq. 9).

    Returns NaN where no valid values are left.
    """
    a = _clean(np.asarray(x, dtype=float))
    with np.errstate(all="ignore"), _quiet_nanwarnings():
        med = np.nanmedian(a, axis=axis, keepdims=True)
        out = MAD_TO_SIGMA * np.nanmedian(np.abs(a - med), axis=axis)
    return float(out) if np.ndim(out) == 0 else out


@contextlib.contextmanager
def _quiet_nanwarnings() -> Iterator[None]:
    """Silence numpy's "All-NaN slice" / "Mean of empty slice" warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def residuals(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``pred − ref`` with NaN wherever either side is ``MISSING`` or NaN. Any matching shapes."""
    p, r = _clean(np.asarray(pred, dtype=float)), _clean(np.asarray(ref, dtype=float))
    return p - r


_STAT_COLUMNS = ["n", "median", "sigma_mad", "median_abs", "mean", "std", "rms"]


def grouped_stats(
    values: np.ndarray, codes: np.ndarray, n_groups: int, err: np.ndarray | None = None
) -> pd.DataFrame:
    """Statistics of ``values`` (N,) per integer group code in ``[0, n_groups)``, vectorised.

    Entries with NaN value (or NaN ``err`` when given) or a code outside the range are left
    out. Returns ``n_groups`` rows (empty groups have ``n = 0`` and NaN statistics) with columns
    n, median, sigma_mad (1.4826·MAD), median_abs (median |value|, astroNN's "MAE"), mean, std
    (ddof=1), rms, and median_err, mean_err (median and mean of ``err``) when ``err`` is given.
    """
    values = np.asarray(values, dtype=float)
    codes = np.asarray(codes)
    ok = np.isfinite(values) & (codes >= 0) & (codes < n_groups)
    if err is not None:
        err = np.asarray(err, dtype=float)
        ok &= np.isfinite(err)
    df = pd.DataFrame({"k": codes[ok].astype(np.int64), "v": values[ok]})
    if err is not None:
        df["e"] = err[ok]
    g = df.groupby("k", sort=True)
    med = g["v"].median()
    df["dev"] = np.abs(df["v"].to_numpy() - med.reindex(df["k"]).to_numpy())
    df["absv"] = np.abs(df["v"])
    df["sq"] = df["v"] ** 2
    g = df.groupby("k", sort=True)
    idx = pd.RangeIndex(n_groups)
    out = pd.DataFrame(
        {
            "n": g.size().reindex(idx, fill_value=0).astype(np.int64).to_numpy(),
            "median": med.reindex(idx).to_numpy(),
            "sigma_mad": MAD_TO_SIGMA * g["dev"].median().reindex(idx).to_numpy(),
            "median_abs": g["absv"].median().reindex(idx).to_numpy(),
            "mean": g["v"].mean().reindex(idx).to_numpy(),
            "std": g["v"].std(ddof=1).reindex(idx).to_numpy(),
            "rms": np.sqrt(g["sq"].mean().reindex(idx).to_numpy()),
        }
    )
    if err is not None:
        out["median_err"] = g["e"].median().reindex(idx).to_numpy()
        out["mean_err"] = g["e"].mean().reindex(idx).to_numpy()
    return out


def _group_codes(groups: np.ndarray | None, n: int, include_all: bool, all_name: str):
    """Group names in order of first appearance and per-star codes, per "layer".

    Returns a list of (names, codes) layers: the "all" layer (when asked for or when there are
    no groups) and the per-group layer.
    """
    layers = []
    if groups is None or include_all:
        layers.append(([all_name], np.zeros(n, dtype=np.int64)))
    if groups is not None:
        g = np.asarray(groups)
        if g.dtype.kind == "S":
            g = np.char.decode(g, "ascii")
        codes, names = pd.factorize(pd.Series(g.astype(str)), sort=False)
        layers.append(([str(x) for x in names], np.asarray(codes, dtype=np.int64)))
    return layers


def _bin_codes(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each x for increasing ``edges`` (last edge inclusive); −1 outside/NaN."""
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise InputDataError(f"bin edges must be 1-D and strictly increasing, got {edges}")
    x = np.asarray(x, dtype=float)
    k = np.searchsorted(edges, x, side="right") - 1
    k[x == edges[-1]] = edges.size - 2
    k[~np.isfinite(x) | (x < edges[0]) | (x > edges[-1])] = -1
    return k


# --------------------------------------------------------------------------------------------
# residual tables
# --------------------------------------------------------------------------------------------

BinsLike = np.ndarray | Sequence[float] | Mapping[str, Sequence[float]]


def _tidy_stats(
    values: np.ndarray,
    names: list[str],
    units: Mapping[str, str],
    err: np.ndarray | None,
    group_vec: np.ndarray | None,
    by_matrix: np.ndarray | None,
    bins: BinsLike | None,
    include_all: bool,
    all_name: str,
) -> pd.DataFrame:
    """Statistics of ``values`` (N, L) per label × group layer × bin of ``by_matrix`` (N, L)."""
    n = values.shape[0]
    layers = _group_codes(group_vec, n, include_all, all_name)
    frames = []
    for j, name in enumerate(names):
        if by_matrix is None:
            edges, bcode, n_bins, x = None, np.zeros(n, dtype=np.int64), 1, None
        else:
            edges = np.asarray(bins[name] if isinstance(bins, Mapping) else bins, dtype=float)
            x = by_matrix[:, j]
            bcode = _bin_codes(x, edges)
            n_bins = edges.size - 1
        e = None if err is None else err[:, j]
        for gnames, gcode in layers:
            ng = len(gnames)
            code = np.where(bcode >= 0, gcode * n_bins + bcode, -1)
            st = grouped_stats(values[:, j], code, ng * n_bins, e)
            head: dict[str, Any] = {"label": name, "unit": units.get(name, label_unit(name))}
            if group_vec is not None:
                head["group"] = np.repeat(gnames, n_bins)
            if edges is not None:
                head["bin_lo"] = np.tile(edges[:-1], ng)
                head["bin_hi"] = np.tile(edges[1:], ng)
                used = np.isfinite(values[:, j]) & (code >= 0)
                if e is not None:
                    used &= np.isfinite(e)
                head["by_median"] = grouped_stats(x[used], code[used], ng * n_bins)["median"].to_numpy()
            frames.append(pd.concat([pd.DataFrame(head, index=st.index), st], axis=1))
    return pd.concat(frames, ignore_index=True)


def _resolve(
    pred, ref, labels, groups, by, bins
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None, np.ndarray | None]:
    """Prediction and reference matrices, names, group vector and the (N, L) binning matrix."""
    P, names = label_matrix(pred, labels, what="predictions")
    R, _ = label_matrix(ref, names if is_table(ref) else (labels or names), what="reference labels")
    if R.shape != P.shape:
        raise InputDataError(f"predictions {P.shape} and reference {R.shape} differ in shape")
    n = P.shape[0]
    group_vec = _vector(groups, n, "groups", pred, ref)
    if by is None:
        return P, R, names, group_vec, None
    if bins is None:
        raise InputDataError("binning by a variable needs `bins` (edges)")
    if isinstance(bins, Mapping):
        absent = [x for x in names if x not in bins]
        if absent:
            raise InputDataError(f"`bins` mapping has no edges for {absent}")
    if isinstance(by, str) and by == "reference":
        return P, R, names, group_vec, R
    x = np.asarray(_vector(by, n, "by", ref, pred), dtype=float)
    return P, R, names, group_vec, np.repeat(_clean(x)[:, None], len(names), axis=1)


def residual_table(
    pred: TableLike | np.ndarray,
    ref: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = None,
    *,
    err: TableLike | np.ndarray | Literal["columns"] | None = None,
    groups: np.ndarray | str | None = None,
    by: np.ndarray | str | None = None,
    bins: BinsLike | None = None,
    include_all: bool = True,
    all_name: str = "all",
    units: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Residual statistics per label (× group) (× bin) as a tidy DataFrame.

    Parameters
    ----------
    pred, ref
        Predicted and reference labels: ``(N, L)`` arrays or row-aligned tables (see the module
        docstring). Use :func:`match_reference` first to align a reference by star id.
    labels
        Label names (columns of the tables; names of the array columns).
    err
        Reported uncertainties ``(N, L)`` in label units, or ``"columns"`` to read the ``X_ERR``
        columns of ``pred``: adds ``median_err`` and ``mean_err`` (astroNN Fig. 9 error bars).
        Stars without an uncertainty are then left out.
    groups
        ``(N,)`` group of each star (e.g. "Payne"/"MStar"/"YSO"), or a column name. Adds a
        ``group`` column; with ``include_all`` the whole sample comes first as ``all_name``.
    by, bins
        Bin the stars by ``by``: an ``(N,)`` array, a column name (looked up in ``ref`` then
        ``pred``, e.g. ``"SNR"``, or ``"TEFF"`` for astroNN Fig. 10), or ``"reference"`` to bin
        each label by its own reference value (Fig. 9). ``bins`` are the edges (last edge
        inclusive; ±inf allowed) — one array, or a mapping label → edges. Adds ``bin_lo``,
        ``bin_hi`` and ``by_median`` (median of ``by`` over the stars used in the bin); empty
        bins are kept with ``n = 0`` and NaN statistics.
    units
        Unit per label for the ``unit`` column (default :func:`label_unit`).

    Returns
    -------
    DataFrame with columns ``label, unit, [group], [bin_lo, bin_hi, by_median], n, median,
    sigma_mad, median_abs, mean, std, rms, [median_err, mean_err]``, residuals in label units.
    ``median_abs`` is astroNN's "median absolute error".
    """
    P, R, names, group_vec, by_matrix = _resolve(pred, ref, labels, groups, by, bins)
    E = _errors(err, pred, names, P.shape[0])
    return _tidy_stats(residuals(P, R), names, units or {}, E, group_vec, by_matrix, bins,
                       include_all, all_name)


def _errors(err, table, names, n) -> np.ndarray | None:
    """Uncertainty matrix (N, L) from an array, an error table, or ``"columns"`` of ``table``."""
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


def residuals_by_snr(
    pred: TableLike | np.ndarray, ref: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = None, *, snr: np.ndarray | str = "SNR",
    bins: BinsLike = DEFAULT_SNR_BINS, **kwargs: Any,
) -> pd.DataFrame:
    """:func:`residual_table` in bins of SNR (an ``(N,)`` array or a column, default ``"SNR"``)."""
    return residual_table(pred, ref, labels, by=snr, bins=bins, **kwargs)


def residuals_by_label_value(
    pred: TableLike | np.ndarray, ref: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = None, *, bins: BinsLike, by: str | np.ndarray = "reference",
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`residual_table` in bins of each label's reference value (astroNN Fig. 9), or of
    another reference column, e.g. ``by="TEFF"`` (Fig. 10)."""
    return residual_table(pred, ref, labels, by=by, bins=bins, **kwargs)


def zscores(
    pred: np.ndarray, ref: np.ndarray, pred_err: np.ndarray, ref_err: np.ndarray | None = None
) -> np.ndarray:
    """z = (pred − ref) / sqrt(σ_pred² + σ_ref²); NaN where anything is missing or σ ≤ 0."""
    var = _clean(np.asarray(pred_err, dtype=float)) ** 2
    if ref_err is not None:
        var = var + _clean(np.asarray(ref_err, dtype=float)) ** 2
    with np.errstate(all="ignore"):
        sig = np.sqrt(var)
        return np.where(sig > 0, residuals(pred, ref) / sig, np.nan)


def zscore_table(
    pred: TableLike | np.ndarray,
    ref: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = None,
    *,
    pred_err: TableLike | np.ndarray | Literal["columns"] = "columns",
    ref_err: TableLike | np.ndarray | Literal["columns"] | None = None,
    groups: np.ndarray | str | None = None,
    by: np.ndarray | str | None = None,
    bins: BinsLike | None = None,
    include_all: bool = True,
    all_name: str = "all",
) -> pd.DataFrame:
    """Calibration check: statistics of z = (pred − ref) / sqrt(σ_pred² + σ_ref²).

    Calibrated Gaussian uncertainties give ``z_sigma_mad ≈ z_std ≈ 1`` and coverage fractions
    ``frac_1sigma ≈ 0.683``, ``frac_2sigma ≈ 0.954`` (:data:`GAUSS_1SIGMA`, :data:`GAUSS_2SIGMA`).
    ``pred_err="columns"`` reads the ``X_ERR`` columns of the ``pred`` table; ``ref_err`` (array
    or ``"columns"`` of ``ref``) adds the reference's uncertainty in quadrature. Entries with a
    missing or non-positive σ are left out. Grouping and binning as in :func:`residual_table`.

    Returns a DataFrame with ``label, [group], [bin_lo, bin_hi, by_median], n, z_median,
    z_sigma_mad, z_std, z_rms, frac_1sigma, frac_2sigma`` (z is dimensionless).
    """
    P, R, names, group_vec, by_matrix = _resolve(pred, ref, labels, groups, by, bins)
    n = P.shape[0]
    Ep = _errors(pred_err, pred, names, n)
    Er = _errors(ref_err, ref, names, n)
    z = zscores(P, R, Ep, Er)
    args = (names, dict.fromkeys(names, ""), None, group_vec, by_matrix, bins, include_all, all_name)
    table = _tidy_stats(z, *args)
    finite = np.isfinite(z)
    for k in (1, 2):
        inside = np.where(finite, (np.abs(z) <= k).astype(float), np.nan)
        table[f"frac_{k}sigma"] = _tidy_stats(inside, *args)["mean"].to_numpy()
    return table.drop(columns=["unit", "median_abs", "mean"]).rename(
        columns={"median": "z_median", "sigma_mad": "z_sigma_mad", "std": "z_std", "rms": "z_rms"}
    )


# --------------------------------------------------------------------------------------------
# APOGEE Net Tables 1–3
# --------------------------------------------------------------------------------------------

#: Split names in the order of APOGEE Net's tables.
SPLITS = ("train", "dev", "test")


@dataclass
class ApogeeNetTables:
    """APOGEE Net (Olney et al. 2020) Tables 1–3 as tidy DataFrames.

    ``normalization``: label, unit, mean, std — Table 1 (standardisation of the labels).
    ``mse``: group, split, n, mse — Table 2, the combined standardised MSE, the mean over all
    valid (star, label) entries of ((pred − ref)/std)².
    ``scatter``: group, label, unit, split, n, scatter — Table 3, per-parameter scatter between
    reference and prediction in label units (``statistic`` says which: RMS by default, so that
    with no missing labels ``mse`` = mean over labels of (scatter/std)²).
    """

    normalization: pd.DataFrame
    mse: pd.DataFrame
    scatter: pd.DataFrame
    statistic: str

    def table2(self) -> pd.DataFrame:
        """Wide Table 2: one row per group, one column per split."""
        return pivot(self.mse, index=["group"], columns="split", values="mse")

    def table3(self) -> pd.DataFrame:
        """Wide Table 3: one row per (group, label), one column per split."""
        return pivot(self.scatter, index=["group", "label", "unit"], columns="split", values="scatter")


def apogee_net_tables(
    pred: TableLike | np.ndarray,
    ref: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = None,
    *,
    split: np.ndarray | str,
    groups: np.ndarray | str | None = None,
    label_mean: Sequence[float] | np.ndarray | None = None,
    label_std: Sequence[float] | np.ndarray | None = None,
    splits: Sequence[str] = SPLITS,
    full_name: str = "Full",
    statistic: Literal["rms", "std", "sigma_mad"] = "rms",
) -> ApogeeNetTables:
    """APOGEE Net Tables 1–3: standardised MSE and per-parameter scatter per group and split.

    ``split`` is each star's split (``"train"``, ``"dev"``, ``"test"``, or a column name);
    ``groups`` its group (e.g. ``"Payne"``, ``"MStar"``, ``"YSO"``); the whole sample is the
    ``full_name`` group. ``label_mean``/``label_std`` standardise the labels — by default they
    are computed from the reference labels of the first split, as APOGEE Net does from its
    training set. Splits not present in the data get ``n = 0`` and NaN.
    """
    P, R, names, group_vec, _ = _resolve(pred, ref, labels, groups, None, None)
    n = P.shape[0]
    split_vec = np.asarray(_vector(split, n, "split", pred, ref)).astype(str)
    splits = [str(s) for s in splits]
    unknown = sorted(set(np.unique(split_vec)) - set(splits))
    if unknown:
        raise InputDataError(f"split values {unknown} are not among {splits}")
    s_code = pd.Index(splits).get_indexer(split_vec)
    if label_mean is None or label_std is None:
        first = R[s_code == 0]
        if first.shape[0] == 0:
            raise InputDataError(f"no stars in split {splits[0]!r} to compute label mean and std")
        with _quiet_nanwarnings():
            mean_c = np.nanmean(first, axis=0)
            std_c = np.nanstd(first, axis=0)
    mu = np.asarray(label_mean if label_mean is not None else mean_c, dtype=float)
    sd = np.asarray(label_std if label_std is not None else std_c, dtype=float)
    if mu.shape != (len(names),) or sd.shape != (len(names),):
        raise InputDataError(f"label_mean and label_std must have shape ({len(names)},)")
    if np.any(~np.isfinite(sd) | (sd <= 0)):
        raise InputDataError(f"label standard deviations must be positive, got {sd}")
    units = [label_unit(x) for x in names]
    norm = pd.DataFrame({"label": names, "unit": units, "mean": mu, "std": sd})

    res = residuals(P, R)
    zsq = (res / sd) ** 2
    n_s = len(splits)
    layers = _group_codes(group_vec, n, True, full_name)
    mse_frames, sc_frames = [], []
    for gnames, gcode in layers:
        ng = len(gnames)
        code = np.where(s_code >= 0, gcode * n_s + s_code, -1)
        code_rep = np.repeat(code[:, None], len(names), axis=1)
        st = grouped_stats(zsq.ravel(), code_rep.ravel(), ng * n_s)
        mse_frames.append(pd.DataFrame({
            "group": np.repeat(gnames, n_s), "split": np.tile(splits, ng),
            "n": st["n"].to_numpy(), "mse": st["mean"].to_numpy(),
        }))
        for j, name in enumerate(names):
            st = grouped_stats(res[:, j], code, ng * n_s)
            sc_frames.append(pd.DataFrame({
                "group": np.repeat(gnames, n_s), "label": name, "unit": units[j],
                "split": np.tile(splits, ng), "n": st["n"].to_numpy(),
                "scatter": st[statistic].to_numpy(),
            }))
    scatter = pd.concat(sc_frames, ignore_index=True)
    # order Table 3 as in the paper: group, then label, then split
    order = {g: i for i, g in enumerate(dict.fromkeys(scatter["group"]))}
    scatter = scatter.sort_values(
        ["group", "label", "split"],
        key=lambda c: c.map(order) if c.name == "group" else (
            c.map({x: i for i, x in enumerate(names)}) if c.name == "label"
            else c.map({x: i for i, x in enumerate(splits)})),
        kind="stable",
    ).reset_index(drop=True)
    return ApogeeNetTables(norm, pd.concat(mse_frames, ignore_index=True), scatter, statistic)


# --------------------------------------------------------------------------------------------
# reshaping and writing tables
# --------------------------------------------------------------------------------------------


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
