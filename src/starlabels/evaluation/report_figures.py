"""The report's figures: which ones the inputs allow, drawn with :mod:`starlabels.evaluation.plots`
and saved as PNG files beside the page or embedded as base64; what cannot be drawn is recorded
with the reason.

Figures: the training curve (``history.csv``), Kiel diagrams coloured by [Fe/H] and by an
uncertainty with PARSEC isochrones, the young-star selection, uncertainty vs SNR, and against
the reference: predicted vs reference, residuals vs SNR and z-score histograms.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from starlabels.errors import InputDataError, InputFileError, StarlabelsError
from starlabels.evaluation.columns import get_column, label_matrix
from starlabels.evaluation.label_text import label_display
from starlabels.evaluation.metrics import residuals_by_snr
from starlabels.evaluation.report_inputs import ModelCard
from starlabels.evaluation.report_reference import Reference, error_matrix

__all__ = ["PANELS_PER_FIGURE", "FigureCollector", "FigureEntry", "make_figures"]

#: Labels per figure for the multi-panel figures (keeps panels readable at page width).
PANELS_PER_FIGURE = 3


@dataclass
class FigureEntry:
    """A figure on the page: ``src`` is a relative file path or a ``data:`` URI; ``width`` the
    CSS width (px) that shows it at its physical size (96 px per inch)."""

    key: str
    title: str
    caption: str
    src: str
    file: Path | None = None
    width: int | None = None


class FigureCollector:
    """Collects figures (saved as files or embedded) and what had to be skipped, with why."""

    def __init__(self, out_dir: Path, embed: bool) -> None:
        self.out_dir = out_dir
        self.embed = embed
        self.entries: list[FigureEntry] = []
        self.skipped: list[tuple[str, str]] = []

    def add(self, key: str, title: str, caption: str, fig: Any) -> None:
        """Save ``fig`` (a matplotlib Figure) as ``figures/<key>.png`` or embed it, with its title
        and caption."""
        from starlabels.evaluation.figure_style import DPI, save_figure

        width = round(float(fig.get_size_inches()[0]) * 96)
        if self.embed:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
            src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
            self.entries.append(FigureEntry(key, title, caption, src, width=width))
        else:
            path = save_figure(fig, self.out_dir / "figures" / f"{key}.png")
            self.entries.append(FigureEntry(key, title, caption, f"figures/{path.name}", path, width))

    def skip(self, title: str, reason: str) -> None:
        """Record that figure ``title`` is not shown, and why (listed on the page)."""
        self.skipped.append((title, reason))

    def attempt(self, key: str, title: str, caption: str, draw: Any) -> None:
        """Draw with ``draw()``; a failure becomes a skipped entry with the error message."""
        try:
            fig = draw()
        except Exception as exc:  # the report must still be written; the page says what failed
            self.skip(title, f"could not be drawn: {type(exc).__name__}: {exc}")
            return
        self.add(key, title, caption, fig)


def _chunks(
    items: Sequence[str], title: str, size: int = PANELS_PER_FIGURE
) -> list[tuple[int, str, list[str]]]:
    """``(k, title, labels)`` per figure of at most ``size`` labels; titles say "(k of n)"."""
    parts = [list(items[i : i + size]) for i in range(0, len(items), size)]
    n = len(parts)
    return [(k, f"{title} ({k} of {n})" if n > 1 else title, chunk) for k, chunk in enumerate(parts, 1)]


def _isochrones(
    spec: str | os.PathLike | bool | None, feh: np.ndarray | None, ages: Sequence[float], notes: list[str]
) -> list[Any]:
    """PARSEC isochrones at ``ages`` and the catalog's 10th/50th/90th percentile [Fe/H]
    (snapped to the grid). ``spec``: None = :func:`~starlabels.evaluation.isochrones.default_isochrone_path`
    (``$STARLABELS_ISOCHRONES``, ``$STARLABELS_REFERENCE_DIR``, download cache), False = none, or a
    path (then a missing file is an error)."""
    if spec is False:
        notes.append("isochrones not drawn (turned off)")
        return []
    from starlabels.evaluation.isochrones import default_isochrone_path, load_isochrones, select_isochrones

    if spec is None or spec is True:
        try:
            path = default_isochrone_path()
        except InputFileError as exc:
            notes.append(f"no PARSEC isochrones on the Kiel diagrams: {exc.problem}")
            return []
    else:
        path = Path(spec)
    grid = load_isochrones(path)
    avail = grid.metallicities
    want = [0.0]
    if feh is not None and np.isfinite(feh).any():
        want = list(np.nanpercentile(feh, [10, 50, 90]))
    mh = list(dict.fromkeys(float(avail[np.argmin(np.abs(avail - w))]) for w in want))
    isos = select_isochrones(list(ages), mh, grid=grid)
    notes.append(
        f"PARSEC isochrones from {Path(path).name}: log age {', '.join(f'{a:g}' for a in ages)}, "
        f"[M/H] {', '.join(f'{z:+.2f}' for z in mh)} (the catalog's 10/50/90th percentile [Fe/H])"
    )
    return isos


def _history_figure(history: pd.DataFrame) -> Any:
    from matplotlib.figure import Figure

    from starlabels.evaluation.figure_style import FONT, style_axes

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = pd.to_numeric(history.get("epoch", pd.Series(np.arange(1, len(history) + 1))), errors="coerce")
    drawn = []
    for col, style, name in (("train_loss", "-o", "training"), ("dev_loss", "-s", "dev (validation)")):
        if col in history.columns:
            y = pd.to_numeric(history[col], errors="coerce").to_numpy(float)
            if np.isfinite(y).any():
                ax.plot(x, y, style, ms=3, lw=1.5, label=name)
                drawn.append(y[np.isfinite(y)])
    if not drawn:
        raise InputDataError("history.csv has no finite train_loss or dev_loss")
    allv = np.concatenate(drawn)
    if (allv > 0).all() and allv.max() / allv.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (training objective)")
    ax.legend(fontsize=FONT["legend"], frameon=False)
    style_axes(ax)
    return fig


def make_figures(
    figs: FigureCollector,
    card: ModelCard,
    catalog: pd.DataFrame,
    labels: list[str],
    ref: Reference | None,
    isochrones: str | os.PathLike | bool | None,
    isochrone_ages: Sequence[float],
    notes: list[str],
) -> None:
    """Draw every figure the inputs allow into ``figs`` (the others are skipped with the reason).

    ``catalog``: the catalog table; ``labels``: the labels shown; ``ref``: the aligned reference
    (``None``: the figures against it are skipped); ``isochrones``/``isochrone_ages``: as in
    :func:`starlabels.evaluation.report.build_report`; remarks go to ``notes``.
    """
    from starlabels.evaluation import plots as pl

    cols = set(catalog.columns)
    E = error_matrix(catalog, labels)
    has_err = [x for j, x in enumerate(labels) if np.isfinite(E[:, j]).any()]
    snr = get_column(catalog, "SNR") if "SNR" in cols else None
    has_snr = snr is not None and bool((np.isfinite(snr) & (snr > 0)).any())

    # training curve
    if card.history is not None:
        figs.attempt(
            "training_history",
            "Training curve",
            "Loss per epoch on the training and dev sets (history.csv of the model folder).",
            lambda: _history_figure(card.history),
        )
    else:
        figs.skip("Training curve", "the model folder has no history.csv")

    # Kiel diagrams
    kiel_ok = {"TEFF", "LOGG"} <= cols and bool(
        (
            np.isfinite(get_column(catalog, "TEFF"))
            & np.isfinite(get_column(catalog, "LOGG"))
        ).any()
    )
    if kiel_ok:
        feh = get_column(catalog, "FE_H") if "FE_H" in cols else None
        colors = []
        if feh is not None and np.isfinite(feh).any():
            colors.append("FE_H")
        else:
            figs.skip("Kiel diagram coloured by [Fe/H]", "the catalog has no [Fe/H] (FE_H) values")
        err_col = next((f"{x}_ERR" for x in ("LOGG", "TEFF", "FE_H", *labels) if x in has_err), None)
        if err_col:
            colors.append(err_col)
        else:
            figs.skip("Kiel diagram coloured by uncertainty", "the catalog has no uncertainties")
        try:
            isos = _isochrones(isochrones, feh, isochrone_ages, notes)
        except StarlabelsError as exc:
            if isochrones not in (None, True):
                raise
            notes.append(f"no isochrones drawn: {exc}")
            isos = []
        what = " and by ".join(
            label_display(c, tex=False)
            if "_ERR" not in c
            else f"σ({label_display(c.split('_ERR')[0], tex=False)})"
            for c in colors
        )
        iso_text = " Lines: PARSEC isochrones (see notes)." if isos else ""
        if colors:
            figs.attempt(
                "kiel",
                "Kiel diagram",
                f"log g against Teff of the predicted labels, coloured by {what}.{iso_text}",
                lambda: pl.plot_kiel_panels(catalog, colors=colors, isochrones=isos or None),
            )
        else:
            figs.attempt(
                "kiel",
                "Kiel diagram",
                f"log g against Teff of the predicted labels.{iso_text}",
                lambda: pl.plot_kiel(catalog, color=None, isochrones=isos or None),
            )
        from starlabels.labels.young import LOGG_AGE_BIN_EDGES, in_young_polygon

        inside = int(
            in_young_polygon(
                get_column(catalog, "TEFF"), get_column(catalog, "LOGG")
            ).sum()
        )
        figs.attempt(
            "young_selection",
            "Young-star selection",
            f"The young-star polygon of APOGEE Net §4.1 with the log g age bins of §4.2 "
            f"(edges {', '.join(f'{e:g}' for e in LOGG_AGE_BIN_EDGES)} dex); {inside} "
            "star(s) inside the polygon.",
            lambda: pl.plot_young_selection(catalog),
        )
    else:
        why = "the catalog has no TEFF and LOGG values"
        figs.skip("Kiel diagrams", why)
        figs.skip("Young-star selection", why)

    # uncertainty vs SNR
    if not has_err:
        figs.skip("Uncertainty vs SNR", "the catalog has no uncertainties (X_ERR)")
    elif not has_snr:
        figs.skip("Uncertainty vs SNR", "the catalog has no positive SNR values")
    else:
        for k, title, chunk in _chunks(has_err, "Uncertainty vs SNR"):
            figs.attempt(
                f"uncertainty_vs_snr_{k}",
                title,
                "Reported (calibrated) uncertainty against SNR, with the running median and "
                "the 16–84 % band: "
                + ", ".join(label_display(x, tex=False) for x in chunk)
                + ".",
                lambda chunk=chunk: pl.plot_uncertainty_vs_snr(catalog, chunk),
            )

    # against the reference
    ref_title = ("Predicted vs reference", "Residuals vs SNR", "z-score histograms")
    if ref is None:
        for t in ref_title:
            figs.skip(t, "no reference labels (pass --reference)")
        return
    P, _ = label_matrix(catalog, labels)
    both = [x for j, x in enumerate(labels) if (np.isfinite(P[:, j]) & np.isfinite(ref.R[:, j])).any()]
    if not both:
        for t in ref_title:
            figs.skip(t, "no star has both a prediction and a reference value")
        return
    idx = {x: j for j, x in enumerate(labels)}
    for k, title, chunk in _chunks(both, "Predicted vs reference"):
        js = [idx[x] for x in chunk]
        figs.attempt(
            f"pred_vs_ref_{k}",
            title,
            "Predicted against reference label (dashed 1:1), residuals below with the running "
            "median"
            + (", coloured by SNR" if has_snr else "")
            + ": "
            + ", ".join(label_display(x, tex=False) for x in chunk)
            + ".",
            lambda js=js, chunk=chunk: pl.plot_pred_vs_ref(
                P[:, js],
                ref.R[:, js],
                chunk,
                color=snr if has_snr else None,
                color_name="SNR" if has_snr else None,
            ),
        )
    if has_snr:
        jb = [idx[x] for x in both]
        eb = E[:, jb] if np.isfinite(E[:, jb]).any(axis=0).all() else None
        table = residuals_by_snr(P[:, jb], ref.R[:, jb], both, snr=snr, err=eb)
        figs.attempt(
            "residuals_vs_snr",
            "Residuals vs SNR",
            "Median |Δ| and σ_MAD of the residual Δ = predicted − reference in SNR bins"
            + (", with the median reported uncertainty." if eb is not None else "."),
            lambda: pl.plot_binned_residuals(table, x_label="SNR (per pixel)", log_x=True),
        )
    else:
        figs.skip("Residuals vs SNR", "the catalog has no positive SNR values")
    zl = [x for x in both if x in has_err]
    if zl:
        js = [idx[x] for x in zl]
        Er = None if ref.E is None else ref.E[:, js]
        for k, title, chunk in _chunks(zl, "z-score histograms"):
            cj = [zl.index(x) for x in chunk]
            figs.attempt(
                f"zscores_{k}",
                title,
                "z = (predicted − reference)/σ against the unit Gaussian; calibrated "
                "uncertainties give σ_MAD(z) ≈ 1 and 68.3 % within |z| ≤ 1.",
                lambda cj=cj, chunk=chunk: pl.plot_zscore_histograms(
                    P[:, js][:, cj],
                    ref.R[:, js][:, cj],
                    chunk,
                    pred_err=E[:, js][:, cj],
                    ref_err=None if Er is None else Er[:, cj],
                ),
            )
    else:
        figs.skip("z-score histograms", "the catalog has no uncertainties (X_ERR)")

