"""Figures of spectral fits (The Payne): data, best-fit model, residuals and masked pixels.

Matplotlib object-oriented API (no pyplot); the function returns a
:class:`matplotlib.figure.Figure` and saves it when ``path`` is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from starlabels.errors import InputDataError
from starlabels.evaluation.figure_style import FONT, save_figure


def plot_spectrum_fit(
    wavelength: np.ndarray,
    flux: np.ndarray,
    error: np.ndarray,
    model: np.ndarray,
    *,
    segments: Sequence[tuple[int, int]] | None = None,
    continuum: np.ndarray | None = None,
    labels: Mapping[str, tuple[float, float]] | None = None,
    title: str = "",
    path: str | Path | None = None,
) -> Figure:
    """One spectrum and its fit: per segment (columns) the data and model divided by the fitted
    continuum (top) and the residual in σ (bottom); masked pixels (σ = inf or not finite) are
    shaded grey and left out of the residuals.

    ``wavelength`` (P,) Å, ``flux``, ``error``, ``model`` and optional ``continuum`` (P,) on the
    same grid; ``segments`` half-open pixel ranges (default: the whole grid); ``labels``
    ``{name: (value, σ)}`` written in the title.
    """
    lam, f, e, m = (np.asarray(x, dtype=np.float64) for x in (wavelength, flux, error, model))
    if not lam.ndim == 1 or not (lam.shape == f.shape == e.shape == m.shape):
        raise InputDataError(
            f"wavelength, flux, error, model must be 1-D of one length; got {lam.shape}, "
            f"{f.shape}, {e.shape}, {m.shape}"
        )
    cont = np.ones_like(f) if continuum is None else np.asarray(continuum, dtype=np.float64)
    masked = ~(np.isfinite(e) & np.isfinite(f) & (e > 0))
    segs = list(segments) if segments else [(0, lam.size)]
    fig = Figure(figsize=(4.2 * len(segs) + 1, 5.2), layout="constrained")
    grid = fig.add_gridspec(2, len(segs), height_ratios=(3, 1.4))
    scale = np.where(cont != 0, cont, 1.0)
    for j, (a, b) in enumerate(segs):
        top = fig.add_subplot(grid[0, j])
        bottom = fig.add_subplot(grid[1, j], sharex=top)
        x = lam[a:b]
        ok = ~masked[a:b]
        data = np.where(ok, f[a:b] / scale[a:b], np.nan)
        top.plot(x, data, color="0.2", lw=0.5, label="data")
        top.plot(x, m[a:b] / scale[a:b], color="tab:red", lw=0.6, label="model")
        resid = np.where(ok, (f[a:b] - m[a:b]) / np.where(ok, e[a:b], 1.0), np.nan)
        bottom.plot(x, resid, color="0.2", lw=0.4)
        bottom.axhline(0, color="tab:red", lw=0.6)
        for ax in (top, bottom):
            _shade(ax, x, ~ok)
            ax.tick_params(labelsize=FONT["tick"])
        bottom.set_ylim(-6, 6)
        bottom.set_xlabel("wavelength (Å, vacuum)", fontsize=FONT["label"])
        if j == 0:
            top.set_ylabel("flux / fitted continuum", fontsize=FONT["label"])
            bottom.set_ylabel("(data − model)/σ", fontsize=FONT["label"])
            top.legend(fontsize=FONT["legend"], loc="lower left")
        finite = data[np.isfinite(data)]
        if finite.size:
            lo, hi = np.percentile(finite, [0.5, 99.5])
            top.set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    text = title
    if labels:
        text += ("\n" if text else "") + ",  ".join(f"{k} = {v:.4g} ± {s:.2g}"
                                                     for k, (v, s) in labels.items())
    if text:
        fig.suptitle(text + "   (grey: masked pixels)", fontsize=FONT["title"])
    if path is not None:
        save_figure(fig, path)
    return fig


def _shade(ax, x: np.ndarray, masked: np.ndarray) -> None:
    """Grey bands over runs of masked pixels."""
    if not masked.any():
        return
    edges = np.flatnonzero(np.diff(np.r_[0, masked.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        ax.axvspan(x[a], x[min(b, x.size - 1)], color="0.85", lw=0, zorder=0)
