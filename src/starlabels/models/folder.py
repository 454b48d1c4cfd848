"""The trained-model folder of a network: :class:`TrainedModel`, its ``save`` and :func:`load_model`.

Layout (docs/DESIGN.md, "Trained model folder")::

    model/
      config.json          format_version (2), starlabels_version, created, architecture {name,
                           kwargs}, labels {names, units}, normalisation {labels: {mean, std,
                           names}, spectra: {mode, n_pixels}}, grid {Grid.to_dict()} | null (the
                           network input's wavelength grid), preprocessing {...} | null (its
                           to_dict() stores the grid raw spectra must be on), calibration {format,
                           method, methods {method: fitted calibration}, label_range?} | null
                           (:mod:`starlabels.models.calibration_store`), training {provenance}
      weights.safetensors  network state dict + "spectrum_scaler.mean"/"spectrum_scaler.std"
      history.csv          epoch, train_loss, dev_loss, lr, seconds (when a history is attached)

Folders of ``format_version`` 1 kept the calibration in two places (a flat ``{label: scale}``
and details in ``training["uncertainty_calibration"]``): they load with identical predictions and
are written in the new layout when saved again. Folders written before grids were stored have no
``grid`` entry: their network grid is the preprocessing's output grid (``continuum`` → ASPCAP,
``raw`` → apStar) or, without preprocessing, the built-in grid with the network's pixel count
(none when no built-in grid has it). Saving is atomic
(:func:`~starlabels.models.folder_io.write_model_folder`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.data.normalization import LabelScaler, SpectrumScaler
from starlabels.errors import InputDataError, ModelFormatError
from starlabels.models import build_network
from starlabels.models.calibration_store import CalibrationHolder, migrate_calibration
from starlabels.models.folder_io import (
    CONFIG_FILE,
    FORMAT_VERSION,
    HISTORY_COLUMNS,
    HISTORY_FILE,
    WEIGHTS_FILE,
    check_format_version,
    jsonable,
    network_grid,
    now_utc,
    read_config,
    read_history,
    read_weights,
    write_model_folder,
)
from starlabels.models.layers import LabelNetwork

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "HISTORY_COLUMNS",
    "HISTORY_FILE",
    "WEIGHTS_FILE",
    "TrainedModel",
    "load_model",
    "network_grid",
    "read_config",
    "read_weights",
]

_SCALER_PREFIX = "spectrum_scaler."


class TrainedModel(CalibrationHolder):
    """A network with everything needed to turn preprocessed spectra into physical labels.

    Parameters
    ----------
    network:
        A :class:`~starlabels.models.layers.LabelNetwork` (output in standardised label space).
    label_names, label_units:
        L names (allStar style, e.g. ``TEFF``) and units (e.g. ``"K"``, ``"dex"``); units default to
        empty strings.
    label_scaler:
        Fitted :class:`~starlabels.data.normalization.LabelScaler` with L labels.
    spectrum_scaler:
        :class:`~starlabels.data.normalization.SpectrumScaler` (default ``mode="none"``).
    preprocessing:
        ``PreprocessConfig.to_dict()`` of the preprocessing used in training (kept opaque here), or
        ``None`` when the network input is used as stored.
    calibration:
        The uncertainty calibration as stored (:mod:`starlabels.models.calibration_store`; fitted
        by :func:`starlabels.inference.calibration.calibrate`, applied by ``starlabels.predict``),
        or a bare ``{label: scale}`` applying to every uncertainty method; ``None``: uncalibrated.
    grid:
        The wavelength grid of the network input (:class:`~starlabels.core.Grid`, a built-in
        grid's name or a ``Grid.to_dict()``); ``None``: the preprocessing's output grid, else the
        built-in grid with the network's pixel count (else unknown).
    training:
        Provenance (data files, sizes, splits, optimiser, epochs, dates, seed); any JSON-able dict.
        Model state (the calibration) is not kept here.
    history:
        Optional per-epoch records (dicts with ``epoch, train_loss, dev_loss, lr, seconds``, or a
        pandas DataFrame with those columns).
    """

    def __init__(
        self,
        network: LabelNetwork,
        label_names: Sequence[str],
        label_scaler: LabelScaler,
        spectrum_scaler: SpectrumScaler | None = None,
        label_units: Sequence[str] | None = None,
        preprocessing: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
        training: Mapping[str, Any] | None = None,
        history: Any = None,
        created: str | None = None,
        starlabels_version: str | None = None,
        grid: Any = None,
    ) -> None:
        self.network = network
        self.label_names = [str(n) for n in label_names]
        n = len(self.label_names)
        if n != network.n_labels:
            raise InputDataError(f"{n} label names for a network with {network.n_labels} outputs")
        self.label_units = [""] * n if label_units is None else [str(u) for u in label_units]
        if len(self.label_units) != n:
            raise InputDataError(f"{len(self.label_units)} label units for {n} labels")
        if label_scaler.n_labels != n:
            raise InputDataError(f"label scaler has {label_scaler.n_labels} labels, model has {n}")
        self.label_scaler = label_scaler
        self.spectrum_scaler = spectrum_scaler if spectrum_scaler is not None else SpectrumScaler("none")
        sp = self.spectrum_scaler.n_pixels
        if sp is not None and sp != network.n_pixels:
            raise InputDataError(f"spectrum scaler has {sp} pixels, the network takes {network.n_pixels}")
        self.preprocessing = None if preprocessing is None else dict(preprocessing)
        self.grid = network_grid(grid, self.preprocessing, network.n_pixels)
        self.calibration = calibration  # checked and stored by CalibrationHolder
        self.training = dict(training or {})
        self.history = _history_records(history)
        self.created = created or now_utc()
        if starlabels_version is None:
            from starlabels import __version__ as starlabels_version
        self.starlabels_version = str(starlabels_version)

    # ------------------------------------------------------------------ properties and running
    @property
    def architecture(self) -> str:
        return self.network.name

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    @property
    def n_pixels(self) -> int:
        return self.network.n_pixels

    @property
    def has_variance(self) -> bool:
        return self.network.has_variance

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def to(self, device: str | torch.device | None) -> TrainedModel:
        """Move the network to ``device`` (``None``: cuda when available); returns ``self``."""
        from starlabels.utils import get_device

        self.network.to(get_device(None if device is None else str(device)))
        return self

    @property
    def input_grid(self) -> Any:
        """The grid raw spectra must be on (:class:`~starlabels.core.Grid`): the preprocessing's
        input grid, or the network's grid when there is no preprocessing (``None`` if unknown)."""
        cfg = self.preprocess_config()
        if cfg is None:
            return self.grid
        return cfg.grid  # PreprocessConfig resolves its stored input grid (old configs: apStar)

    def preprocess_config(self) -> Any:
        """The stored preprocessing as a ``PreprocessConfig`` (``None`` when there is none)."""
        if self.preprocessing is None:
            return None
        from starlabels.preprocess.pipeline import PreprocessConfig

        return PreprocessConfig.from_dict(self.preprocessing)

    def network_input(self, flux: Any, device: str | torch.device | None = None) -> torch.Tensor:
        """Preprocessed flux (N, P) / (P,) / (N, 1, P), numpy or tensor → scaled (N, 1, P) float32
        tensor on ``device`` (default: the network's)."""
        x = torch.as_tensor(np.asarray(flux) if not isinstance(flux, torch.Tensor) else flux)
        if x.ndim == 1:
            x = x[None]
        if x.ndim == 3 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 2 or x.shape[1] != self.n_pixels:
            raise InputDataError(
                f"model {self.architecture!r} takes spectra of {self.n_pixels} pixels, got shape "
                f"{tuple(np.shape(flux))}"
            )
        x = x.to(device or self.device, torch.float32)
        return self.spectrum_scaler.transform(x).unsqueeze(1)

    def unstandardise(
        self, mean: torch.Tensor, log_var: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Network outputs (N, L) → physical means and predictive standard deviations
        ``σ = exp(½ log_var) · label_std`` (``None`` without a variance head). Tensors, same device."""
        m = torch.as_tensor(self.label_scaler.mean, device=mean.device, dtype=mean.dtype)
        s = torch.as_tensor(self.label_scaler.std, device=mean.device, dtype=mean.dtype)
        phys = mean * s + m
        if log_var is None:
            return phys, None
        return phys, torch.exp(0.5 * log_var) * s

    @torch.no_grad()
    def predict_preprocessed(
        self, flux: Any, batch_size: int = 256, device: str | torch.device | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """One deterministic pass (eval mode, dropout off) over preprocessed spectra.

        ``flux``: (N, P) preprocessed flux on the network's grid. Returns physical-unit means (N, L)
        and the network's predictive standard deviations (N, L) (``None`` for networks without a
        variance head), float64 numpy. No Monte-Carlo dropout and no calibration here — use
        :func:`starlabels.predict` for full uncertainties.
        """
        if device is not None:
            self.to(device)
        was_training = self.network.training
        self.network.eval()
        try:
            arr = flux if isinstance(flux, torch.Tensor) else np.asarray(flux)
            if arr.ndim == 1:
                arr = arr[None]
            means, stds = [], []
            for start in range(0, arr.shape[0], batch_size):
                x = self.network_input(arr[start : start + batch_size])
                mean, log_var = self.network(x)
                m, s = self.unstandardise(mean.double(), None if log_var is None else log_var.double())
                means.append(m.cpu().numpy())
                if s is not None:
                    stds.append(s.cpu().numpy())
        finally:
            self.network.train(was_training)
        mean_out = np.concatenate(means) if means else np.zeros((0, self.n_labels))
        if not self.has_variance:
            return mean_out, None
        return mean_out, (np.concatenate(stds) if stds else np.zeros((0, self.n_labels)))

    # ------------------------------------------------------------------ saving
    def config_dict(self) -> dict[str, Any]:
        """The content of ``config.json``."""
        return jsonable(
            {
                "format_version": FORMAT_VERSION,
                "starlabels_version": self.starlabels_version,
                "created": self.created,
                "architecture": {"name": self.architecture, "kwargs": self.network.config()},
                "labels": {"names": self.label_names, "units": self.label_units},
                "normalisation": {
                    "labels": self.label_scaler.to_dict(),
                    "spectra": self.spectrum_scaler.to_dict(),
                },
                "grid": None if self.grid is None else self.grid.to_dict(),
                "preprocessing": self.preprocessing,
                "calibration": self.calibration,
                "training": self.training,
            }
        )

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything stored in ``weights.safetensors``: network state dict + spectrum-scaler tensors."""
        out = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        clash = sorted(k for k in out if k.startswith(_SCALER_PREFIX))
        if clash:  # pragma: no cover - no network defines such names
            raise ModelFormatError(f"network state keys {clash} clash with the spectrum scaler's")
        out.update({k: v.detach().cpu().contiguous() for k, v in self.spectrum_scaler.state_dict().items()})
        return out

    def save(self, folder: str | Path, overwrite: bool = True) -> Path:
        """Write the model folder atomically; returns its path.

        An existing model folder is replaced (``overwrite=True``) — extra files in it (e.g. a
        trainer checkpoint) are kept — or refused (``overwrite=False``: ``FileExistsError``). A
        non-empty folder without ``config.json`` is never replaced (``FileExistsError``).
        """
        return write_model_folder(folder, self.config_dict(), self.tensors(), self.history, overwrite)

    def __repr__(self) -> str:
        return (
            f"TrainedModel({self.architecture!r}, labels={self.label_names}, "
            f"n_pixels={self.n_pixels}, spectra={self.spectrum_scaler.mode!r})"
        )


def _history_records(history: Any) -> list[dict[str, Any]] | None:
    if history is None:
        return None
    if hasattr(history, "to_dict"):  # pandas DataFrame
        history = history.to_dict("records")
    records = [dict(r) for r in history]
    return records or None


def _require(cfg: Mapping[str, Any], key: str, where: Path) -> Any:
    if key not in cfg:
        raise ModelFormatError(f"{where}: config.json lacks the {key!r} entry")
    return cfg[key]


def load_model(folder: str | Path, device: str | torch.device | None = None) -> Any:
    """Restore a :class:`TrainedModel` saved by :meth:`TrainedModel.save`, in eval mode — or, when
    ``config.json`` names a ``"method"`` (``"cannon"``, ``"payne"``), that
    :class:`~starlabels.models.method.LabelMethod` (its ``load``; ``device`` is then chosen per
    call of ``starlabels.predict``).

    ``device``: where to put the network (``None``: cuda when available, else cpu). Raises
    :class:`~starlabels.errors.ModelFormatError` when the folder, ``config.json`` or
    ``weights.safetensors`` is missing or unreadable, the ``format_version`` is not one this version
    reads, or the weights do not fit the architecture.
    """

    folder = Path(folder)
    cfg = read_config(folder)
    cfg_path = folder / CONFIG_FILE
    if cfg.get("method") is not None:
        from starlabels.models.method import method_class

        return method_class(cfg["method"]).load(folder)
    check_format_version(cfg, folder)
    weights_path = folder / WEIGHTS_FILE
    tensors = read_weights(folder)

    arch = _require(cfg, "architecture", cfg_path)
    labels = _require(cfg, "labels", cfg_path)
    norm = _require(cfg, "normalisation", cfg_path)
    try:  # the layers' random init is overwritten below: keep it off the host's global RNG
        with torch.random.fork_rng(devices=[]):
            network = build_network(arch["name"], **arch.get("kwargs", {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"{cfg_path}: cannot build the network: {exc}") from None
    net_state = {k: v for k, v in tensors.items() if not k.startswith(_SCALER_PREFIX)}
    try:
        network.load_state_dict(net_state, strict=True)
    except RuntimeError as exc:
        raise ModelFormatError(f"{weights_path}: weights do not fit {arch['name']!r}: {exc}") from None
    try:
        calibration, training = migrate_calibration(cfg)
        model = TrainedModel(
            network=network,
            label_names=labels["names"],
            label_units=labels.get("units"),
            label_scaler=LabelScaler.from_dict(norm["labels"]),
            spectrum_scaler=SpectrumScaler.from_state(norm.get("spectra", {}), tensors),
            preprocessing=cfg.get("preprocessing"),
            calibration=calibration,
            training=training,
            history=read_history(folder),
            created=cfg.get("created"),
            starlabels_version=cfg.get("starlabels_version"),
            grid=cfg.get("grid"),
        )
    except (KeyError, TypeError, ValueError, InputDataError) as exc:
        raise ModelFormatError(f"{cfg_path}: inconsistent model description: {exc}") from None
    model.to(device)
    network.eval()
    model.source_folder = folder.resolve()  # where extra files (e.g. coverage.safetensors) are
    return model
