"""The Payne fit as a row of bench/accuracy.py: fit a survey's spectra with the generating emulator.

Because the spectra were made by the same emulator, this is an upper bound on what a Payne fit
can do on the survey (no model mismatch, only noise, continuum, sky residuals and bad pixels).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def payne_row(
    emulator_path: str | Path,
    label_names: Sequence[str],
    flux: np.ndarray,
    error: np.ndarray,
    bitmask: np.ndarray | None = None,
    *,
    fit_mask: str | Path | np.ndarray | None = None,
    continuum_degree: int = 4,
    n_starts: int = 4,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Fit (N, 8575) apStar-grid spectra (raw flux, σ, APOGEE_PIXMASK) with the emulator.

    Returns ``{"mean": (N, L), "std": (N, L) Jacobian σ (uncalibrated), "rv": (N,) km/s,
    "reduced_chi2": (N,), "converged": (N,) bool, "seconds": wall time, "seconds_per_star"}``;
    rows that did not converge are NaN in ``mean``/``std``.
    """
    from starlabels.models.payne_fit import payne_model

    model = payne_model(emulator_path, list(label_names), fit_mask=fit_mask,
                        continuum_degree=continuum_degree, n_starts=n_starts, batch_size=batch_size)
    t0 = time.perf_counter()
    fit = model.fit(flux, error, bitmask)
    seconds = time.perf_counter() - t0
    mean, std = fit.labels.copy(), fit.std.copy()
    mean[~fit.converged] = np.nan
    std[~fit.converged] = np.nan
    return {"mean": mean, "std": std, "rv": fit.rv, "reduced_chi2": fit.reduced_chi2,
            "converged": fit.converged, "seconds": seconds,
            "seconds_per_star": seconds / max(len(mean), 1)}
