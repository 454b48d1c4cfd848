"""astroNN's continuum normalisation, reproduced exactly: ``astroNN.apogee.apogee_continuum`` (v1.1.0).

Models imported from astroNN (:func:`starlabels.models.astronn_import.from_astronn`) were trained on
spectra normalised this way, so ``PreprocessConfig(continuum_weights="astronn")`` runs this instead
of :func:`~starlabels.preprocess.continuum.continuum_normalise`. The two differ in three ways:

* **Weights.** astroNN calls ``numpy.polynomial.Chebyshev.fit(x, y, w=ivar, deg)`` with
  ``ivar = 1/(σ² + 1e-8)``; numpy multiplies the *residuals* by ``w``, so each squared residual is
  weighted by ``ivar²`` = 1/(σ²+1e-8)², not by 1/σ². With photon noise this shifts the continuum
  noticeably: on simulated apStar spectra at SNR 150 the normalised flux differs from the 1/σ²
  fit by 0.5 % in the median (``bench/astronn_agreement.py``).
* **Flagged pixels.** astroNN fits every continuum pixel, flagged or not (APOGEE_PIXMASK only
  decides which pixels are set to 1 afterwards); flagged pixels usually carry huge errors in apStar
  files and so hardly count. Here too; only non-finite flux or errors get weight 0 (astroNN's fit
  would fail on them).
* **Output.** Negative normalised flux becomes 0; flagged pixels (``bits``, astroNN's default
  ``target_bit`` = bits 0–7 and 12) and non-finite results become flux 1 (astroNN's ``mask_value``).
  astroNN sets their error to 1 (or 0); here they get ``BAD_PIXEL_ERROR``, starlabels' marker of a
  rejected pixel. The network input (the flux) is the same.

The polynomial is fitted per detector in astroNN's pixel coordinate (the detector's pixel index,
mapped to [−1, 1] over the first and last continuum pixel, as ``Chebyshev.fit`` does), batched over
spectra: one 3×3 (degree 2) weighted normal-equation solve per spectrum and detector.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev

from starlabels.core import apogee
from starlabels.core.bitmask import testable
from starlabels.errors import InputDataError
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, bits_to_value
from starlabels.preprocess.masking import BAD_PIXEL_ERROR

__all__ = ["ASTRONN_CHIPS", "astronn_continuum_normalise", "astronn_continuum_normalize"]

#: astroNN's ``chips_pix_info`` for DR13–DR17: the detectors' apStar pixel ranges [start, end);
#: together the 7514-pixel gap-deleted ("ASPCAP") grid.
ASTRONN_CHIPS: tuple[tuple[int, int], ...] = tuple(apogee.DETECTOR_PIXELS.values())
_N_APSTAR = apogee.N_PIXELS
_N_ASPCAP = sum(b - a for a, b in ASTRONN_CHIPS)
#: astroNN's regulariser in ivar = 1/(σ² + ε).
IVAR_EPSILON = 1e-8
#: spectra per vectorised block
_CHUNK = 256


def _gap_delete(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a[:, s:e] for s, e in ASTRONN_CHIPS], axis=1)


def astronn_continuum_normalise(
    flux,
    error,
    bitmask=None,
    continuum_mask: np.ndarray | None = None,
    degree: int = 2,
    *,
    bits: Iterable[str | int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """astroNN's ``apogee_continuum(flux, error, cont_mask, deg, bitmask=…)``, vectorised.

    Parameters
    ----------
    flux, error:
        (N, 8575) apStar-grid or (N, 7514) gap-deleted spectra (or one spectrum, 1-D).
    bitmask:
        Optional APOGEE_PIXMASK of the same shape; pixels with any of ``bits`` set become flux 1.
    continuum_mask:
        (7514,) bool continuum pixels (astroNN's ``dr17_contmask.npy``); required.
    degree:
        Chebyshev degree per detector (astroNN: 2).
    bits:
        APOGEE_PIXMASK bits (names or numbers) to set to 1; default bits 0–7 and 12 (astroNN's).

    Returns
    -------
    flux, error:
        float64 (N, 7514) (1-D for 1-D input): normalised flux (≥ 0; 1 at flagged or non-finite
        pixels) and error (``BAD_PIXEL_ERROR`` there).
    """
    f = np.asarray(flux, dtype=np.float64)
    e = np.asarray(error, dtype=np.float64)
    was_1d = f.ndim == 1
    f, e = np.atleast_2d(f), np.atleast_2d(e)
    if f.ndim != 2 or e.shape != f.shape or f.shape[1] not in (_N_APSTAR, _N_ASPCAP):
        raise InputDataError(
            f"astroNN continuum: flux {np.shape(flux)} and error {np.shape(error)} must be equal "
            f"(N, {_N_APSTAR}) or (N, {_N_ASPCAP}) arrays"
        )
    b = None
    if bitmask is not None:
        b = np.atleast_2d(np.asarray(bitmask))
        if b.shape != f.shape:
            raise InputDataError(f"bitmask shape {np.shape(bitmask)} differs from flux {np.shape(flux)}")
        if not np.issubdtype(b.dtype, np.integer):
            raise InputDataError(f"bitmask must be integer, got {b.dtype}")
    if continuum_mask is None:
        raise InputDataError("astroNN continuum: a (7514,) continuum_mask is required")
    cm = np.asarray(continuum_mask, dtype=bool)
    if cm.shape != (_N_ASPCAP,):
        raise InputDataError(f"continuum_mask must have shape ({_N_ASPCAP},), got {cm.shape}")
    reject = DEFAULT_REJECT_VALUE if bits is None else bits_to_value(bits)
    if f.shape[1] == _N_APSTAR:
        f, e = _gap_delete(f), _gap_delete(e)
        b = None if b is None else _gap_delete(b)
    out_f = np.empty_like(f)
    out_e = np.empty_like(e)
    start = 0
    for s, t in ASTRONN_CHIPS:
        n = t - s
        sl = slice(start, start + n)
        start += n
        _normalise_chip(f[:, sl], e[:, sl], cm[sl], int(degree), out_f[:, sl], out_e[:, sl])
    if b is not None and reject:
        flagged = (testable(b, reject) & reject) != 0  # (int64 where b's dtype cannot hold reject)
        out_f[flagged] = 1.0
        out_e[flagged] = BAD_PIXEL_ERROR
    if was_1d:
        return out_f[0], out_e[0]
    return out_f, out_e


def _normalise_chip(
    f: np.ndarray, e: np.ndarray, cont: np.ndarray, degree: int, out_f: np.ndarray, out_e: np.ndarray
) -> None:
    """One detector: weighted Chebyshev fit at ``cont`` pixels, flux and error divided by it."""
    n = f.shape[1]
    x = np.flatnonzero(cont)
    k = degree + 1
    if x.size < k:
        raise InputDataError(f"astroNN continuum: a detector has {x.size} continuum pixels, needs {k}")
    lo, hi = float(x[0]), float(x[-1])  # Chebyshev.fit's default domain: the x range
    u_all = (2.0 * np.arange(n) - (lo + hi)) / (hi - lo)
    basis_all = chebyshev.chebvander(u_all, degree)  # (n, k)
    basis = basis_all[x]  # (n_cont, k)
    for r0 in range(0, f.shape[0], _CHUNK):
        rows = slice(r0, r0 + _CHUNK)
        fc, ec = f[rows][:, x], e[rows][:, x]
        ok = np.isfinite(fc) & np.isfinite(ec)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            w = np.where(ok, 1.0 / (ec * ec + IVAR_EPSILON), 0.0)
        w2 = w * w  # numpy's fit weights the residuals by w: squared-residual weight w²
        scale = np.max(w2, axis=1, keepdims=True)
        w2 = w2 / np.where(scale > 0, scale, 1.0)
        normal = np.einsum("sp,pi,pj->sij", w2, basis, basis)
        rhs = np.einsum("sp,pi->si", w2 * np.where(ok, fc, 0.0), basis)
        usable = np.count_nonzero(w2 > 0, axis=1) >= k
        coef = np.full((fc.shape[0], k), np.nan)
        if usable.any():
            coef[usable] = np.linalg.solve(normal[usable], rhs[usable][..., None])[..., 0]
        continuum = coef @ basis_all.T  # (s, n); NaN rows where the fit was impossible
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            nf = f[rows] / continuum
            ne = e[rows] / continuum
        nf[nf < 0.0] = 0.0
        bad = ~(np.isfinite(nf) & np.isfinite(ne))
        nf[bad] = 1.0
        ne[bad] = BAD_PIXEL_ERROR
        out_f[rows] = nf
        out_e[rows] = ne


def astronn_continuum_normalize(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated spelling of :func:`astronn_continuum_normalise` (same result, with a DeprecationWarning)."""
    warnings.warn("astronn_continuum_normalize is now astronn_continuum_normalise", DeprecationWarning,
                  stacklevel=2)
    return astronn_continuum_normalise(*args, **kwargs)
