"""Binned and grouped statistics of per-star values: the vectorised engine behind the residual
and z-score tables of :mod:`starlabels.evaluation.metrics`.

Values are ``(N,)`` or ``(N, L)`` float arrays (NaN = absent). Stars are put into integer codes —
a group layer (:func:`group_layers`) times a bin of a variable (:func:`bin_codes`) — and
:func:`grouped_stats` gives n, median, σ_MAD (:data:`starlabels.statistics.MAD_TO_SIGMA` ·
median |x − median x|), median |x|, mean, std and RMS per code with one pandas groupby.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.evaluation.columns import clean_missing
from starlabels.statistics import MAD_TO_SIGMA
from starlabels.units import label_unit

__all__ = [
    "BinsLike", "bin_codes", "group_layers", "grouped_stats", "nanmean_columns", "nanstd_columns",
    "residuals", "tidy_statistics", "valid",
]

#: Bin edges: one increasing array for every label, or a mapping label → edges.
BinsLike = np.ndarray | Sequence[float] | Mapping[str, Sequence[float]]


def valid(*arrays: np.ndarray) -> np.ndarray:
    """Boolean mask: finite and not ``MISSING`` in every array (arrays broadcast together)."""
    out = np.ones(np.broadcast(*arrays).shape, dtype=bool)
    for a in arrays:
        a = np.asarray(a, dtype=float)
        out &= np.isfinite(a) & (a != MISSING)
    return out



def nanmean_columns(values: np.ndarray) -> np.ndarray:
    """``np.nanmean(values, axis=0)`` of (N, L) ``values``, bit for bit, but a column without a
    non-NaN value gives NaN without numpy's "Mean of empty slice" warning (no warnings filter to
    change, which is process-wide state)."""
    values = np.asarray(values, dtype=float)
    kept = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):  # context-local, unlike warnings filters
        return np.where(kept, values, 0.0).sum(axis=0) / kept.sum(axis=0)


def nanstd_columns(values: np.ndarray) -> np.ndarray:
    """``np.nanstd(values, axis=0)`` (ddof 0) of (N, L) ``values``, bit for bit; NaN without a
    warning for a column without a non-NaN value (see :func:`nanmean_columns`)."""
    values = np.asarray(values, dtype=float)
    kept = ~np.isnan(values)
    deviation = np.where(kept, values - nanmean_columns(values), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((deviation * deviation).sum(axis=0) / kept.sum(axis=0))


def residuals(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``pred − ref`` with NaN wherever either side is ``MISSING`` or NaN. Any matching shapes."""
    p, r = clean_missing(np.asarray(pred, dtype=float)), clean_missing(np.asarray(ref, dtype=float))
    return p - r



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


def group_layers(
    groups: np.ndarray | None, n: int, include_all: bool, all_name: str
) -> list[tuple[list[str], np.ndarray]]:
    """Group names in order of first appearance and per-star codes ``(n,)``, per "layer".

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


def bin_codes(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of each x for increasing ``edges`` (last edge inclusive); −1 outside/NaN."""
    edges = np.asarray(edges, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise InputDataError(f"bin edges must be 1-D and strictly increasing, got {edges}")
    x = np.asarray(x, dtype=float)
    k = np.searchsorted(edges, x, side="right") - 1
    k[x == edges[-1]] = edges.size - 2
    k[~np.isfinite(x) | (x < edges[0]) | (x > edges[-1])] = -1
    return k



def tidy_statistics(
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
    """Statistics of ``values`` (N, L) per label × group layer × bin of ``by_matrix`` (N, L), as a
    tidy table: ``label, unit, [group], [bin_lo, bin_hi, by_median]`` and the columns of
    :func:`grouped_stats` (``err`` (N, L) adds median_err and mean_err). ``group_vec`` (N,) names
    each star's group (``None``: no group column; ``include_all`` adds the whole sample first as
    ``all_name``); ``by_matrix`` with ``bins`` bins each label (``None``: no binning)."""
    n = values.shape[0]
    layers = group_layers(group_vec, n, include_all, all_name)
    frames = []
    for j, name in enumerate(names):
        if by_matrix is None:
            edges, bcode, n_bins, x = None, np.zeros(n, dtype=np.int64), 1, None
        else:
            edges = np.asarray(bins[name] if isinstance(bins, Mapping) else bins, dtype=float)
            x = by_matrix[:, j]
            bcode = bin_codes(x, edges)
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

