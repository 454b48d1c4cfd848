"""Continuum normalisation of spectra (astroNN §3, after The Cannon 2, Casey et al. 2016): the public API.

Each segment of the input grid (APOGEE: the blue, green and red detectors,
:attr:`starlabels.preprocess.grids.ASPCAP.segment_slices`) is normalised separately: a Chebyshev
polynomial of degree ``degree`` (2 by default) in the coordinate ``x = linspace(-1, 1, n)`` over the
segment's pixels of the gap-free grid (log-linear in wavelength for APOGEE, so ``x`` is ``log λ``
scaled to [−1, 1]) is fitted to the flux of the *continuum pixels* by weighted least squares, each
squared residual weighted by ``1/σ²`` (rejected pixels: weight 0); flux and error are then divided
by it.

Where the work is done:

* :mod:`starlabels.preprocess.continuum_masks` — continuum masks from files or pixel indices
  (:func:`load_continuum_mask`, :func:`mask_from_indices`, re-exported here);
* :mod:`starlabels.preprocess.chebyshev_fit` — the batched weighted Chebyshev fits (all spectra and
  segments of a chunk in one batched solve, no per-spectrum Python loop);
* :mod:`starlabels.preprocess.continuum_segments` — the chunked driver (input grid → gap-free
  segments → fit → divide) and :class:`ContinuumFit`.

Continuum pixels come from a file (:func:`load_continuum_mask`, e.g. the DR17 mask
``continuum_mask_dr17_7514.npy``) or from the data (:func:`select_continuum_pixels`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.errors import InputDataError
from starlabels.preprocess.chebyshev_fit import OnFailure
from starlabels.preprocess.continuum_masks import MaskLike, load_continuum_mask, mask_from_indices
from starlabels.preprocess.continuum_segments import (
    ContinuumFit,
    SegmentLayout,
    bitmask_for_grid,
    gather_segments,
    normalise_segments,
    reject_value,
    segment_layout,
    usable_pixels,
)
from starlabels.preprocess.grids import get_grid
from starlabels.preprocess.masking import as_batch, is_rejected_error

__all__ = [
    "ContinuumFit",
    "continuum_normalise",
    "continuum_normalize",
    "fit_continuum",
    "load_continuum_mask",
    "mask_from_indices",
    "output_grid",
    "pseudo_normalise",
    "pseudo_normalize",
    "select_continuum_pixels",
]


def output_grid(grid: Grid | str) -> Grid:
    """The grid continuum-normalised spectra come out on for input on ``grid`` (its segments with the
    gaps deleted; APOGEE's apStar grid gives the ASPCAP grid)."""
    return SegmentLayout(get_grid(grid)).out_grid


def continuum_normalise(
    flux,
    error,
    bitmask=None,
    continuum_mask: MaskLike = None,
    degree: int = 2,
    *,
    bits: Iterable[str | int] | None = None,
    on_failure: OnFailure = "raise",
    grid: Grid | str | None = None,
    bitmask_def: PixelBitmask | None = None,
    out: tuple[np.ndarray, np.ndarray] | None = None,
    rejected: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Continuum-normalise spectra (astroNN §3): per-detector weighted Chebyshev fit, batched.

    Parameters
    ----------
    flux, error:
        (N, P) arrays on ``grid`` (default: APOGEE's apStar or ASPCAP grid), or one spectrum (P,); flux in any
        units, error (1σ) in the same units.
    bitmask:
        Optional APOGEE_PIXMASK array of the same shape.
    continuum_mask:
        Continuum pixels: a bool array on the output grid (APOGEE: ASPCAP; masks on the apStar or Payne
        grid are converted), or a
        path to a ``.npy``/``.npz`` mask (:func:`load_continuum_mask`). ``None`` fits every usable
        pixel of a detector (absorption lines then pull the continuum low; for tests and quick
        looks only).
    degree:
        Degree of the Chebyshev polynomial per detector (2 as astroNN / The Cannon 2).
    bits:
        APOGEE_PIXMASK bits (names or numbers) that reject a pixel; default ``DEFAULT_REJECT_BITS``.
    grid:
        The input's grid (a :class:`~starlabels.core.grid.Grid` or a grid name, e.g. ``"boss"``);
        each of its segments is normalised separately and the output is on its segment grid (gaps
        deleted: :func:`output_grid`). ``None``: APOGEE's apStar or ASPCAP grid by pixel count.
    bitmask_def:
        The bitmask's definition (default: the grid's instrument's; APOGEE_PIXMASK otherwise).
    on_failure:
        What to do when a detector of a spectrum has fewer than ``degree + 1`` usable continuum
        pixels (e.g. a NaN-only spectrum): ``"raise"`` (default) raises ``InputDataError`` naming
        the spectrum index and detector; ``"reject"`` returns that whole detector as rejected
        pixels (flux 1, error ``BAD_PIXEL_ERROR``), so output stays NaN-free and the failure is
        visible as ``error >= BAD_PIXEL_ERROR`` over the detector.
    out:
        Optional ``(flux_out, error_out)``: C-contiguous (N, P_out) arrays of the output dtype
        (2-D input only) written in place and returned — streaming callers reuse one pair per
        chunk instead of page-faulting fresh outputs (the "cold" cost). Same numbers as without.
    rejected:
        Optional bool array shaped as ``flux``: the rejected pixels as
        :func:`starlabels.preprocess.masking.rejected_pixels` gives them for the same ``bits`` and
        bitmask definition, from a caller that computed them already (``prepare_chunk``); skips this
        function's own pass over the input. Same numbers as without (flux and error of one dtype).
        Not re-checked: a pixel it calls usable must have finite flux and an error in
        (0, ``BAD_PIXEL_ERROR``).

    Returns
    -------
    flux, error:
        (N, P_out) on the output grid (:func:`output_grid`; APOGEE: ASPCAP), 1-D for 1-D input, dtype
        float32 for float32 input and
        float64 otherwise; flux is dimensionless (continuum = 1), error in the same relative units.
        Rejected pixels (see :mod:`starlabels.preprocess.masking`; also pixels where the fitted
        continuum is ≤ 0 or the ratio overflows the dtype) have flux 1 and error
        ``BAD_PIXEL_ERROR``. Never NaN or inf.
    """
    if out is not None and np.ndim(flux) != 2:
        raise InputDataError("out= needs 2-D (N, P) input")
    out_f, out_e, was_1d, _, _ = normalise_segments(
        flux, error, bitmask, continuum_mask, degree, bits, on_failure, None,
        "continuum", grid=grid, bitmask_def=bitmask_def, out=out, input_rejected=rejected,
    )
    if was_1d:
        return out_f[0], out_e[0]
    return out_f, out_e


def fit_continuum(
    flux,
    error,
    bitmask=None,
    continuum_mask: MaskLike = None,
    degree: int = 2,
    *,
    bits: Iterable[str | int] | None = None,
    on_failure: OnFailure = "raise",
    grid: Grid | str | None = None,
    bitmask_def: PixelBitmask | None = None,
) -> ContinuumFit:
    """The continuum :func:`continuum_normalise` divides by, with its coefficients.

    Same arguments as :func:`continuum_normalise`. Returns a :class:`ContinuumFit`
    ``(continuum (N, P_out) float64, coefficients (N, n_segments, degree+1), rejected (N, P_out) bool)``;
    always 2-D. The coefficients are Chebyshev coefficients (``numpy.polynomial.chebyshev``
    convention) in ``x = linspace(-1, 1, n_detector)`` over each detector's ASPCAP-grid pixels.
    """
    return normalise_segments(
        flux, error, bitmask, continuum_mask, degree, bits, on_failure, None,
        "continuum", keep_fit=True, grid=grid, bitmask_def=bitmask_def,
    )[3]


def pseudo_normalise(
    flux,
    error,
    bitmask=None,
    degree: int = 2,
    *,
    bits: Iterable[str | int] | None = None,
    n_iter: int = 8,
    low: float = 1.5,
    high: float | None = None,
    on_failure: OnFailure = "raise",
    grid: Grid | str | None = None,
    bitmask_def: PixelBitmask | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise without knowing the continuum pixels: iterative asymmetric sigma-clipped fit.

    Per detector a Chebyshev polynomial (as :func:`continuum_normalise`) is fitted to all usable
    pixels, then refitted ``n_iter`` times to the pixels whose residual in units of their noise,
    ``(f − c)/σ``, is above ``−low`` (and below ``high`` when given; by default nothing is clipped
    above, since the first fit sits below the continuum and spikes are in the bitmask).
    Absorption lines deeper than ~``low`` σ are dropped, so the fit climbs to the upper envelope
    (the pseudo-continuum; on pure noise the clipping biases it up by ~0.15 σ with ``low=1.5``).
    Inputs, outputs and ``on_failure`` as :func:`continuum_normalise`.
    """
    if n_iter < 0 or low <= 0 or (high is not None and high <= 0):
        raise ValueError("n_iter must be ≥ 0 and low, high > 0")
    out_f, out_e, was_1d, _, _ = normalise_segments(
        flux, error, bitmask, None, degree, bits, on_failure, (int(n_iter), low, high), "usable",
        grid=grid, bitmask_def=bitmask_def,
    )
    if was_1d:
        return out_f[0], out_e[0]
    return out_f, out_e


def _clean_labels(labels, n_spectra: int) -> tuple[np.ndarray, np.ndarray]:
    """(N,) or (N, L) labels → standardised (n_good, L) labels and the (N,) bool row selection."""
    lab = np.asarray(labels, dtype=np.float64)
    if lab.ndim == 1:
        lab = lab[:, None]
    if lab.ndim != 2 or lab.shape[0] != n_spectra:
        raise InputDataError(f"labels must be (N,) or (N, L) with N = {n_spectra}, got {lab.shape}")
    good = np.isfinite(lab).all(axis=1) & (lab != MISSING).all(axis=1)
    z = lab[good]
    if z.shape[0] < lab.shape[1] + 2:
        raise InputDataError(
            f"only {z.shape[0]} spectra have every label present; need at least {lab.shape[1] + 2}"
        )
    std = z.std(axis=0)
    if (std == 0).any():
        raise InputDataError(f"label column(s) {np.flatnonzero(std == 0).tolist()} are constant")
    return (z - z.mean(axis=0)) / std, good


def _normalised_keyword(normalised: bool, kwargs: dict[str, Any]) -> bool:
    """``normalized=`` (deprecated) as ``normalised``; any other unknown keyword is a TypeError."""
    unknown = set(kwargs) - {"normalized"}
    if unknown:
        raise TypeError(f"select_continuum_pixels() got unexpected keyword argument(s) {sorted(unknown)}")
    warnings.warn("select_continuum_pixels(normalized=) is now normalised=", DeprecationWarning, stacklevel=3)
    return bool(kwargs["normalized"]) or normalised


def select_continuum_pixels(
    flux,
    error,
    labels,
    bitmask=None,
    *,
    fraction: float = 0.07,
    n_per_detector: int | Iterable[int] | None = None,
    max_offset: float | None = 0.02,
    normalised: bool = False,
    degree: int = 2,
    bits: Iterable[str | int] | None = None,
    grid: Grid | str | None = None,
    bitmask_def: PixelBitmask | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """Data-driven continuum pixels, in the spirit of The Cannon (Ness et al. 2015; Casey 2016).

    1. Unless ``normalised``, the spectra are pseudo-normalised (:func:`pseudo_normalise`).
    2. Per pixel p, a linear model ``f[n, p] = θ0[p] + Σ_l θ_l[p] · z[n, l]`` of the normalised flux
       versus the standardised labels ``z`` (mean 0, std 1) is fitted by inverse-variance weighted
       least squares (rejected pixels weight 0), all pixels in one batched solve.
    3. Each pixel is scored by ``sqrt((θ0 − 1)² + θᵀ C θ)``, C the label correlation matrix: the
       RMS departure of the model flux from 1 over the training labels. Continuum pixels have θ0
       ≈ 1 and no label dependence, so the smallest scores win.
    4. Per detector the ``n`` best-scoring pixels with ``|θ0 − 1| ≤ max_offset`` are selected,
       ``n = round(fraction · n_detector)`` or ``n_per_detector`` (one int or three).

    Parameters
    ----------
    flux, error, bitmask:
        (N, P) spectra as for :func:`continuum_normalise` (N ≥ L + 2).
    labels:
        (N, L) (or (N,)) labels in any units; rows with MISSING/NaN labels are not used.
    fraction, n_per_detector:
        How many pixels to take per detector (``n_per_detector`` wins when given).
    max_offset:
        Largest allowed ``|θ0 − 1|`` (``None``: no cut). When fewer pixels pass than asked for,
        the passing ones are returned with a warning.
    normalised:
        The input flux is already (pseudo-)normalised: skip step 1.
    degree, bits:
        Passed to :func:`pseudo_normalise`.

    Returns
    -------
    (P_out,) bool continuum mask on the output grid (APOGEE: ASPCAP).

    Raises
    ------
    InputDataError
        Bad shapes or labels, or a detector where fewer than ``degree + 1`` pixels qualify (the
        mask could not normalise that detector).
    """
    if kwargs:  # the American spelling of normalised, deprecated
        normalised = _normalised_keyword(normalised, kwargs)
    f, e, b, _ = as_batch(flux, error, bitmask)
    layout = segment_layout(f.shape[1], grid)
    if f.shape[0] < 2:
        raise InputDataError("select_continuum_pixels needs many labelled spectra, got fewer than 2")
    if not (0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    z, good = _clean_labels(labels, f.shape[0])
    if normalised:
        fa, ea, ba = gather_segments(f, e, b, slice(None), np.dtype(np.float64), layout)
        rej = ~usable_pixels(fa, ea, ba, reject_value(bits, bitmask_for_grid(layout.in_grid, bitmask_def)))
    else:
        fa, ea = pseudo_normalise(f, e, b, degree, bits=bits, on_failure="reject", grid=layout.in_grid,
                                  bitmask_def=bitmask_def)
        rej = is_rejected_error(ea)
    fa, ea, rej = fa[good].astype(np.float64), ea[good].astype(np.float64), rej[good]

    n_lab = z.shape[1]
    Z = np.hstack([np.ones((z.shape[0], 1)), z])  # (n, L+1)
    q = n_lab + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(rej, 0.0, 1.0 / (ea * ea))  # (n, P)
    fz = np.where(rej, 0.0, fa)
    outer = (Z[:, :, None] * Z[:, None, :]).reshape(-1, q * q)
    M = (w.T @ outer).reshape(-1, q, q)  # (P, q, q)
    rhs = (w * fz).T @ Z  # (P, q)
    n_used = np.count_nonzero(w > 0, axis=0)
    ok = n_used >= q + 1
    theta = np.full((fa.shape[1], q), np.nan)
    if ok.any():
        # near-singular systems (labels degenerate within the pixel's usable rows) give inf/NaN
        with np.errstate(all="ignore"):
            try:
                theta[ok] = np.linalg.solve(M[ok], rhs[ok, :, None])[..., 0]
            except np.linalg.LinAlgError:
                theta[ok] = (np.linalg.pinv(M[ok]) @ rhs[ok, :, None])[..., 0]
    C = np.corrcoef(z, rowvar=False).reshape(n_lab, n_lab)
    th = theta[:, 1:]
    score = np.sqrt((theta[:, 0] - 1.0) ** 2 + np.einsum("pi,ij,pj->p", th, C, th))
    if max_offset is not None:
        score = np.where(np.abs(theta[:, 0] - 1.0) <= max_offset, score, np.nan)
    score = np.where(np.isfinite(score), score, np.inf)

    slices = layout.out_slices
    names = layout.out_grid.segment_names
    if n_per_detector is None:
        wanted = [round(fraction * (sl.stop - sl.start)) for sl in slices]
    elif isinstance(n_per_detector, (int, np.integer)):
        wanted = [int(n_per_detector)] * len(slices)
    else:
        wanted = [int(v) for v in n_per_detector]
        if len(wanted) != len(slices):
            raise ValueError(f"n_per_detector needs one value per detector ({len(slices)})")
    mask = np.zeros(layout.out_grid.n_pixels, dtype=bool)
    for d, sl in enumerate(slices):
        s = score[sl]
        order = np.argsort(s, kind="stable")[: wanted[d]]
        order = order[np.isfinite(s[order])]
        if order.size < degree + 1:
            raise InputDataError(
                f"{names[d]} segment: only {order.size} pixels qualify as continuum "
                f"(|θ0 − 1| ≤ {max_offset}); need at least degree+1 = {degree + 1}"
            )
        if order.size < wanted[d]:
            warnings.warn(
                f"{names[d]} segment: only {order.size} of the {wanted[d]} requested pixels "
                f"have |θ0 − 1| ≤ {max_offset}",
                stacklevel=2,
            )
        mask[sl.start + order] = True
    return mask


def continuum_normalize(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated spelling of :func:`continuum_normalise` (same result, with a DeprecationWarning)."""
    warnings.warn("continuum_normalize is now continuum_normalise", DeprecationWarning, stacklevel=2)
    return continuum_normalise(*args, **kwargs)


def pseudo_normalize(*args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Deprecated spelling of :func:`pseudo_normalise` (same result, with a DeprecationWarning)."""
    warnings.warn("pseudo_normalize is now pseudo_normalise", DeprecationWarning, stacklevel=2)
    return pseudo_normalise(*args, **kwargs)
