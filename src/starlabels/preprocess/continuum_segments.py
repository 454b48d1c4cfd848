"""The continuum-normalisation driver: input grid → gap-free segments → fit → divide, chunk by chunk.

:func:`normalise_segments` is what :func:`~starlabels.preprocess.continuum.continuum_normalise`,
:func:`~starlabels.preprocess.continuum.fit_continuum` and
:func:`~starlabels.preprocess.continuum.pseudo_normalise` run. Per chunk of rows
(:attr:`~starlabels.preprocess.chebyshev_fit.ChebyshevDesign.chunk_rows`) it

1. gathers flux and error at the fit pixels straight from the input (one small fancy-index copy),
   marks the usable ones and fits every segment of every row at once
   (:func:`~starlabels.preprocess.chebyshev_fit.fit_rows`);
2. per segment evaluates the continuum into a reused buffer and divides the input's segment *views*
   by it directly into the output (no copy of the input to the output grid first), then marks the
   rejected pixels of that segment in reused bool buffers and fills them (flux 1, error
   ``BAD_PIXEL_ERROR``) while the segment is still in cache.

Work buffers are allocated once per call, so a streaming caller that also passes ``out=`` touches no
fresh memory per chunk (no page faults). The numbers are those of the straightforward version
(copy to the output grid, then divide): the same float operations on the same values.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.core.instrument import find_grid
from starlabels.errors import InputDataError
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, bits_to_value
from starlabels.preprocess.chebyshev_fit import ChebyshevDesign, OnFailure, fit_rows, matmul
from starlabels.preprocess.continuum_masks import MaskLike, resolve_continuum_mask
from starlabels.preprocess.grids import APSTAR, ASPCAP, get_grid, pixel_ranges
from starlabels.preprocess.masking import BAD_PIXEL_ERROR, as_batch

__all__ = [
    "ContinuumFit",
    "SegmentLayout",
    "bitmask_for_grid",
    "check_on_failure",
    "gather_segments",
    "normalise_segments",
    "output_arrays",
    "reject_value",
    "segment_layout",
    "usable_pixels",
]


class SegmentLayout:
    """Where the segments of an input grid sit in the input array and in the gap-free output.

    ``in_grid``: grid of the input; ``out_grid``: its segment grid (gaps deleted; the input grid
    itself when it has no gaps; a built-in grid with the same wavelengths is used by name, so APOGEE's
    apStar input gives the ASPCAP grid). ``in_ranges``: column range ``(start, stop)`` of each segment
    in the input; ``out_slices``: the same segments in the output; ``in_columns`` (P_out,): the input
    column of every output pixel.
    """

    def __init__(self, in_grid: Grid):
        self.in_grid = in_grid
        self.has_gaps = not bool(in_grid.in_segments().all())
        out = in_grid.segment_grid() if self.has_gaps else in_grid
        known = find_grid(out)
        self.out_grid = known[0].get_grid(known[1]) if known is not None else out
        self.in_ranges = pixel_ranges(in_grid)
        self.out_slices = self.out_grid.segment_slices
        self.in_columns = np.concatenate([np.arange(a0, a1) for a0, a1 in self.in_ranges])


def segment_layout(n_pixels: int, grid: Grid | str | None) -> SegmentLayout:
    """The layout of input arrays with ``n_pixels`` columns on ``grid`` (None: APOGEE's apStar or
    ASPCAP grid by pixel count, as before grids were data). Raises ``InputDataError`` when the
    pixel count does not fit."""
    if grid is None:
        if n_pixels == APSTAR.n_pixels:
            return SegmentLayout(APSTAR)
        if n_pixels == ASPCAP.n_pixels:
            return SegmentLayout(ASPCAP)
        raise InputDataError(
            f"spectra have {n_pixels} pixels; without grid= only APOGEE's apStar ({APSTAR.n_pixels}) or "
            f"ASPCAP ({ASPCAP.n_pixels}) grids are recognised — pass grid= (a Grid or an instrument's "
            "grid name)"
        )
    g = get_grid(grid)
    if g.n_pixels != n_pixels:
        raise InputDataError(f"spectra have {n_pixels} pixels but grid {g.describe()} has {g.n_pixels}")
    return SegmentLayout(g)


def gather_segments(
    f: np.ndarray, e: np.ndarray, b: np.ndarray | None, rows: slice, dtype: np.dtype, layout: SegmentLayout
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rows ``rows`` of (N, P_in) flux, error, bitmask → (n, P_out) arrays on the gap-free output grid,
    flux and error of ``dtype``: contiguous copies for input with gaps, views where possible for
    gap-free input."""
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


def usable_pixels(
    fa: np.ndarray, ea: np.ndarray, ba: np.ndarray | None, reject_bits_value: int
) -> np.ndarray:
    """Bool array, True for usable pixels: the complement of
    :func:`starlabels.preprocess.masking.rejected_pixels` (same rule, fewer passes): error > 0 and
    below ``BAD_PIXEL_ERROR`` (so finite), flux finite, no bit of ``reject_bits_value`` set."""
    with np.errstate(invalid="ignore"):
        good = ea > 0
        good &= ea < BAD_PIXEL_ERROR  # also False for NaN/inf errors
    good &= np.isfinite(fa)
    if ba is not None and reject_bits_value:
        good &= (ba & reject_bits_value) == 0
    return good


