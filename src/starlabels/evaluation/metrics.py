"""Accuracy and calibration metrics of predicted labels against reference labels.

All statistics are on residuals ``pred − ref`` (astroNN eq. 8). Entries where either value is
``MISSING`` (−9999, :data:`starlabels.constants.MISSING`) or NaN are left out, per label.

The robust scatter is σ_MAD = 1.4826 · median(|R − median(R)|) (astroNN eq. 9), which equals the
standard deviation for Gaussian residuals (:func:`starlabels.statistics.sigma_mad`).

Inputs are either plain arrays — ``(N, L)`` with ``labels`` naming the L columns, or ``(N,)`` for
one label — or tables with the catalog columns of ``docs/DESIGN.md`` (``TEFF``, ``TEFF_ERR``,
``LOGG``, ``FE_H``, ``SNR``, …): an astropy ``Table``, a pandas ``DataFrame``, a mapping of column
name to array, or a numpy structured array (read by :mod:`starlabels.evaluation.columns`). A
reference table can be row-aligned with the predictions or matched to them by star id with
:func:`~starlabels.evaluation.columns.match_reference`.

Every function returns a *tidy* :class:`pandas.DataFrame` (one row per label × group × bin) that
:mod:`starlabels.evaluation.table_format` turns into report tables; the binning engine is
:mod:`starlabels.evaluation.binned_statistics`:

- :func:`residual_table` — median, σ_MAD, median |R|, mean, std, RMS; per label, optionally per
  group and per bin of any variable (astroNN Tables 1–2, Figs 9–11);
- :func:`residuals_by_snr`, :func:`residuals_by_label_value` — the binned forms;
- :func:`zscore_table` — widths of z = (pred − ref)/σ for calibration checks;
- :func:`apogee_net_tables` — APOGEE Net Tables 1–3: label normalisation, combined standardised
  MSE and per-parameter scatter per group for train/dev/test.

Column access, display names and table formatting live in :mod:`~starlabels.evaluation.columns`,
:mod:`~starlabels.evaluation.label_text` and :mod:`~starlabels.evaluation.table_format`
(``starlabels.evaluation.match_reference``, ``to_markdown`` and ``write_table`` stay importable
from the package).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from starlabels import statistics
from starlabels.errors import InputDataError
from starlabels.evaluation.binned_statistics import (
    BinsLike,
    group_layers,
    grouped_stats,
    nanmean_columns,
    nanstd_columns,
    residuals,
    tidy_statistics,
)
from starlabels.evaluation.columns import (
    TableLike,
    clean_missing,
    is_table,
    label_matrix,
    per_star_vector,
    uncertainty_matrix,
)
from starlabels.evaluation.table_format import pivot, to_markdown
from starlabels.units import label_unit

__all__ = [
    "DEFAULT_SNR_BINS",
    "GAUSS_1SIGMA",
    "GAUSS_2SIGMA",
    "SPLITS",
    "ApogeeNetTables",
    "apogee_net_tables",
    "residual_table",
    "residuals_by_label_value",
    "residuals_by_snr",
    "sigma_mad",
    "to_markdown",  # re-exported until cli/recipe.py imports it from table_format
    "zscore_table",
    "zscores",
]

#: Fraction of a unit Gaussian within ±1σ and ±2σ (expected coverage of calibrated errors).
GAUSS_1SIGMA = math.erf(1 / math.sqrt(2))
GAUSS_2SIGMA = math.erf(2 / math.sqrt(2))

#: Default SNR bin edges (astroNN Fig. 11 spans SNR ≈ 0–200 for visits).
DEFAULT_SNR_BINS = np.array([0, 10, 20, 30, 40, 50, 60, 70, 80, 100, 125, 150, 200, 300, np.inf])


def sigma_mad(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """σ_MAD = 1.4826 · median(|x − median(x)|), ignoring NaN and ``MISSING`` (astroNN eq. 9).

    :func:`starlabels.statistics.sigma_mad` after ``MISSING`` → NaN. Returns NaN where no valid
    values are left; a float for a scalar result, else an array shaped like ``x`` without ``axis``.
    """
    return statistics.sigma_mad(clean_missing(np.asarray(x, dtype=float)), axis=axis)


# --------------------------------------------------------------------------------------------
# residual tables
# --------------------------------------------------------------------------------------------


def _resolve(
    pred, ref, labels, groups, by, bins
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None, np.ndarray | None]:
    """Prediction and reference matrices, names, group vector and the (N, L) binning matrix."""
    P, names = label_matrix(pred, labels, what="predictions")
    R, _ = label_matrix(ref, names if is_table(ref) else (labels or names), what="reference labels")
    if R.shape != P.shape:
        raise InputDataError(f"predictions {P.shape} and reference {R.shape} differ in shape")
    n = P.shape[0]
    group_vec = per_star_vector(groups, n, "groups", pred, ref)
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
    x = np.asarray(per_star_vector(by, n, "by", ref, pred), dtype=float)
    return P, R, names, group_vec, np.repeat(clean_missing(x)[:, None], len(names), axis=1)


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
    E = uncertainty_matrix(err, pred, names, P.shape[0])
    return tidy_statistics(residuals(P, R), names, units or {}, E, group_vec, by_matrix, bins,
                       include_all, all_name)


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
    var = clean_missing(np.asarray(pred_err, dtype=float)) ** 2
    if ref_err is not None:
        var = var + clean_missing(np.asarray(ref_err, dtype=float)) ** 2
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
    Ep = uncertainty_matrix(pred_err, pred, names, n)
    Er = uncertainty_matrix(ref_err, ref, names, n)
    z = zscores(P, R, Ep, Er)
    args = (names, dict.fromkeys(names, ""), None, group_vec, by_matrix, bins, include_all, all_name)
    table = tidy_statistics(z, *args)
    finite = np.isfinite(z)
    for k in (1, 2):
        inside = np.where(finite, (np.abs(z) <= k).astype(float), np.nan)
        table[f"frac_{k}sigma"] = tidy_statistics(inside, *args)["mean"].to_numpy()
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

    ``standardisation``: label, unit, mean, std — Table 1 (standardisation of the labels).
    ``mse``: group, split, n, mse — Table 2, the combined standardised MSE, the mean over all
    valid (star, label) entries of ((pred − ref)/std)².
    ``scatter``: group, label, unit, split, n, scatter — Table 3, per-parameter scatter between
    reference and prediction in label units (``statistic`` says which: RMS by default, so that
    with no missing labels ``mse`` = mean over labels of (scatter/std)²).
    """

    standardisation: pd.DataFrame
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
    split_vec = np.asarray(per_star_vector(split, n, "split", pred, ref)).astype(str)
    splits = [str(s) for s in splits]
    unknown = sorted(set(np.unique(split_vec)) - set(splits))
    if unknown:
        raise InputDataError(f"split values {unknown} are not among {splits}")
    s_code = pd.Index(splits).get_indexer(split_vec)
    if label_mean is None or label_std is None:
        first = R[s_code == 0]
        if first.shape[0] == 0:
            raise InputDataError(f"no stars in split {splits[0]!r} to compute label mean and std")
        mean_c, std_c = nanmean_columns(first), nanstd_columns(first)
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
    layers = group_layers(group_vec, n, True, full_name)
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
