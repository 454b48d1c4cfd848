"""Calibrate a model's predicted uncertainties on a dev set: :func:`calibrate` and :func:`report`.

:func:`calibrate` predicts dev spectra with known labels (uncalibrated), fits an
:class:`~starlabels.inference.uncertainty_calibration.UncertaintyCalibration` — models
``"scale"`` (default), ``"parts"``, ``"floor"``, ``"power"`` and ``"auto"``, described in
:mod:`starlabels.inference.uncertainty_calibration` — and stores it with the model (once, under
``config.json["calibration"]`` of the model folder), where :func:`starlabels.predict` applies it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import ModelFormatError
from starlabels.inference.inference_model import resolve
from starlabels.inference.predict import predict
from starlabels.inference.predict_options import PredictOptions
from starlabels.inference.uncertainty_calibration import (
    PERCENTILE,
    UncertaintyCalibration,
    apply_calibration,
    fit_scales,
    store_calibration,
)

__all__ = ["UncertaintyCalibration", "apply_calibration", "calibrate", "fit_scales", "report"]


def calibrate(
    trained: Any,
    /,
    dev_flux: Any,
    dev_error: Any,
    dev_labels: Any,
    *,
    uncertainty: str | None = "default",
    n_samples: int = 100,
    percentile: float = PERCENTILE,
    save: bool | str | os.PathLike = False,
    seed: int | None = 0,
    model: str = "scale",
    bins: int = 5,
    model_kind: str | None = None,
    **predict_kwargs: Any,
) -> dict[str, Any]:
    """Fit and attach the uncertainty calibration of a trained model for one method on a dev set.

    Parameters
    ----------
    trained:
        TrainedModel, :class:`~starlabels.models.method.LabelMethod` (``CannonModel``,
        ``PayneModel``) or model folder (positional).
    dev_flux, dev_error:
        Dev spectra as for :func:`starlabels.predict` ((N, P) raw on the model's input grid, or
        preprocessed with ``preprocessed=True`` in ``predict_kwargs``; an ``options`` there is
        used with ``calibrated`` and ``coverage`` off).
    dev_labels:
        (N, L) true labels in the model's label order and units; MISSING/NaN are ignored.
    uncertainty, n_samples:
        The method to calibrate (``None`` calibrates the variance head's σ). ``"default"``:
        ``"mc_dropout"`` for a network, the LabelMethod's own σ (its ``default_uncertainty``,
        e.g. ``"fisher"``) otherwise.
    percentile:
        Percentile of the calibrated dev-set σ stored as the HIGH_UNCERTAINTY reference.
    model, bins:
        Calibration model (``"scale"``, ``"parts"``, ``"floor"``, ``"power"``, ``"auto"``; module
        docstring) and its regime bins: the settings of :class:`UncertaintyCalibration`. The
        two-parameter models want a dev set spanning the SNRs of the data. ``model_kind`` is the
        old name of ``model`` (deprecated).
    save:
        False: only attach to the model in memory; True: also save the model into the folder it
        was loaded from (``trained`` given as a path); a path: save the model there (atomic).

    Returns
    -------
    dict
        The entry stored for the method (:meth:`UncertaintyCalibration.to_dict`) plus
        ``"uncertainty"`` (the method name): ``scales``, ``sigma_mad_before`` (≠ 1 in general),
        ``sigma_mad_after`` (1), ``sigma_reference``...
    """
    if model_kind is not None:
        warnings.warn("calibrate(model_kind=...) is deprecated; use model=...", DeprecationWarning,
                      stacklevel=2)
        model = model_kind
    im = resolve(trained)
    tm = im.trained
    if uncertainty == "default":
        uncertainty = "mc_dropout" if im.method is None else tm.default_uncertainty
    elif uncertainty is None and im.method is not None:
        uncertainty = tm.default_uncertainty
    options = dataclasses.replace(predict_kwargs.pop("options", None) or PredictOptions(),
                                  calibrated=False, coverage=False)
    pred = predict(im, dev_flux, dev_error, uncertainty=uncertainty, n_samples=n_samples, seed=seed,
                   options=options, **predict_kwargs)
    labels = np.asarray(dev_labels, np.float64)
    if labels.ndim == 1:
        labels = labels[:, None] if len(im.label_names) == 1 else labels[None, :]
    calibration = UncertaintyCalibration(model, bins=bins, percentile=percentile).fit(pred, labels)
    method = uncertainty or "none"
    store_calibration(tm, method, calibration, labels)
    if save:
        folder = im.folder if save is True else Path(save)
        if folder is None:
            raise ModelFormatError("the model was not loaded from a folder; pass save=<model folder>")
        tm.save(folder)
    return {"uncertainty": method, **calibration.to_dict()}


def report(entry: Mapping[str, Any]) -> str:
    """Plain-text table of σ_MAD(z) before/after and the scale per label of a :func:`calibrate`
    result (or any stored entry with ``n_dev`` and σ_MAD before/after)."""
    method = entry.get("uncertainty", "?")
    kind = entry.get("model", "scale")
    lines = [f"calibration ({method}, model {kind}): label  n_dev  sigma_MAD(z) before -> after  scale"]
    for name, s in entry["scales"].items():
        extra = "".join(f"  {p} x{v:.3g}" for p, v in (entry.get("part_scales") or {}).get(name, {}).items())
        if name in (entry.get("floor") or {}):
            extra += f"  floor {entry['floor'][name]:.4g}"
        lines.append(
            f"  {name:<10s} {entry['n_dev'][name]:6d}  {entry['sigma_mad_before'][name]:8.3f} -> "
            f"{entry['sigma_mad_after'][name]:6.3f}  {s:7.3f}{extra}"
        )
    return "\n".join(lines)
