"""The uncertainty calibration estimator: :class:`UncertaintyCalibration`, and how a model carries it.

The calibration models, fitted per label k on a dev set with known labels (rows whose label is
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

The estimator is :class:`UncertaintyCalibration` (scikit-learn conventions: settings in the
constructor, :meth:`~UncertaintyCalibration.fit` on an uncalibrated prediction and the true labels,
fitted state in attributes ending in ``_``, :meth:`~UncertaintyCalibration.apply` to variance
parts, :meth:`~UncertaintyCalibration.to_dict` / :meth:`~UncertaintyCalibration.from_dict`).
:func:`starlabels.inference.calibration.calibrate` predicts a dev set, fits one and stores it
with the model (:func:`store_calibration`); :func:`fit_scales` and :func:`apply_calibration` are
the same on dicts; :func:`calibration_for` gives the one a model carries for a method. This
module does not run predictions (``starlabels.predict`` applies calibrations through it).

Storage: once, in ``config.json["calibration"]`` of the model folder, one fitted calibration per
uncertainty method (MC-dropout, noise and delta-method σ need different factors), laid out as
:mod:`starlabels.models.calibration_store` describes (which also reads the older layouts)::

    {"format": 2, "method": "mc_dropout",
     "methods": {"mc_dropout": {"scales": {"TEFF": 1.31, ...},
                                "model": "scale",        # or "parts" / "floor" / "power" / "auto"
                                "part_scales": {"TEFF": {"epistemic": 0.3, "aleatoric": 0.9}},
                                "floor": {"TEFF": 12.0, ...},               # K/dex
                                "sigma_mad_before": {...}, "sigma_mad_after": {...},
                                "n_dev": {...}, "percentile": 99.0, "bins": 5,
                                "sigma_reference": {"TEFF": 143.0, ...},   # calibrated σ, K/dex
                                "n_samples": 100, "created": "2025-…"}},
     "label_range": {"min": [...], "max": [...], "source": "dev set"}}   # only if none is known

``part_scales`` (model ``parts``; the factor of each variance part, times ``scales``, which is 1
there), ``floor`` (model ``floor``, in label units) and ``power`` (``{label: {"exponent": γ,
"pivot": m}}``) are present only for labels calibrated with those models; ``models`` (model
``auto``) names the model chosen per label. ``sigma_reference`` is the ``percentile``-th
percentile of the calibrated σ over the dev set, the reference of the HIGH_UNCERTAINTY
(out-of-distribution) flag. :func:`starlabels.predict` applies the calibration of its method by
default (``calibrated=False`` turns it off; the UNCALIBRATED flag marks rows without). An entry
under ``"*"`` (from a bare ``{label: scale}``) applies to every method.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.inference.calibration_fits import fit_label, regime_objective
from starlabels.models.calibration_store import ALL_METHODS, CALIBRATION_FORMAT
from starlabels.statistics import sigma_mad

if TYPE_CHECKING:
    from starlabels.inference.prediction import Prediction

__all__ = [
    "CALIBRATION_MODELS",
    "PERCENTILE",
    "UNSCALED_PARTS",
    "UncertaintyCalibration",
    "apply_calibration",
    "calibration_for",
    "calibration_info",
    "fit_scales",
    "method_entry",
    "store_calibration",
    "z_scores",
]

PERCENTILE = 99.0
#: Calibration models of :class:`UncertaintyCalibration` (module docstring).
CALIBRATION_MODELS = ("scale", "parts", "floor", "power", "auto")
#: Variance parts a calibration never scales.
UNSCALED_PARTS = ("coverage",)


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


# ------------------------------------------------------------------ the estimator


class UncertaintyCalibration:
    """Calibration of one uncertainty method's σ, per label (module docstring).

    Parameters
    ----------
    model:
        ``"scale"`` (default), ``"parts"`` (needs exactly two variance parts), ``"floor"``,
        ``"power"`` or ``"auto"`` (the best of the applicable ones per label).
    bins:
        Regime bins of the two-parameter fits (by SNR when the dev rows' SNRs differ).
    percentile:
        Percentile of the calibrated dev-set σ kept as the HIGH_UNCERTAINTY reference.

    Fitted attributes (dicts keyed by label name): ``label_names_`` (list), ``scales_``,
    ``models_`` (the model used per label), ``part_scales_`` (``{label: {part: factor}}``),
    ``floor_`` (label units), ``power_`` (``{label: {"exponent": γ, "pivot": m}}``),
    ``sigma_mad_before_`` and ``sigma_mad_after_`` (σ_MAD of the dev z-scores), ``n_dev_``,
    ``sigma_reference_`` (label units), ``n_samples_`` (of the fitted prediction) and
    ``created_`` (ISO time). ``part_scales_``, ``floor_`` and ``power_`` hold only the labels
    calibrated with that model.
    """

    def __init__(self, model: str = "scale", *, bins: int = 5, percentile: float = PERCENTILE) -> None:
        self.model = model
        self.bins = bins
        self.percentile = percentile

    # -------------------------------------------------------------- fitting
    def fit(self, prediction: Prediction, labels: np.ndarray) -> UncertaintyCalibration:
        """Fit on an *uncalibrated* ``prediction`` (``predict(..., calibrated=False)``) of dev
        spectra and their true (N, L) ``labels`` (MISSING/NaN ignored); returns ``self``.

        Raises :class:`InputDataError` for a calibrated prediction, an unknown ``model``, a model
        the prediction cannot support, or a label with fewer than 5 usable dev rows.
        """
        pred = prediction
        if pred.calibrated:
            raise InputDataError(
                "calibration needs an uncalibrated prediction (predict(..., calibrated=False))")
        if self.model not in CALIBRATION_MODELS:
            raise InputDataError(f"calibration model must be one of {CALIBRATION_MODELS}, got {self.model!r}")
        part_names = [p for p in pred.variance_parts if p not in UNSCALED_PARTS]
        if self.model == "parts" and len(part_names) != 2:
            raise InputDataError(
                f"the 'parts' calibration needs two variance parts, this prediction has {part_names}"
            )
        candidates = [self.model] if self.model != "auto" else [
            m for m in ("scale", "parts", "floor", "power") if m != "parts" or len(part_names) == 2
        ]
        bins = int(self.bins)
        lab = np.asarray(labels, np.float64)
        z = z_scores(pred, labels)
        snr = np.asarray(getattr(pred, "snr", np.full(len(lab), np.nan)), np.float64)
        fitted: dict[str, dict[str, Any]] = {key: {} for key in (
            "scales", "models", "part_scales", "floor", "power", "before", "after", "n_dev", "reference")}
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
            fitted["before"][name] = s
            fitted["n_dev"][name] = int(zk.size)
            resid = pred.mean[use, k] - lab[use, k]
            parts = {p: pred.variance_parts[p][use, k] for p in part_names}
            sn = snr[use]
            order = sn if np.isfinite(sn).all() and np.ptp(sn) > 0 else None
            common = order if order is not None else np.sqrt(sum(parts.values()))
            fits = {m: fit_label(m, resid, parts, order, bins) for m in candidates}
            best = min(fits, key=lambda m: regime_objective(resid, fits[m][1], common, bins))
            params, var = fits[best]
            fitted["models"][name] = best
            fitted["scales"][name] = float(params["scale"])
            if "parts" in params:
                fitted["part_scales"][name] = params["parts"]
            if "floor" in params:
                fitted["floor"][name] = float(params["floor"])
            if "power" in params:
                fitted["power"][name] = {"exponent": float(params["power"]), "pivot": float(params["pivot"])}
            fitted["after"][name] = sigma_mad(resid / np.sqrt(var))
            sk = np.sqrt(var)
            sk = sk[np.isfinite(sk)]
            fitted["reference"][name] = float(np.percentile(sk, self.percentile)) if sk.size else float("nan")
        self.label_names_ = list(pred.label_names)
        self.scales_ = fitted["scales"]
        self.models_ = fitted["models"]
        self.part_scales_ = fitted["part_scales"]
        self.floor_ = fitted["floor"]
        self.power_ = fitted["power"]
        self.sigma_mad_before_ = fitted["before"]
        self.sigma_mad_after_ = fitted["after"]
        self.n_dev_ = fitted["n_dev"]
        self.sigma_reference_ = fitted["reference"]
        self.n_samples_ = int(pred.n_samples)
        self.created_ = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "scales_"):
            raise InputDataError("this UncertaintyCalibration is not fitted; call fit(prediction, labels) "
                                 "or build it with from_dict")

    # -------------------------------------------------------------- applying
    def apply(
        self, variance_parts: Mapping[str, np.ndarray], label_names: Sequence[str]
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Calibrated variance parts ((N, L) each, labels in ``label_names`` order) and the (L,)
        overall scales (1 for a label the calibration does not know).

        Each part is multiplied by (scale × its part scale)²; a power model multiplies every part
        by (σ²/m²)^(γ−1) row by row; a floor adds a part ``"floor"`` (f² where the other parts are
        finite). The label-coverage part (``"coverage"``, :mod:`starlabels.inference.coverage`) is
        left as it is: it is ~0 where calibrations are fitted.
        """
        self._check_fitted()
        parts = dict(variance_parts)
        names = list(label_names)
        scales = np.array([float(self.scales_.get(k, 1.0)) for k in names])
        row_factor = 1.0
        if self.power_ and parts:  # σ → s·m·(σ/m)^γ: variances × (σ²/m²)^(γ−1) row by row
            total = sum(v for p, v in parts.items() if p not in UNSCALED_PARTS)
            g = np.array([float((self.power_.get(k) or {}).get("exponent", 1.0)) for k in names])
            m = np.array([float((self.power_.get(k) or {}).get("pivot", 1.0)) for k in names])
            with np.errstate(divide="ignore", invalid="ignore"):
                row_factor = np.where(g != 1.0, (total / m**2) ** (g - 1.0), 1.0)
        out = {}
        for p, v in parts.items():
            if p in UNSCALED_PARTS:
                out[p] = v
                continue
            factor = np.array([float((self.part_scales_.get(k) or {}).get(p, 1.0)) for k in names])
            out[p] = v * (scales * factor) ** 2 * row_factor
        if self.floor_ and parts:
            f2 = np.array([float(self.floor_.get(k, 0.0)) for k in names]) ** 2
            finite = np.all([np.isfinite(v) for p, v in parts.items() if p not in UNSCALED_PARTS], axis=0)
            out["floor"] = np.where(finite, f2, np.nan)
        return out, scales

    # -------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        """Settings and fitted state as a JSON-able dict (the per-method entry of the model
        folder's ``calibration``; module docstring)."""
        self._check_fitted()
        out: dict[str, Any] = {"scales": dict(self.scales_), "model": self.model, "bins": int(self.bins),
                               "percentile": float(self.percentile)}
        for key, value in (("sigma_mad_before", self.sigma_mad_before_),
                           ("sigma_mad_after", self.sigma_mad_after_), ("n_dev", self.n_dev_),
                           ("sigma_reference", self.sigma_reference_), ("n_samples", self.n_samples_),
                           ("created", self.created_)):
            if value is not None:
                out[key] = value
        if self.model == "auto":
            out["models"] = dict(self.models_)
        for key, value in (("part_scales", self.part_scales_), ("floor", self.floor_),
                           ("power", self.power_)):
            if value:
                out[key] = json.loads(json.dumps(value))
        return out

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any]) -> UncertaintyCalibration:
        """The fitted calibration of a :meth:`to_dict` entry (also a bare ``{"scales": {...}}``
        and the entries of format-1 model folders, which lack ``bins``)."""
        if not isinstance(entry.get("scales"), Mapping):
            raise InputDataError(f"a calibration entry needs a 'scales' dict, got keys {sorted(entry)}")
        obj = cls(str(entry.get("model", "scale")), bins=int(entry.get("bins", 5)),
                  percentile=float(entry.get("percentile", PERCENTILE)))
        obj.scales_ = {str(k): float(v) for k, v in entry["scales"].items()}
        obj.label_names_ = list(obj.scales_)
        obj.models_ = dict(entry.get("models") or dict.fromkeys(obj.scales_, obj.model))
        obj.part_scales_ = json.loads(json.dumps(entry.get("part_scales") or {}))
        obj.floor_ = dict(entry.get("floor") or {})
        obj.power_ = json.loads(json.dumps(entry.get("power") or {}))
        obj.sigma_mad_before_ = entry.get("sigma_mad_before")
        obj.sigma_mad_after_ = entry.get("sigma_mad_after")
        obj.n_dev_ = entry.get("n_dev")
        obj.sigma_reference_ = entry.get("sigma_reference")
        obj.n_samples_ = entry.get("n_samples")
        obj.created_ = entry.get("created")
        return obj

    def __repr__(self) -> str:
        state = "fitted" if hasattr(self, "scales_") else "not fitted"
        return (f"UncertaintyCalibration(model={self.model!r}, bins={self.bins}, "
                f"percentile={self.percentile}) [{state}]")


