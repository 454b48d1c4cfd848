"""Which pixels to reject, and what rejected pixels look like after preprocessing.

A pixel is *rejected* when any of these holds:

* its APOGEE_PIXMASK value has one of the reject bits set (default
  :data:`~starlabels.preprocess.bitmask.DEFAULT_REJECT_BITS`: bits 0–7 and SIG_SKYLINE, as astroNN;
  configurable by name or number);
* its flux or error is not finite (NaN/inf), or its error is ≤ 0;
* its error is ≥ :data:`BAD_PIXEL_ERROR` (so preprocessed output, whose rejected pixels carry that
  error, is recognised again when it is fed back in).

After preprocessing, rejected pixels never hold NaN: their flux is a neutral value (1 on the
continuum-normalised path, a detector median on the raw path) and their error is the large finite
constant :data:`BAD_PIXEL_ERROR`, i.e. weight ≈ 0 for any inverse-variance use.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.errors import InputDataError
from starlabels.preprocess.bitmask import bad_pixels
from starlabels.preprocess.grids import APSTAR, ASPCAP, get_grid
from starlabels.statistics import nanmedian_rows

#: Error given to rejected pixels after preprocessing (same units as the flux). Large but finite,
#: and representable in float32, so it survives casting and never produces NaN/inf.
BAD_PIXEL_ERROR: float = 1e10


def as_batch(
    flux, error, bitmask=None, *, n_pixels: Iterable[int] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """Validate and reshape spectra to 2-D.

    Parameters
    ----------
    flux, error:
        (P,) or (N, P) real arrays (flux in any units, error in the same units).
    bitmask:
        ``None`` or an integer array of the same shape (APOGEE_PIXMASK values).
    n_pixels:
        Allowed values of P; ``None`` allows any.

    Returns
    -------
    flux, error:
        (N, P) arrays (views where possible; not copied, dtype unchanged).
    bitmask:
        (N, P) integer array or ``None``.
    was_1d:
        True when the input was a single spectrum (callers then return 1-D output).

    Raises
    ------
    InputDataError
        Shapes differ, more than two dimensions, a non-numeric dtype, or a pixel count not in
        ``n_pixels``.
    """
    f = np.asarray(flux)
    e = np.asarray(error)
    for name, a in (("flux", f), ("error", e)):
        if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise InputDataError(f"{name} must be a real numeric array, got dtype {a.dtype}")
        if a.ndim not in (1, 2):
            raise InputDataError(f"{name} must be 1-D (P,) or 2-D (N, P), got shape {a.shape}")
    if f.shape != e.shape:
        raise InputDataError(f"flux shape {f.shape} and error shape {e.shape} differ")
    b = None
    if bitmask is not None:
        b = np.asarray(bitmask)
        if b.shape != f.shape:
            raise InputDataError(f"bitmask shape {b.shape} differs from flux shape {f.shape}")
        if not (np.issubdtype(b.dtype, np.integer) or b.dtype == np.bool_):
            raise InputDataError(f"bitmask must be an integer array, got dtype {b.dtype}")
    if n_pixels is not None:
        allowed = tuple(int(n) for n in n_pixels)
        if f.shape[-1] not in allowed:
            raise InputDataError(
                f"spectra have {f.shape[-1]} pixels; expected one of {allowed} "
                "for this grid"
            )
    was_1d = f.ndim == 1
    if was_1d:
        f, e = f[None, :], e[None, :]
        b = None if b is None else b[None, :]
    return f, e, b, was_1d


def rejected_pixels(
    flux, error, bitmask=None, bits: Iterable[str | int] | None = None,
    bitmask_def: PixelBitmask | None = None,
) -> np.ndarray:
    """Boolean array (same shape as ``flux``), True for pixels to reject.

    ``flux``, ``error`` (and ``bitmask``) must have the same shape (any shape). ``bits`` are
    bit names or numbers of ``bitmask_def`` (default APOGEE_PIXMASK) — default its default reject
    set; an empty list rejects on values only.
    """
    f = np.asarray(flux)
    e = np.asarray(error)
    if f.shape != e.shape:
        raise InputDataError(f"flux shape {f.shape} and error shape {e.shape} differ")
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(f) | ~np.isfinite(e) | (e <= 0) | (e >= BAD_PIXEL_ERROR)
    if bitmask is not None:
        b = np.asarray(bitmask)
        if b.shape != f.shape:
            raise InputDataError(f"bitmask shape {b.shape} differs from flux shape {f.shape}")
        bits = None if bits is None else list(bits)
        if bits is None or bits:
            try:
                bad |= bad_pixels(b, bits) if bitmask_def is None else bitmask_def.rejected(b, bits)
            except ValueError as exc:
                raise InputDataError(str(exc)) from None
    return bad


def is_rejected_error(error) -> np.ndarray:
    """True where a *preprocessed* error marks a rejected pixel (error ≥ ``BAD_PIXEL_ERROR``).

    Consumers that perturb spectra by their errors (noise realisations) must skip these pixels.
    """
    return np.asarray(error) >= BAD_PIXEL_ERROR


def fill_rejected(flux: np.ndarray, error: np.ndarray, rejected: np.ndarray, fill) -> None:
    """In place: ``flux[rejected] = fill`` (scalar or array broadcast to ``flux``) and
    ``error[rejected] = BAD_PIXEL_ERROR``."""
    if np.ndim(fill) == 0:
        flux[rejected] = fill
    else:
        np.copyto(flux, np.broadcast_to(fill, flux.shape), where=rejected)
    error[rejected] = BAD_PIXEL_ERROR


def check_has_valid_pixels(rejected: np.ndarray) -> None:
    """Raise ``InputDataError`` naming the first spectra (rows of the (N, P) ``rejected`` array)
    whose every pixel is rejected (e.g. NaN-only spectra)."""
    empty = np.flatnonzero(rejected.all(axis=-1))
    if empty.size:
        shown = ", ".join(str(i) for i in empty[:10]) + (" …" if empty.size > 10 else "")
        raise InputDataError(
            f"{empty.size} spectrum/spectra have no usable pixel (every flux/error is non-finite, "
            f"non-positive or masked): index {shown}"
        )


def raw_regions(grid: Grid) -> tuple[tuple[int, int], ...]:
    """Column ranges that count as each segment for the raw path's median repair: the segments
    widened to the middle of the gaps between them and to the array ends."""
    ranges = [(s.start, s.stop) for s in grid.segment_slices]
    cuts = [0] + [(a1 + b0) // 2 for (_, a1), (b0, _) in itertools.pairwise(ranges)]
    cuts.append(grid.n_pixels)
    return tuple((cuts[i], cuts[i + 1]) for i in range(len(ranges)))


#: apStar columns of APOGEE's detectors for the raw repair (split at the middle of the gaps).
APSTAR_RAW_REGIONS: tuple[tuple[int, int], ...] = raw_regions(APSTAR)


def _grid_for(n_pixels: int, grid: Grid | str | None) -> Grid:
    if grid is not None:
        g = get_grid(grid)
        if g.n_pixels != n_pixels:
            raise InputDataError(f"spectra have {n_pixels} pixels but grid {g.describe()} has {g.n_pixels}")
        return g
    if n_pixels in (APSTAR.n_pixels, ASPCAP.n_pixels):
        return get_grid(n_pixels)
    raise InputDataError(
        f"spectra have {n_pixels} pixels; without grid= only APOGEE's apStar ({APSTAR.n_pixels}) or ASPCAP "
        f"({ASPCAP.n_pixels}) grids are recognised — pass grid="
    )


def raw_flux(
    flux,
    error,
    bitmask=None,
    error_cap: float | None = 5.0,
    *,
    bits: Iterable[str | int] | None = None,
    grid: Grid | str | None = None,
    bitmask_def: PixelBitmask | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """APOGEE Net's input (Olney et al. 2020): raw flux with rejected pixels repaired, errors capped.

    Parameters
    ----------
    flux, error:
        (N, P) spectra on ``grid`` (default: APOGEE's apStar grid; its ASPCAP grid is accepted too),
        flux in the file's units (1e-17 erg/s/cm²/Å), error (1σ) in the same units.
    bitmask:
        Optional APOGEE_PIXMASK array of the same shape.
    error_cap:
        Usable pixels' errors are capped at ``error_cap`` × the spectrum's mean error, the mean
        taken over its usable pixels (APOGEE Net: 5). ``None`` disables the cap.
    bits:
        Bits that reject a pixel (default: the bitmask's default reject set).
    grid:
        The spectra's grid (any instrument's); ``None``: APOGEE's apStar or ASPCAP grid by pixel count.
    bitmask_def:
        The bitmask's definition (default APOGEE_PIXMASK).

    Returns
    -------
    flux, error:
        Same shape as the input, dtype float32 for float32 input, else float64. Rejected pixels
        (see module docstring) get the median flux of the usable pixels of their detector (apStar
        columns split at the middle of the detector gaps: :data:`APSTAR_RAW_REGIONS`; a detector
        with no usable pixel takes the whole spectrum's median) and error ``BAD_PIXEL_ERROR``.
        Never NaN.

    Raises
    ------
    InputDataError
        Wrong shapes, or a spectrum without any usable pixel (e.g. NaN-only).
    """
    if error_cap is not None and not error_cap > 0:
        raise InputDataError(f"error_cap must be > 0 or None, got {error_cap!r}")
    f, e, b, was_1d = as_batch(flux, error, bitmask)
    g = _grid_for(f.shape[1], grid)
    dtype = np.result_type(f.dtype, np.float32)
    rej = rejected_pixels(f, e, b, bits, bitmask_def)
    check_has_valid_pixels(rej)
    out_f = f.astype(dtype, copy=True)
    out_e = e.astype(dtype, copy=True)
    masked = np.where(rej, np.nan, f.astype(np.float64))
    # nanmedian_rows: NaN for a detector without usable pixels, with no warning to silence
    spectrum_median = nanmedian_rows(masked)
    fill = np.empty_like(masked)
    for a0, a1 in raw_regions(g):
        med = nanmedian_rows(masked[:, a0:a1])
        fill[:, a0:a1] = np.where(np.isnan(med), spectrum_median, med)[:, None]
    if error_cap is not None:
        ev = np.where(rej, 0.0, e.astype(np.float64))
        mean_err = ev.sum(axis=1) / np.count_nonzero(~rej, axis=1)
        np.minimum(out_e, (error_cap * mean_err)[:, None].astype(dtype), out=out_e, where=~rej)
    fill_rejected(out_f, out_e, rej, fill.astype(dtype))
    if was_1d:
        return out_f[0], out_e[0]
    return out_f, out_e
