"""Resampling spectra from one wavelength grid onto another, errors and masks propagated.

Two methods, both a sparse linear map ``W`` (n_target, n_source) applied to every spectrum at once:

``"linear"``
    Linear interpolation in wavelength (``numpy.interp``): each target pixel is
    ``w0·f[i] + w1·f[i+1]`` from its two neighbours, ``w0 + w1 = 1``.
``"flux-conserving"``
    Each pixel is a bin whose edges lie half-way to its neighbours; a target pixel is the mean flux
    density over its bin, ``Σ_i o_ji f_i / Σ_i o_ji`` with ``o_ji`` the overlap (Å) of target bin j
    and source bin i, so ``Σ_j f_j Δλ_j`` equals the source's integral over the common range. Use it
    when the target pixels are wider than the source's (e.g. APOGEE onto a coarser grid).

For both, σ_j = sqrt(Σ_i W_ji² σ_i²) (independent pixels; neighbouring target pixels then share
source pixels and are correlated, which the error arrays cannot say), the bitmask of a target pixel is
the OR of the bitmasks of the source pixels it uses, and a target pixel that uses an unusable source
pixel (non-finite flux, σ ≤ 0 or non-finite) gets σ = inf. Target pixels outside the source's
coverage get flux 0, σ = inf and the ``no_coverage_bit``. Nothing comes out NaN.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import sparse

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.errors import InputDataError
from starlabels.preprocess.grids import get_grid
from starlabels.preprocess.masking import as_batch

__all__ = ["METHODS", "resample", "resampling_matrix"]

METHODS = ("linear", "flux-conserving")
Method = Literal["linear", "flux-conserving"]


def _edges(w: np.ndarray) -> np.ndarray:
    """(P+1,) bin edges half-way between pixels, the outer ones half a step beyond the ends."""
    mid = 0.5 * (w[1:] + w[:-1])
    return np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])


def resampling_matrix(
    source: Grid, target: Grid, method: Method = "linear"
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """``(W, covered)``: the (n_target, n_source) CSR map of :func:`resample` and the (n_target,) bool
    mask of target pixels inside the source's coverage (rows of uncovered pixels are empty)."""
    ws, wt = source.wavelength, target.wavelength
    if method == "linear":
        covered = (wt >= ws[0]) & (wt <= ws[-1])
        j = np.flatnonzero(covered)
        i = np.clip(np.searchsorted(ws, wt[j], side="right") - 1, 0, ws.size - 2)
        frac = (wt[j] - ws[i]) / (ws[i + 1] - ws[i])
        rows = np.concatenate([j, j])
        cols = np.concatenate([i, i + 1])
        vals = np.concatenate([1.0 - frac, frac])
        keep = vals > 0
        W = sparse.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(wt.size, ws.size))
        # a target pixel exactly on a source pixel: the zero-weight neighbour is dropped above
        return W, covered
    if method == "flux-conserving":
        es, et = _edges(ws), _edges(wt)
        covered = (et[:-1] >= es[0]) & (et[1:] <= es[-1])
        rows_l, cols_l, vals_l = [], [], []
        # source bins overlapping target bin j: from the one holding et[j] to the one holding et[j+1]
        first = np.clip(np.searchsorted(es, et[:-1], side="right") - 1, 0, ws.size - 1)
        last = np.clip(np.searchsorted(es, et[1:], side="left") - 1, 0, ws.size - 1)
        span = np.where(covered, last - first + 1, 0)
        for k in range(int(span.max(initial=0))):
            j = np.flatnonzero(span > k)
            i = first[j] + k
            overlap = np.minimum(et[j + 1], es[i + 1]) - np.maximum(et[j], es[i])
            ok = overlap > 0
            rows_l.append(j[ok])
            cols_l.append(i[ok])
            vals_l.append(overlap[ok])
        rows = np.concatenate(rows_l) if rows_l else np.zeros(0, int)
        cols = np.concatenate(cols_l) if cols_l else np.zeros(0, int)
        vals = np.concatenate(vals_l) if vals_l else np.zeros(0)
        W = sparse.csr_matrix((vals, (rows, cols)), shape=(wt.size, ws.size))
        norm = np.asarray(W.sum(axis=1)).ravel()
        W = sparse.diags(np.where(norm > 0, 1.0 / np.where(norm > 0, norm, 1.0), 0.0)) @ W
        return W.tocsr(), covered
    raise InputDataError(f"resample method must be one of {METHODS}, got {method!r}")


def _default_no_coverage_bit(bitmask_def: PixelBitmask | None) -> int:
    if bitmask_def is None:
        return 0  # APOGEE_PIXMASK BADPIX
    for name in ("NODATA", "BADPIX", "BAD"):
        if name in bitmask_def.bits:
            return bitmask_def.bits[name]
    return bitmask_def.number(bitmask_def.default_reject[0]) if bitmask_def.default_reject else 0


def resample(
    flux: Any, error: Any, bitmask: Any = None, *, source: Grid | str, target: Grid | str,
    method: Method = "linear", bitmask_def: PixelBitmask | None = None, no_coverage_bit: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample (N, P_source) (or (P_source,)) spectra from grid ``source`` onto grid ``target``.

    Returns ``(flux, error, bitmask)`` (N, P_target) (1-D for 1-D input): flux float64 in the input's
    units (flux density per Å), error σ (inf where unusable or uncovered), bitmask int64 (OR of the
    source pixels used; ``no_coverage_bit`` — default the bitmask's NODATA/BADPIX bit — where the
    source does not reach). See the module docstring for the two methods.
    """
    src, dst = get_grid(source), get_grid(target)
    f, e, b, was_1d = as_batch(flux, error, bitmask)
    if f.shape[1] != src.n_pixels:
        raise InputDataError(f"spectra have {f.shape[1]} pixels but the source grid {src.describe()} has "
                             f"{src.n_pixels}")
    W, covered = resampling_matrix(src, dst, method)
    f64, e64 = f.astype(np.float64), e.astype(np.float64)
    with np.errstate(invalid="ignore"):
        unusable = ~np.isfinite(f64) | ~np.isfinite(e64) | (e64 <= 0)
    f64 = np.where(unusable, 0.0, f64)
    var = np.where(unusable, 0.0, e64 * e64)
    out_f = np.asarray((W @ f64.T).T)
    out_var = np.asarray((W.multiply(W) @ var.T).T)
    Wbool = W.copy()
    Wbool.data = np.ones_like(Wbool.data)
    touches_bad = np.asarray((Wbool @ unusable.T.astype(np.float64)).T) > 0
    out_e = np.sqrt(out_var)
    out_e[touches_bad] = np.inf
    out_b = np.zeros(out_f.shape, np.int64)
    if b is not None:
        bb = b.astype(np.int64)
        coo = W.tocoo()
        order = np.argsort(coo.row, kind="stable")
        rows, cols = coo.row[order], coo.col[order]
        if rows.size:
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            ored = np.bitwise_or.reduceat(bb[:, cols], starts, axis=1)
            out_b[:, rows[starts]] = ored
    bit = _default_no_coverage_bit(bitmask_def) if no_coverage_bit is None else int(no_coverage_bit)
    out_f[:, ~covered] = 0.0
    out_e[:, ~covered] = np.inf
    out_b[:, ~covered] |= 1 << bit
    if was_1d:
        return out_f[0], out_e[0], out_b[0]
    return out_f, out_e, out_b
