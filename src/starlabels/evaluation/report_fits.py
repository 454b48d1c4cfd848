"""Report figures of Payne fits: the fitted spectrum, residuals and masked pixels of catalog stars.

For a Payne model folder (``config.json["method"] == "payne"``), :func:`add_fit_figures` refits up
to ``max_fits`` catalog rows whose ``SOURCE`` file can be read (the spectrum with the model's
input pixel count and wavelengths; the row's ``HDU`` picks among several) with
:meth:`starlabels.models.payne_fit.PayneModel.fit`, and adds one
:func:`starlabels.evaluation.fit_plots.plot_spectrum_fit` figure per star to the report. Rows that
cannot be shown are listed with the reason; other model kinds add nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from starlabels.errors import StarlabelsError
from starlabels.evaluation.report_figures import FigureCollector
from starlabels.evaluation.report_inputs import ModelCard

#: catalog rows fitted and drawn at most (the first rows whose SOURCE can be read)
DEFAULT_MAX_FITS = 6
#: rows tried at most per figure wanted (a catalog of unreadable SOURCEs is not scanned to the end)
_TRIES_PER_FIT = 10
SECTION_TITLE = "Fitted spectra (Payne)"


@dataclass
class _Star:
    """One catalog row's spectrum on the model's input grid (n_input_pixels,)."""

    name: str
    source: Path
    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray


def add_fit_figures(figs: FigureCollector, card: ModelCard, catalog: pd.DataFrame,
                    catalog_path: str | os.PathLike, *, max_fits: int = DEFAULT_MAX_FITS) -> None:
    """Add fit figures of up to ``max_fits`` catalog stars to ``figs`` (the report's figure
    collector: ``add(key, title, caption, fig)``, ``skip(title, reason)``).

    ``card``: the report's model card (``config`` dict, ``folder`` Path); ``catalog`` the catalog
    table; ``catalog_path`` its file (a relative ``SOURCE`` is also looked up beside it).
    """
    if str(card.config.get("method", "")) != "payne" or max_fits <= 0:
        return
    from starlabels.models.payne_fit import PayneModel

    try:
        model = PayneModel.load(card.folder)
    except StarlabelsError as exc:
        figs.skip(SECTION_TITLE, f"the Payne model folder could not be read: {exc}")
        return
    if "SOURCE" not in catalog.columns:
        figs.skip(SECTION_TITLE, "the catalog has no SOURCE column (the spectrum files)")
        return
    stars, problems = _read_stars(model, catalog, Path(catalog_path), max_fits)
    for title, why in problems:
        figs.skip(title, why)
    if not stars:
        figs.skip(SECTION_TITLE, "no catalog row's SOURCE file could be read")
        return
    try:
        fit = model.fit(np.stack([s.flux for s in stars]), np.stack([s.error for s in stars]),
                        np.stack([s.bitmask for s in stars]))
    except (StarlabelsError, ValueError, RuntimeError) as exc:
        figs.skip(SECTION_TITLE, f"the fit failed: {type(exc).__name__}: {exc}")
        return
    for k, star in enumerate(stars):
        _add_one(figs, model, fit, k, star, len(stars))


def _add_one(figs: FigureCollector, model: Any, fit: Any, k: int, star: _Star, n: int) -> None:
    from starlabels.evaluation.fit_plots import plot_spectrum_fit

    title = f"{SECTION_TITLE} {k + 1} of {n}: {star.name}"
    labels = {name: (float(fit.labels[k, j]), float(fit.std[k, j]))
              for j, name in enumerate(model.label_names)}
    n_masked = int(np.sum(~np.isfinite(fit.error[k])))
    caption = (f"{star.source.name}: data and best-fit Payne model divided by the fitted continuum "
               f"(top) and residuals in σ (bottom); grey: {n_masked} of {fit.error.shape[1]} pixels "
               f"masked (bitmask, fit mask, σ-clipping). RV {fit.rv[k]:.2f} ± {fit.rv_err[k]:.2f} km/s, "
               f"reduced χ² {fit.reduced_chi2[k]:.2f}"
               + ("" if fit.converged[k] else ", fit NOT converged") + ".")
    try:
        fig = plot_spectrum_fit(model.wavelength, fit.flux[k], fit.error[k], fit.model[k],
                                segments=model.segments, continuum=fit.continuum[k], labels=labels,
                                title=star.name)
    except (StarlabelsError, ValueError) as exc:
        figs.skip(title, f"could not be drawn: {type(exc).__name__}: {exc}")
        return
    figs.add(f"payne_fit_{k + 1}", title, caption, fig)


def _read_stars(model: Any, catalog: pd.DataFrame, catalog_path: Path, max_fits: int
                ) -> tuple[list[_Star], list[tuple[str, str]]]:
    """The first ``max_fits`` catalog rows whose SOURCE holds a spectrum on the model's grid, among
    the first ``_TRIES_PER_FIT · max_fits`` rows; the reasons of the first ``max_fits`` failures."""
    from starlabels.io.read import read_spectra

    stars: list[_Star] = []
    problems: list[tuple[str, str]] = []
    cache: dict[Path, list[Any] | str] = {}
    ids = catalog["APOGEE_ID"].astype(str) if "APOGEE_ID" in catalog.columns else None
    hdus = catalog["HDU"].astype(str) if "HDU" in catalog.columns else None
    for i, source in enumerate(catalog["SOURCE"].astype(str)):
        if len(stars) >= max_fits or i >= _TRIES_PER_FIT * max_fits:
            break
        name = ids.iloc[i] if ids is not None and ids.iloc[i].strip() else f"row {i}"
        path = _locate(source, catalog_path)
        if path is None:
            problems.append((f"{SECTION_TITLE}: {name}", f"SOURCE {source!r} is not a readable file"))
            continue
        if path not in cache:
            try:
                cache[path] = read_spectra(path)
            except (StarlabelsError, OSError, ValueError) as exc:
                cache[path] = str(exc)
        spectra = cache[path]
        if isinstance(spectra, str):
            problems.append((f"{SECTION_TITLE}: {name}", f"{path} could not be read: {spectra}"))
            continue
        hdu = hdus.iloc[i] if hdus is not None else None
        spectrum, why = _matching(model, spectra, hdu)
        if spectrum is None:
            problems.append((f"{SECTION_TITLE}: {name}", f"{path}: {why}"))
            continue
        stars.append(_Star(name, path, np.asarray(spectrum.flux, dtype=np.float64),
                           np.asarray(spectrum.error, dtype=np.float64),
                           np.asarray(spectrum.bitmask, dtype=np.int64)))
    if len(problems) > max_fits:
        more = len(problems) - max_fits
        problems = [*problems[:max_fits], (f"{SECTION_TITLE}: {more} more rows", "not readable either")]
    return stars, problems


def _locate(source: str, catalog_path: Path) -> Path | None:
    for candidate in (Path(source), catalog_path.parent / source):
        if candidate.is_file():
            return candidate
    return None


def _matching(model: Any, spectra: list[Any], hdu: str | None) -> tuple[Any, str]:
    """The spectrum on the model's input grid (and the row's HDU when several), or (None, why)."""
    if hdu is not None and hdu.strip() and len(spectra) > 1:
        picked = [s for s in spectra if str(s.meta.get("HDU", "")) == hdu]
        spectra = picked or spectra
    for s in spectra:
        if s.meta.get("NORMALISED") or np.asarray(s.flux).shape != (model.n_input_pixels,):
            continue
        lam = np.asarray(s.wavelength, dtype=np.float64)[model.pixel_index]
        if np.allclose(lam, model.wavelength, rtol=1e-7, atol=0.0):
            return s, ""
    return None, (f"no raw spectrum of {model.n_input_pixels} pixels on the model's wavelengths "
                  f"(found {[np.asarray(s.flux).size for s in spectra]} pixels)")
