"""Continuum normalisation of APOGEE spectra (astroNN §3, after The Cannon 2, Casey et al. 2016).

Each detector (blue, green, red; :attr:`starlabels.preprocess.grids.ASPCAP.segment_slices`) is
normalised separately: a Chebyshev polynomial of degree ``degree`` (2 by default) in the coordinate
``x = linspace(-1, 1, n)`` over the detector's ASPCAP-grid pixels (log-linear in wavelength, so
``x`` is ``log λ`` scaled to [−1, 1]) is fitted to the flux of the *continuum pixels* by weighted
least squares, each squared residual weighted by ``1/σ²`` (rejected pixels: weight 0); flux and
error are then divided by it.

The fit is batched: for one detector with Chebyshev design matrix ``A[p, j] = T_j(x_p)``
(n_continuum, k), weights ``W`` (N, n_continuum) and fluxes ``F`` the normal equations of all N
spectra, ``M[s] c[s] = b[s]``, are

    M[s] = Σ_p W[s, p] · A[p]ᵀ A[p]       built from the moments m[s, q] = Σ_p W[s, p] T_q(x_p),
                                           q ≤ 2·degree (one GEMM), as M_ij = (m_{i+j} + m_{|i−j|})/2
    b[s] = Σ_p W[s, p] · F[s, p] · A[p]    (one GEMM: (W·F) @ A)

and all detectors of all spectra are solved by one batched ``np.linalg.solve``. Spectra are
processed in row chunks (vectorised within a chunk, sized so the temporaries stay in cache and BLAS
stays single-threaded); there is no per-spectrum Python loop.

Continuum pixels come from a file (:func:`load_continuum_mask`, e.g. the DR17 mask
``continuum_mask_dr17_7514.npy``) or from the data (:func:`select_continuum_pixels`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.polynomial import chebyshev

from starlabels.constants import MISSING
from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.core.instrument import find_grid
from starlabels.errors import InputDataError, InputFileError
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, bits_to_value
from starlabels.preprocess.grids import APSTAR, ASPCAP, GRIDS, convert, get_grid, pixel_ranges
from starlabels.preprocess.masking import BAD_PIXEL_ERROR, as_batch, is_rejected_error

__all__ = [
    "ContinuumFit",
    "continuum_normalize",
    "fit_continuum",
    "load_continuum_mask",
    "mask_from_indices",
    "pseudo_normalize",
    "select_continuum_pixels",
]

#: Rows per chunk are chosen so that every matrix product of a chunk has m·n·k ≤ this: OpenBLAS
#: runs such products single-threaded. Multithreading gains nothing on these skinny products and,
#: on a busy machine, spinning BLAS threads made the whole run 3–10× slower (measured). Small
#: chunks also keep the temporaries in cache.
BLAS_SINGLE_THREAD_MNK = 2**18
#: Bounds on the rows per chunk.
CHUNK_ROWS_MIN, CHUNK_ROWS_MAX = 4, 64

OnFailure = Literal["raise", "reject"]
MaskLike = np.ndarray | str | Path | None


# --------------------------------------------------------------------------------------------
# continuum masks
# --------------------------------------------------------------------------------------------


def _mask_to_grid(mask: np.ndarray, what: str, grid: Grid = ASPCAP) -> np.ndarray:
    """(n,) bool on ``grid`` or on a built-in grid that is a sub- or super-grid of it → (P,) bool on
    ``grid`` (pixels the mask's grid lacks: False)."""
    n = mask.shape[0]
    if n == grid.n_pixels:
        return mask.astype(bool, copy=True)
    for other in GRIDS.values():
        if other.n_pixels == n:
            try:
                return convert(mask, other, grid, fill=0).astype(bool)
            except ValueError:
                continue
    related = [f"{g.n_pixels} ({g.name})" for g in GRIDS.values()
               if g.positions_in(grid) is not None or grid.positions_in(g) is not None]
    raise InputDataError(
        f"{what} has {n} pixels; expected {grid.n_pixels} (grid {grid.name!r})"
        + (f" or a related grid: {', '.join(related)}" if related else "")
    )


def load_continuum_mask(path: str | Path, key: str | None = None, grid: Grid | str = ASPCAP) -> np.ndarray:
    """Load a boolean continuum-pixel mask from ``.npy`` or ``.npz``.

    Parameters
    ----------
    path:
        File holding a 1-D boolean (or 0/1) array on ``grid`` or on a built-in grid that is a sub- or
        super-grid of it (for APOGEE: the ASPCAP, apStar or Payne grid). For ``.npz`` the array is
        ``key``, else the only array in the file, else the only 1-D array of a known grid length.
    key:
        Name of the array inside an ``.npz`` file.

    grid:
        Grid to return the mask on (default APOGEE's ASPCAP grid); a mask stored on a sub- or
        super-grid of it is converted.

    Returns
    -------
    (P,) bool on ``grid`` (pixels the file's grid lacks are False).

    Raises
    ------
    InputFileError
        Missing/unreadable file, no suitable array, wrong length or non-boolean values.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, "continuum mask file does not exist")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputFileError(p, f"cannot read as .npy/.npz: {exc}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if key is not None:
                if key not in keys:
                    raise InputFileError(p, f"no array {key!r} (has {keys})")
                arr = loaded[key]
            elif len(keys) == 1:
                arr = loaded[keys[0]]
            else:
                sizes = {g.n_pixels for g in GRIDS.values()}
                cands = [k for k in keys if loaded[k].ndim == 1 and loaded[k].shape[0] in sizes]
                if len(cands) != 1:
                    raise InputFileError(p, f"several arrays {keys}; pass key= to choose one")
                arr = loaded[cands[0]]
    else:
        arr = loaded
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise InputFileError(p, f"continuum mask must be 1-D, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all()):
            raise InputFileError(p, f"continuum mask must be boolean (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    try:
        return _mask_to_grid(arr, "continuum mask", get_grid(grid))
    except InputDataError as exc:
        raise InputFileError(p, str(exc)) from None


def mask_from_indices(indices: Iterable[int], n_pixels: int = ASPCAP.n_pixels) -> np.ndarray:
    """(n_pixels,) bool, True at ``indices`` (pixel indices on the ASPCAP grid by default)."""
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n_pixels):
        raise InputDataError(f"continuum pixel indices must be integers in [0, {n_pixels})")
    mask = np.zeros(n_pixels, dtype=bool)
    mask[idx.astype(np.int64)] = True
    return mask


def _resolve_mask(continuum_mask: MaskLike, grid: Grid = ASPCAP) -> np.ndarray | None:
    """None, a path, or a bool array on ``grid`` or a related built-in grid → None or (P,) bool."""
    if continuum_mask is None:
        return None
    if isinstance(continuum_mask, (str, Path)):
        return load_continuum_mask(continuum_mask, grid=grid)
    m = np.asarray(continuum_mask)
    if m.dtype != np.bool_:
        raise InputDataError(
            f"continuum_mask must be a boolean array (got dtype {m.dtype}); "
            "for pixel indices use mask_from_indices()"
        )
    if m.ndim != 1:
        raise InputDataError(f"continuum_mask must be 1-D, got shape {m.shape}")
    return _mask_to_grid(m, "continuum_mask", grid)


# --------------------------------------------------------------------------------------------
# batched weighted Chebyshev fits
# --------------------------------------------------------------------------------------------


def _mm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` (BLAS); callers keep the sizes under ``BLAS_SINGLE_THREAD_MNK``."""
    return np.matmul(a, b, out=out)


class _ChebDesign:
    """Precomputed Chebyshev design matrices for the segments of a gap-free grid (``slices``).

    ``fit_cols`` (n_fit,) are the ASPCAP-grid pixels that may enter the fits (continuum pixels, or
    every pixel), detector d owning ``fit_cols[bounds[d]:bounds[d+1]]``. For detector d, ``Vf[d]``
    (n_fit_d, k) holds T_j(x) at its fit pixels, ``Vm[d]`` (n_fit_d, 2k−1) T_q(x) for q ≤ 2·degree
    there, and ``Vt[d]`` (k, n_d) T_j(x) at all its pixels.

    The normal matrix needs only the 2k−1 weighted moments ``m_q = Σ_p w_p T_q(x_p)``, because
    ``T_i T_j = (T_{i+j} + T_{|i−j|}) / 2``: ``M_ij = (m_{i+j} + m_{|i−j|}) / 2``.
    """

    def __init__(self, mask: np.ndarray | None, degree: int, slices: tuple[slice, ...]):
        if isinstance(degree, bool) or int(degree) != degree or degree < 0:
            raise InputDataError(f"degree must be a non-negative integer, got {degree!r}")
        self.degree = int(degree)
        self.k = k = self.degree + 1
        self.slices = slices
        cols, self.Vt, self.Vf, self.Vm, self.bounds = [], [], [], [], [0]
        for sl in self.slices:
            x = np.linspace(-1.0, 1.0, sl.stop - sl.start)
            V = chebyshev.chebvander(x, self.degree)
            self.Vt.append(np.ascontiguousarray(V.T))
            idx = np.arange(x.size) if mask is None else np.flatnonzero(mask[sl])
            cols.append(sl.start + idx)
            self.Vf.append(np.ascontiguousarray(V[idx]))
            self.Vm.append(chebyshev.chebvander(x[idx], 2 * self.degree))
            self.bounds.append(self.bounds[-1] + idx.size)
        self.fit_cols = np.concatenate(cols)
        i, j = np.indices((k, k))
        self._sum_idx, self._diff_idx = i + j, np.abs(i - j)

    @property
    def chunk_rows(self) -> int:
        """Rows per chunk keeping every product of a chunk under ``BLAS_SINGLE_THREAD_MNK``."""
        widest = max(
            max(v.shape[1] for v in self.Vt) * self.k,  # evaluate: (n, k) @ (k, n_d)
            max(v.shape[0] for v in self.Vm) * (2 * self.k - 1),  # moments: (n, n_fit_d) @ (n_fit_d, 2k-1)
        )
        return int(np.clip(BLAS_SINGLE_THREAD_MNK // max(widest, 1), CHUNK_ROWS_MIN, CHUNK_ROWS_MAX))

    def fit(self, flux: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted least-squares fits of all rows and detectors at once.

        ``flux``, ``weight``: (n, n_fit) float64 at the fit pixels, ``flux`` finite (0 is fine)
        wherever ``weight`` is 0. Returns ``coef`` (n, 3, k) Chebyshev coefficients (NaN where a fit
        is impossible: fewer than k pixels with weight > 0) and ``n_used`` (n, 3) int.
        """
        n, k, n_det = flux.shape[0], self.k, len(self.slices)
        moments = np.empty((n, n_det, 2 * k - 1))
        rhs = np.empty((n, n_det, k))
        n_used = np.empty((n, n_det), dtype=np.int64)
        wf = weight * flux
        for d in range(n_det):
            seg = slice(self.bounds[d], self.bounds[d + 1])
            _mm(weight[:, seg], self.Vm[d], out=moments[:, d])  # m_q = Σ_p w T_q(x_p)
            _mm(wf[:, seg], self.Vf[d], out=rhs[:, d])  # Σ_p w f T_j(x_p)
            n_used[:, d] = np.count_nonzero(weight[:, seg], axis=1)
        M = 0.5 * (moments[..., self._sum_idx] + moments[..., self._diff_idx])  # (n, 3, k, k)
        failed = n_used < k
        if failed.any():
            M[failed] = np.eye(k)
            rhs[failed] = 0.0
        with np.errstate(all="ignore"):
            try:
                coef = np.linalg.solve(M, rhs[..., None])[..., 0]
            except np.linalg.LinAlgError:  # an exactly singular system (degenerate weights)
                coef = (np.linalg.pinv(M) @ rhs[..., None])[..., 0]
        failed |= ~np.isfinite(coef).all(axis=-1)
        coef[failed] = np.nan
        return coef, n_used

    def evaluate_fit_pixels(self, coef: np.ndarray) -> np.ndarray:
        """(n, 3, k) → (n, n_fit) continuum at the fit pixels only."""
        c = np.nan_to_num(coef, nan=0.0)
        return np.hstack([_mm(c[:, d], self.Vf[d].T) for d in range(len(self.slices))])


class _Layout:
    """Where the segments of an input grid sit in the input array and in the gap-free output.

    ``in_grid``: grid of the input; ``out_grid``: its segment grid (gaps deleted; the input grid
    itself when it has no gaps; a built-in grid with the same wavelengths is used by name, so APOGEE's
    apStar input gives the ASPCAP grid). ``in_ranges``: column range of each segment in the input;
    ``out_slices``: the same segments in the output.
    """

    def __init__(self, in_grid: Grid):
        self.in_grid = in_grid
        self.has_gaps = not bool(in_grid.in_segments().all())
        out = in_grid.segment_grid() if self.has_gaps else in_grid
        known = find_grid(out)
        self.out_grid = known[0].get_grid(known[1]) if known is not None else out
        self.in_ranges = pixel_ranges(in_grid)
        self.out_slices = self.out_grid.segment_slices


def _layout(n_pixels: int, grid: Grid | str | None) -> _Layout:
    """The layout of input arrays with ``n_pixels`` columns on ``grid`` (None: APOGEE's apStar or
    ASPCAP grid by pixel count, as before grids were data)."""
    if grid is None:
        if n_pixels == APSTAR.n_pixels:
            return _Layout(APSTAR)
        if n_pixels == ASPCAP.n_pixels:
            return _Layout(ASPCAP)
        raise InputDataError(
            f"spectra have {n_pixels} pixels; without grid= only APOGEE's apStar ({APSTAR.n_pixels}) or "
            f"ASPCAP ({ASPCAP.n_pixels}) grids are recognised — pass grid= (a Grid or an instrument's "
            "grid name)"
        )
    g = get_grid(grid)
    if g.n_pixels != n_pixels:
        raise InputDataError(f"spectra have {n_pixels} pixels but grid {g.describe()} has {g.n_pixels}")
    return _Layout(g)


def _gather_chunk(
    f: np.ndarray, e: np.ndarray, b: np.ndarray | None, rows: slice, dtype: np.dtype, layout: _Layout
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows ``rows`` of (N, P_in) arrays → (n, P_out) arrays on the gap-free output grid, flux and
    error of ``dtype``: contiguous copies for input with gaps (one sequential read, then everything
    runs in cache), views where possible for gap-free input."""
    if layout.has_gaps:
        n = len(range(*rows.indices(f.shape[0])))
        P = layout.out_grid.n_pixels
        fa, ea = np.empty((n, P), dtype), np.empty((n, P), dtype)
        ba = None if b is None else np.empty((n, P), b.dtype)
        for sl, (a0, a1) in zip(layout.out_slices, layout.in_ranges, strict=True):
            fa[:, sl] = f[rows, a0:a1]
            ea[:, sl] = e[rows, a0:a1]
            if ba is not None:
                ba[:, sl] = b[rows, a0:a1]
        return fa, ea, ba
    fa, ea, ba = f[rows], e[rows], None if b is None else b[rows]
    return fa.astype(dtype, copy=False), ea.astype(dtype, copy=False), ba


def _good_pixels(fa: np.ndarray, ea: np.ndarray, ba: np.ndarray | None, reject_value: int) -> np.ndarray:
    """Bool array, True for usable pixels: the complement of
    :func:`starlabels.preprocess.masking.rejected_pixels` (same rule, fewer passes)."""
    with np.errstate(invalid="ignore"):
        good = ea > 0
        good &= ea < BAD_PIXEL_ERROR  # also False for NaN/inf errors
    good &= np.isfinite(fa)
    if ba is not None and reject_value:
        good &= (ba & reject_value) == 0
    return good


def _failure_message(
    bad: np.ndarray, n_used: np.ndarray, k: int, row0: int, what: str, segments: tuple[str, ...]
) -> str:
    rows, dets = np.nonzero(bad)
    parts = [
        f"spectrum {row0 + r}, {segments[d]} segment ({n_used[r, d]} usable {what} pixels"
        + (", degenerate weights" if n_used[r, d] >= k else "") + ")"
        for r, d in zip(rows[:5], dets[:5], strict=True)
    ]
    more = f" and {rows.size - 5} more" if rows.size > 5 else ""
    return (
        f"continuum fit impossible (needs at least degree+1 = {k} usable {what} pixels) in: "
        + "; ".join(parts) + more
        + " (unusable pixels are masked, non-finite or have error ≤ 0; pass on_failure='reject' "
        "to get that segment flagged as rejected pixels instead)"
    )


def _fit_chunk(
    fc: np.ndarray,
    ec: np.ndarray,
    gc: np.ndarray,
    design: _ChebDesign,
    *,
    on_failure: OnFailure,
    row0: int,
    what: str,
    segments: tuple[str, ...],
    clip: tuple[int, float, float | None] | None = None,
) -> np.ndarray:
    """Fit the continua of one chunk of n spectra from their fit pixels.

    ``fc``, ``ec`` (n, n_fit) float64 flux and error at ``design.fit_cols``; ``gc`` (n, n_fit) bool
    marks the usable ones. Returns ``coef`` (n, 3, k), NaN for detectors whose fit is impossible
    (raises ``InputDataError`` instead when ``on_failure == "raise"``).
    """
    # weights 1/σ², scaled per spectrum by its smallest σ² (the solution does not change; the
    # scaling keeps tiny or huge errors from overflowing)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        e_min = np.min(np.where(gc, ec, np.inf), axis=1, keepdims=True)
        r = np.where(gc, e_min / ec, 0.0)
    w = r * r
    fz = np.where(gc, fc, 0.0)
    coef, n_used = design.fit(fz, w)
    failed = np.isnan(coef[..., 0])
    if failed.any() and on_failure == "raise":
        raise InputDataError(_failure_message(failed, n_used, design.k, row0, what, segments))
    if clip is not None:
        n_iter, low, high = clip
        for _ in range(n_iter):
            cont = design.evaluate_fit_pixels(coef)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = (fc - cont) / ec  # residual in units of the pixel's noise
                keep = gc & (r > -low)
                if high is not None:
                    keep &= r < high
            coef_new, n_new = design.fit(fz, np.where(keep, w, 0.0))
            # keep the previous fit where clipping left too few pixels
            coef = np.where((n_new >= design.k)[..., None], coef_new, coef)
    return coef


def _check_on_failure(on_failure: str) -> None:
    if on_failure not in ("raise", "reject"):
        raise ValueError(f"on_failure must be 'raise' or 'reject', got {on_failure!r}")


def _bitmask_of(grid: Grid, bitmask_def: PixelBitmask | None) -> PixelBitmask | None:
    """The bitmask definition for spectra on ``grid``: ``bitmask_def``, else the instrument's that owns
    the grid, else None (APOGEE_PIXMASK, as before grids were data)."""
    if bitmask_def is not None:
        return bitmask_def
    known = find_grid(grid)
    return None if known is None else known[0].bitmask()


def _reject_value(bits: Iterable[str | int] | None, bitmask_def: PixelBitmask | None = None) -> int:
    try:
        if bitmask_def is None:
            return DEFAULT_REJECT_VALUE if bits is None else bits_to_value(bits)
        return bitmask_def.value(None if bits is None else list(bits))
    except ValueError as exc:
        raise InputDataError(str(exc)) from None


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


class ContinuumFit(tuple):
    """``(continuum, coefficients, rejected)`` from :func:`fit_continuum`."""

    __slots__ = ()

    def __new__(cls, continuum: np.ndarray, coefficients: np.ndarray, rejected: np.ndarray):
        return super().__new__(cls, (continuum, coefficients, rejected))

    @property
    def continuum(self) -> np.ndarray:
        """(N, P_out) float64 fitted continuum on the output grid (flux units); NaN over segments
        whose fit was impossible."""
        return self[0]

    @property
    def coefficients(self) -> np.ndarray:
        """(N, 3, degree+1) Chebyshev coefficients per detector (blue, green, red); NaN where the
        fit was impossible."""
        return self[1]

    @property
    def rejected(self) -> np.ndarray:
        """(N, P_out) bool: rejected pixels (bitmask, bad values, failed segment, continuum ≤ 0)."""
        return self[2]


def _run(
    flux, error, bitmask, continuum_mask, degree, bits, on_failure, clip, what, keep_fit=False,
    grid=None, bitmask_def=None, out=None,
):
    """Shared driver: validate, then normalise chunk by chunk.

    Per chunk of rows: copy the segments to the gap-free output grid, find usable pixels, fit all
    continua at once from the fit pixels, then per segment evaluate the continuum and write
    ``flux/continuum`` and ``error/continuum`` into the output; finally fill rejected pixels.

    Returns ``(flux, error, was_1d, fit, layout)`` with ``fit`` a :class:`ContinuumFit` when
    ``keep_fit``.
    """
    _check_on_failure(on_failure)
    f, e, b, was_1d = as_batch(flux, error, bitmask)
    layout = _layout(f.shape[1], grid)
    out_grid = layout.out_grid
    reject_value = _reject_value(bits, _bitmask_of(layout.in_grid, bitmask_def))
    design = _ChebDesign(_resolve_mask(continuum_mask, out_grid), degree, layout.out_slices)
    n = f.shape[0]
    names = out_grid.segment_names
    dtype = np.result_type(f.dtype, np.float32)
    out_f, out_e = _output_arrays(out, (n, out_grid.n_pixels), dtype)
    if keep_fit:
        conts = np.empty((n, out_grid.n_pixels))
        coefs = np.empty((n, len(names), design.k))
        rejected = np.empty((n, out_grid.n_pixels), dtype=bool)
    step = design.chunk_rows
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        fa, ea, _ = _gather_chunk(f, e, None, rows, dtype, layout)
        good = _good_pixels(fa, ea, None, reject_value)
        if b is not None and reject_value:  # straight from views of the bitmask, no copy
            for sl, (a0, a1) in zip(design.slices, layout.in_ranges, strict=True):
                good[:, sl] &= (b[rows, a0:a1] & reject_value) == 0
        cols = design.fit_cols
        coef = _fit_chunk(
            fa[:, cols].astype(np.float64), ea[:, cols].astype(np.float64), good[:, cols], design,
            on_failure=on_failure, row0=start, what=what, clip=clip, segments=names,
        )
        c = np.nan_to_num(coef, nan=0.0)  # failed segments: continuum 0 → rejected below
        of, oe = out_f[rows], out_e[rows]
        for d, sl in enumerate(design.slices):
            cont = _mm(c[:, d], design.Vt[d])  # (n, n_d) float64
            good[:, sl] &= cont > 0
            cd = cont.astype(dtype, copy=False)
            try:  # overflow (a continuum ~0 under a finite flux) is rare: check only when it happens
                with np.errstate(divide="ignore", invalid="ignore", over="raise"):
                    np.divide(fa[:, sl], cd, out=of[:, sl])
                    np.divide(ea[:, sl], cd, out=oe[:, sl])
            except FloatingPointError:
                with np.errstate(all="ignore"):
                    np.divide(fa[:, sl], cd, out=of[:, sl])
                    np.divide(ea[:, sl], cd, out=oe[:, sl])
                good[:, sl] &= np.isfinite(of[:, sl]) & np.isfinite(oe[:, sl])
            if keep_fit:
                cont[np.isnan(coef[:, d, 0])] = np.nan
                conts[rows, sl] = cont
        bad = ~good
        np.copyto(of, 1.0, where=bad)
        np.copyto(oe, BAD_PIXEL_ERROR, where=bad)
        if keep_fit:
            coefs[rows], rejected[rows] = coef, bad
    fit = ContinuumFit(conts, coefs, rejected) if keep_fit else None
    return out_f, out_e, was_1d, fit, layout


def _output_arrays(out, shape: tuple[int, int], dtype) -> tuple[np.ndarray, np.ndarray]:
    """New (flux, error) output arrays, or the caller's ``out`` pair after checking it fits."""
    if out is None:
        return np.empty(shape, dtype=dtype), np.empty(shape, dtype=dtype)
    try:
        out_f, out_e = out
    except (TypeError, ValueError):
        raise InputDataError("out must be a (flux, error) pair of arrays") from None
    for name, a in (("flux", out_f), ("error", out_e)):
        if not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype \
                or not a.flags.c_contiguous or not a.flags.writeable:
            raise InputDataError(
                f"out {name} array must be a writeable C-contiguous {np.dtype(dtype).name} array "
                f"shaped {shape}, got {getattr(a, 'dtype', type(a).__name__)} {getattr(a, 'shape', '')}"
            )
    if np.shares_memory(out_f, out_e):
        raise InputDataError("out flux and error arrays must not overlap")
    return out_f, out_e


def output_grid(grid: Grid | str) -> Grid:
    """The grid continuum-normalised spectra come out on for input on ``grid`` (its segments with the
    gaps deleted; APOGEE's apStar grid gives the ASPCAP grid)."""
    return _Layout(get_grid(grid)).out_grid


def continuum_normalize(
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
    out_f, out_e, was_1d, _, _ = _run(
        flux, error, bitmask, continuum_mask, degree, bits, on_failure, None, "continuum",
        grid=grid, bitmask_def=bitmask_def, out=out,
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
    """The continuum :func:`continuum_normalize` divides by, with its coefficients.

    Same arguments as :func:`continuum_normalize`. Returns a :class:`ContinuumFit`
    ``(continuum (N, P_out) float64, coefficients (N, n_segments, degree+1), rejected (N, P_out) bool)``;
    always 2-D. The coefficients are Chebyshev coefficients (``numpy.polynomial.chebyshev``
    convention) in ``x = linspace(-1, 1, n_detector)`` over each detector's ASPCAP-grid pixels.
    """
    return _run(
        flux, error, bitmask, continuum_mask, degree, bits, on_failure, None, "continuum",
        keep_fit=True, grid=grid, bitmask_def=bitmask_def,
    )[3]


def pseudo_normalize(
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

    Per detector a Chebyshev polynomial (as :func:`continuum_normalize`) is fitted to all usable
    pixels, then refitted ``n_iter`` times to the pixels whose residual in units of their noise,
    ``(f − c)/σ``, is above ``−low`` (and below ``high`` when given; by default nothing is clipped
    above, since the first fit sits below the continuum and spikes are in the bitmask).
    Absorption lines deeper than ~``low`` σ are dropped, so the fit climbs to the upper envelope
    (the pseudo-continuum; on pure noise the clipping biases it up by ~0.15 σ with ``low=1.5``).
    Inputs, outputs and ``on_failure`` as :func:`continuum_normalize`.
    """
    if n_iter < 0 or low <= 0 or (high is not None and high <= 0):
        raise ValueError("n_iter must be ≥ 0 and low, high > 0")
    out_f, out_e, was_1d, _, _ = _run(
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


def select_continuum_pixels(
    flux,
    error,
    labels,
    bitmask=None,
    *,
    fraction: float = 0.07,
    n_per_detector: int | Iterable[int] | None = None,
    max_offset: float | None = 0.02,
    normalized: bool = False,
    degree: int = 2,
    bits: Iterable[str | int] | None = None,
    grid: Grid | str | None = None,
    bitmask_def: PixelBitmask | None = None,
) -> np.ndarray:
    """Data-driven continuum pixels, in the spirit of The Cannon (Ness et al. 2015; Casey 2016).

    1. Unless ``normalized``, the spectra are pseudo-normalised (:func:`pseudo_normalize`).
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
        (N, P) spectra as for :func:`continuum_normalize` (N ≥ L + 2).
    labels:
        (N, L) (or (N,)) labels in any units; rows with MISSING/NaN labels are not used.
    fraction, n_per_detector:
        How many pixels to take per detector (``n_per_detector`` wins when given).
    max_offset:
        Largest allowed ``|θ0 − 1|`` (``None``: no cut). When fewer pixels pass than asked for,
        the passing ones are returned with a warning.
    normalized:
        The input flux is already (pseudo-)normalised: skip step 1.
    degree, bits:
        Passed to :func:`pseudo_normalize`.

    Returns
    -------
    (P_out,) bool continuum mask on the output grid (APOGEE: ASPCAP).

    Raises
    ------
    InputDataError
        Bad shapes or labels, or a detector where fewer than ``degree + 1`` pixels qualify (the
        mask could not normalise that detector).
    """
    f, e, b, _ = as_batch(flux, error, bitmask)
    layout = _layout(f.shape[1], grid)
    if f.shape[0] < 2:
        raise InputDataError("select_continuum_pixels needs many labelled spectra, got fewer than 2")
    if not (0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    z, good = _clean_labels(labels, f.shape[0])
    if normalized:
        fa, ea, ba = _gather_chunk(f, e, b, slice(None), np.dtype(np.float64), layout)
        rej = ~_good_pixels(fa, ea, ba, _reject_value(bits, _bitmask_of(layout.in_grid, bitmask_def)))
    else:
        fa, ea = pseudo_normalize(f, e, b, degree, bits=bits, on_failure="reject", grid=layout.in_grid,
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

