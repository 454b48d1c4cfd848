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
from starlabels.statistics import nanmedian_rows

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
    errors of the valid rows (inf errors capped at 3e38), ``ok`` (n,) bool, ``snr`` (n,) median
    flux/error of the unrejected pixels (NaN when unknown) and the masked fraction (n,) of
    rejected pixels (segments the preprocessing rejected included)."""
    from starlabels.preprocess.masking import rejected_pixels

    # keep float32 input float32 (as read from files): float64 copies of a chunk and the
    # preprocessing temporaries would double the memory of a streaming run
    f = np.asarray(f) if np.issubdtype(np.asarray(f).dtype, np.floating) else np.asarray(f, np.float64)
    e = np.asarray(e) if np.issubdtype(np.asarray(e).dtype, np.floating) else np.asarray(e, np.float64)
    if preprocessed:
        rej = rejected_pixels(f, e)
    else:
        rej = rejected_pixels(
            f, e, b, bits=reject_bits(im), bitmask_def=getattr(im.preprocessing, "bitmask", None)
        )
    ok = ~rej.all(axis=1)
    masked = rej.mean(axis=1)
    snr = np.full(f.shape[0], np.nan)
    if has_error and ok.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = f / e
        ratio[rej] = np.nan
        snr[ok] = nanmedian_rows(ratio[ok])  # = np.nanmedian(axis=1), vectorised, warns never
        del ratio
    P = im.n_pixels
    if not ok.any():
        return np.zeros((0, P), np.float32), np.zeros((0, P), np.float32), ok, snr, masked
    if preprocessed:
        x, xe = f[ok], e[ok]
    else:
        if im.preprocessing is None:
            raise ModelFormatError("the model has no preprocessing config; pass preprocessed=True input")
        x, xe = per_star_preprocessing(im.preprocessing).apply(
            f[ok], e[ok], None if b is None else b[ok], grid=grid
        )
        x, xe = np.asarray(x), np.asarray(xe)
        if x.shape[1] != P:
            raise ModelFormatError(
                f"the model's preprocessing gives {x.shape[1]} pixels but its network takes {P}"
            )
    if not preprocessed:  # segments rejected in preprocessing (a dead detector) count as masked
        bad_out = ~(np.asarray(xe) < BAD_ERROR)
        idx = np.flatnonzero(ok)
        masked[idx] = np.maximum(masked[idx], bad_out.mean(axis=1))
    finite = np.isfinite(x).all(axis=1)
    if not preprocessed:  # nothing usable left after preprocessing: invalid, not a guess
        finite &= ~bad_out.all(axis=1)
    if not finite.all():  # never feed NaN/inf to the network: flag the row invalid instead
        idx = np.flatnonzero(ok)
        ok[idx[~finite]] = False
        x, xe = x[finite], xe[finite]
    xe = np.where(np.isfinite(xe), xe, np.inf)
    return (
        np.ascontiguousarray(x, np.float32),
        np.ascontiguousarray(np.minimum(xe, 3e38), np.float32),
        ok,
        snr,
        masked,
    )


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
