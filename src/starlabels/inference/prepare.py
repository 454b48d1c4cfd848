"""One chunk of spectra → network input: pixel rejection, the model's own preprocessing, SNR and
masked fraction (:func:`prepare_chunk`), as :func:`starlabels.predict` and the label-coverage
embeddings (:mod:`starlabels.inference.coverage`) both need it.

A spectrum without a usable pixel (NaN-only, no finite positive error, fully masked, or every
segment rejected by the continuum fit) comes back as not ``ok`` — its labels become NaN with flag
``INVALID_SPECTRUM`` — never as a guess; non-finite values never reach the network.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from starlabels.errors import ModelFormatError
from starlabels.inference.inference_model import InferenceModel
from starlabels.inference.uncertainty import BAD_ERROR
from starlabels.statistics import count_per_row, masked_median_rows

__all__ = ["per_star_preprocessing", "prepare_chunk", "reject_bits"]


def reject_bits(im: InferenceModel) -> list[int] | None:
    """The bitmask bits the model's preprocessing rejects (None: the instrument's default)."""
    bits = getattr(im.preprocessing, "reject_bits", None)
    return None if bits is None else list(bits)


def prepare_chunk(
    im: InferenceModel, f: np.ndarray, e: np.ndarray, b: np.ndarray | None, preprocessed: bool,
    has_error: bool, grid: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Preprocess one chunk of n spectra for a network.

    ``f``, ``e`` (n, P_in) flux and 1σ errors on the model's input grid (raw, or the network's
    input with ``preprocessed``), ``b`` (n, P_in) bitmask or None; ``has_error`` False when the
    errors are placeholders (then the SNR is unknown); ``grid`` the spectra's grid when known
    (checked by the preprocessing). Returns ``x``, ``xe`` float32 (n_ok, P) network input and
    errors of the valid rows (inf and NaN errors become 3e38, finite ones are capped there), ``ok``
    (n,) bool, ``snr`` (n,) float64 median flux/error of the unrejected pixels (NaN when unknown)
    and the masked fraction (n,) float64 of rejected pixels (segments the preprocessing rejected
    included). Every array returned is new (none is a view of the input).

    Speed (this runs next to the network, on the reading thread): the rejected pixels are found
    once (the raw preprocessing reuses them), the SNR median is one partial sort per row in the
    ratio's dtype, float32 input stays float32, and the arrays this function allocates are
    reused in place (``bench/prepare.py``).
    """
    from starlabels.preprocess.masking import rejected_pixels
    from starlabels.preprocess.pipeline import PreprocessConfig

    # keep float32 input float32 (as read from files): float64 copies of a chunk and the
    # preprocessing temporaries would double the memory of a streaming run
    f = np.asarray(f) if np.issubdtype(np.asarray(f).dtype, np.floating) else np.asarray(f, np.float64)
    e = np.asarray(e) if np.issubdtype(np.asarray(e).dtype, np.floating) else np.asarray(e, np.float64)
    cfg = im.preprocessing
    if preprocessed:
        rej = rejected_pixels(f, e)
    else:
        rej = rejected_pixels(f, e, b, bits=reject_bits(im), bitmask_def=getattr(cfg, "bitmask", None))
    n, p_in = rej.shape
    n_rej = count_per_row(rej)
    ok = n_rej < p_in  # = ~rej.all(axis=1)
    masked = n_rej / p_in  # = rej.mean(axis=1)
    snr = np.full(n, np.nan)
    if has_error and ok.any():
        snr[ok] = _snr(f, e, rej)[ok]
    P = im.n_pixels
    if not ok.any():
        return np.zeros((0, P), np.float32), np.zeros((0, P), np.float32), ok, snr, masked
    rows = slice(None) if ok.all() else ok  # no copy of the chunk when every row is usable
    if preprocessed:
        x, xe = f[ok], e[ok]  # copies (never hand back the caller's arrays)
    else:
        if cfg is None:
            raise ModelFormatError("the model has no preprocessing config; pass preprocessed=True input")
        lenient = per_star_preprocessing(cfg)
        extra = {"rejected": rej[rows]} if isinstance(lenient, PreprocessConfig) else {}
        x, xe = lenient.apply(f[rows], e[rows], None if b is None else b[rows], grid=grid, **extra)
        x, xe = np.asarray(x), np.asarray(xe)
        if x.shape[1] != P:
            raise ModelFormatError(
                f"the model's preprocessing gives {x.shape[1]} pixels but its network takes {P}"
            )
        if np.may_share_memory(x, f):  # a preprocessing that hands back its input: copy it
            x = x.copy()
        if np.may_share_memory(xe, e):  # (xe is changed in place below)
            xe = xe.copy()
    idx = np.flatnonzero(ok)
    finite = _finite_rows(x)
    if not preprocessed:  # segments rejected in preprocessing (a dead detector) count as masked
        with np.errstate(invalid="ignore"):
            n_bad_out = P - count_per_row(xe < BAD_ERROR)  # NaN counts as bad
        masked[idx] = np.maximum(masked[idx], n_bad_out / P)
        finite &= n_bad_out < P  # nothing usable left after preprocessing: invalid, not a guess
    if not finite.all():  # never feed NaN/inf to the network: flag the row invalid instead
        ok[idx[~finite]] = False
        x, xe = x[finite], xe[finite]
    with np.errstate(over="ignore"):  # float64 beyond float32's range: inf, as before
        x = np.ascontiguousarray(x, np.float32)
        xe = _capped_errors(np.ascontiguousarray(xe, np.float32))
    return x, xe, ok, snr, masked


