"""The demo's figures (:mod:`starlabels.demo`): Kiel diagrams, true and predicted, and predicted
against true labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.demo.config import FIGURE_LABELS

__all__ = ["kiel_figure", "pred_vs_true_figure"]


def kiel_figure(catalog: Any, truth: Any, path: Path) -> Path:
    """Two Kiel diagrams side by side, true and predicted, same axes and [Fe/H] colour scale."""
    from matplotlib.figure import Figure

    from starlabels.evaluation.plots import plot_kiel, save_figure

    fe = np.asarray(truth["FE_H"], float)
    lo, hi = np.nanpercentile(fe, [2, 98]) if np.isfinite(fe).any() else (-1.0, 0.5)
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    plot_kiel(truth, ax=axes[0], vmin=lo, vmax=hi, marker_size=9,
              title=f"True labels ({len(truth)} held-out stars)")
    plot_kiel(catalog, ax=axes[1], vmin=lo, vmax=hi, marker_size=9, title="Predicted by starlabels (BCNN)")
    t = np.concatenate([np.asarray(truth["TEFF"], float), np.asarray(catalog["TEFF"], float)])
    g = np.concatenate([np.asarray(truth["LOGG"], float), np.asarray(catalog["LOGG"], float)])
    t, g = t[np.isfinite(t)], g[np.isfinite(g)]
    if t.size and g.size:
        pt, pg = 0.04 * np.ptp(t) + 10.0, 0.04 * np.ptp(g) + 0.05
        axes[0].set_xlim(t.max() + pt, t.min() - pt)
        axes[0].set_ylim(g.max() + pg, g.min() - pg)
    return save_figure(fig, path)


def pred_vs_true_figure(catalog: Any, truth: Any, labels: Sequence[str], path: Path) -> Path:
    """Predicted against true labels with residual panels, for up to four of ``labels``
    (:data:`~starlabels.demo.config.FIGURE_LABELS` first)."""
    from starlabels.evaluation.label_text import axis_label
    from starlabels.evaluation.plots import plot_pred_vs_ref, save_figure

    show = [x for x in FIGURE_LABELS if x in labels][:4] or list(labels)[:4]
    fig = plot_pred_vs_ref(catalog, truth, show)
    for j, name in enumerate(show):  # each label has a main and a residual panel; the truth is known
        fig.axes[2 * j + 1].set_xlabel(f"True {axis_label(name)}")
    fig.suptitle(f"Held-out stars: predicted against true labels (N = {len(truth)})", fontsize=12)
    return save_figure(fig, path)
