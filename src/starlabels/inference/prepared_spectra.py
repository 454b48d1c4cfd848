"""Spectra made ready for a network ahead of time: grid checks and preprocessing apart from the network.

:func:`starlabels.predict` does two things per chunk of spectra: it *prepares* them (pixel
rejection, the model's own preprocessing, SNR and masked fraction: :func:`prepare_chunk`) and runs
the network on them. Preparing draws no random numbers, so it can happen anywhere and earlier: a
catalog run prepares unit k+1 in its reading thread while the network runs on unit k
(:mod:`starlabels.inference.catalog`), and :func:`starlabels.predict` prepares chunk k+1 in a thread
while chunk k runs. Both go through :func:`iter_prepared` (one implementation), so predictions from
:class:`PreparedSpectra` are identical to those from the raw arrays.

    prepared = prepare_spectra(model, flux, error, bitmask=bitmask)   # e.g. in a reader thread
    prediction = starlabels.predict(model, prepared, uncertainty="mc_dropout")
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from starlabels.errors import InputDataError
from starlabels.inference import grid_input
from starlabels.inference.inference_model import InferenceModel, resolve
from starlabels.inference.predict_options import PredictOptions
from starlabels.inference.prepare import prepare_chunk

__all__ = ["PreparedChunk", "PreparedSpectra", "iter_prepared", "prepare_spectra"]

#: ``(rows, (x, xe, ok, snr, masked))``: the rows of the input a chunk covers and
#: :func:`~starlabels.inference.prepare.prepare_chunk`'s result for them.
PreparedChunk = tuple[slice, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def _signature(n_pixels: int, cfg: Any) -> str:
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str) if hasattr(cfg, "to_dict") else repr(cfg)
    return f"{int(n_pixels)}:{text}"


@dataclass(frozen=True)
class PreparedSpectra:
    """N spectra prepared for one model's network (:func:`prepare_spectra`); pass it to
    :func:`starlabels.predict` in place of the flux.

    ``chunks`` the prepared chunks in row order (:data:`PreparedChunk`; ``x``/``xe`` float32
    (n_ok, P) network input and errors of the valid rows, ``ok`` (n,) bool, ``snr`` (n,) median
    flux/error, ``masked`` (n,) rejected fraction); ``has_error`` whether real errors were given;
    ``resampled`` (N,) bool rows resampled onto the model's grid; ``n_pixels`` and ``preprocessing``
    the network input size and preprocessing config they were prepared with (:meth:`prepared_for`)."""

    n: int
    chunks: tuple[PreparedChunk, ...]
    has_error: bool
    resampled: np.ndarray
    n_pixels: int
    preprocessing: Any

    def prepared_for(self, im: InferenceModel) -> bool:
        """Whether these spectra are ``im``'s network input: same pixel count and the same
        preprocessing config (the same object, or one with equal settings)."""
        if int(self.n_pixels) != int(im.n_pixels):
            return False
        return self.preprocessing is im.preprocessing or (
            _signature(self.n_pixels, self.preprocessing) == _signature(im.n_pixels, im.preprocessing)
        )


def iter_prepared(
    im: InferenceModel, flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray | None, preprocessed: bool,
    has_error: bool, grid: Any, chunk_size: int,
) -> Iterator[PreparedChunk]:
    """Prepare (N, P_in) spectra on the model's grid chunk by chunk (``chunk_size`` rows), lazily."""
    n, step = flux.shape[0], max(1, int(chunk_size))
    for start in range(0, n, step):
        rows = slice(start, min(n, start + step))
        yield rows, prepare_chunk(im, flux[rows], error[rows], None if bitmask is None else bitmask[rows],
                                  preprocessed, has_error, grid)


def prepare_spectra(
    model: Any,
    flux: Any,
    error: Any = None,
    *,
    bitmask: Any = None,
    preprocessed: bool = False,
    wavelength: Any = None,
    grid: Any = None,
    resample: str | None = None,
    options: PredictOptions | None = None,
) -> PreparedSpectra:
    """Check and preprocess spectra for ``model``'s network now, to predict later.

    The arguments mean what they mean for :func:`starlabels.predict` (raw flux on the model's input
    grid, or on ``wavelength``/``grid`` with ``resample``; ``options.chunk_size`` rows per chunk).
    Raises :class:`~starlabels.errors.InputDataError` for input predict would refuse, and for a
    Cannon or Payne model (they take the spectra themselves)."""
    im = resolve(model)
    if im.method is not None:
        raise InputDataError(f"a {im.method} model takes the spectra themselves, not prepared spectra")
    chunk_size = (options or PredictOptions()).chunk_size
    f, e, b, has_error, in_grid, resampled = grid_input.model_inputs(
        im, flux, error, bitmask, preprocessed, wavelength=wavelength, grid=grid, resample=resample
    )
    chunks = tuple(iter_prepared(im, f, e, b, preprocessed, has_error, in_grid, chunk_size))
    return PreparedSpectra(int(f.shape[0]), chunks, bool(has_error), np.asarray(resampled, bool),
                           int(im.n_pixels), im.preprocessing)