def check_on_failure(on_failure: str) -> None:
    """Raise ``ValueError`` unless ``on_failure`` is ``"raise"`` or ``"reject"``."""
    if on_failure not in ("raise", "reject"):
        raise ValueError(f"on_failure must be 'raise' or 'reject', got {on_failure!r}")


def bitmask_for_grid(grid: Grid, bitmask_def: PixelBitmask | None) -> PixelBitmask | None:
    """The bitmask definition for spectra on ``grid``: ``bitmask_def``, else the instrument's that owns
    the grid, else None (APOGEE_PIXMASK, as before grids were data)."""
    if bitmask_def is not None:
        return bitmask_def
    known = find_grid(grid)
    return None if known is None else known[0].bitmask()


def reject_value(bits: Iterable[str | int] | None, bitmask_def: PixelBitmask | None = None) -> int:
    """The integer of the bits that reject a pixel: ``bits`` (names or numbers) of ``bitmask_def``
    (APOGEE_PIXMASK when None), or the bitmask's default reject set when ``bits`` is None."""
    try:
        if bitmask_def is None:
            return DEFAULT_REJECT_VALUE if bits is None else bits_to_value(bits)
        return bitmask_def.value(None if bits is None else list(bits))
    except ValueError as exc:
        raise InputDataError(str(exc)) from None


class ContinuumFit(tuple):
    """``(continuum, coefficients, rejected)`` from :func:`~starlabels.preprocess.continuum.fit_continuum`."""

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
        """(N, n_segments, degree+1) Chebyshev coefficients per segment (APOGEE: blue, green, red);
        NaN where the fit was impossible."""
        return self[1]

    @property
    def rejected(self) -> np.ndarray:
        """(N, P_out) bool: rejected pixels (bitmask, bad values, failed segment, continuum ≤ 0)."""
        return self[2]


def output_arrays(out, shape: tuple[int, int], dtype) -> tuple[np.ndarray, np.ndarray]:
    """New (flux, error) output arrays of ``shape`` and ``dtype``, or the caller's ``out`` pair after
    checking it fits (``InputDataError`` otherwise)."""
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


#: The fits run on blocks of this many chunks at once (fewer, larger NumPy calls; the matrix
#: products still run per chunk, so the numbers do not depend on it).
FIT_BLOCK_CHUNKS = 16


class _WorkBuffers:
    """Per-call scratch arrays of one chunk × the widest segment, handed out as contiguous views."""

    def __init__(self, rows: int, width: int, dtype: np.dtype, bitmask_dtype: np.dtype | None):
        size = rows * width
        self.cont = np.empty(size)
        self.cast = np.empty(size, dtype) if dtype != np.float64 else None
        self.good = np.empty(size, bool)
        self.test = np.empty(size, bool)
        self.bits = None if bitmask_dtype is None else np.empty(size, bitmask_dtype)

    @staticmethod
    def view(buf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        return buf[: shape[0] * shape[1]].reshape(shape)


def _divide_segment(
    fin: np.ndarray, ein: np.ndarray, cont_cast: np.ndarray, of: np.ndarray, oe: np.ndarray
) -> bool:
    """``of = fin / cont``, ``oe = ein / cont``; True when a quotient overflowed the dtype (rare: a
    continuum ~0 under a finite flux), checked only when it happens."""
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="raise"):
            np.divide(fin, cont_cast, out=of)
            np.divide(ein, cont_cast, out=oe)
        return False
    except FloatingPointError:
        with np.errstate(all="ignore"):
            np.divide(fin, cont_cast, out=of)
            np.divide(ein, cont_cast, out=oe)
        return True



