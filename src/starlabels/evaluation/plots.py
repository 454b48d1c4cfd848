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

Kept as one module because these are the label figures users import from one place (README:
``plots.plot_kiel``, ``plots.plot_pred_vs_ref``, …) and they build on each other: the
young-star selection is drawn on :func:`plot_kiel`, the panels share the running median and the
metallicity colour scale. The science-check figures and the shared style are split off.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

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
    column_name,
    column_values,
    finish_figure,
    get_cmap,
    log_axis,
    save_figure,
    style_axes,
)
from starlabels.evaluation.label_text import axis_label, label_display
from starlabels.evaluation.metrics import GAUSS_1SIGMA, residual_table, sigma_mad, zscores
from starlabels.labels.young import (
    LOGG_AGE_BIN_EDGES,
    LOGG_AGE_BIN_LABELS,
    YOUNG_POLYGON,
    in_young_polygon,
)
from starlabels.units import label_unit

if TYPE_CHECKING:
    from starlabels.evaluation.isochrones import Isochrone

# save_figure is re-exported: users (and the demo) save the figures of this module with it
__all__ = [
    "plot_binned_residuals", "plot_kiel", "plot_kiel_panels", "plot_pred_vs_ref",
    "plot_uncertainty_vs_snr", "plot_young_selection", "plot_zscore_histograms", "save_figure",
]


def _is_metallicity(name: str) -> bool:
    return name.upper() in ("FE_H", "M_H", "MH")


# --------------------------------------------------------------------------------------------
# Kiel diagrams
# --------------------------------------------------------------------------------------------


def _draw_isochrones(
    ax: Axes, isochrones: Sequence[Isochrone], cmap: Any = None, norm: Any = None
) -> list[Line2D]:
    """Isochrone lines; coloured by [M/H] with ``cmap``/``norm`` when given, else grey styles."""
    lines = []
    styles = ["-", "--", "-.", ":"]
    for k, iso in enumerate(isochrones):
        if cmap is not None and norm is not None:
            (halo,) = ax.plot(iso.teff, iso.logg, color="black", lw=2.6, zorder=3)
            (ln,) = ax.plot(iso.teff, iso.logg, color=cmap(norm(iso.mh)), lw=1.5, zorder=4,
                            label=iso.label)
            lines += [halo, ln]
        else:
            (ln,) = ax.plot(iso.teff, iso.logg, color="0.15", lw=1.3, ls=styles[k % len(styles)],
                            zorder=4, label=iso.label)
            lines.append(ln)
    return lines


