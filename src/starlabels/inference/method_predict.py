"""``starlabels.predict`` for a :class:`~starlabels.models.method.LabelMethod` (The Cannon, a Payne
fitter): the networks' input handling, validation, flags, calibration and
:class:`~starlabels.inference.prediction.Prediction`, with the method's ``predict_moments`` in place
of a network (its :class:`~starlabels.inference.inference_model.InferenceModel` comes from
:func:`~starlabels.inference.inference_model.resolve_method`).

A method without ``preprocessing`` takes its own grid as raw input (bitmask included); one with a
``PreprocessConfig`` gets raw spectra preprocessed as a network would, or ``preprocessed=True``
input. Pixels the preprocessing or the masks reject reach the method with σ = inf.
"""

from __future__ import annotations

import numpy as np

from starlabels.errors import InputDataError, ModelFormatError
from starlabels.inference import flags as flag_bits
from starlabels.inference import grid_input
from starlabels.inference.finish import finish_prediction
from starlabels.inference.inference_model import InferenceModel
from starlabels.inference.predict_options import PredictOptions
from starlabels.inference.prediction import Prediction
from starlabels.inference.prepare import reject_bits
from starlabels.statistics import nanmedian_rows
from starlabels.utils import progress

__all__ = ["predict_method", "prepare_method"]


def predict_method(
    im: InferenceModel, flux, error, *, uncertainty, bitmask, device, preprocessed, seed, snr,
    wavelength=None, grid=None, resample=None, options: PredictOptions | None = None,
) -> Prediction:
    """:func:`starlabels.predict` for a :class:`~starlabels.models.method.LabelMethod` (``im`` from
    :func:`~starlabels.inference.inference_model.resolve_method`): preprocessing, validation and
    flags as for networks, ``predict_moments`` per chunk instead of a network. ``options``:
    :class:`PredictOptions` (``calibrated``, the flag thresholds and ``chunk_size`` apply)."""
    options = PredictOptions() if options is None else options
    chunk_size = max(1, int(options.chunk_size))
    tm = im.trained
    unc = uncertainty or tm.default_uncertainty
    if unc not in tm.uncertainty_methods:
        raise InputDataError(
            f"a {im.method} model computes uncertainty {tuple(tm.uncertainty_methods)} (or None for "
            f"{tm.default_uncertainty!r}), got {uncertainty!r}"
        )
    as_given = im.preprocessing is None  # the method's own grid is its raw input (bitmask allowed)
    f, e, b, has_error, in_grid, resampled = grid_input.model_inputs(
        im, flux, error, bitmask, preprocessed and not as_given, wavelength=wavelength, grid=grid,
        resample=resample,
    )
    if not has_error:
        raise InputDataError(f"a {im.method} model needs per-pixel errors (error=...)")
    n, L = f.shape[0], len(im.label_names)
    snr_given = None if snr is None else np.asarray(snr, np.float64).reshape(-1)
    if snr_given is not None and snr_given.shape[0] != n:
        raise InputDataError(f"snr has {snr_given.shape[0]} values for {n} spectra")
    mean = np.full((n, L), np.nan)
    parts: dict[str, np.ndarray] = {}
    valid = np.zeros(n, bool)
    snr_all = np.full(n, np.nan)
    masked = np.ones(n)
    steps = range(0, n, chunk_size)
    for start in progress(steps, desc=f"predict ({im.method})", total=len(steps), unit="chunk"):
        sl = slice(start, min(n, start + chunk_size))
        x, xe, bm, ok, snr_c, masked_c = prepare_method(
            im, f[sl], e[sl], None if b is None else b[sl], preprocessed or as_given, in_grid
        )
        valid[sl], snr_all[sl], masked[sl] = ok, snr_c, masked_c
        if not ok.any():
            continue
        m, p = tm.predict_moments(x, xe, bm, device=device, seed=seed)
        m = np.asarray(m, np.float64)
        if m.shape != (int(ok.sum()), L):
            raise ModelFormatError(
                f"{type(tm).__name__}.predict_moments returned means of shape {m.shape}, expected "
                f"{(int(ok.sum()), L)}"
            )
        rows = np.arange(sl.start, sl.stop)[ok]
        mean[rows] = m
        for k, v in p.items():
            parts.setdefault(k, np.full((n, L), np.nan))[rows] = np.asarray(v, np.float64)
    if snr_given is not None:
        snr_all = np.where(np.isfinite(snr_given), snr_given, snr_all)
    pred = finish_prediction(
        im, mean, parts, valid, snr_all, masked, uncertainty=unc, n_samples=0, options=options
    )
    pred.flags[resampled] |= flag_bits.bit("RESAMPLED")
    return pred


def prepare_method(im: InferenceModel, f, e, b, as_given: bool, grid=None):
    """One chunk for a LabelMethod → (x, xe) float64 (n_ok, P) with ``xe = inf`` on unused pixels
    (x there 0), the bitmask rows (as-given input only, else None), ``ok`` (n,), snr (n,), masked
    fraction (n,)."""
    from starlabels.preprocess.masking import is_rejected_error, rejected_pixels

    f = np.asarray(f, np.float64)
    e = np.asarray(e, np.float64)
    rej = rejected_pixels(f, e, b, bits=reject_bits(im)) if b is not None else rejected_pixels(f, e)
    ok = ~rej.all(axis=1)
    masked = rej.mean(axis=1)
    snr = np.full(f.shape[0], np.nan)
    if ok.any():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = f / e
        ratio[rej] = np.nan
        snr = nanmedian_rows(ratio)  # NaN for a spectrum without usable pixels, no warning
    P = im.n_pixels
    if not ok.any():
        return np.zeros((0, P)), np.zeros((0, P)), None, ok, snr, masked
    if as_given:
        x, xe = f[ok], np.where(rej[ok], np.inf, e[ok])
    else:
        x, xe = im.preprocessing.apply(f[ok], e[ok], None if b is None else b[ok], grid=grid)
        x, xe = np.asarray(x, np.float64), np.asarray(xe, np.float64)
        if x.shape[1] != P:
            raise ModelFormatError(f"the model's preprocessing gives {x.shape[1]} pixels but it takes {P}")
    unused = ~np.isfinite(x) | ~np.isfinite(xe) | (xe <= 0) | is_rejected_error(xe)
    x = np.where(unused, 0.0, x)
    xe = np.where(unused, np.inf, xe)
    usable = ~unused.all(axis=1)
    if not usable.all():  # preprocessing rejected every pixel of a row: flag it invalid
        idx = np.flatnonzero(ok)
        ok[idx[~usable]] = False
        x, xe = x[usable], xe[usable]
    bm = b[ok] if (as_given and b is not None) else None
    return x, xe, bm, ok, snr, masked
