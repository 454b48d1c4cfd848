"""``LabelMethod``: the hook for label models that are not a single network (The Cannon, a Payne fitter).

A LabelMethod is used exactly like a network's :class:`~starlabels.models.folder.TrainedModel`:
:func:`starlabels.predict`, :func:`~starlabels.inference.calibration.calibrate`,
:func:`~starlabels.inference.catalog.run_catalog` and ``starlabels report`` accept it (or its model
folder), and give the same :class:`~starlabels.inference.predict.Prediction`, calibration, quality
flags and catalog columns. What a subclass provides:

- class attributes ``method`` (``"cannon"`` | ``"payne"``; stored as ``config.json["method"]``) and
  ``default_uncertainty`` (the name of its own σ, e.g. ``"fisher"``; the calibration is stored
  under this name, as the networks' under ``"mc_dropout"``/``"delta"``...);
- instance attributes ``label_names``, ``label_units`` (L each), ``preprocessing``
  (a :class:`~starlabels.preprocess.pipeline.PreprocessConfig` applied to raw input by
  ``predict``, or ``None``: input used as given), ``calibration`` (the stored calibration of
  :mod:`starlabels.models.calibration_store`, or None — the same attribute, layout and
  :class:`~starlabels.inference.calibration.UncertaintyCalibration` as for networks) and
  ``training`` (provenance dict);
- ``n_pixels`` (the pixel count of its input space), :meth:`predict_moments`, :meth:`save`,
  :meth:`load`.

:data:`METHODS` maps ``config.json["method"]`` to the class (``"module:Class"``, imported lazily by
:func:`starlabels.models.folder.load_model`). :func:`write_folder` / :func:`read_folder` do the
folder I/O of every method (``config.json`` + ``weights.safetensors`` + ``history.csv``) with the
networks' own writer and readers (:mod:`starlabels.models.folder_io`).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from starlabels.errors import InputDataError, ModelFormatError
from starlabels.models.calibration_store import CalibrationHolder, migrate_calibration
from starlabels.models.folder_io import (
    CONFIG_FILE,
    FORMAT_VERSION,
    check_format_version,
    network_grid,
    now_utc,
    read_config,
    read_history,
    read_weights,
    write_model_folder,
)

__all__ = ["METHODS", "LabelMethod", "method_class", "read_folder", "write_folder"]

#: ``config.json["method"]`` → ``"module:Class"`` of its :class:`LabelMethod` (lazy import).
METHODS: dict[str, str] = {
    "cannon": "starlabels.models.cannon:CannonModel",
    "payne": "starlabels.models.payne_fit:PayneModel",
}


def method_class(name: str) -> type[LabelMethod]:
    """The :class:`LabelMethod` subclass registered as ``name`` (``ModelFormatError`` if unknown)."""
    try:
        target = METHODS[str(name)]
    except KeyError:
        raise ModelFormatError(f"unknown label method {name!r}; known: {sorted(METHODS)}") from None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)


class LabelMethod(CalibrationHolder):
    """Base class of label models that are not a single network (The Cannon, a Payne fitter).

    Subclasses set the class attributes ``method`` and ``default_uncertainty`` and implement
    :attr:`n_pixels`, :meth:`predict_moments`, :meth:`save` and :meth:`load`. The instance
    attributes below are what inference reads.
    """

    method: ClassVar[str] = ""
    #: Name of the method's own σ (calibration entries are stored under it).
    default_uncertainty: ClassVar[str] = ""

    label_names: list[str]
    label_units: list[str]
    #: ``PreprocessConfig`` applied to raw input by ``starlabels.predict``; None = input as given.
    preprocessing: Any = None
    #: Provenance (no model state: the calibration is :attr:`calibration`).
    training: dict[str, Any]
    #: Set by :meth:`load` to the folder the model was read from.
    source_folder: Path | None = None

    # ------------------------------------------------------------------ what subclasses provide
    @property
    def n_pixels(self) -> int:
        """Pixel count P of the method's input space (after ``preprocessing``)."""
        raise NotImplementedError

    @property
    def uncertainty_methods(self) -> tuple[str, ...]:
        """Accepted ``uncertainty=`` names of ``starlabels.predict`` (``None`` means the default)."""
        return (self.default_uncertainty,)

    def predict_moments(
        self,
        flux: np.ndarray,
        error: np.ndarray,
        bitmask: np.ndarray | None = None,
        *,
        device: str | torch.device | None = None,
        seed: int | None = None,
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Labels of N spectra in the method's input space.

        ``flux``, ``error``: (N, P) float (after ``self.preprocessing``); ``error = inf`` marks an
        unused pixel (flux there is finite but meaningless). ``bitmask``: (N, P) APOGEE_PIXMASK
        values when the caller had them and ``preprocessing`` is None, else None.
        Returns the mean (N, L) in physical units and named *variance* parts ``{name: (N, L)}``
        (physical units²); rows may be NaN for failures (``starlabels.predict`` flags them).
        """
        raise NotImplementedError

    def save(self, folder: str | Path) -> Path:
        """Write the model folder atomically (``config.json`` with ``"method"``,
        ``weights.safetensors``); returns its path."""
        raise NotImplementedError

    @classmethod
    def load(cls, folder: str | Path) -> LabelMethod:
        """Restore a model written by :meth:`save`."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared helpers
    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    @property
    def grid(self) -> Any:
        """The :class:`~starlabels.core.Grid` of the method's input (after ``preprocessing``): one a
        subclass set (``self.grid = ...``), else the preprocessing's output grid, else the built-in
        grid with ``n_pixels`` pixels; None when unknown (then only arrays of ``n_pixels`` pixels
        without a grid are accepted)."""
        explicit = self.__dict__.get("_grid")
        if explicit is not None:
            return explicit
        pre = self.preprocess_config()
        try:
            return network_grid(None, None if pre is None else pre.to_dict(), int(self.n_pixels))
        except InputDataError:
            return None

    @grid.setter
    def grid(self, value: Any) -> None:
        from starlabels.preprocess.grids import get_grid

        self._grid = None if value is None else get_grid(value)

    @property
    def input_grid(self) -> Any:
        """The grid raw spectra must be on: the preprocessing's input grid, or :attr:`grid`."""
        pre = self.preprocess_config()
        return self.grid if pre is None else pre.grid

    @property
    def architecture(self) -> str:
        """The method name (what networks call their architecture)."""
        return self.method

    def preprocess_config(self) -> Any:
        """The ``PreprocessConfig`` (or None), as :meth:`TrainedModel.preprocess_config`."""
        pre = self.preprocessing
        if pre is None or not isinstance(pre, Mapping):
            return pre
        from starlabels.preprocess.pipeline import PreprocessConfig

        return PreprocessConfig.from_dict(dict(pre))

    def base_config(self) -> dict[str, Any]:
        """The ``config.json`` entries every method shares (a subclass adds its own keys)."""
        pre = self.preprocess_config()
        return {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "starlabels_version": getattr(self, "starlabels_version", None) or _version(),
            "created": getattr(self, "created", None) or now_utc(),
            "architecture": {"name": self.method, "kwargs": {}},
            "labels": {"names": list(self.label_names), "units": list(self.label_units)},
            "preprocessing": None if pre is None else pre.to_dict(),
            "calibration": self.calibration,
            "training": dict(getattr(self, "training", None) or {}),
        }

    def restore_base(self, config: Mapping[str, Any], folder: Path | None = None) -> None:
        """Set the shared attributes from a ``config.json`` written by :meth:`base_config`."""
        pre = config.get("preprocessing")
        if pre is not None:
            from starlabels.preprocess.pipeline import PreprocessConfig

            try:
                pre = PreprocessConfig.from_dict(pre)
            except (TypeError, ValueError, KeyError) as exc:
                raise ModelFormatError(f"{folder}: bad preprocessing entry in config.json: {exc}") from None
        self.preprocessing = pre
        try:  # folders of format_version 1: migrated (models.calibration_store)
            self.calibration, self.training = migrate_calibration(config)
        except InputDataError as exc:
            raise ModelFormatError(f"{folder}: bad calibration entry in config.json: {exc}") from None
        self.created = config.get("created")
        self.starlabels_version = config.get("starlabels_version")
        self.source_folder = None if folder is None else Path(folder).resolve()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, labels={self.label_names})"


def _version() -> str:
    from starlabels import __version__

    return __version__


def write_folder(
    folder: str | Path,
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    history: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Atomically write a method's model folder: ``config.json`` (``config``, JSON-able),
    ``weights.safetensors`` (``tensors``) and ``history.csv`` (``history`` rows, if any), with the
    same replace-or-refuse rules as :meth:`TrainedModel.save` (extra files carried over)."""
    return write_model_folder(folder, config, tensors, history)


def read_folder(folder: str | Path, method: str) -> tuple[dict[str, Any], dict[str, torch.Tensor],
                                                        list[dict[str, Any]] | None]:
    """``(config, tensors, history)`` of a method's model folder, checked to be ``method``.

    Raises :class:`ModelFormatError` naming the folder/file for a missing or unreadable folder,
    config or weights, another ``format_version``, or another method.
    """
    folder = Path(folder)
    cfg = read_config(folder)
    check_format_version(cfg, folder)
    if cfg.get("method") != method:
        raise ModelFormatError(
            f"{folder / CONFIG_FILE}: a {cfg.get('method') or 'network'!r} model, not a {method!r} one"
        )
    return cfg, read_weights(folder), read_history(folder)
