"""Fit a model's label coverage: :func:`fit_coverage` (and :func:`embeddings`, the spectra's
embeddings it is fitted on).

The estimator — what label coverage is, how it becomes the variance part ``"coverage"`` of every
prediction, and how it is stored (``coverage.safetensors``) — is
:class:`~starlabels.inference.label_coverage.LabelCoverage`; this module runs the model's own
preprocessing and network over training and dev spectra to fit one::

    from starlabels.inference.coverage import fit_coverage

    fit_coverage("model/", train_flux, train_error, train_labels,   # labels as trained, MISSING kept
                 dev_flux, dev_error, dev_labels, save=True)         # dev spanning your SNRs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputDataError, ModelFormatError
from starlabels.inference.inference_model import resolve
from starlabels.inference.label_coverage import LabelCoverage, embed_input, fingerprint
from starlabels.inference.prepared_spectra import iter_prepared

__all__ = ["embeddings", "fit_coverage"]


def embeddings(
    model: Any, flux: Any, error: Any = None, *, bitmask: Any = None, preprocessed: bool = False,
    chunk_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, D) embeddings of spectra (NaN rows for invalid spectra), the (N,) valid mask and the
    (N,) SNRs (median f/σ, as :func:`starlabels.predict` measures them), with the model's own
    preprocessing (raw apStar flux) or of ``preprocessed=True`` input."""
    from starlabels.inference.grid_input import as_arrays

    im = resolve(model)
    f, e, b, has_error = as_arrays(flux, error, bitmask, im, preprocessed)
    out: np.ndarray | None = None
    valid = np.zeros(len(f), bool)
    snr = np.full(len(f), np.nan)
    for sl, (x, _, ok, snr_chunk, _) in iter_prepared(im, f, e, b, preprocessed, has_error, None, chunk_size):
        snr[sl] = snr_chunk
        valid[sl] = ok
        if not ok.any():
            continue
        emb = embed_input(im, x).double().cpu().numpy()
        if out is None:
            out = np.full((len(f), emb.shape[1]), np.nan)
        out[np.arange(sl.start, sl.stop)[ok]] = emb
    if out is None:
        raise InputDataError("no valid spectrum to embed")
    return out, valid, snr


def fit_coverage(
    model: Any,
    train_flux: Any,
    train_error: Any,
    train_labels: Any,
    dev_flux: Any,
    dev_error: Any,
    dev_labels: Any,
    *,
    train_bitmask: Any = None,
    dev_bitmask: Any = None,
    preprocessed: bool = False,
    k: int = 10,
    percentile: float = 95.0,
    snr_bins: int = 6,
    max_reference: int = 5000,
    seed: int = 0,
    save: bool | str | Path = False,
) -> LabelCoverage:
    """Fit ``LabelCoverage(k, percentile, snr_bins, max_reference, seed)`` on a model's
    embeddings of training and dev spectra and attach it to the model (``model.coverage``).

    ``train_*``: training spectra and their (N, L) labels (MISSING/NaN where a star lacks one) —
    up to ``max_reference`` of those with any label become the reference set (a seeded random
    subset; only those are embedded); ``dev_*``: held-out spectra with the labels *as the training
    data would have them* (MISSING where the survey gives none — not true labels), spanning the
    SNRs of use; they set d_ref in up to ``snr_bins`` equal-count SNR bins (at least 100 dev
    spectra a bin). ``save``: True writes ``coverage.safetensors`` into the folder the model was
    loaded from, a path into that folder. Returns the fitted
    :class:`~starlabels.inference.label_coverage.LabelCoverage`.
    """
    coverage = LabelCoverage(k=k, percentile=percentile, snr_bins=snr_bins, max_reference=max_reference,
                             seed=seed)
    im = resolve(model)
    names = list(im.label_names)
    tl = np.asarray(train_labels, np.float64).reshape(-1, len(names))
    rows = coverage.reference_rows(tl)
    pick = lambda a: None if a is None else np.asarray(a)[rows]  # noqa: E731
    emb, _, _ = embeddings(im, np.asarray(train_flux)[rows], pick(train_error), bitmask=pick(train_bitmask),
                           preprocessed=preprocessed)
    train_embedding = np.full((len(tl), emb.shape[1]), np.nan, np.float32)  # only the reference rows are read
    train_embedding[rows] = emb
    d_emb, _, d_snr = embeddings(im, dev_flux, dev_error, bitmask=dev_bitmask, preprocessed=preprocessed)
    coverage.fit(train_embedding, tl, d_emb, dev_labels, d_snr, label_names=names,
                 network_fingerprint=fingerprint(im.trained.network))
    im.trained.coverage = coverage
    if save:
        folder = im.folder if save is True else Path(save)
        if folder is None:
            raise ModelFormatError("the model was not loaded from a folder; pass save=<model folder>")
        coverage.save(folder)
    return coverage
