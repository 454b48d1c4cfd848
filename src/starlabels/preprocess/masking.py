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

from starlabels.core.apogee import PIXMASK
from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.errors import InputDataError
from starlabels.preprocess.grids import APSTAR, ASPCAP, get_grid
from starlabels.statistics import count_per_row, middle_values_rows

#: Error given to rejected pixels after preprocessing (same units as the flux). Large but finite,
#: and representable in float32, so it survives casting and never produces NaN/inf.
BAD_PIXEL_ERROR: float = 1e10

#: Values per block of :func:`rejected_pixels` (its temporaries stay in cache).
_BLOCK = 1 << 18


def same_shape_arrays(flux, error, bitmask=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``flux``, ``error`` (and ``bitmask``, or None) as arrays (not copied), checked to have one
    shape (any shape): :class:`~starlabels.errors.InputDataError` naming both shapes otherwise."""
    f = np.asarray(flux)
    e = np.asarray(error)
    if f.shape != e.shape:
        raise InputDataError(f"flux shape {f.shape} and error shape {e.shape} differ")
    b = None if bitmask is None else np.asarray(bitmask)
    if b is not None and b.shape != f.shape:
        raise InputDataError(f"bitmask shape {b.shape} differs from flux shape {f.shape}")
    return f, e, b


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
    f, e, b = same_shape_arrays(f, e, bitmask)
    if b is not None and not (np.issubdtype(b.dtype, np.integer) or b.dtype == np.bool_):
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
    f, e, b = same_shape_arrays(flux, error, bitmask)
    if b is not None:
        bits = None if bits is None else list(bits)
        if bits is not None and not bits:
            b = None
        else:
            rule = PIXMASK if bitmask_def is None else bitmask_def
            try:
                rule.value(bits)  # unknown names fail here, before any work
            except ValueError as exc:
                raise InputDataError(str(exc)) from None
    # usable = finite flux and 0 < error < BAD_PIXEL_ERROR (False for NaN/inf errors), written
    # block by block into the output with cache-sized temporaries (no full-size temporary)
    flat_f, flat_e = f.reshape(-1), e.reshape(-1)
    flat_b = None if b is None else b.reshape(-1)
    bad = np.empty(flat_f.shape, dtype=bool)
    tmp = np.empty(min(_BLOCK, bad.size), dtype=bool)
    with np.errstate(invalid="ignore"):
        for a in range(0, bad.size, _BLOCK):
            z = min(bad.size, a + _BLOCK)
            out, t = bad[a:z], tmp[: z - a]
            np.greater(flat_e[a:z], 0, out=out)
            out &= np.less(flat_e[a:z], BAD_PIXEL_ERROR, out=t)
            out &= np.isfinite(flat_f[a:z], out=t)
            np.logical_not(out, out=out)
            if flat_b is not None:
                out |= rule.rejected(flat_b[a:z], bits)
    return bad.reshape(f.shape)


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
    rejected: np.ndarray | None = None,
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
    rejected:
        Optional (N, P) bool array ``rejected_pixels(flux, error, bitmask, bits, bitmask_def)``
        when the caller has computed it already (:func:`starlabels.inference.prepare.prepare_chunk`
        needs it for the SNR too); then ``bitmask`` is not looked at again.

    Returns
    -------
    flux, error:
        Same shape as the input, dtype float32 for float32 input, else float64. Rejected pixels
        (see module docstring) get the median flux of the usable pixels of their detector (apStar
        columns split at the middle of the detector gaps: :data:`APSTAR_RAW_REGIONS`; a detector
        with no usable pixel takes the whole spectrum's median) and error ``BAD_PIXEL_ERROR``.
        Never NaN. The medians are exact (the mean of the two middle values taken in float64).

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
    if rejected is None:
        rej = rejected_pixels(f, e, b, bits, bitmask_def)
    else:
        if np.shape(rejected) != np.shape(flux):
            raise InputDataError(
                f"rejected shape {np.shape(rejected)} differs from flux shape {np.shape(flux)}"
            )
        rej = np.asarray(rejected, dtype=bool).reshape(f.shape)
    check_has_valid_pixels(rej)
    out_f = f.astype(dtype, copy=True)
    for (a0, a1), med in zip(raw_regions(g), _region_medians(f, rej, raw_regions(g)), strict=True):
        np.copyto(out_f[:, a0:a1], med.astype(dtype)[:, None], where=rej[:, a0:a1])
    if error_cap is not None:
        cap = (error_cap * usable_mean(e, rej))[:, None].astype(dtype)
        with np.errstate(invalid="ignore"):  # NaN errors of rejected pixels: overwritten below
            out_e = np.minimum(e if e.dtype == dtype else e.astype(dtype), cap)
    else:
        out_e = e.astype(dtype, copy=True)
    np.copyto(out_e, dtype.type(BAD_PIXEL_ERROR), where=rej)
    if was_1d:
        return out_f[0], out_e[0]
    return out_f, out_e


def _region_medians(
    f: np.ndarray, rej: np.ndarray, regions: Iterable[tuple[int, int]]
) -> list[np.ndarray]:
    """(N,) float64 median of the usable flux of each region's columns, or of the whole spectrum for
    a region without a usable pixel (``rej`` must leave every row one). The middle values are
    selected in the flux's own dtype (exact) and averaged in float64."""
    out = []
    empty_rows = np.zeros(f.shape[0], dtype=bool)
    for a0, a1 in regions:
        med = _median64(f[:, a0:a1], rej[:, a0:a1])
        empty_rows |= np.isnan(med)
        out.append(med)
    if empty_rows.any():
        spectrum = _median64(f[empty_rows], rej[empty_rows])
        for med in out:
            med[empty_rows] = np.where(np.isnan(med[empty_rows]), spectrum, med[empty_rows])
    return out


def _median64(values: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """(N,) median of each row's unrejected values as float64 (NaN without one): the median of the
    row's values cast to float64, i.e. ``np.nanmedian`` of that cast, without the float64 copy.
    Unrejected values are finite (:func:`rejected_pixels` rejects the others). A block of rows at
    a time through one reused work buffer (no page faults for a chunk-sized copy)."""
    n, p = values.shape
    dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.dtype(np.float64)
    rows = max(1, _MEDIAN_BLOCK_VALUES // max(p, 1))
    buffer = np.empty((min(rows, n), p), dtype)
    low, high = np.empty(n, dtype), np.empty(n, dtype)
    count = np.empty(n, np.int64)
    for a in range(0, n, rows):
        block = slice(a, min(n, a + rows))
        work = buffer[: block.stop - a]
        work[...] = values[block]
        low[block], high[block], count[block] = middle_values_rows(
            work, rejected[block], overwrite_input=True, nan_free=True
        )
    low64, high64 = low.astype(np.float64), high.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # as np.nanmedian: float64 overflow gives inf
        med = np.where(count % 2 == 1, high64, (low64 + high64) / 2)
    med[count == 0] = np.nan
    return med


#: Values per block of :func:`_median64` (4 MiB of float32).
_MEDIAN_BLOCK_VALUES = 1 << 20


#: Values in the float64 work block of :func:`usable_mean` (4 MiB: it stays in cache).
_MEAN_BLOCK_VALUES = 1 << 19


def usable_mean(values: np.ndarray, rejected: np.ndarray) -> np.ndarray:
    """(N,) float64 mean of each row of (N, P) ``values`` over its unrejected entries (every row
    needs one). Bit for bit ``np.where(rejected, 0.0, values.astype(np.float64)).sum(axis=1) /
    (~rejected).sum(axis=1)``: the same float64 row sums (numpy's pairwise summation over
    contiguous float64 rows), built one cache-sized block of rows at a time instead of from a
    float64 copy of the whole array."""
    n, p = values.shape
    total = np.empty(n)
    rows = max(1, _MEAN_BLOCK_VALUES // max(p, 1))
    block = np.empty((min(rows, n), p))
    for a in range(0, n, rows):
        z = min(n, a + rows) - a
        work = block[:z]
        work[...] = values[a : a + z]
        np.copyto(work, 0.0, where=rejected[a : a + z])
        np.add.reduce(work, axis=1, out=total[a : a + z])
    return total / (p - count_per_row(rejected))