# ------------------------------------------------------------------ functions over the estimator


def fit_scales(
    pred: Prediction, labels: np.ndarray, *, percentile: float = PERCENTILE, model: str = "scale",
    bins: int = 5,
) -> dict[str, Any]:
    """``UncertaintyCalibration(model, bins=bins, percentile=percentile).fit(pred, labels).to_dict()``:
    the calibration entry for the prediction's method (see :class:`UncertaintyCalibration`)."""
    return UncertaintyCalibration(model, bins=bins, percentile=percentile).fit(pred, labels).to_dict()


def apply_calibration(
    parts: Mapping[str, np.ndarray], label_names: Sequence[str], entry: Mapping[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``UncertaintyCalibration.from_dict(entry).apply(parts, label_names)``: calibrated variance
    parts ((N, L) each) and the (L,) overall scales of a stored entry."""
    return UncertaintyCalibration.from_dict(entry).apply(parts, label_names)


def calibration_info(tm: Any) -> dict[str, Any]:
    """The calibration stored with a model (``tm.calibration``; the layout of
    :mod:`starlabels.models.calibration_store`), ``{}`` when there is none."""
    info = getattr(tm, "calibration", None)
    return info if isinstance(info, dict) else {}


def method_entry(tm: Any, method: str) -> dict[str, Any] | None:
    """The stored calibration entry for ``method`` (its own, else one for every method ``"*"``),
    or None when the model has none for it."""
    methods = calibration_info(tm).get("methods") or {}
    for key in (method, ALL_METHODS):
        entry = methods.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("scales"), dict):
            return entry
    return None


def calibration_for(tm: Any, method: str) -> UncertaintyCalibration | None:
    """The fitted :class:`UncertaintyCalibration` a model carries for ``method`` (``"none"`` for
    point estimates), or None."""
    entry = method_entry(tm, method)
    return None if entry is None else UncertaintyCalibration.from_dict(entry)


def store_calibration(
    tm: Any, method: str, calibration: UncertaintyCalibration, dev_labels: np.ndarray | None = None
) -> None:
    """Put ``calibration`` on the model ``tm`` as the one for ``method`` and make ``method`` the
    model's default; a calibration for every method (``"*"``, from a bare ``{label: scale}``) is
    replaced. ``dev_labels`` (N, L) set ``label_range`` when the model records no training range."""
    info = json.loads(json.dumps(calibration_info(tm))) or {"format": CALIBRATION_FORMAT, "methods": {}}
    methods = info.setdefault("methods", {})
    methods.pop(ALL_METHODS, None)
    methods[method] = calibration.to_dict()
    info["method"] = method
    if (dev_labels is not None and "label_range" not in info
            and not (getattr(tm, "training", None) or {}).get("label_range")):
        lab = np.where((dev_labels == MISSING) | ~np.isfinite(dev_labels), np.nan, dev_labels)
        with np.errstate(all="ignore"):
            info["label_range"] = {"min": np.nanmin(lab, axis=0).tolist(),
                                   "max": np.nanmax(lab, axis=0).tolist(), "source": "dev set"}
    tm.calibration = info
