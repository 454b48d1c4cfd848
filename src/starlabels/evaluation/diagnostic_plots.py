"""Figures of the science checks in :mod:`starlabels.evaluation.diagnostics`: the ∂label/∂flux
sensitivity against wavelength with element windows and Brackett lines (astroNN Figs. 14–15) and
the label spreads within clusters with the mean reported uncertainties (Figs. 12–13).

Same conventions as :mod:`starlabels.evaluation.plots`: each function returns a
:class:`matplotlib.figure.Figure` and saves it when ``path`` is given.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from starlabels.errors import InputDataError
from starlabels.evaluation.figure_style import FONT, finish_figure, style_axes
from starlabels.evaluation.label_text import label_display
from starlabels.units import label_unit

if TYPE_CHECKING:
    from starlabels.evaluation.diagnostics import Sensitivity

__all__ = ["plot_cluster_homogeneity", "plot_sensitivity"]


def _break_gaps(wl: np.ndarray, *ys: np.ndarray) -> tuple[np.ndarray, ...]:
    """Insert NaN where the wavelength step jumps (detector gaps) so lines are not joined."""
    step = np.diff(np.log(wl))
    med = np.median(step) if step.size else 0.0
    gaps = np.flatnonzero(step > 5 * med) + 1
    out = [np.insert(wl.astype(float), gaps, np.nan)]
    out += [np.insert(np.asarray(y, dtype=float), gaps, np.nan) for y in ys]
    return tuple(out)


def plot_sensitivity(
    sens: Sensitivity,
    label: str | int,
    *,
    windows: np.ndarray | str | None = "auto",
    lines: Mapping[str, float] | None = None,
    wavelength: np.ndarray | None = None,
    y_label: str | None = None,
    path: str | Path | None = None,
) -> Figure:
    """Mean ∂label/∂flux against vacuum wavelength (Å), one curve per subset of stars.

    ``windows``: a bool mask (n_pixels,) shaded in green, ``"auto"`` for the label's element
    windows (APOGEE's ASPCAP windows) when the file can be found and the wavelengths hold their
    grid (none for Teff/log g), or None.
    ``lines``: name → wavelength (Å) marked with dotted lines; default the Brackett series.
    """
    from starlabels.evaluation.element_windows import BRACKETT_LINES, element_window_mask

    j = sens.label_names.index(label) if isinstance(label, str) else int(label)
    name = sens.label_names[j]
    wl = sens.wavelength if wavelength is None else np.asarray(wavelength, dtype=float)
    if wl is None:
        raise InputDataError("the sensitivity has no wavelengths; pass `wavelength` (Å)")
    mask = None
    if isinstance(windows, str):
        if windows != "auto":
            raise InputDataError(f"windows must be a mask, 'auto' or None, got {windows!r}")
        if name.upper() not in ("TEFF", "LOGG"):
            try:
                from starlabels.core.grid import from_wavelength

                mask = element_window_mask(name, grid=from_wavelength(wl, name="sensitivity"))
            except Exception as exc:  # file absent, unknown element, or grid mismatch
                warnings.warn(f"no element windows drawn for {name}: {exc}", stacklevel=2)
    elif windows is not None:
        mask = np.asarray(windows, dtype=bool)
        if mask.shape != wl.shape:
            raise InputDataError(f"windows mask has shape {mask.shape}, wavelengths {wl.shape}")
    fig = Figure(figsize=(12.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    if mask is not None and mask.any():
        wl_b, m_b = _break_gaps(wl, mask.astype(float))
        ax.fill_between(wl_b, 0, 1, where=m_b > 0.5, step="mid", color="tab:green", alpha=0.25,
                        lw=0, transform=ax.get_xaxis_transform(), label=f"{label_display(name)} windows")
    for s, sub in enumerate(sens.subsets):
        wl_b, y_b = _break_gaps(wl, sens.jacobian[s, j])
        ax.plot(wl_b, y_b, lw=0.8, color=f"C{s}", label=f"{sub} (N = {int(sens.n_stars[s])})")
    ax.axhline(0, color="0.4", lw=0.6)
    line_set = BRACKETT_LINES if lines is None else lines
    lo, hi = np.nanmin(wl), np.nanmax(wl)
    for lname, lam in line_set.items():
        if lo <= lam <= hi:
            ax.axvline(lam, color="0.3", lw=0.7, ls=":", zorder=1)
            ax.text(lam, 1.01, lname, transform=ax.get_xaxis_transform(), rotation=90, ha="center",
                    va="bottom", fontsize=FONT["annot"] - 1)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("Vacuum wavelength (Å)")
    if y_label is None:
        unit = label_unit(name) if "label units" in sens.units else "standardised units"
        per = "unit flux" if "flux" in sens.units else "unit input"
        y_label = rf"$\partial${label_display(name)}/$\partial f_\lambda$ ({unit} per {per})"
    ax.set_ylabel(y_label)
    fig.legend(fontsize=FONT["legend"], loc="outside lower center", frameon=False, ncol=4)
    style_axes(ax)
    return finish_figure(fig, path)


def plot_cluster_homogeneity(
    table: pd.DataFrame, *, labels: Sequence[str] | None = None, path: str | Path | None = None
) -> Figure:
    """Spread (std, σ_MAD) of each label in each cluster with the mean reported uncertainty as
    error bars (astroNN Figs. 12–13), from :func:`~starlabels.evaluation.diagnostics.cluster_homogeneity`.
    One panel per cluster; labels along x. Pass ``labels`` sharing a unit (e.g. abundances)."""
    clusters = list(dict.fromkeys(table["cluster"]))
    labels = list(dict.fromkeys(table["label"])) if labels is None else list(labels)
    units = {label_unit(x) for x in labels}
    unit = units.pop() if len(units) == 1 else "label units"
    fig = Figure(figsize=(max(5.0, 0.45 * len(labels) + 2.5), 2.8 * len(clusters)),
                 layout="constrained")
    axes = fig.subplots(len(clusters), 1, squeeze=False, sharex=True)[:, 0]
    x = np.arange(len(labels))
    for ax, cl in zip(axes, clusters, strict=True):
        rows = table[table["cluster"] == cl].set_index("label").reindex(labels)
        ax.errorbar(x - 0.1, rows["std"], yerr=rows["mean_err"], fmt="o", color="C0", ms=4,
                    capsize=2, label="std (error bar: mean reported σ)")
        ax.plot(x + 0.1, rows["sigma_mad"], "s", color="C2", ms=4, label=r"$\sigma_\mathrm{MAD}$")
        n = int(np.nanmax(rows["n"].to_numpy(float))) if rows["n"].notna().any() else 0
        ax.set_title(f"{cl} (N ≤ {n})", fontsize=FONT["title"])
        ax.set_ylabel(f"spread ({unit})")
        ax.set_ylim(bottom=0)
        style_axes(ax)
    axes[-1].set_xticks(x, [label_display(v) for v in labels], rotation=60, ha="right")
    axes[0].legend(fontsize=FONT["legend"], frameon=False)
    return finish_figure(fig, path)