def plot_kiel(
    data: TableLike | None = None,
    *,
    teff: ArrayOrColumn = "TEFF",
    logg: ArrayOrColumn = "LOGG",
    color: ArrayOrColumn | None = "FE_H",
    color_name: str | None = None,
    isochrones: Sequence[Isochrone] | None = None,
    cmap: str | mcolors.Colormap | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    ax: Axes | None = None,
    title: str | None = None,
    marker_size: float = 4.0,
    path: str | Path | None = None,
) -> Figure:
    """Kiel diagram: log g (dex) against Teff (K), both axes decreasing as astronomers draw them.

    ``color`` is a column (``"FE_H"``, ``"LOGG_ERR"``…) or an (N,) array (name it with
    ``color_name`` for the colour-bar label), or None for plain points (also when only arrays
    and no catalog are given). Colour limits default to
    the 2nd–98th percentiles. Points are drawn in order of increasing colour value so extreme
    values stay visible. ``isochrones`` (from
    :func:`starlabels.evaluation.isochrones.select_isochrones`) are overlaid — coloured with the
    same colour map when the colour is a metallicity. Draws into ``ax`` when given.
    """
    t = column_values(data, teff, "teff")
    g = column_values(data, logg, "logg")
    if t is None or g is None or t.shape != g.shape:
        raise InputDataError("teff and logg must be columns or arrays of the same length")
    if data is None and isinstance(color, str):
        color = None  # plain arrays and a column name: nothing to colour by
    c = column_values(data, color, "color")
    cname = color_name or column_name(color, "value")
    if ax is None:
        fig = Figure(figsize=(6.0, 4.8), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ok = np.isfinite(t) & np.isfinite(g)
    cmap_obj = None
    norm = None
    if c is not None:
        if c.shape != t.shape:
            raise InputDataError(f"color has {c.shape[0]} values for {t.shape[0]} stars")
        ok &= np.isfinite(c)
        is_err = "_ERR" in cname.upper()
        cmap_obj = (cmap if isinstance(cmap, mcolors.Colormap) else
                    get_cmap(cmap or ("magma_r" if is_err else "viridis")))
        cv = c[ok]
        lo, hi = (np.percentile(cv, [2, 98]) if cv.size else (0.0, 1.0))
        norm = mcolors.Normalize(vmin=lo if vmin is None else vmin, vmax=hi if vmax is None else vmax)
        order = np.argsort(cv, kind="stable")
        sc = ax.scatter(t[ok][order], g[ok][order], c=cv[order], cmap=cmap_obj, norm=norm,
                        s=marker_size, lw=0, rasterized=True, zorder=2)
        cb = fig.colorbar(sc, ax=ax, pad=0.01)
        cb.set_label(color_label(cname), fontsize=FONT["label"])
        cb.ax.tick_params(labelsize=FONT["tick"])
    else:
        ax.scatter(t[ok], g[ok], s=marker_size, lw=0, color="0.25", rasterized=True, zorder=2)
    if isochrones:
        match = c is not None and _is_metallicity(cname)
        _draw_isochrones(ax, isochrones, cmap_obj if match else None, norm if match else None)
        ax.legend(fontsize=FONT["legend"], loc="upper left", frameon=False,
                  title="PARSEC", title_fontsize=FONT["legend"])
    x_lo, x_hi = axis_limits(t[ok])
    y_lo, y_hi = axis_limits(g[ok])
    ax.set_xlim(x_hi, x_lo)
    ax.set_ylim(y_hi, y_lo)
    ax.set_xlabel(axis_label("TEFF"))
    ax.set_ylabel(axis_label("LOGG"))
    if title:
        ax.set_title(title, fontsize=FONT["title"])
    ax.text(0.98, 0.02, f"N = {int(ok.sum())}", transform=ax.transAxes, ha="right", va="bottom",
            fontsize=FONT["annot"])
    style_axes(ax)
    return finish_figure(fig, path)


def plot_kiel_panels(
    data: TableLike,
    *,
    colors: Sequence[str] = ("FE_H", "LOGG_ERR"),
    teff: ArrayOrColumn = "TEFF",
    logg: ArrayOrColumn = "LOGG",
    isochrones: Sequence[Isochrone] | None = None,
    path: str | Path | None = None,
    **kwargs: Any,
) -> Figure:
    """Side-by-side Kiel diagrams coloured by each column of ``colors`` (astroNN Fig. 7: by
    [Fe/H] and by the log g uncertainty), sharing axes; isochrones on every panel."""
    fig = Figure(figsize=(5.6 * len(colors), 4.8), layout="constrained")
    axes = fig.subplots(1, len(colors), sharex=True, sharey=True, squeeze=False)[0]
    for ax, col in zip(axes, colors, strict=True):
        plot_kiel(data, teff=teff, logg=logg, color=col, isochrones=isochrones, ax=ax, **kwargs)
    return finish_figure(fig, path)


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
# young stars (APOGEE Net §4.1–4.2)
# --------------------------------------------------------------------------------------------


def _age_bin_texts(edges: np.ndarray, ages: Sequence[str] | None) -> list[str]:
    texts = [f"log g < {edges[0]:g}"]
    texts += [f"{a:.1f}–{b:.1f}" for a, b in itertools.pairwise(edges)]
    texts.append(f"log g ≥ {edges[-1]:g}")
    if ages is not None and len(ages) == len(texts):
        texts = [f"{t} dex ({a})" for t, a in zip(texts, ages, strict=True)]
    else:
        texts = [f"{t} dex" for t in texts]
    return texts


def plot_young_selection(
    data: TableLike | None = None,
    *,
    teff: ArrayOrColumn = "TEFF",
    logg: ArrayOrColumn = "LOGG",
    polygon: np.ndarray | Sequence[Sequence[float]] | None = None,
    age_bin_edges: Sequence[float] | None = None,
    age_bin_labels: Sequence[str] | None = None,
    ax: Axes | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Kiel diagram with the young-star selection polygon and the log g age bins.

    All stars are grey; those inside the polygon are coloured by age bin (interior log g edges,
    e.g. 3.6, 3.8, 4.0, 4.2 dex), with the bin edges drawn inside the polygon. ``polygon``
    (vertices (V, 2) in (K, dex)), ``age_bin_edges`` and ``age_bin_labels`` default to
    :data:`~starlabels.labels.young.YOUNG_POLYGON`, ``LOGG_AGE_BIN_EDGES`` and
    ``LOGG_AGE_BIN_LABELS`` of :mod:`starlabels.labels.young`.
    """
    from matplotlib.path import Path as MplPath

    use_default_poly = polygon is None
    poly = np.asarray(YOUNG_POLYGON if polygon is None else polygon, dtype=float)
    edges = np.asarray(LOGG_AGE_BIN_EDGES if age_bin_edges is None else age_bin_edges, dtype=float)
    ages = (list(LOGG_AGE_BIN_LABELS) if age_bin_edges is None else None) if age_bin_labels is None \
        else list(age_bin_labels)
    fig = plot_kiel(data, teff=teff, logg=logg, color=None, ax=ax)
    ax = ax or fig.axes[0]
    ax.collections[-1].set_color("0.7")  # all stars in grey
    if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3:
        raise InputDataError(f"polygon must be (V >= 3, 2) (Teff, log g) vertices, got {poly.shape}")
    t = column_values(data, teff, "teff")
    g = column_values(data, logg, "logg")
    if use_default_poly:
        inside = in_young_polygon(t, g)
    else:
        scaled = poly / np.array([1000.0, 1.0])
        pts = np.column_stack([t / 1000.0, g])
        ok = np.isfinite(pts).all(axis=1)
        inside = np.zeros(t.shape[0], dtype=bool)
        inside[ok] = MplPath(scaled).contains_points(pts[ok], radius=1e-9)
    patch = Polygon(poly, closed=True, fill=False, edgecolor="k", lw=1.6, zorder=5,
                    label="young-star selection")
    ax.add_patch(patch)
    if edges is not None and edges.size:
        codes = np.searchsorted(edges, g, side="right")
        texts = _age_bin_texts(edges, ages)
        cmap = get_cmap("plasma")
        for k, text in enumerate(texts):
            sel = inside & (codes == k)
            ax.scatter(t[sel], g[sel], s=6, lw=0, color=cmap(k / max(len(texts) - 1, 1) * 0.9),
                       zorder=3, rasterized=True, label=f"{text}, N = {int(sel.sum())}")
        for e in edges:
            ln = ax.axhline(e, color="k", lw=0.8, ls=":", zorder=4)
            ln.set_clip_path(patch)
    else:
        ax.scatter(t[inside], g[inside], s=6, lw=0, color="C3", zorder=3, rasterized=True,
                   label=f"selected, N = {int(inside.sum())}")
    # make sure the whole polygon is visible
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    ax.set_xlim(max(x0, poly[:, 0].max() + 100), min(x1, poly[:, 0].min() - 100))
    ax.set_ylim(max(y0, poly[:, 1].max() + 0.2), min(y1, poly[:, 1].min() - 0.2))
    ax.legend(fontsize=FONT["legend"], loc="upper left", frameon=False)
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
