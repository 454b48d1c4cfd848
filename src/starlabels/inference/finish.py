"""Finishing a prediction: non-finite outputs, calibration and quality flags
(:func:`finish_prediction`), shared by networks (:func:`starlabels.predict`) and label methods
(:mod:`starlabels.inference.method_predict`) so both give the same :class:`Prediction`."""

from __future__ import annotations

import numpy as np

from starlabels.inference import flags as flag_bits
from starlabels.inference.inference_model import InferenceModel
from starlabels.inference.predict_options import PredictOptions
from starlabels.inference.prediction import Prediction
from starlabels.inference.uncertainty import total_variance
from starlabels.inference.uncertainty_calibration import apply_calibration, method_entry

__all__ = ["calibration_entry", "finish_prediction"]


def calibration_entry(im: InferenceModel, method: str) -> dict | None:
    """The model's calibration for ``method`` (``"none"`` for point estimates), or None."""
    return method_entry(im.trained, method)


def finish_prediction(
    im: InferenceModel,
    mean: np.ndarray,
    parts: dict[str, np.ndarray],
    valid: np.ndarray,
    snr: np.ndarray,
    masked: np.ndarray,
    *,
    uncertainty: str | None,
    n_samples: int,
    options: PredictOptions,
) -> Prediction:
    """The :class:`Prediction` from raw model output: ``mean`` (N, L) physical units and variance
    ``parts`` (N, L each, units²) — both NaN for rows not computed, and modified in place —,
    ``valid`` (N,) bool, ``snr`` (N,), ``masked`` (N,) masked fraction. Non-finite outputs of valid
    rows become NaN with flag NONFINITE_OUTPUT; the model's calibration for ``uncertainty`` is
    applied when ``options.calibrated`` (else, or when it has none, flag UNCALIBRATED); the
    spectrum and label flags use ``options``' thresholds."""
    calibrated = options.calibrated
    snr_min, max_masked_fraction, ood_factor = (
        options.snr_min, options.max_masked_fraction, options.ood_factor
    )
    n, L = mean.shape
    method = uncertainty or "none"
    flags = flag_bits.spectrum_flags(
        valid, snr, masked, snr_min=snr_min, max_masked_fraction=max_masked_fraction
    )
    # non-finite network output for a valid spectrum: NaN it and flag it
    bad_out = valid[:, None] & ~np.isfinite(mean)
    for v in parts.values():
        bad_out |= valid[:, None] & ~np.isfinite(v)
    if bad_out.any():
        flags[bad_out.any(axis=1)] |= flag_bits.bit("NONFINITE_OUTPUT")
        mean[bad_out] = np.nan
        for v in parts.values():
            v[bad_out] = np.nan
    total = total_variance(parts)
    scales = np.ones(L)
    entry = calibration_entry(im, method)
    applied = False
    if total is None:
        std = np.full((n, L), np.nan)
        flags[valid] |= flag_bits.bit("NO_UNCERTAINTY")
    else:
        if calibrated and entry is not None:
            parts, scales = apply_calibration(parts, list(im.label_names), entry)
            applied = True
            total = total_variance(parts)
        else:
            flags[valid] |= flag_bits.bit("UNCALIBRATED")
        std = np.sqrt(total)
    ref = None
    if applied and entry.get("sigma_reference"):  # type: ignore[union-attr]
        ref = np.array([float(entry["sigma_reference"].get(k, np.nan)) for k in im.label_names])
    flags |= flag_bits.label_flags(
        mean, std, sigma_reference=ref, ood_factor=ood_factor, label_range=im.label_range
    )
    mean[~valid] = np.nan
    std[~valid] = np.nan
    return Prediction(
        mean=mean,
        std=std,
        label_names=list(im.label_names),
        label_units=list(im.label_units),
        variance_parts=parts,
        flags=flags.astype(np.int32),
        snr=np.asarray(snr, np.float64),
        masked_fraction=masked,
        uncertainty=uncertainty,
        n_samples=n_samples,
        calibrated=applied,
        scales=scales,
    )
