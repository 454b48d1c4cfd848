"""Batched weighted least-squares Chebyshev fits per segment: the numerical core of continuum fitting.

For one segment (detector) with Chebyshev design matrix ``A[p, j] = T_j(x_p)`` (n_fit, k),
``x = linspace(-1, 1, n)`` over the segment's pixels, weights ``W`` (N, n_fit) and fluxes ``F`` the
normal equations of all N spectra, ``M[s] c[s] = b[s]``, are

    M[s] = Σ_p W[s, p] · A[p]ᵀ A[p]       built from the moments m[s, q] = Σ_p W[s, p] T_q(x_p),
                                           q ≤ 2·degree (one GEMM), as M_ij = (m_{i+j} + m_{|i−j|})/2
    b[s] = Σ_p W[s, p] · F[s, p] · A[p]    (one GEMM: (W·F) @ A)

and all segments of all spectra are solved by one batched ``np.linalg.solve``. Callers
(:mod:`starlabels.preprocess.continuum_segments`) feed rows in chunks of
:attr:`ChebyshevDesign.chunk_rows`, so every matrix product stays small enough for OpenBLAS to run it
single-threaded and the temporaries stay in cache.
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np
from numpy.polynomial import chebyshev

from starlabels.errors import InputDataError

__all__ = [
    "BLAS_SINGLE_THREAD_MNK", "ChebyshevDesign", "FitWorkspace", "OnFailure", "failure_message", "fit_rows",
    "matmul",
]

#: Rows per chunk are chosen so that every matrix product of a chunk has m·n·k ≤ this: OpenBLAS
#: runs such products single-threaded. Multithreading gains nothing on these skinny products and,
#: on a busy machine, spinning BLAS threads made the whole run 3–10× slower (measured). Small
#: chunks also keep the temporaries in cache.
BLAS_SINGLE_THREAD_MNK = 2**18
#: Bounds on the rows per chunk.
CHUNK_ROWS_MIN, CHUNK_ROWS_MAX = 4, 64

#: What to do when a segment's fit is impossible: raise ``InputDataError`` or reject the segment.
OnFailure = Literal["raise", "reject"]


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``a @ b`` (BLAS) into ``out``; callers keep m·n·k under :data:`BLAS_SINGLE_THREAD_MNK`."""
    return np.matmul(a, b, out=out)


class FitWorkspace:
    """Scratch arrays for :func:`fit_rows` over chunks of at most ``rows`` rows and ``n_fit`` fit
    pixels, allocated once and reused chunk after chunk: fresh temporaries of this size (above the
    C allocator's mmap threshold) would be returned to the system and page-faulted in again for
    every chunk. ``get(name, n, dtype)`` hands out the first ``n`` rows of the buffer ``name``."""

    def __init__(self, rows: int, n_fit: int):
        self.rows, self.n_fit = rows, n_fit
        self._buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, n: int, dtype=np.float64) -> np.ndarray:
        buf = self._buffers.get(name)
        if buf is None or buf.dtype != dtype:
            buf = self._buffers[name] = np.empty((self.rows, self.n_fit), dtype)
        return buf[:n]


def _scratch(work: FitWorkspace | None, name: str, like: np.ndarray, dtype=np.float64) -> np.ndarray:
    """An uninitialised array shaped as ``like``: from ``work`` when given, else a new one."""
    if work is None:
        return np.empty(like.shape, dtype)
    return work.get(name, like.shape[0], dtype)


