"""The model as inference needs it: :func:`resolve` turns a model folder, a
:class:`~starlabels.models.folder.TrainedModel` or a :class:`~starlabels.models.method.LabelMethod`
into an :class:`InferenceModel`, resolved once per model.

For a network that means: the scalers folded into a :class:`~starlabels.inference.uncertainty.
PhysicalNetwork` around the fast inference copy of the network
(:func:`starlabels.inference.fast_network.inference_network`), the preprocessing config, the label
range used by the out-of-range flag, and the fitted label-coverage and domain-shift estimators from
the model folder. Bad model files → :class:`~starlabels.errors.ModelFormatError`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.errors import ModelFormatError
from starlabels.inference.domain_shift import load_domain_shift
from starlabels.inference.fast_network import inference_network
from starlabels.inference.label_coverage import load_coverage
from starlabels.inference.uncertainty import PhysicalNetwork
from starlabels.inference.uncertainty_calibration import calibration_info

__all__ = [
    "RANGE_SIGMA", "InferenceModel", "label_range", "load", "model_version", "resolve", "resolve_method",
]


@dataclass
class InferenceModel:
    """What inference needs from a :class:`~starlabels.models.folder.TrainedModel`, resolved once.

    ``physical`` is the :class:`~starlabels.inference.uncertainty.PhysicalNetwork` (scalers folded
    in) around the inference copy of the network (:func:`inference_network`); ``folder`` the model
    folder when it was loaded from one.
    """

    trained: Any
    physical: PhysicalNetwork
    label_names: list[str]
    label_units: list[str]
    preprocessing: Any
    n_pixels: int
    label_range: tuple[np.ndarray, np.ndarray] | None
    name: str
    version: str
    folder: Path | None = None
    coverage: Any = None
    #: fitted :class:`~starlabels.inference.domain_shift.DomainShift`, or None
    domain_shift: Any = None
    #: ``None`` for a network; the :class:`~starlabels.models.method.LabelMethod`'s ``method``
    #: (``"cannon"``, ``"payne"``) otherwise (``physical`` is then None).
    method: str | None = None

    @property
    def calibration(self) -> dict:
        """The stored calibration (see :mod:`starlabels.inference.uncertainty_calibration`)."""
        return calibration_info(self.trained)

    @property
    def has_variance(self) -> bool:
        return bool(getattr(getattr(self.trained, "network", None), "has_variance", False))

    @property
    def preprocessing_kind(self) -> str | None:
        return None if self.preprocessing is None else str(self.preprocessing.kind)


def load(model: Any) -> Any:
    """A ``TrainedModel`` (or :class:`~starlabels.models.method.LabelMethod`) from one, an
    :class:`InferenceModel` or a model folder path."""
    from starlabels.models.method import LabelMethod

    if isinstance(model, InferenceModel):
        return model.trained
    if isinstance(model, (str, os.PathLike)):
        from starlabels.models.folder import load_model

        return load_model(Path(model), device="cpu")
    if not (hasattr(model, "network") or isinstance(model, LabelMethod)):
        raise TypeError(
            f"model must be a TrainedModel, a LabelMethod (CannonModel, PayneModel) or a model folder "
            f"path, got {type(model).__name__}"
        )
    return model


def _affine(fn, n: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(offset, slope), each (n,), of a per-element affine map ``fn`` on (1, n) arrays."""
    zero = np.asarray(fn(np.zeros((1, n), np.float64)), np.float64).reshape(-1)
    one = np.asarray(fn(np.ones((1, n), np.float64)), np.float64).reshape(-1)
    two = np.asarray(fn(np.full((1, n), 2.0)), np.float64).reshape(-1)
    slope = one - zero
    if not (np.all(np.isfinite(slope)) and np.allclose(two, zero + 2 * slope, rtol=1e-5, atol=1e-8)):
        raise ModelFormatError(f"the model's {what} is not a per-element affine map; cannot fold it in")
    return zero, slope


