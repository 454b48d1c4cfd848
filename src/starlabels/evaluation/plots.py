"""Referee-quality figures of predicted labels (matplotlib object-oriented API, no pyplot).

Every function returns a :class:`matplotlib.figure.Figure` and saves it as PNG (or any format
matplotlib knows, by suffix) when ``path`` is given. Axis labels carry units, colour bars are
labelled. Inputs are a catalog table with the DESIGN.md columns (``TEFF``, ``LOGG``, ``FE_H``,
``X_ERR``, ``SNR``, …) and/or plain arrays: wherever a column name is accepted, an array of the
same length works too.

- :func:`plot_kiel` / :func:`plot_kiel_panels` — log g vs Teff (both axes inverted) coloured by
  [Fe/H] or by an uncertainty, with PARSEC isochrones (astroNN Fig. 7);
- :func:`plot_uncertainty_vs_snr` — reported uncertainty against SNR (APOGEE Net Fig. 4 right);
- :func:`plot_pred_vs_ref` — predicted vs reference label with a residual panel, median and σ_MAD
  annotated (APOGEE Net Fig. 4 left);
- :func:`plot_binned_residuals` — median |Δ| and median reported σ in bins (astroNN Figs. 9–11);
- :func:`plot_young_selection` — the young-star polygon and log g age bins (APOGEE Net §4);
- :func:`plot_zscore_histograms` — z-score distributions against a unit Gaussian.

The figures of the science checks (sensitivity, cluster spreads) are in
:mod:`starlabels.evaluation.diagnostic_plots`; the shared style (:data:`FONT`, :data:`DPI`,
:func:`save_figure`, …) in :mod:`starlabels.evaluation.figure_style`. The keyword ``color`` (and
``color_name``, ``colors``) keeps matplotlib's spelling because it is matplotlib's ``c``/``color``
of the scatter points; text on the figures says "colour".

This is the one place users import the label figures from (README: ``plots.plot_kiel``,
``plots.plot_pred_vs_ref``, …): the Kiel diagrams and the young-star selection live in
:mod:`starlabels.evaluation.kiel_plots` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from starlabels.errors import InputDataError
from starlabels.evaluation.binned_statistics import bin_codes
from starlabels.evaluation.columns import (
    TableLike,
    clean_missing,
    is_table,
    label_matrix,
    uncertainty_matrix,
)
from starlabels.evaluation.figure_style import (
    FONT,
    ArrayOrColumn,
    axis_limits,
    color_label,
    column_values,
    finish_figure,
    log_axis,
    save_figure,
    style_axes,
)
from starlabels.evaluation.kiel_plots import plot_kiel, plot_kiel_panels, plot_young_selection
from starlabels.evaluation.label_text import axis_label, label_display
from starlabels.evaluation.metrics import GAUSS_1SIGMA, residual_table, sigma_mad, zscores
from starlabels.units import label_unit

# save_figure and the Kiel diagrams (kiel_plots) are re-exported: users (and the demo) import the
# label figures and save them from here
__all__ = [
    "plot_binned_residuals", "plot_kiel", "plot_kiel_panels", "plot_pred_vs_ref",
    "plot_uncertainty_vs_snr", "plot_young_selection", "plot_zscore_histograms", "save_figure",
]


# --------------------------------------------------------------------------------------------
# uncertainty vs SNR
# --------------------------------------------------------------------------------------------


def _running(x: np.ndarray, y: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    """Median of x and median, 16th and 84th percentile of y in bins of x (NaN when < 3 points)."""
    code = bin_codes(x, edges)
    ok = (code >= 0) & np.isfinite(y)
    df = pd.DataFrame({"k": code[ok], "x": x[ok], "y": y[ok]})
    g = df.groupby("k")
    idx = pd.RangeIndex(edges.size - 1)
    cnt = g.size().reindex(idx, fill_value=0).to_numpy()
    keep = cnt >= 3
    xm = np.where(keep, g["x"].median().reindex(idx).to_numpy(), np.nan)
    ym = np.where(keep, g["y"].median().reindex(idx).to_numpy(), np.nan)
    lo = np.where(keep, g["y"].quantile(0.16).reindex(idx).to_numpy(), np.nan)
    hi = np.where(keep, g["y"].quantile(0.84).reindex(idx).to_numpy(), np.nan)
    return xm, ym, lo, hi


def plot_uncertainty_vs_snr(
    data: TableLike | None = None,
    labels: Sequence[str] | str = ("TEFF", "LOGG", "FE_H"),
    *,
    snr: ArrayOrColumn = "SNR",
    err: np.ndarray | TableLike | None = None,
    n_bins: int = 15,
    log_y: bool = True,
    path: str | Path | None = None,
) -> Figure:
    """Reported uncertainty of each label against SNR (log axes), with the running median and
    16–84 % band in logarithmic SNR bins. ``err`` is an (N, L) array; by default the ``X_ERR``
    columns of ``data``."""
    labels = [labels] if isinstance(labels, str) else list(labels)
    s = column_values(data, snr, "snr")
    E = uncertainty_matrix("columns" if err is None else err, data, labels, s.shape[0])
    fig = Figure(figsize=(4.2 * len(labels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(labels), squeeze=False)[0]
    pos = s[np.isfinite(s) & (s > 0)]
    if pos.size == 0:
        raise InputDataError("no positive SNR values to plot")
    edges = np.geomspace(pos.min(), pos.max() * (1 + 1e-9), n_bins + 1)
    for ax, name, e in zip(axes, labels, E.T, strict=True):
        ok = np.isfinite(s) & (s > 0) & np.isfinite(e) & (e > 0 if log_y else True)
        ax.scatter(s[ok], e[ok], s=3, lw=0, color="0.6", alpha=0.5, rasterized=True,
                   label="stars")
        xm, ym, lo, hi = _running(s[ok], e[ok], edges)
        ax.fill_between(xm, lo, hi, color="C0", alpha=0.25, lw=0, label="16–84 %")
        ax.plot(xm, ym, "-o", color="C0", ms=3, lw=1.8, label="running median")
        log_axis(ax, "x")
        if log_y:
            log_axis(ax, "y")
        ax.set_xlabel("SNR (per pixel)")
        ax.set_ylabel(color_label(f"{name}_ERR"))
        style_axes(ax)
    axes[0].legend(fontsize=FONT["legend"], frameon=False)
    return finish_figure(fig, path)


# --------------------------------------------------------------------------------------------
# predicted vs reference
# --------------------------------------------------------------------------------------------


def plot_pred_vs_ref(
    pred: TableLike | np.ndarray,
    ref: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = ("TEFF", "LOGG", "FE_H"),
    *,
    color: np.ndarray | None = None,
    color_name: str | None = None,
    n_bins: int = 12,
    path: str | Path | None = None,
) -> Figure:
    """Predicted against reference for each label (1:1 line) over a residual panel (pred − ref,
    with zero line and running median), annotated with N, the median and σ_MAD of the residual.

    ``pred`` and ``ref`` are row-aligned tables or (N, L) arrays (see
    :func:`~starlabels.evaluation.columns.match_reference`). ``color``: optional (N,) values
    (e.g. SNR) to colour the points, named by ``color_name``.
    """
    P, names = label_matrix(pred, labels, what="predictions")
    R, _ = label_matrix(ref, names if is_table(ref) else (labels or names), what="reference labels")
    if P.shape != R.shape:
        raise InputDataError(f"predictions {P.shape} and reference {R.shape} differ in shape")
    stats = residual_table(P, R, names)
    fig = Figure(figsize=(4.2 * len(names), 5.4), layout="constrained")
    gs = fig.add_gridspec(2, len(names), height_ratios=[3, 1.3])
    cvals = None if color is None else clean_missing(np.asarray(color, dtype=float).reshape(-1))
    mappable = None
    for j, name in enumerate(names):
        ax = fig.add_subplot(gs[0, j])
        axr = fig.add_subplot(gs[1, j], sharex=ax)
        ok = np.isfinite(P[:, j]) & np.isfinite(R[:, j])
        x, y = R[ok, j], P[ok, j]
        d = y - x
        kw: dict[str, Any] = {"s": 4, "lw": 0, "rasterized": True}
        if cvals is not None:
            kw.update(c=cvals[ok], cmap="viridis")
        else:
            kw.update(color="C0", alpha=0.6)
        mappable = ax.scatter(x, y, **kw)
        axr.scatter(x, d, **kw)
        lo, hi = axis_limits(np.concatenate([x, y]), pad=0.04)
        ax.plot([lo, hi], [lo, hi], color="k", lw=1, ls="--", zorder=3, label="1:1")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        axr.axhline(0, color="k", lw=1, ls="--", zorder=3)
        if x.size >= 3:
            edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
            xm, ym, _, _ = _running(x, d, edges) if edges.size > 1 else (x[:0],) * 4
            axr.plot(xm, ym, color="C3", lw=1.6, zorder=4, label="running median")
        row = stats.iloc[j]
        unit = row["unit"]
        u = f" {unit}" if unit else ""
        ax.text(0.04, 0.96,
                f"N = {int(row['n'])}\nmedian = {row['median']:+.3g}{u}\n"
                rf"$\sigma_\mathrm{{MAD}}$ = {row['sigma_mad']:.3g}{u}",
                transform=ax.transAxes, ha="left", va="top", fontsize=FONT["annot"],
                bbox={"boxstyle": "round", "fc": "white", "ec": "0.7", "alpha": 0.9})
        r_lo, r_hi = axis_limits(d, pad=0.1, q=1.0)
        span = max(abs(r_lo), abs(r_hi))
        axr.set_ylim(-span, span)
        ax.set_ylabel(f"Predicted {axis_label(name)}")
        axr.set_xlabel(f"Reference {axis_label(name)}")
        axr.set_ylabel(rf"$\Delta$ ({unit})" if unit else r"$\Delta$")
        ax.tick_params(labelbottom=False)
        style_axes(ax)
        style_axes(axr)
    if cvals is not None and mappable is not None:
        cb = fig.colorbar(mappable, ax=fig.axes, pad=0.01, shrink=0.8)
        cb.set_label(color_label(color_name) if color_name else "colour value",
                     fontsize=FONT["label"])
    return finish_figure(fig, path)


# --------------------------------------------------------------------------------------------
# binned residuals (astroNN Figs. 9–11)
# --------------------------------------------------------------------------------------------


def plot_binned_residuals(
    table: pd.DataFrame,
    labels: Sequence[str] | None = None,
    *,
    x_label: str | None = None,
    log_x: bool = False,
    annotate_at: float | None = None,
    ncols: int = 4,
    path: str | Path | None = None,
) -> Figure:
    """Median |Δ| per bin (line) and the median reported uncertainty (error bars) per label, from
    a binned :func:`~starlabels.evaluation.metrics.residual_table` (or a
    :class:`~starlabels.evaluation.diagnostics.SelfConsistency` ``by_snr`` table).

    ``x_label`` names the binning variable with its unit (default: "Reference <label> (unit)"
    for each panel). ``annotate_at`` writes the interpolated median |Δ| at that x (astroNN Fig. 11
    annotates SNR = 50).
    """
    if "bin_lo" not in table.columns:
        raise InputDataError("plot_binned_residuals needs a binned table (with bin_lo/bin_hi)")
    if "group" in table.columns:
        table = table[table["group"] == table["group"].iloc[0]]
    labels = list(dict.fromkeys(table["label"])) if labels is None else list(labels)
    ncols = min(ncols, len(labels))
    nrows = int(np.ceil(len(labels) / ncols))
    fig = Figure(figsize=(3.6 * ncols, 2.9 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(labels):]:
        ax.set_visible(False)
    for ax, name in zip(axes, labels, strict=False):
        rows = table[(table["label"] == name) & (table["n"] > 0)]
        if rows.empty:
            raise InputDataError(f"no filled bins for label {name!r}")
        x = rows["by_median"].to_numpy(float)
        unit = label_unit(name)
        ax.plot(x, rows["median_abs"], "-o", color="C0", ms=3.5, lw=1.6, label=r"median $|\Delta|$")
        ax.plot(x, rows["sigma_mad"], "--", color="C2", lw=1.2, label=r"$\sigma_\mathrm{MAD}$ of $\Delta$")
        if "median_err" in rows.columns:
            ax.plot(x, rows["median_err"], ":s", color="C1", ms=3.5, lw=1.4,
                    label=r"median reported $\sigma$")
        ax.set_ylim(bottom=0)
        if log_x:
            log_axis(ax, "x")
        ax.set_xlabel(x_label or f"Reference {axis_label(name)}")
        ax.set_ylabel(f"{label_display(name)} ({unit})" if unit else label_display(name))
        if annotate_at is not None:
            from starlabels.evaluation.diagnostics import interpolate_binned

            v = interpolate_binned(table, name, annotate_at)
            if np.isfinite(v):
                ax.text(0.96, 0.92, rf"median $|\Delta|$ = {v:.3g} {unit} at {annotate_at:g}",
                        transform=ax.transAxes, ha="right", va="top", fontsize=FONT["annot"])
        style_axes(ax)
    axes[0].legend(fontsize=FONT["legend"], frameon=False, loc="center right")
    return finish_figure(fig, path)


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


def plot_zscore_histograms(
    pred: TableLike | np.ndarray,
    ref: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = ("TEFF", "LOGG", "FE_H"),
    *,
    pred_err: TableLike | np.ndarray | str = "columns",
    ref_err: TableLike | np.ndarray | str | None = None,
    z_max: float = 5.0,
    path: str | Path | None = None,
) -> Figure:
    """Histogram of z = (pred − ref)/σ per label against the unit Gaussian, with σ_MAD(z) and
    the fraction within ±1 annotated (calibrated errors: ≈ 1 and ≈ 0.683)."""

    P, names = label_matrix(pred, labels, what="predictions")
    R, _ = label_matrix(ref, names if is_table(ref) else (labels or names), what="reference labels")
    Ep = uncertainty_matrix(pred_err, pred, names, P.shape[0])
    Er = uncertainty_matrix(ref_err, ref, names, P.shape[0])
    Z = zscores(P, R, Ep, Er)
    fig = Figure(figsize=(3.8 * len(names), 3.4), layout="constrained")
    axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
    grid = np.linspace(-z_max, z_max, 401)
    for ax, name, z in zip(axes, names, Z.T, strict=True):
        z = z[np.isfinite(z)]
        ax.hist(np.clip(z, -z_max, z_max), bins=np.linspace(-z_max, z_max, 41), density=True,
                color="C0", alpha=0.6, label="z")
        ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color="k", lw=1.3,
                label="N(0, 1)")
        frac = float(np.mean(np.abs(z) <= 1)) if z.size else float("nan")
        ax.text(0.03, 0.95, rf"$\sigma_\mathrm{{MAD}}$ = {sigma_mad(z):.3f}" + "\n"
                + f"|z| ≤ 1: {frac:.3f} ({GAUSS_1SIGMA:.3f})",
                transform=ax.transAxes, ha="left", va="top", fontsize=FONT["annot"])
        ax.set_xlabel(f"z of {label_display(name)} (pred − ref)/σ")
        style_axes(ax)
    axes[0].set_ylabel("probability density")
    axes[0].legend(fontsize=FONT["legend"], frameon=False, loc="upper right")
    return finish_figure(fig, path)