def _snr(f: np.ndarray, e: np.ndarray, rej: np.ndarray) -> np.ndarray:
    """(n,) median of f/e over each row's unrejected pixels (NaN for a row without one), in the
    ratio's dtype. Unrejected ratios are never NaN (finite flux over a finite positive error). A
    block of rows at a time into one reused buffer: no page faults for a chunk-sized ratio array,
    and each block is partially sorted while it is in cache."""
    n, p = f.shape
    rows = max(1, SNR_BLOCK_VALUES // max(p, 1))
    buffer = np.empty((min(rows, n), p), np.result_type(f.dtype, e.dtype))
    out = np.empty(n, buffer.dtype)
    for a in range(0, n, rows):
        block = slice(a, min(n, a + rows))
        ratio = buffer[: block.stop - a]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            np.divide(f[block], e[block], out=ratio)
        out[block] = masked_median_rows(ratio, rej[block], overwrite_input=True, nan_free=True)
    return out


#: Values per block of :func:`_snr` (4 MiB of float32; measured: 12 ms instead of 16 ms for 1024
#: apStar spectra, against one chunk-sized ratio array).
SNR_BLOCK_VALUES = 1 << 20


def _finite_rows(x: np.ndarray) -> np.ndarray:
    """(n,) bool: every value of the row finite. A row sum is finite exactly when no value is
    NaN/±inf, unless finite values overflow it; only rows whose sum is not finite are tested
    value by value (one read of ``x``, no (n, P) temporary in the common case)."""
    with np.errstate(over="ignore", invalid="ignore"):
        finite = np.isfinite(np.add.reduce(x, axis=1))
    if not finite.all():
        suspect = np.flatnonzero(~finite)
        finite[suspect] = np.isfinite(x[suspect]).all(axis=1)
    return finite


#: Largest error handed to the network (float32-safe): NaN and ±inf errors become this too.
ERROR_CEILING = 3e38


def _capped_errors(xe: np.ndarray) -> np.ndarray:
    """In place on float32 ``xe`` (which this module owns): ``min(xe, 3e38)`` where finite, 3e38
    for NaN and ±inf — ``np.minimum(np.where(np.isfinite(xe), xe, np.inf), 3e38)``. Two read-only
    reductions first: preprocessed errors (finite, at most ``BAD_PIXEL_ERROR``) need nothing else."""
    if xe.size == 0 or (xe.max() <= ERROR_CEILING and xe.min() > -np.inf):  # False for any NaN
        return xe
    with np.errstate(invalid="ignore"):
        np.minimum(xe, ERROR_CEILING, out=xe)  # +inf → 3e38; NaN and -inf stay
        np.copyto(xe, np.float32(ERROR_CEILING), where=~(xe > -np.inf))  # NaN, -inf → 3e38
    return xe


def per_star_preprocessing(cfg: Any) -> Any:
    """``cfg`` with ``on_failure="reject"``: inference never raises for one star's impossible
    continuum fit (a dead detector); that segment is rejected (flux 1, huge error), which counts
    in the masked fraction (flag MANY_MASKED_PIXELS), and a spectrum with no usable segment left
    becomes invalid. Models store ``"raise"`` (right for training data); a shallow copy, the
    model's config is left as it is."""
    if getattr(cfg, "on_failure", "reject") == "reject":
        return cfg
    lenient = copy.copy(cfg)
    lenient.on_failure = "reject"
    return lenient
