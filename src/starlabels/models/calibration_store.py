"""The uncertainty calibration as a model folder stores it: one dict under ``config.json["calibration"]``.

Layout (format 2, written by every model since the model-folder ``format_version`` 2)::

    "calibration": {"format": 2,
                    "method": "mc_dropout",            # the method calibrated last: predict's default
                    "methods": {"mc_dropout": {...}},  # UncertaintyCalibration.to_dict() per method
                    "label_range": {"min": [...], "max": [...], "source": "dev set"}}   # optional

or ``null`` when the model is not calibrated. Each entry of ``methods`` is the fitted state of one
:class:`starlabels.inference.calibration.UncertaintyCalibration` (``scales``, ``model``, …; its
docstring lists the keys); the key ``"*"`` holds one that applies to every uncertainty method.

Two older layouts are read and migrated (:func:`migrate_calibration`), so an old folder predicts
exactly as before and is written in this layout when saved again:

1. a bare ``"calibration": {label: scale}`` (scales applying to every method) → ``methods["*"]``;
2. that flat dict (the scales of the last method) *plus* the details in the training provenance,
   ``"training": {"uncertainty_calibration": {"format": 1, "method": …, "methods": {…}}}`` → the
   details become the ``calibration`` entry and leave ``training`` (the flat copy is dropped: it
   read 1.0 for the ``parts`` model and was no σ factor for ``power``).

This module is plain dict handling (models layer): fitting and applying live in
:mod:`starlabels.inference.calibration`. :class:`CalibrationHolder` gives :class:`TrainedModel`
and :class:`~starlabels.models.method.LabelMethod` the one ``calibration`` attribute.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

from starlabels.errors import InputDataError

__all__ = [
    "ALL_METHODS",
    "CALIBRATION_FORMAT",
    "LEGACY_TRAINING_KEY",
    "CalibrationHolder",
    "as_stored_calibration",
    "migrate_calibration",
]

#: ``format`` of the stored calibration dict.
CALIBRATION_FORMAT = 2
#: ``methods`` key of a calibration that applies to every uncertainty method.
ALL_METHODS = "*"
#: Where format-1 folders kept the per-method details: ``training[LEGACY_TRAINING_KEY]``.
LEGACY_TRAINING_KEY = "uncertainty_calibration"


def _is_scale_map(value: Any) -> bool:
    """True for a bare ``{label: number}`` (the oldest layout)."""
    return isinstance(value, Mapping) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value.values()
    )


def as_stored_calibration(
    value: Mapping[str, Any] | None, label_names: Sequence[str] | None = None
) -> dict[str, Any] | None:
    """``value`` in the stored layout (a deep copy), or None.

    Accepts the stored layout (a dict with ``"methods"``; the format-1 details dict is the same
    shape) or a bare ``{label: scale}`` (→ ``methods["*"]`` with model ``"scale"``). With
    ``label_names``, every entry's ``scales`` must name known labels and be finite and > 0
    (:class:`~starlabels.errors.InputDataError` naming the offending labels otherwise).
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InputDataError(f"calibration must be a dict, got {type(value).__name__}")
    if "methods" in value:
        stored = copy.deepcopy(dict(value))
        if not isinstance(stored["methods"], Mapping):
            raise InputDataError("calibration['methods'] must map uncertainty methods to entries")
        stored["methods"] = dict(stored["methods"])
    elif _is_scale_map(value):
        scales = {str(k): float(v) for k, v in value.items()}
        stored = {"methods": {ALL_METHODS: {"model": "scale", "scales": scales}}}
    else:
        raise InputDataError(
            "calibration must be {label: scale} or the stored form with 'methods' "
            f"(starlabels.models.calibration_store), got keys {sorted(value)}"
        )
    stored["format"] = CALIBRATION_FORMAT
    for method, entry in stored["methods"].items():
        scales = entry.get("scales") if isinstance(entry, Mapping) else None
        if not isinstance(scales, Mapping):
            raise InputDataError(f"calibration of method {method!r} has no 'scales' dict")
        if label_names is not None:
            unknown = sorted(set(scales) - {str(n) for n in label_names})
            if unknown:
                raise InputDataError(f"calibration for unknown label(s) {unknown}")
        bad = {k: v for k, v in scales.items()
               if not (isinstance(v, int | float) and math.isfinite(v) and v > 0)}
        if bad:
            raise InputDataError(f"calibration scales must be finite and > 0, got {bad}")
    return stored


def migrate_calibration(config: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """``(calibration, training)`` of a ``config.json`` of any layout (module docstring): the
    calibration in the stored layout (None if there is none) and the training provenance without
    the format-1 calibration details. ``config`` is not modified."""
    training = dict(config.get("training") or {})
    details = training.pop(LEGACY_TRAINING_KEY, None)
    flat = config.get("calibration")
    if isinstance(details, Mapping) and details.get("methods"):
        return as_stored_calibration(details), training  # the flat dict was a copy of one method
    return as_stored_calibration(flat), training


class CalibrationHolder:
    """Mixin: the ``calibration`` attribute of a model (the stored dict, or None).

    Assigning accepts the stored layout, a format-1 details dict or a bare ``{label: scale}``
    (checked against ``label_names``); reading gives the stored layout.
    """

    label_names: list[str]
    _calibration: dict[str, Any] | None = None

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The model's uncertainty calibration as stored in ``config.json["calibration"]``
        (:mod:`starlabels.models.calibration_store`), or None when uncalibrated."""
        return self._calibration

    @calibration.setter
    def calibration(self, value: Mapping[str, Any] | None) -> None:
        self._calibration = as_stored_calibration(value, getattr(self, "label_names", None))
