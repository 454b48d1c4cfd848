"""Calibration of predicted uncertainties on a dev set, stored in the model folder.

Three calibration models, fitted per label k on a dev set with known labels (rows whose label is
MISSING/NaN, or whose spectrum was invalid, are ignored), all judged by σ_MAD of the normalised
residuals z = (prediction − label)/σ — σ_MAD = 1.4826 · median|z − median z| is robust to the
outliers every survey has, so the calibration makes the *bulk* of the z-distribution unit-normal:

``"scale"`` (default)
    σ → s_k σ, with s_k = σ_MAD(z) on the dev set (every variance part scaled by s_k²). Right
    when the uncertainty is off by the same factor at every SNR.
``"parts"``
    σ² → a_k² σ_1² + b_k² σ_2² for a prediction with two variance parts (MC dropout with a
    variance head: ``epistemic`` and ``aleatoric``). The two parts grow differently with the noise
    — the model (epistemic) part barely, the predicted (aleatoric) part with it — and need
    different factors when one factor fitted at one SNR fails at another (measured on the
    accuracy benchmark: one scale gave [Fe/H] z-widths 0.81 at SNR 100–200 and 1.29 at 20–60).
``"floor"``
    σ² → (s_k σ)² + f_k²: a noise-propagated σ (``noise``/``delta`` methods) misses the model's own
    error, which does not shrink with the noise; f_k is that SNR-independent floor (a variance
    part ``"floor"`` in the calibrated prediction).

``"power"``
    σ → s_k m (σ/m)^γ_k (m: the dev set's median σ): when σ grows too slowly (γ > 1) or too fast
    (γ < 1) with the noise — measured on the accuracy benchmark's BCNN, whose [Fe/H] z-widths
    were 0.79 at SNR 100–200 and 1.28 at 20–60 after the best ``parts`` fit (its MC-dropout factor
    went to 0: the variance head already covers the dropout noise it was trained with).
``"auto"``
    fits each applicable model per label and keeps the one with the lowest SNR-binned objective
    (``entry["models"]`` says which).

The two-parameter models are fitted on a dev set that spans the SNRs the model will see (e.g. dev
spectra degraded with :func:`starlabels.data.augment.degrade_snr`): the dev rows are sorted by SNR
(or, when all have the same SNR, by the share of the second part for ``parts`` and by σ
otherwise), cut into ``bins`` equal-count bins, and the parameters minimise Σ_bins
log²σ_MAD(z_bin) + log²σ_MAD(z_all) on grids refined around the best — every bin, from the
noisiest to the cleanest, unit-normal at once.

Storage (``config.json`` of the model folder):

- ``"calibration"``: ``{label: scale}`` — the scales of the most recently calibrated method (the
  DESIGN.md layout, validated by :class:`~starlabels.models.folder.TrainedModel`);
- ``"training"["uncertainty_calibration"]``: the details per method, since MC-dropout, noise and
  delta-method σ need different factors::

    {"format": 1, "method": "mc_dropout",
     "methods": {"mc_dropout": {"scales": {"TEFF": 1.31, ...},
                                "model": "scale",        # or "parts" / "floor" (below)
                                "part_scales": {"TEFF": {"epistemic": 0.3, "aleatoric": 0.9}},
                                "floor": {"TEFF": 12.0, ...},               # K/dex
                                "sigma_mad_before": {...}, "sigma_mad_after": {...},
                                "n_dev": {...}, "percentile": 99.0,
                                "sigma_reference": {"TEFF": 143.0, ...},   # calibrated σ, K/dex
                                "n_samples": 100, "created": "2025-…"}},
     "label_range": {"min": [...], "max": [...], "source": "dev set"}}   # only if none is known

``part_scales`` (model ``parts``; the factor of each variance part, times ``scales``, which is 1
there), ``floor`` (model ``floor``, in label units) and ``power`` (``{label: {"exponent": γ,
"pivot": m}}``) are present only for labels calibrated with those models.
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
#: Calibration models of :func:`fit_scales` (module docstring).
CALIBRATION_MODELS = ("scale", "parts", "floor", "power", "auto")
#: Variance parts a calibration never scales.
UNSCALED_PARTS = ("coverage",)
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


def _binned_sigma_mad(resid: np.ndarray, var: np.ndarray, bins: list[np.ndarray]) -> np.ndarray:
    """Objective per candidate: Σ_bins log²σ_MAD(z_bin) + log²σ_MAD(z_all).

    ``resid`` (n,), ``var`` (G, n) calibrated variances of G candidates, ``bins`` index arrays."""
    z = resid[None, :] / np.sqrt(var)

    def smad(zz: np.ndarray) -> np.ndarray:
        med = np.median(zz, axis=1, keepdims=True)
        return 1.4826 * np.median(np.abs(zz - med), axis=1)

    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.log(smad(z)) ** 2
        for idx in bins:
            total = total + np.log(smad(z[:, idx])) ** 2
    return np.where(np.isfinite(total), total, np.inf)


def fit_two_parts(
    resid: np.ndarray, v1: np.ndarray, v2: np.ndarray, order: np.ndarray, *, bins: int = 5,
    allow_zero_second: bool = False,
) -> tuple[float, float]:
    """(a, b) minimising the binned σ_MAD objective of z = resid / √(a² v1 + b² v2).

    ``order`` (n,) sorts the rows into ``bins`` equal-count bins (the regime that should be
    calibrated separately: the second part's share, or σ). A logarithmic grid of 41 × 41
    candidates around the single-factor solution, refined three times around the best;
    ``allow_zero_second`` adds b = 0 (no floor) to every grid. Both factors are finally multiplied
    by one common factor that makes σ_MAD of all the z-scores exactly 1.
    """
    resid, v1, v2 = (np.asarray(x, np.float64) for x in (resid, v1, v2))
    n_bins = int(max(1, min(bins, len(resid) // 20)))
    bin_rows = np.array_split(np.argsort(order, kind="stable"), n_bins) if n_bins > 1 else []
    s0 = sigma_mad(resid / np.sqrt(v1 + v2))
    a0 = s0
    b0 = s0 * np.sqrt(np.median(v1 + v2) / max(float(np.median(v2)), 1e-300))
    log_a, log_b, half = np.log(a0), np.log(b0), np.log(100.0)
    best = (np.inf, a0, b0)
    for _ in range(4):
        ga = np.exp(np.linspace(log_a - half, log_a + half, 41))
        gb = np.exp(np.linspace(log_b - half, log_b + half, 41))
        if allow_zero_second:
            gb = np.concatenate([[0.0], gb])
        A, B = (m.ravel() for m in np.meshgrid(ga, gb, indexing="ij"))
        var = A[:, None] ** 2 * v1[None, :] + B[:, None] ** 2 * v2[None, :]
        obj = _binned_sigma_mad(resid, var, bin_rows)
        i = int(np.argmin(obj))
        if obj[i] < best[0]:
            best = (float(obj[i]), float(A[i]), float(B[i]))
        log_a = np.log(best[1])
        log_b = np.log(best[2]) if best[2] > 0 else log_b
        half = half * 8 / 40  # the next grid spans ±4 steps of this one (step = 2·half/40)
    a, b = best[1], best[2]
    # the bins fix the ratio of the two factors; one common factor makes σ_MAD(z_all) = 1 exactly
    c = sigma_mad(resid / np.sqrt(a * a * v1 + b * b * v2))
    return a * c, b * c


def fit_power(
    resid: np.ndarray, sigma: np.ndarray, order: np.ndarray, *, bins: int = 5
) -> tuple[float, float]:
    """(s, γ) of σ → s·m·(σ/m)^γ (m = median σ) minimising the binned σ_MAD objective; s makes
    σ_MAD of all the z-scores 1. γ on a grid of 0–4 in steps of 0.05, refined to 0.005."""
    resid, sigma = np.asarray(resid, np.float64), np.asarray(sigma, np.float64)
    m = float(np.median(sigma))
    u = sigma / m
    n_bins = int(max(1, min(bins, len(resid) // 20)))
    bin_rows = np.array_split(np.argsort(order, kind="stable"), n_bins) if n_bins > 1 else []
    best_g = 1.0
    for grid in (np.arange(0.0, 4.0001, 0.05), None):
        if grid is None:
            grid = np.arange(best_g - 0.05, best_g + 0.0501, 0.005)
        base = m * u[None, :] ** grid[:, None]  # (G, n) σ before the common factor
        z0 = resid[None, :] / base
        med = np.median(z0, axis=1, keepdims=True)
        c = 1.4826 * np.median(np.abs(z0 - med), axis=1)
        obj = _binned_sigma_mad(resid, (base * c[:, None]) ** 2, bin_rows)
        best_g = float(grid[int(np.argmin(obj))])
    sc = sigma_mad(resid / (m * u**best_g))
    return sc, best_g


def _objective(resid: np.ndarray, var: np.ndarray, order: np.ndarray, bins: int) -> float:
    n_bins = int(max(1, min(bins, len(resid) // 20)))
    bin_rows = np.array_split(np.argsort(order, kind="stable"), n_bins) if n_bins > 1 else []
    return float(_binned_sigma_mad(resid, var[None, :], bin_rows)[0])


def _fit_label(
    model: str, resid: np.ndarray, parts: dict[str, np.ndarray], order: np.ndarray | None, bins: int
) -> tuple[dict[str, Any], np.ndarray]:
    """One label's calibration: (params, calibrated variance (n,)). ``order``: the SNR (or None:
    each model's own regime variable)."""
    v = sum(parts.values())
    sigma = np.sqrt(v)
    if model == "scale":
        sc = sigma_mad(resid / sigma)
        return {"scale": sc}, v * sc * sc
    if model == "parts":
        (p1, v1), (p2, v2) = parts.items()
        a, b = fit_two_parts(resid, v1, v2, v2 / (v1 + v2) if order is None else order, bins=bins)
        return {"scale": 1.0, "parts": {p1: a, p2: b}}, a * a * v1 + b * b * v2
    if model == "floor":
        unit = float(np.median(v))  # the floor in units of the median σ: a well-scaled grid
        a, b = fit_two_parts(resid, v, np.full_like(v, unit), v if order is None else order, bins=bins,
                             allow_zero_second=True)
        f = b * np.sqrt(unit)
        return {"scale": a, "floor": f}, a * a * v + f * f
    sc, g = fit_power(resid, sigma, sigma if order is None else order, bins=bins)
    m = float(np.median(sigma))
    return {"scale": sc, "power": g, "pivot": m}, (sc * m * (sigma / m) ** g) ** 2


def fit_scales(
    pred: Prediction, labels: np.ndarray, *, percentile: float = PERCENTILE, model: str = "scale",
    bins: int = 5,
) -> dict[str, Any]:
    """Fit the calibration of an *uncalibrated* prediction against the true labels.

    ``model``: ``"scale"``, ``"parts"`` (needs exactly two variance parts), ``"floor"``,
    ``"power"`` or ``"auto"`` (see the module docstring); ``bins``: regime bins of the
    two-parameter fits (by SNR when the dev rows' SNRs differ). Returns the calibration entry for
    the prediction's method. Raises :class:`InputDataError` for a label with fewer than 5 usable
    dev rows, or a model the prediction cannot support.
    """
    if pred.calibrated:
        raise InputDataError("fit_scales needs an uncalibrated prediction (predict(..., calibrated=False))")
    if model not in CALIBRATION_MODELS:
        raise InputDataError(f"calibration model must be one of {CALIBRATION_MODELS}, got {model!r}")
    part_names = [p for p in pred.variance_parts if p not in UNSCALED_PARTS]
    if model == "parts" and len(part_names) != 2:
        raise InputDataError(
            f"the 'parts' calibration needs two variance parts, this prediction has {part_names}"
        )
    candidates = [model] if model != "auto" else [
        m for m in ("scale", "parts", "floor", "power") if m != "parts" or len(part_names) == 2
    ]
    lab = np.asarray(labels, np.float64)
    z = z_scores(pred, labels)
    snr = np.asarray(getattr(pred, "snr", np.full(len(lab), np.nan)), np.float64)
    scales, before, after, n_dev, ref = {}, {}, {}, {}, {}
    part_scales: dict[str, dict[str, float]] = {}
    floors: dict[str, float] = {}
    powers: dict[str, dict[str, float]] = {}
    chosen: dict[str, str] = {}
    for k, name in enumerate(pred.label_names):
        use = np.isfinite(z[:, k])
        zk = z[:, k][use]
        if zk.size < 5:
            raise InputDataError(
                f"label {name}: only {zk.size} dev rows with a label and a finite uncertainty; "
                "need at least 5 to calibrate"
            )
        s = sigma_mad(zk)
        if not (np.isfinite(s) and s > 0):
            raise InputDataError(f"label {name}: σ_MAD of the z-scores is {s}; cannot calibrate")
        before[name] = s
        n_dev[name] = int(zk.size)
        resid = pred.mean[use, k] - lab[use, k]
        parts = {p: pred.variance_parts[p][use, k] for p in part_names}
        sn = snr[use]
        order = sn if np.isfinite(sn).all() and np.ptp(sn) > 0 else None
        common = order if order is not None else np.sqrt(sum(parts.values()))
        fits = {m: _fit_label(m, resid, parts, order, bins) for m in candidates}
        best = min(fits, key=lambda m: _objective(resid, fits[m][1], common, bins))
        params, var = fits[best]
        chosen[name] = best
        scales[name] = float(params["scale"])
        if "parts" in params:
            part_scales[name] = params["parts"]
        if "floor" in params:
            floors[name] = float(params["floor"])
        if "power" in params:
            powers[name] = {"exponent": float(params["power"]), "pivot": float(params["pivot"])}
        after[name] = sigma_mad(resid / np.sqrt(var))
        sk = np.sqrt(var)
        sk = sk[np.isfinite(sk)]
        ref[name] = float(np.percentile(sk, percentile)) if sk.size else float("nan")
    entry: dict[str, Any] = {
        "scales": scales, "model": model, "sigma_mad_before": before, "sigma_mad_after": after,
        "n_dev": n_dev, "percentile": float(percentile), "sigma_reference": ref,
        "n_samples": int(pred.n_samples),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if model == "auto":
        entry["models"] = chosen
    if part_scales:
        entry["part_scales"] = part_scales
    if floors:
        entry["floor"] = floors
    if powers:
        entry["power"] = powers
    return entry


def apply_calibration(
    parts: dict[str, np.ndarray], label_names: list[str], entry: dict[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Calibrated variance parts ((N, L) each) and the (L,) overall ``scales`` of an entry.

    Each part is multiplied by (scale × its part scale)²; a floor adds a part ``"floor"`` (f²
    where the other parts are finite). The label-coverage part (``"coverage"``,
    :mod:`starlabels.inference.coverage`) is left as it is: it is ~0 where calibrations are fitted.
    """
    scales = np.array([float(entry["scales"].get(k, 1.0)) for k in label_names])
    ps = entry.get("part_scales") or {}
    power = entry.get("power") or {}
    row_factor = 1.0
    if power and parts:  # σ → s·m·(σ/m)^γ: variances × (σ²/m²)^(γ−1) row by row
        total = sum(v for p, v in parts.items() if p not in UNSCALED_PARTS)
        g = np.array([float((power.get(k) or {}).get("exponent", 1.0)) for k in label_names])
        m = np.array([float((power.get(k) or {}).get("pivot", 1.0)) for k in label_names])
        with np.errstate(divide="ignore", invalid="ignore"):
            row_factor = np.where(g != 1.0, (total / m**2) ** (g - 1.0), 1.0)
    out = {}
    for p, v in parts.items():
        if p in UNSCALED_PARTS:
            out[p] = v
            continue
        factor = np.array([float((ps.get(k) or {}).get(p, 1.0)) for k in label_names])
        out[p] = v * (scales * factor) ** 2 * row_factor
    floor = entry.get("floor") or {}
    if floor and parts:
        f2 = np.array([float(floor.get(k, 0.0)) for k in label_names]) ** 2
        finite = np.all([np.isfinite(v) for p, v in parts.items() if p not in UNSCALED_PARTS], axis=0)
        out["floor"] = np.where(finite, f2, np.nan)
    return out, scales


def calibrate(
    model: Any,
    dev_flux: Any,
    dev_error: Any,
    dev_labels: Any,
    *,
    uncertainty: str | None = "default",
    n_samples: int = 100,
    percentile: float = PERCENTILE,
    save: bool | str | os.PathLike = False,
    seed: int | None = 0,
    model_kind: str = "scale",
    bins: int = 5,
    **predict_kwargs: Any,
) -> dict[str, Any]:
    """Fit and attach the uncertainty calibration of ``model`` for one method on a dev set.

    Parameters
    ----------
    model:
        TrainedModel, :class:`~starlabels.models.method.LabelMethod` (``CannonModel``,
        ``PayneModel``) or model folder.
    dev_flux, dev_error:
        Dev spectra as for :func:`starlabels.predict` ((N, P) raw on the model's input grid, or
        preprocessed with ``preprocessed=True`` in ``predict_kwargs``).
    dev_labels:
        (N, L) true labels in the model's label order and units; MISSING/NaN are ignored.
    uncertainty, n_samples:
        The method to calibrate (``None`` calibrates the variance head's σ). ``"default"``:
        ``"mc_dropout"`` for a network, the LabelMethod's own σ (its ``default_uncertainty``,
        e.g. ``"fisher"``) otherwise.
    percentile:
        Percentile of the calibrated dev-set σ stored as the HIGH_UNCERTAINTY reference.
    model_kind, bins:
        Calibration model (``"scale"``, ``"parts"``, ``"floor"``; module docstring) and its
        regime bins. The two-parameter models want a dev set spanning the SNRs of the data.
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
    if uncertainty == "default":
        uncertainty = "mc_dropout" if im.method is None else tm.default_uncertainty
    elif uncertainty is None and im.method is not None:
        uncertainty = tm.default_uncertainty
    pred = predict(im, dev_flux, dev_error, uncertainty=uncertainty, n_samples=n_samples,
                   calibrated=False, seed=seed, coverage=False, **predict_kwargs)
    labels = np.asarray(dev_labels, np.float64)
    if labels.ndim == 1:
        labels = labels[:, None] if len(im.label_names) == 1 else labels[None, :]
    entry = fit_scales(pred, labels, percentile=percentile, model=model_kind, bins=bins)
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
