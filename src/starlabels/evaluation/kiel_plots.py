"""Kiel diagrams of predicted labels: log g against Teff, coloured, with isochrones, and the
young-star selection drawn on one (matplotlib object-oriented API, no pyplot).

- :func:`plot_kiel` / :func:`plot_kiel_panels` — log g vs Teff (both axes inverted) coloured by
  [Fe/H] or by an uncertainty, with PARSEC isochrones (astroNN Fig. 7);
- :func:`plot_young_selection` — the young-star polygon and log g age bins (APOGEE Net §4).

Conventions (return a Figure, save it when ``path`` is given, columns or arrays) are those of
:mod:`starlabels.evaluation.plots`, which re-exports these functions beside the other label
figures.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Polygon

from starlabels.errors import InputDataError
from starlabels.evaluation.columns import TableLike
from starlabels.evaluation.figure_style import (
    FONT,
    ArrayOrColumn,
    axis_limits,
    color_label,
    column_name,
    column_values,
    finish_figure,
    get_cmap,
    style_axes,
)
from starlabels.evaluation.label_text import axis_label
from starlabels.labels.young import (
    LOGG_AGE_BIN_EDGES,
    LOGG_AGE_BIN_LABELS,
    YOUNG_POLYGON,
    in_young_polygon,
)

if TYPE_CHECKING:
    from starlabels.evaluation.isochrones import Isochrone

__all__ = ["plot_kiel", "plot_kiel_panels", "plot_young_selection"]


def _is_metallicity(name: str) -> bool:
    return name.upper() in ("FE_H", "M_H", "MH")


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


# the young-star selection (APOGEE Net §4.1–4.2)


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