def _divide_chunk(
    f: np.ndarray, e: np.ndarray, b: np.ndarray | None, reject: int, rows: slice, coef: np.ndarray,
    design: ChebyshevDesign, layout: SegmentLayout, out_f: np.ndarray, out_e: np.ndarray,
    work: _WorkBuffers, keep: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Normalise rows ``rows`` (≤ ``chunk_rows``) of the (N, P_in) input into the outputs, segment by
    segment, given their finite coefficients ``coef`` (n, n_segments, k). ``b``: the bitmask, or None
    when no bit rejects. ``keep``: ``(continuum, rejected, failed)`` rows of a :class:`ContinuumFit`
    to fill, ``failed`` (n, n_segments) bool (continuum NaN there)."""
    dtype = out_f.dtype
    for d, (sl, (a0, a1)) in enumerate(zip(design.slices, layout.in_ranges, strict=True)):
        shape = (rows.stop - rows.start, a1 - a0)
        cont = matmul(coef[:, d], design.Vt[d], out=work.view(work.cont, shape))  # (n, n_d) float64
        if work.cast is None:
            cd = cont
        else:
            cd = work.view(work.cast, shape)
            np.copyto(cd, cont, casting="same_kind")
        fin = f[rows, a0:a1].astype(dtype, copy=False)
        ein = e[rows, a0:a1].astype(dtype, copy=False)
        of, oe = out_f[rows, sl], out_e[rows, sl]
        overflowed = _divide_segment(fin, ein, cd, of, oe)
        good, test = work.view(work.good, shape), work.view(work.test, shape)
        # usable: error in (0, BAD_PIXEL_ERROR), flux finite (given continuum > 0, exactly when
        # flux / continuum is finite), bitmask clear, continuum > 0
        with np.errstate(invalid="ignore"):
            np.greater(ein, 0, out=good)
            np.less(ein, BAD_PIXEL_ERROR, out=test)
        good &= test
        good &= np.isfinite(of, out=test)
        good &= np.greater(cont, 0, out=test)
        if overflowed:
            good &= np.isfinite(oe, out=test)
        if b is not None:
            bits_seg = work.view(work.bits, shape)
            np.bitwise_and(b[rows, a0:a1], reject, out=bits_seg)
            good &= np.equal(bits_seg, 0, out=test)
        bad = np.logical_not(good, out=test)
        np.copyto(of, 1.0, where=bad)
        np.copyto(oe, BAD_PIXEL_ERROR, where=bad)
        if keep is not None:
            conts, rejected, failed = keep
            conts[:, sl] = cont
            conts[:, sl][failed[:, d]] = np.nan
            rejected[:, sl] = bad


def normalise_segments(
    flux, error, bitmask, continuum_mask: MaskLike, degree: int, bits, on_failure: OnFailure,
    clip: tuple[int, float, float | None] | None, what: str, *, keep_fit: bool = False,
    grid: Grid | str | None = None, bitmask_def: PixelBitmask | None = None, out=None,
):
    """Validate, then fit and divide chunk by chunk (see the module docstring).

    ``continuum_mask``: continuum pixels as
    :func:`~starlabels.preprocess.continuum_masks.resolve_continuum_mask` takes them (a bool array or
    a mask file), or None (every usable pixel);
    ``clip``: ``(n_iter, low, high)`` for the sigma-clipped pseudo-continuum or None; ``what``: the
    pixel kind named in failure messages. Returns ``(flux, error, was_1d, fit, layout)``: (N, P_out)
    outputs of dtype ``result_type(input, float32)``, whether the input was 1-D, a
    :class:`ContinuumFit` when ``keep_fit`` (else None) and the :class:`SegmentLayout`.
    """
    check_on_failure(on_failure)
    f, e, b, was_1d = as_batch(flux, error, bitmask)
    layout = segment_layout(f.shape[1], grid)
    out_grid = layout.out_grid
    reject = reject_value(bits, bitmask_for_grid(layout.in_grid, bitmask_def))
    design = ChebyshevDesign(resolve_continuum_mask(continuum_mask, out_grid), degree, layout.out_slices)
    n = f.shape[0]
    names = out_grid.segment_names
    dtype = np.result_type(f.dtype, np.float32)
    out_f, out_e = output_arrays(out, (n, out_grid.n_pixels), dtype)
    if keep_fit:
        conts = np.empty((n, out_grid.n_pixels))
        coefs = np.empty((n, len(names), design.k))
        rejected = np.empty((n, out_grid.n_pixels), dtype=bool)
    use_bits = b is not None and bool(reject)
    step = design.chunk_rows
    width = max(sl.stop - sl.start for sl in design.slices)
    work = _WorkBuffers(min(step, max(n, 1)), width, dtype, b.dtype if use_bits else None)
    in_fit_cols = layout.in_columns[design.fit_cols]
    block_rows = step * FIT_BLOCK_CHUNKS
    for block in range(0, n, block_rows):
        # 1. the fits of a block of rows, from the fit pixels gathered straight from the input
        rows = slice(block, min(block + block_rows, n))
        fc = f[rows, in_fit_cols].astype(dtype, copy=False)
        ec = e[rows, in_fit_cols].astype(dtype, copy=False)
        gc = usable_pixels(fc, ec, b[rows, in_fit_cols] if use_bits else None, reject)
        coef = fit_rows(
            fc.astype(np.float64), ec.astype(np.float64), gc, design,
            on_failure=on_failure, row0=block, what=what, clip=clip, segments=names,
        )
        if keep_fit:
            coefs[rows] = coef
        coef_safe = np.nan_to_num(coef, nan=0.0)  # failed segments: continuum 0 → rejected below
        for start in range(block, rows.stop, step):
            chunk = slice(start, min(start + step, n))
            local = slice(start - block, chunk.stop - block)
            _divide_chunk(
                f, e, b if use_bits else None, reject, chunk, coef_safe[local], design, layout,
                out_f, out_e, work,
                keep=(conts[chunk], rejected[chunk], np.isnan(coef[local, :, 0])) if keep_fit else None,
            )
    fit = ContinuumFit(conts, coefs, rejected) if keep_fit else None
    return out_f, out_e, was_1d, fit, layout