class ChebyshevDesign:
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
        n_det = len(slices)
        self._nonempty = [d for d in range(n_det) if self.bounds[d] < self.bounds[d + 1]]

    @functools.cached_property
    def chunk_rows(self) -> int:
        """Rows per chunk keeping every product of a chunk under ``BLAS_SINGLE_THREAD_MNK``."""
        widest = max(
            max(v.shape[1] for v in self.Vt) * self.k,  # evaluate: (n, k) @ (k, n_d)
            max(v.shape[0] for v in self.Vm) * (2 * self.k - 1),  # moments: (n, n_fit_d) @ (n_fit_d, 2k-1)
        )
        return int(np.clip(BLAS_SINGLE_THREAD_MNK // max(widest, 1), CHUNK_ROWS_MIN, CHUNK_ROWS_MAX))

    def _row_blocks(self, n: int) -> list[slice]:
        """Rows 0..n in blocks of :attr:`chunk_rows`: every matrix product runs on such a block, so
        its shape (and OpenBLAS's kernel and summation order) does not depend on how many rows a
        caller passes at once."""
        step = self.chunk_rows
        return [slice(a, min(a + step, n)) for a in range(0, n, step)]

    def fit(
        self, flux: np.ndarray, weight: np.ndarray, work: FitWorkspace | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Weighted least-squares fits of all rows and detectors at once.

        ``flux``, ``weight``: (n, n_fit) float64 at the fit pixels, ``flux`` finite (0 is fine)
        wherever ``weight`` is 0. Returns ``coef`` (n, 3, k) Chebyshev coefficients (NaN where a fit
        is impossible: fewer than k pixels with weight > 0) and ``n_used`` (n, 3) int. The
        elementwise work and the solve run on all n rows at once; the matrix products in blocks
        of :attr:`chunk_rows` rows (results independent of n). ``work``: reused scratch arrays.
        """
        n, k, n_det = flux.shape[0], self.k, len(self.slices)
        moments = np.empty((n, n_det, 2 * k - 1))
        rhs = np.empty((n, n_det, k))
        wf = np.multiply(weight, flux, out=_scratch(work, "weighted_flux", flux))
        blocks = self._row_blocks(n)
        # per segment and block of rows (one product for all segments, with block-diagonal design
        # matrices, was measured no faster and sums in another order: 1e-14 relative differences)
        for d in range(n_det):
            seg = slice(self.bounds[d], self.bounds[d + 1])
            for rows in blocks:
                matmul(weight[rows, seg], self.Vm[d], out=moments[rows, d])  # m_q = Σ_p w T_q(x_p)
                matmul(wf[rows, seg], self.Vf[d], out=rhs[rows, d])  # Σ_p w f T_j(x_p)
        n_used = np.zeros((n, n_det), dtype=np.int64)  # pixels with weight ≠ 0 per segment
        if self._nonempty:
            nonzero = np.not_equal(weight, 0, out=_scratch(work, "nonzero", weight, bool))
            n_used[:, self._nonempty] = np.add.reduceat(
                nonzero, [self.bounds[d] for d in self._nonempty], axis=1, dtype=np.int64
            )
        M = 0.5 * (moments[..., self._sum_idx] + moments[..., self._diff_idx])  # (n, 3, k, k)
        failed = n_used < k
        if failed.any():
            M[failed] = np.eye(k)
            rhs[failed] = 0.0
        with np.errstate(all="ignore"):
            try:
                coef = np.linalg.solve(M, rhs[..., None])[..., 0]
            except np.linalg.LinAlgError:  # an exactly singular system (degenerate weights):
                coef = np.empty((n, n_det, k))  # pseudo-inverse for its block of rows only
                for rows in blocks:
                    try:
                        coef[rows] = np.linalg.solve(M[rows], rhs[rows, ..., None])[..., 0]
                    except np.linalg.LinAlgError:
                        coef[rows] = (np.linalg.pinv(M[rows]) @ rhs[rows, ..., None])[..., 0]
        failed |= ~np.isfinite(coef).all(axis=-1)
        coef[failed] = np.nan
        return coef, n_used

    def evaluate_fit_pixels(self, coef: np.ndarray) -> np.ndarray:
        """(n, 3, k) → (n, n_fit) continuum at the fit pixels only."""
        c = np.nan_to_num(coef, nan=0.0)
        out = np.empty((c.shape[0], self.fit_cols.size))
        for d in range(len(self.slices)):
            seg = slice(self.bounds[d], self.bounds[d + 1])
            for rows in self._row_blocks(c.shape[0]):
                out[rows, seg] = matmul(c[rows, d], self.Vf[d].T)
        return out


def failure_message(
    bad: np.ndarray, n_used: np.ndarray, k: int, row0: int, what: str, segments: tuple[str, ...]
) -> str:
    """The error text for impossible fits: ``bad`` (n, n_segments) bool, ``n_used`` (n, n_segments)
    usable pixels, ``k`` = degree + 1, ``row0`` the chunk's first row, ``what`` the pixel kind
    ("continuum", "usable"), ``segments`` the segment names."""
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


def fit_rows(
    fc: np.ndarray,
    ec: np.ndarray,
    gc: np.ndarray,
    design: ChebyshevDesign,
    *,
    on_failure: OnFailure,
    row0: int,
    what: str,
    segments: tuple[str, ...],
    clip: tuple[int, float, float | None] | None = None,
    work: FitWorkspace | None = None,
    overwrite_inputs: bool = False,
) -> np.ndarray:
    """Fit the continua of n spectra (any n; ``row0``: the index of the first) from their fit pixels.

    ``fc``, ``ec`` (n, n_fit) float64 flux and error at ``design.fit_cols``; ``gc`` (n, n_fit) bool
    marks the usable ones. Returns ``coef`` (n, 3, k), NaN for detectors whose fit is impossible
    (raises ``InputDataError`` instead when ``on_failure == "raise"``). ``work``: scratch arrays
    reused across calls (:class:`FitWorkspace`); ``overwrite_inputs``: ``fc`` and ``ec`` (then
    C-contiguous) may be overwritten (flux 0 and error ∞ at the unusable pixels) instead of copied.
    The results are the same either way.
    """
    if overwrite_inputs and fc.flags.c_contiguous and ec.flags.c_contiguous:
        fz, es = fc, ec
    else:
        fz, es = _scratch(work, "flux", fc), _scratch(work, "error", ec)
        np.copyto(fz, fc)
        np.copyto(es, ec)
    # unusable pixels (usually a few per cent): flux 0, error ∞ (so weight 0), set through their
    # indices instead of masked passes over every pixel
    unusable = np.flatnonzero(np.logical_not(gc, out=_scratch(work, "unusable", gc, bool)))
    fz.reshape(-1)[unusable] = 0.0
    es.reshape(-1)[unusable] = np.inf
    # weights 1/σ², scaled per spectrum by its smallest σ² (the solution does not change; the
    # scaling keeps tiny or huge errors from overflowing)
    e_min = es.min(axis=1, keepdims=True)
    e_min[np.isinf(e_min)] = 1.0  # no usable pixel in the row: every weight is 0 anyway
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        w = np.divide(e_min, es, out=_scratch(work, "weight", es))
    w *= w
    coef, n_used = design.fit(fz, w, work)
    failed = np.isnan(coef[..., 0])
    if failed.any() and on_failure == "raise":  # named per block of chunk_rows rows, the first first
        first = int(np.flatnonzero(failed.any(axis=1))[0])
        rows = slice(first - first % design.chunk_rows, first - first % design.chunk_rows + design.chunk_rows)
        raise InputDataError(
            failure_message(failed[rows], n_used[rows], design.k, row0 + rows.start, what, segments)
        )
    if clip is not None:
        n_iter, low, high = clip
        for _ in range(n_iter):
            cont = design.evaluate_fit_pixels(coef)
            with np.errstate(divide="ignore", invalid="ignore"):
                r = (fz - cont) / es  # residual in units of the pixel's noise (0 where unusable)
                keep = gc & (r > -low)
                if high is not None:
                    keep &= r < high
            coef_new, n_new = design.fit(fz, np.where(keep, w, 0.0), work)
            # keep the previous fit where clipping left too few pixels
            coef = np.where((n_new >= design.k)[..., None], coef_new, coef)
    return coef
