"""Calibration of predicted uncertainties on a dev set, stored in the model folder.

For each label k the scale factor s_k is fitted so that the normalised residuals
z = (prediction − label) / (s_k σ) have σ_MAD(z) = 1.4826 · median|z − median z| = 1 on the dev
set (rows whose label is MISSING/NaN, or whose spectrum was invalid, are ignored). σ_MAD is robust
to the outliers every survey has, so s_k is the factor that makes the *bulk* of the z-distribution
unit-normal. The calibrated σ is s_k σ (and every variance part is scaled by s_k²).

Storage (``config.json`` of the model folder):

- ``"calibration"``: ``{label: scale}`` — the scales of the most recently calibrated method (the
  DESIGN.md layout, validated by :class:`~starlabels.models.folder.TrainedModel`);
- ``"training"["uncertainty_calibration"]``: the details per method, since MC-dropout, noise and
  delta-method σ need different factors::

    {"format": 1, "method": "mc_dropout",
     "methods": {"mc_dropout": {"scales": {"TEFF": 1.31, ...},
                                "sigma_mad_before": {...}, "sigma_mad_after": {...},
                                "n_dev": {...}, "percentile": 99.0,
                                "sigma_reference": {"TEFF": 143.0, ...},   # calibrated σ, K/dex
                                "n_samples": 100, "created": "2025-…"}},
     "label_range": {"min": [...], "max": [...], "source": "dev set"}}   # only if none is known

``sigma_reference`` is the ``percentile``-th percentile of the calibrated σ over the dev set, the
reference of the HIGH_UNCERTAINTY (out-of-distribution) flag. :func:`starlabels.predict` applies the
scales of its method by default (``calibrated=False`` turns them off; the UNCALIBRATED flag marks
rows without). A bare ``{label: scale}`` without details applies to every method.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputDataError, ModelFormatError
from starlabels.inference.predict import Prediction, predict, resolve

CALIBRATION_FORMAT = 1
PERCENTILE = 99.0
#: Key of the calibration details in the model's ``training`` provenance.
INFO_KEY = "uncertainty_calibration"


def sigma_mad(x: np.ndarray) -> float:
    """σ_MAD = 1.4826 · median(|x − median x|) of the finite values (NaN if none)."""
    from starlabels.evaluation.metrics import sigma_mad as _sigma_mad

    return float(_sigma_mad(np.asarray(x, np.float64)))


def z_scores(pred: Prediction, labels: np.ndarray) -> np.ndarray:
    """(N, L) (prediction − label)/σ; NaN where the label is MISSING/NaN or σ is not usable."""
    lab = np.asarray(labels, np.float64)
    if lab.shape != pred.mean.shape:
        raise InputDataError(f"labels have shape {lab.shape}, predictions {pred.mean.shape}")
    lab = np.where((lab == MISSING) | ~np.isfinite(lab), np.nan, lab)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (pred.mean - lab) / pred.std
    z[~(pred.std > 0)] = np.nan
    return z


def fit_scales(pred: Prediction, labels: np.ndarray, *, percentile: float = PERCENTILE) -> dict[str, Any]:
    """Fit the per-label scale factors from an *uncalibrated* prediction and the true labels.

    Returns the calibration entry for the prediction's method (see the module docstring).
    Raises :class:`InputDataError` for a label with fewer than 5 usable dev rows.
    """
    if pred.calibrated:
        raise InputDataError("fit_scales needs an uncalibrated prediction (predict(..., calibrated=False))")
    z = z_scores(pred, labels)
    scales, before, after, n_dev, ref = {}, {}, {}, {}, {}
    for k, name in enumerate(pred.label_names):
        zk = z[:, k][np.isfinite(z[:, k])]
        if zk.size < 5:
            raise InputDataError(
                f"label {name}: only {zk.size} dev rows with a label and a finite uncertainty; "
                "need at least 5 to calibrate"
            )
        s = sigma_mad(zk)
        if not (np.isfinite(s) and s > 0):
            raise InputDataError(f"label {name}: σ_MAD of the z-scores is {s}; cannot calibrate")
        scales[name] = s
        before[name] = s
        after[name] = sigma_mad(zk / s)
        n_dev[name] = int(zk.size)
        sk = pred.std[:, k] * s
        sk = sk[np.isfinite(sk)]
        ref[name] = float(np.percentile(sk, percentile)) if sk.size else float("nan")
    return {
        "scales": scales, "sigma_mad_before": before, "sigma_mad_after": after, "n_dev": n_dev,
        "percentile": float(percentile), "sigma_reference": ref, "n_samples": int(pred.n_samples),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def calibrate(
    model: Any,
    dev_flux: Any,
    dev_error: Any,
    dev_labels: Any,
    *,
    uncertainty: str | None = "mc_dropout",
    n_samples: int = 100,
    percentile: float = PERCENTILE,
    save: bool | str | os.PathLike = False,
    seed: int | None = 0,
    **predict_kwargs: Any,
) -> dict[str, Any]:
    """Fit and attach the uncertainty calibration of ``model`` for one method on a dev set.

    Parameters
    ----------
    model:
        TrainedModel or model folder.
    dev_flux, dev_error:
        Dev spectra as for :func:`starlabels.predict` ((N, 8575) raw, or preprocessed with
        ``preprocessed=True`` in ``predict_kwargs``).
    dev_labels:
        (N, L) true labels in the model's label order and units; MISSING/NaN are ignored.
    uncertainty, n_samples:
        The method to calibrate (``None`` calibrates the variance head's σ).
    percentile:
        Percentile of the calibrated dev-set σ stored as the HIGH_UNCERTAINTY reference.
    save:
        False: only attach to the model in memory; True: also save the model into the folder it
        was loaded from (``model`` given as a path); a path: save the model there
        (:meth:`TrainedModel.save`, atomic).

    Returns
    -------
    dict
        The entry stored for the method plus ``"uncertainty"`` (the method name): ``scales``,
        ``sigma_mad_before`` (≠ 1 in general), ``sigma_mad_after`` (1), ``sigma_reference``...
    """
    im = resolve(model)
    tm = im.trained
    pred = predict(im, dev_flux, dev_error, uncertainty=uncertainty, n_samples=n_samples,
                   calibrated=False, seed=seed, **predict_kwargs)
    labels = np.asarray(dev_labels, np.float64)
    if labels.ndim == 1:
        labels = labels[:, None] if len(im.label_names) == 1 else labels[None, :]
    entry = fit_scales(pred, labels, percentile=percentile)
    method = uncertainty or "none"
    info = json.loads(json.dumps(calibration_info(tm))) or {"format": CALIBRATION_FORMAT, "methods": {}}
    info.setdefault("methods", {})[method] = entry
    info["method"] = method
    if "label_range" not in info and not (getattr(tm, "training", None) or {}).get("label_range"):
        lab = np.where((labels == MISSING) | ~np.isfinite(labels), np.nan, labels)
        with np.errstate(all="ignore"):
            info["label_range"] = {"min": np.nanmin(lab, axis=0).tolist(),
                                   "max": np.nanmax(lab, axis=0).tolist(), "source": "dev set"}
    attach(tm, info)
    if save:
        folder = im.folder if save is True else Path(save)
        if folder is None:
            raise ModelFormatError("the model was not loaded from a folder; pass save=<model folder>")
        tm.save(folder)
    return {"uncertainty": method, **entry}


def calibration_info(tm: Any) -> dict[str, Any]:
    """The per-method calibration details stored with ``tm`` (``{}`` when there are none)."""
    info = (getattr(tm, "training", None) or {}).get(INFO_KEY)
    return info if isinstance(info, dict) else {}


def attach(tm: Any, info: dict[str, Any]) -> None:
    """Store calibration details on ``tm``: ``tm.calibration`` = scales of ``info["method"]``,
    ``tm.training[INFO_KEY]`` = ``info``."""
    scales = info["methods"][info["method"]]["scales"]
    tm.calibration = {str(k): float(v) for k, v in scales.items()}
    training = dict(getattr(tm, "training", None) or {})
    training[INFO_KEY] = info
    tm.training = training


def method_entry(tm: Any, method: str) -> dict[str, Any] | None:
    """Calibration entry (``{"scales": {...}, "sigma_reference": {...}, ...}``) for ``method``, or
    None when the model has none for it."""
    info = calibration_info(tm)
    entry = (info.get("methods") or {}).get(method)
    if isinstance(entry, dict) and isinstance(entry.get("scales"), dict):
        return entry
    flat = getattr(tm, "calibration", None)
    if flat and not info.get("methods"):
        return {"scales": dict(flat)}
    return None


def report(entry: dict[str, Any]) -> str:
    """Plain-text table of σ_MAD(z) before/after and the scale per label."""
    method = entry.get("uncertainty", "?")
    lines = [f"calibration ({method}): label  n_dev  sigma_MAD(z) before -> after  scale"]
    for name, s in entry["scales"].items():
        lines.append(
            f"  {name:<10s} {entry['n_dev'][name]:6d}  {entry['sigma_mad_before'][name]:8.3f} -> "
            f"{entry['sigma_mad_after'][name]:6.3f}  {s:7.3f}"
        )
    return "\n".join(lines)
