"""The continuum-normalisation driver: input grid → gap-free segments → fit → divide, chunk by chunk.

:func:`normalise_segments` is what :func:`~starlabels.preprocess.continuum.continuum_normalise`,
:func:`~starlabels.preprocess.continuum.fit_continuum` and
:func:`~starlabels.preprocess.continuum.pseudo_normalise` run. Per chunk of rows (a few times
:attr:`~starlabels.preprocess.chebyshev_fit.ChebyshevDesign.chunk_rows`, small enough to stay in
cache) it

1. marks the usable pixels of the chunk's input span in one pass over the input
   (:func:`_usable_span`), which brings the chunk into cache;
2. gathers flux and error at the fit pixels from those cached rows and fits every segment of every
   row at once (:func:`~starlabels.preprocess.chebyshev_fit.fit_rows`);
3. per segment evaluates the continuum into a reused buffer and divides the input's segment *views*
   by it directly into the output (no copy of the input to the output grid first, and the only
   full pass over the outputs), then sets the segment's rejected pixels (flux 1, error
   ``BAD_PIXEL_ERROR``) through their indices while it is still in cache (:func:`_divide_chunk`).

Work buffers are allocated once per call, so a streaming caller that also passes ``out=`` touches no
fresh memory per chunk (no page faults). The numbers are those of the straightforward version
(copy to the output grid, divide, test every pixel of the quotients, fill): the same float
operations on the same values, and the same pixels rejected (:func:`_divide_chunk` says why the
tests it skips or moves to the input cannot change that).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from starlabels.core.bitmask import PixelBitmask, testable
from starlabels.core.grid import Grid
from starlabels.core.instrument import find_grid
from starlabels.errors import InputDataError
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, bits_to_value
from starlabels.preprocess.chebyshev_fit import ChebyshevDesign, FitWorkspace, OnFailure, fit_rows, matmul
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
    column of every output pixel; ``span``: the input columns ``(start, stop)`` from the first
    segment's first to the last segment's last (the gaps between segments included).
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
        self.span = (self.in_ranges[0][0], self.in_ranges[-1][1])


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
        good &= (testable(ba, reject_bits_value) & reject_bits_value) == 0
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


#: Rows are normalised in chunks of this many times ``ChebyshevDesign.chunk_rows`` (fewer NumPy calls;
#: the matrix products still run per ``chunk_rows`` rows, so the numbers do not depend on it).
FIT_BLOCK_CHUNKS = 1


class _WorkBuffers:
    """Per-call scratch arrays for one chunk of rows, handed out as contiguous views: the continuum
    (and its cast to the output dtype) and the rejected pixels of the widest segment, and the bool
    tests of the input's span from the first segment's first column to the last segment's last."""

    def __init__(self, rows: int, width: int, span: int, out_width: int, dtype: np.dtype):
        # float64 output: the continuum is computed in the flux output itself
        self.cont = np.empty(rows * width) if dtype != np.float64 else None
        self.cast = np.empty(rows * width, dtype) if dtype != np.float64 else None
        self.good = np.empty(rows * span, bool)
        self.bad = np.empty(rows * out_width, bool)
        self.test = np.empty(rows * span, bool)

    @staticmethod
    def view(buf: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        return buf[: shape[0] * shape[1]].reshape(shape)


def _divide_segment(
    fin: np.ndarray, ein: np.ndarray, cont: np.ndarray, of: np.ndarray, oe: np.ndarray
) -> bool:
    """``oe = ein / cont``, then ``of = fin / cont`` (so ``cont`` may be ``of`` itself: the continuum
    written into the flux output, divided in place). True when a division overflowed the dtype,
    divided a finite value by 0 or gave 0/0 or ∞/∞ (a continuum ~0 or ~∞ in the dtype; NaN and ∞
    inputs raise nothing): only then can ``fin / cont`` be non-finite where ``fin`` is finite
    (continuum > 0), so callers test the quotients instead of the input. The floating-point flags
    are collected through NumPy's (context-local) error callback, after each division completed."""
    flags: list[str] = []
    with np.errstate(divide="call", invalid="call", over="call", under="ignore",
                     call=lambda kind, flag: flags.append(kind)):
        np.divide(ein, cont, out=oe)
        np.divide(fin, cont, out=of)
    return bool(flags)


def surely_positive(coef: np.ndarray) -> np.ndarray:
    """(n, n_segments, k) Chebyshev coefficients → (n, n_segments) bool, True where the series is
    certainly > 0 on [−1, 1] *as computed*: ``|T_j(x)| ≤ 1`` there, so ``c_0 > Σ_{j≥1} |c_j|`` (with a
    relative margin of 1e-9, far above the rounding of the k-term sums and of the tabulated ``T_j``)
    bounds the series away from 0. Lets :func:`_divide_chunk` skip the per-pixel
    ``continuum > 0`` test where it cannot fail."""
    c0 = coef[..., 0]
    rest = np.abs(coef[..., 1:]).sum(axis=-1)
    return c0 - rest > 1e-9 * (np.abs(c0) + rest)


#: A chunk's rejected pixels are set through their indices when at most this fraction of them is
#: rejected (the usual few per cent: no second pass over the outputs), else by masked copies.
SPARSE_FILL_FRACTION = 1 / 16


def _fill_rejected(out_f: np.ndarray, out_e: np.ndarray, rows: slice, bad: np.ndarray) -> None:
    """Flux 1 and error ``BAD_PIXEL_ERROR`` in output rows ``rows`` (C-contiguous outputs) where
    ``bad`` (C-contiguous, shaped as those rows) is True: through the indices when few are bad (no
    pass over the outputs, which the division has just written), else by masked copies."""
    flat = np.flatnonzero(bad)  # 1-D: several times faster than np.nonzero on 2-D
    if flat.size == 0:
        return
    if flat.size <= SPARSE_FILL_FRACTION * bad.size:
        flat += rows.start * out_f.shape[1]  # flat indices into the outputs
        # a 1-D integer-index assignment into the flat views (views: the outputs are C-contiguous) takes about
        # a third of np.put's time (measured: 2 µs against 6.5 µs for 2500 indices)
        out_f.reshape(-1)[flat] = 1.0
        out_e.reshape(-1)[flat] = BAD_PIXEL_ERROR
    else:
        np.copyto(out_f[rows], 1.0, where=bad)
        np.copyto(out_e[rows], BAD_PIXEL_ERROR, where=bad)


def _gather(
    a: np.ndarray, rows: slice, cols: np.ndarray, dtype: np.dtype, work: FitWorkspace, name: str
) -> np.ndarray:
    """``a[rows, cols]`` cast to ``dtype`` and then to float64 (the fit's input; into ``work``'s buffer
    for float32 ``a``). Fancy indexing of the row block, not ``np.take(..., axis=1, out=)``: half its
    time on cached rows, 4 % of a float64 ``continuum_normalise`` (bench/results/continuum.md)."""
    if a.dtype != dtype:  # e.g. float64 error with float32 flux: rounded to float32 first
        return a[rows, cols].astype(dtype).astype(np.float64, copy=False)
    if dtype == np.float64:
        return a[rows][:, cols]
    out = work.get(name, rows.stop - rows.start)
    np.copyto(out, a[rows][:, cols])
    return out


def _usable_span(
    f: np.ndarray, e: np.ndarray, b: np.ndarray | None, reject: int, rows: slice, dtype: np.dtype,
    layout: SegmentLayout, work: _WorkBuffers,
) -> np.ndarray:
    """(n, span) bool over rows ``rows`` of the input span (:attr:`SegmentLayout.span`), True for
    usable pixels (the rule of :func:`usable_pixels` on flux and error cast to ``dtype``: error in
    (0, ``BAD_PIXEL_ERROR``), flux finite, no bit of ``reject`` set in ``b``), in ``work.good``. One
    pass over the chunk's input, which brings it into cache for the fit and the division."""
    s0, s1 = layout.span
    shape = (rows.stop - rows.start, s1 - s0)
    good, test = work.view(work.good, shape), work.view(work.test, shape)
    ein = e[rows, s0:s1].astype(dtype, copy=False)
    with np.errstate(invalid="ignore"):
        np.less(ein, BAD_PIXEL_ERROR, out=good)  # also False for NaN
        if not ein.min() > 0:  # some error ≤ 0 or NaN in the chunk (rare): test every pixel
            good &= np.greater(ein, 0, out=test)
    good &= np.isfinite(f[rows, s0:s1].astype(dtype, copy=False), out=test)
    if b is not None:  # flagged = (b & reject) != 0, cast to bool as it is computed (no int buffer)
        flagged = np.bitwise_and(b[rows, s0:s1], reject, out=test, casting="unsafe")
        np.greater(good, flagged, out=good)  # good and not flagged
    return good


def _divide_chunk(
    f: np.ndarray, e: np.ndarray, rows: slice, coef: np.ndarray, good: np.ndarray,
    design: ChebyshevDesign, layout: SegmentLayout, out_f: np.ndarray, out_e: np.ndarray,
    work: _WorkBuffers, keep: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> None:
    """Normalise rows ``rows`` of the (N, P_in) input into the outputs given their finite
    coefficients ``coef`` (n, n_segments, k) and their usable pixels ``good`` (n, span) from
    :func:`_usable_span` (updated in place). ``keep``: ``(continuum, rejected, failed)`` rows of a
    :class:`ContinuumFit` to fill, ``failed`` (n, n_segments) bool (continuum NaN there).

    Per segment the continuum is evaluated (in blocks of ``design.chunk_rows`` rows) and the input's
    segment, in cache since :func:`_usable_span`, divided by it straight into the outputs: the only
    full pass over them. Where the continuum is > 0, flux / continuum is finite exactly when the flux
    is, unless a division overflowed or met a continuum of 0 or ∞ in the dtype; only then
    (:func:`_divide_segment`) are the quotients tested too. ``continuum > 0`` is tested only where
    :func:`surely_positive` cannot rule a non-positive continuum out. The rejected pixels then get
    flux 1 and ``BAD_PIXEL_ERROR`` through their indices (:func:`_fill_rejected`)."""
    dtype = out_f.dtype
    n = rows.stop - rows.start
    s0 = layout.span[0]
    test = work.view(work.test, good.shape)
    positive = surely_positive(coef).all(axis=0).tolist()
    bad = work.view(work.bad, (n, out_f.shape[1]))  # rejected pixels, laid out as the output rows
    blocks = [slice(a, min(a + design.chunk_rows, n)) for a in range(0, n, design.chunk_rows)]
    for d, (sl, (a0, a1)) in enumerate(zip(design.slices, layout.in_ranges, strict=True)):
        of, oe = out_f[rows, sl], out_e[rows, sl]
        # the continuum (n, n_d) float64, one matrix product per block of rows as in the fits: for
        # float64 output straight into the flux output (then divided in place: no buffer, and the
        # output written where it will stay), else into a buffer and cast to the output dtype
        cont = of if work.cast is None else work.view(work.cont, of.shape)
        for block in blocks:
            matmul(coef[block, d], design.Vt[d], out=cont[block])
        good_seg, test_seg = good[:, a0 - s0 : a1 - s0], test[:, a0 - s0 : a1 - s0]
        if not positive[d]:
            good_seg &= np.greater(cont, 0, out=test_seg)
        if keep is not None:
            conts, _, failed = keep
            conts[:, sl] = cont
            conts[:, sl][failed[:, d]] = np.nan
        if work.cast is None:
            cd = cont
        else:
            cd = work.view(work.cast, of.shape)
            np.copyto(cd, cont, casting="same_kind")
        fin, ein = f[rows, a0:a1].astype(dtype, copy=False), e[rows, a0:a1].astype(dtype, copy=False)
        if _divide_segment(fin, ein, cd, of, oe):
            good_seg &= np.isfinite(of, out=test_seg)
            good_seg &= np.isfinite(oe, out=test_seg)
        np.logical_not(good_seg, out=bad[:, sl])
    _fill_rejected(out_f, out_e, rows, bad)
    if keep is not None:
        keep[1][:] = bad


def normalise_segments(
    flux, error, bitmask, continuum_mask: MaskLike, degree: int, bits, on_failure: OnFailure,
    clip: tuple[int, float, float | None] | None, what: str, *, keep_fit: bool = False,
    grid: Grid | str | None = None, bitmask_def: PixelBitmask | None = None, out=None,
    input_rejected: np.ndarray | None = None,
):
    """Validate, then fit and divide chunk by chunk (see the module docstring).

    ``continuum_mask``: continuum pixels as
    :func:`~starlabels.preprocess.continuum_masks.resolve_continuum_mask` takes them (a bool array or
    a mask file), or None (every usable pixel);
    ``clip``: ``(n_iter, low, high)`` for the sigma-clipped pseudo-continuum or None; ``what``: the
    pixel kind named in failure messages. Returns ``(flux, error, was_1d, fit, layout)``: (N, P_out)
    outputs of dtype ``result_type(input, float32)``, whether the input was 1-D, a
    :class:`ContinuumFit` when ``keep_fit`` (else None) and the :class:`SegmentLayout`.
    ``input_rejected``: the caller's (N, P_in) bool rejected pixels by the same rule (see
    :func:`~starlabels.preprocess.continuum.continuum_normalise`), used instead of the usability pass.
    """
    check_on_failure(on_failure)
    f, e, b, was_1d = as_batch(flux, error, bitmask)
    layout = segment_layout(f.shape[1], grid)
    out_grid = layout.out_grid
    if input_rejected is not None:
        input_rejected = np.asarray(input_rejected)
        if input_rejected.dtype != bool or input_rejected.shape not in (f.shape, np.shape(flux)):
            raise InputDataError(f"rejected must be a bool array shaped as the flux {np.shape(flux)}, got "
                                 f"{input_rejected.dtype} {input_rejected.shape}")
        input_rejected = input_rejected.reshape(f.shape)
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
    if use_bits:
        b = testable(b, reject)  # (int64 only where the flags' dtype cannot hold the reject bits)
    chunk_rows = design.chunk_rows * FIT_BLOCK_CHUNKS
    width = max(sl.stop - sl.start for sl in design.slices)
    work = _WorkBuffers(min(chunk_rows, max(n, 1)), width, layout.span[1] - layout.span[0], out_grid.n_pixels,
                        dtype)
    fit_cols = layout.in_columns[design.fit_cols]  # input columns of the fit pixels
    fit_span_cols = fit_cols - layout.span[0]
    fit_work = FitWorkspace(min(chunk_rows, max(n, 1)), fit_cols.size)
    for start in range(0, n, chunk_rows):
        rows = slice(start, min(start + chunk_rows, n))
        # 1. usable pixels of the chunk's input span (this reads the chunk into cache)
        if input_rejected is None:
            good = _usable_span(f, e, b if use_bits else None, reject, rows, dtype, layout, work)
        else:
            span = (rows.stop - start, layout.span[1] - layout.span[0])
            good = np.logical_not(input_rejected[rows, layout.span[0] : layout.span[1]],
                                  out=work.view(work.good, span))
        # 2. the fits, from the fit pixels gathered from the cached rows
        fc = _gather(f, rows, fit_cols, dtype, fit_work, "gathered_flux")
        ec = _gather(e, rows, fit_cols, dtype, fit_work, "gathered_error")
        gc = good[:, fit_span_cols]
        coef = fit_rows(fc, ec, gc, design, on_failure=on_failure, row0=start, what=what, clip=clip,
                        segments=names, work=fit_work, overwrite_inputs=True)
        if keep_fit:
            coefs[rows] = coef
        # 3. divide (failed segments: continuum 0, rejected there)
        _divide_chunk(
            f, e, rows, np.nan_to_num(coef, nan=0.0), good, design, layout, out_f, out_e, work,
            keep=(conts[rows], rejected[rows], np.isnan(coef[:, :, 0])) if keep_fit else None,
        )
    fit = ContinuumFit(conts, coefs, rejected) if keep_fit else None
    return out_f, out_e, was_1d, fit, layout