def resolve(model: Any) -> InferenceModel:
    """Load (if needed) and unpack a model for inference. An :class:`InferenceModel` is returned
    as is; anything else is resolved afresh (cheap: one copy of the weights for the fast path)."""
    if isinstance(model, InferenceModel):
        return model
    from starlabels.models.method import LabelMethod

    folder = Path(model).resolve() if isinstance(model, (str, os.PathLike)) else None
    tm = load(model)
    folder = folder or getattr(tm, "source_folder", None)
    if isinstance(tm, LabelMethod):
        return resolve_method(tm, folder)
    net = tm.network
    n_pixels = int(net.n_pixels)
    n_labels = int(net.n_labels)
    names = list(tm.label_names)
    if len(names) != n_labels:
        raise ModelFormatError(f"model has {len(names)} label names but the network has {n_labels} outputs")
    units = list(getattr(tm, "label_units", None) or [""] * n_labels)
    ls, ss = tm.label_scaler, tm.spectrum_scaler
    out_offset, out_slope = _affine(ls.inverse_transform, n_labels, "label scaler")
    in_offset, in_slope = (np.zeros(n_pixels), np.ones(n_pixels)) if ss is None else _affine(
        ss.transform, n_pixels, "spectrum scaler"
    )
    physical = PhysicalNetwork(
        inference_network(net), torch.from_numpy(in_offset), torch.from_numpy(in_slope),
        torch.from_numpy(out_offset), torch.from_numpy(out_slope),
    )
    preprocessing = tm.preprocess_config() if hasattr(tm, "preprocess_config") else None
    if preprocessing is not None and int(preprocessing.n_pixels) != n_pixels:
        raise ModelFormatError(
            f"the model's preprocessing gives {preprocessing.n_pixels} pixels but its network "
            f"takes {n_pixels}"
        )
    cov = getattr(tm, "coverage", None)
    if cov is None and folder is not None:
        cov = load_coverage(folder, net, names)
        tm.coverage = cov
    shift = getattr(tm, "domain_shift", None)
    if shift is None and folder is not None:
        shift = load_domain_shift(folder, net)
        tm.domain_shift = shift
    return InferenceModel(
        trained=tm, physical=physical, label_names=names, label_units=units,
        preprocessing=preprocessing, n_pixels=n_pixels, label_range=label_range(tm, n_labels),
        name=folder.name if folder is not None else str(getattr(tm, "architecture", type(net).__name__)),
        version=model_version(tm), folder=folder, coverage=cov, domain_shift=shift,
    )


#: Fallback training range when the model records none: label-scaler mean ± this many std.
RANGE_SIGMA = 4.0


def label_range(tm: Any, n_labels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Training label range (lo, hi), each (L,): ``training["label_range"]`` (provenance) if the
    trainer stored it, else the calibration's dev-set range, else label-scaler mean ± 4 std."""
    for rng in ((getattr(tm, "training", None) or {}).get("label_range"),
                calibration_info(tm).get("label_range")):
        if isinstance(rng, dict) and "min" in rng and "max" in rng:
            lo = np.asarray(rng["min"], np.float64).reshape(-1)
            hi = np.asarray(rng["max"], np.float64).reshape(-1)
            if lo.shape == hi.shape == (n_labels,):
                return lo, hi
    ls = getattr(tm, "label_scaler", None)
    if getattr(ls, "mean", None) is not None and getattr(ls, "std", None) is not None:
        m, s = np.asarray(ls.mean, np.float64), np.asarray(ls.std, np.float64)
        return m - RANGE_SIGMA * s, m + RANGE_SIGMA * s
    return None


def model_version(tm: Any) -> str:
    """``<starlabels version>:<created>`` of the model (identifies one training run)."""
    v = getattr(tm, "starlabels_version", None)
    c = getattr(tm, "created", None)
    if v or c:
        return f"{v or '?'}:{c or '?'}"
    from starlabels import __version__

    return __version__


def resolve_method(tm: Any, folder: Path | None) -> InferenceModel:
    """An :class:`InferenceModel` around a LabelMethod (no network; ``physical`` None).

    ``name`` (the catalog's ``MODEL_NAME``) is ``"<method>:<folder name>"`` so every catalog row
    says which method made it."""
    n_labels = len(tm.label_names)
    units = list(getattr(tm, "label_units", None) or [""] * n_labels)
    preprocessing = tm.preprocess_config()
    n_pixels = int(tm.n_pixels)
    if preprocessing is not None and int(preprocessing.n_pixels) != n_pixels:
        raise ModelFormatError(
            f"the {tm.method} model's preprocessing gives {preprocessing.n_pixels} pixels but it "
            f"takes {n_pixels}"
        )
    base = folder.name if folder is not None else "unsaved"
    return InferenceModel(
        trained=tm, physical=None, label_names=list(tm.label_names), label_units=units,  # type: ignore[arg-type]
        preprocessing=preprocessing, n_pixels=n_pixels, label_range=label_range(tm, n_labels),
        name=f"{tm.method}:{base}", version=model_version(tm), folder=folder, coverage=None,
        method=str(tm.method),
    )
