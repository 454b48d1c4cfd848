"""Synthetic APOGEE-like spectra with a known continuum, for the preprocessing tests.

The helpers are plain functions exposed through the ``synth`` fixture (pytest runs in importlib
mode, so test modules cannot import each other).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from numpy.polynomial import chebyshev

from starlabels.preprocess.grids import APSTAR, ASPCAP, index_in


def detector_x() -> list[np.ndarray]:
    """The fit coordinate of each detector: linspace(-1, 1) over its ASPCAP-grid pixels."""
    return [np.linspace(-1.0, 1.0, sl.stop - sl.start) for sl in ASPCAP.segment_slices]


def known_continuum(coef: np.ndarray) -> np.ndarray:
    """(N, 3, k) Chebyshev coefficients → (N, 7514) continuum on the ASPCAP grid (independent of
    the package: numpy's chebval per detector)."""
    out = np.empty((coef.shape[0], ASPCAP.n_pixels))
    for d, (sl, x) in enumerate(zip(ASPCAP.segment_slices, detector_x(), strict=True)):
        out[:, sl] = chebyshev.chebval(x, coef[:, d].T)
    return out


def line_profile(n_lines: int, rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """(7514,) optical-depth template: Gaussian lines (σ 1.5 pixels) centred away from ``avoid``
    pixels (bool (7514,)) by at least 8 σ."""
    pix = np.arange(ASPCAP.n_pixels)
    allowed = np.flatnonzero(~np.convolve(avoid, np.ones(25), mode="same").astype(bool))
    centres = rng.choice(allowed, n_lines, replace=False)
    depth = rng.uniform(0.05, 0.6, n_lines)
    tau = np.zeros(ASPCAP.n_pixels)
    for c, a in zip(centres, depth, strict=True):
        lo, hi = max(c - 12, 0), min(c + 13, ASPCAP.n_pixels)
        tau[lo:hi] += a * np.exp(-0.5 * ((pix[lo:hi] - c) / 1.5) ** 2)
    return tau


def spectra(
    n: int,
    seed: int = 0,
    *,
    degree: int = 2,
    snr: float | None = 200.0,
    continuum_mask: np.ndarray | None = None,
    n_lines: int = 300,
    apstar: bool = True,
) -> dict[str, np.ndarray]:
    """N spectra = known Chebyshev continuum × exp(−τ) (+ noise), lines kept off the continuum pixels.

    Returns a dict with ``flux``, ``error`` ((N, 8575) with NaN outside the ASPCAP pixels when
    ``apstar``, else (N, 7514)), ``coef`` (N, 3, degree+1), ``continuum`` and ``absorption``
    (N, 7514) and the ``mask`` of continuum pixels (7514,) bool.
    """
    rng = np.random.default_rng(seed)
    if continuum_mask is None:
        continuum_mask = np.zeros(ASPCAP.n_pixels, dtype=bool)
        continuum_mask[rng.choice(ASPCAP.n_pixels, 500, replace=False)] = True
    coef = np.zeros((n, 3, degree + 1))
    coef[:, :, 0] = rng.uniform(200, 2000, (n, 1)) * rng.uniform(0.8, 1.2, (n, 3))
    for j in range(1, degree + 1):
        coef[:, :, j] = coef[:, :, 0] * rng.normal(0, 0.1 / j, (n, 3))
    cont = known_continuum(coef)
    tau = line_profile(n_lines, rng, continuum_mask)
    strength = rng.uniform(0.5, 1.5, (n, 1))
    absorption = np.exp(-strength * tau)
    clean = cont * absorption
    err = cont / (snr if snr else 100.0) * rng.uniform(0.7, 1.3, cont.shape)
    flux = clean + (err * rng.standard_normal(cont.shape) if snr else 0.0)
    out = {"coef": coef, "continuum": cont, "absorption": absorption, "mask": continuum_mask,
           "clean": clean}
    if apstar:
        f = np.full((n, APSTAR.n_pixels), np.nan)
        e = np.full((n, APSTAR.n_pixels), np.nan)
        f[:, index_in(ASPCAP, "apstar")] = flux
        e[:, index_in(ASPCAP, "apstar")] = err
        out.update(flux=f, error=e)
    else:
        out.update(flux=flux, error=err)
    return out


@pytest.fixture(scope="session")
def synth() -> types.SimpleNamespace:
    """``synth.spectra(...)``, ``synth.known_continuum(coef)``, ``synth.detector_x()``,
    ``synth.line_profile(...)``."""
    return types.SimpleNamespace(
        spectra=spectra, known_continuum=known_continuum, detector_x=detector_x,
        line_profile=line_profile,
    )
