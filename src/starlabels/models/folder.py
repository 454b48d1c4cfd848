"""The trained-model folder: :class:`TrainedModel`, its ``save`` and :func:`load_model`.

Layout (docs/DESIGN.md, "Trained model folder")::

    model/
      config.json          format_version, starlabels_version, created, architecture {name, kwargs},
                           labels {names, units}, normalisation {labels: {mean, std, names},
                           spectra: {mode, n_pixels}}, grid {Grid.to_dict()} | null (the
                           network input's wavelength grid), preprocessing {...} | null (its
                           to_dict() stores the grid raw spectra must be on), calibration
                           {label: scale} | null, training {...}
      weights.safetensors  network state dict + "spectrum_scaler.mean"/"spectrum_scaler.std"
      history.csv          epoch, train_loss, dev_loss, lr, seconds (when a history is attached)

Folders written before grids were stored have no ``grid`` entry: their network grid is the
preprocessing's output grid (``continuum`` → ASPCAP, ``raw`` → apStar) or, without preprocessing,
the built-in grid with the network's pixel count (none when no built-in grid has it).

Saving is atomic: the files are written to a temporary folder beside the destination which then
replaces it by rename; on any failure the destination is left as it was. Files in an existing
destination that are not part of the format (e.g. the trainer's ``checkpoint.pt``) are carried over.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from starlabels.data.normalization import LabelScaler, SpectrumScaler
from starlabels.errors import InputDataError, ModelFormatError
from starlabels.models import build_network
from starlabels.models.layers import LabelNetwork
from starlabels.utils import give_default_permissions

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "HISTORY_COLUMNS",
    "HISTORY_FILE",
    "WEIGHTS_FILE",
    "TrainedModel",
    "load_model",
]

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
HISTORY_FILE = "history.csv"
HISTORY_COLUMNS = ("epoch", "train_loss", "dev_loss", "lr", "seconds")
_OWN_FILES = (CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE)
_SCALER_PREFIX = "spectrum_scaler."


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj: Any) -> Any:
    """Recursively convert numpy/torch scalars and arrays, tuples and Paths to JSON types;
    non-finite floats become ``null`` (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


class TrainedModel:
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
        Optional ``{label: scale}`` uncertainty calibration (applied by :mod:`starlabels.inference`).
    grid:
        The wavelength grid of the network input (:class:`~starlabels.core.Grid`, a built-in
        grid's name or a ``Grid.to_dict()``); ``None``: the preprocessing's output grid, else the
        built-in grid with the network's pixel count (else unknown).
    training:
        Provenance (data files, sizes, splits, optimiser, epochs, dates, seed); any JSON-able dict.
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
        calibration: Mapping[str, float] | None = None,
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
        self.grid = _network_grid(grid, self.preprocessing, network.n_pixels)
        self.calibration = None
        if calibration is not None:
            unknown = sorted(set(calibration) - set(self.label_names))
            if unknown:
                raise InputDataError(f"calibration for unknown label(s) {unknown}")
            bad = {k: v for k, v in calibration.items() if not (math.isfinite(v) and v > 0)}
            if bad:
                raise InputDataError(f"calibration scales must be finite and > 0, got {bad}")
            self.calibration = {str(k): float(v) for k, v in calibration.items()}
        self.training = dict(training or {})
        self.history = _history_records(history)
        self.created = created or _now()
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
        return _jsonable(
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
        from safetensors.torch import save_file

        folder = Path(folder)
        if folder.exists():
            if not folder.is_dir():
                raise FileExistsError(f"{folder}: exists and is not a folder")
            if any(folder.iterdir()):
                if not (folder / CONFIG_FILE).is_file():
                    raise FileExistsError(
                        f"{folder}: exists, is not empty and is not a starlabels model folder; "
                        "refusing to replace it"
                    )
                if not overwrite:
                    raise FileExistsError(f"{folder}: model folder exists (pass overwrite=True)")
        folder.parent.mkdir(parents=True, exist_ok=True)
        # provenance may hold odd objects (dates, enums): stored as their str()
        config_text = json.dumps(self.config_dict(), indent=2, allow_nan=False, default=str)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        give_default_permissions(tmp, directory=True)  # mkdtemp makes it owner-only (0700)
        moved: list[str] = []
        backup: Path | None = None
        try:
            (tmp / CONFIG_FILE).write_text(config_text + "\n")
            save_file(self.tensors(), str(tmp / WEIGHTS_FILE), metadata={"format": "starlabels"})
            if self.history:
                _write_history(tmp / HISTORY_FILE, self.history)
            for written in tmp.iterdir():  # safetensors writes its file owner-only (0600)
                give_default_permissions(written)
            if folder.exists():
                for entry in sorted(os.listdir(folder)):
                    if entry not in _OWN_FILES:
                        os.rename(folder / entry, tmp / entry)
                        moved.append(entry)
                backup = folder.parent / f".{folder.name}.old-{uuid.uuid4().hex[:8]}"
                os.rename(folder, backup)
            os.rename(tmp, folder)
        except BaseException:
            if backup is not None and backup.exists() and not folder.exists():
                os.rename(backup, folder)
            for entry in moved:
                if (tmp / entry).exists() and folder.is_dir():
                    os.rename(tmp / entry, folder / entry)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return folder

    def __repr__(self) -> str:
        return (
            f"TrainedModel({self.architecture!r}, labels={self.label_names}, "
            f"n_pixels={self.n_pixels}, spectra={self.spectrum_scaler.mode!r})"
        )


def _network_grid(grid: Any, preprocessing: Mapping[str, Any] | None, n_pixels: int) -> Any:
    """The network input's :class:`~starlabels.core.Grid` (see :class:`TrainedModel`'s ``grid``)."""
    from starlabels.preprocess.grids import get_grid

    given = grid is not None
    if grid is None and preprocessing is not None:
        from starlabels.preprocess.pipeline import PreprocessConfig

        try:
            grid = PreprocessConfig.from_dict(dict(preprocessing)).output_grid
        except (TypeError, ValueError, InputDataError):
            grid = None
    if grid is None:
        try:
            grid = get_grid(int(n_pixels))  # only for models saved before grids were stored
        except ValueError:
            return None
    try:
        g = get_grid(grid)
    except (ValueError, InputDataError) as exc:
        raise InputDataError(f"not a wavelength grid: {exc}") from None
    if g.n_pixels != int(n_pixels):
        if not given:  # a derived guess that does not fit: the grid is unknown
            return None
        raise InputDataError(f"grid {g.describe()} has {g.n_pixels} pixels, the network takes {n_pixels}")
    return g


def _history_records(history: Any) -> list[dict[str, Any]] | None:
    if history is None:
        return None
    if hasattr(history, "to_dict"):  # pandas DataFrame
        history = history.to_dict("records")
    records = [dict(r) for r in history]
    return records or None


def _write_history(path: Path, records: list[dict[str, Any]]) -> None:
    columns = list(HISTORY_COLUMNS)
    for r in records:
        columns += [k for k in r if k not in columns]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        for r in records:
            w.writerow({k: _jsonable(v) for k, v in r.items()})


def _parse_number(v: str) -> Any:
    if v == "":
        return None
    try:
        i = int(v)
    except ValueError:
        try:
            return float(v)
        except ValueError:
            return v
    return i


def _read_history(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return [{k: _parse_number(v) for k, v in row.items()} for row in csv.DictReader(f)] or None


def _require(cfg: Mapping[str, Any], key: str, where: Path) -> Any:
    if key not in cfg:
        raise ModelFormatError(f"{where}: config.json lacks the {key!r} entry")
    return cfg[key]


def read_config(folder: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a model folder (``ModelFormatError`` when absent or bad)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFormatError(f"{folder}: model folder does not exist")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ModelFormatError(f"{folder}: not a starlabels model folder (no {CONFIG_FILE})")
    try:
        cfg = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(cfg, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return cfg


def read_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a model folder's ``weights.safetensors`` on the CPU (``ModelFormatError`` when
    the file is missing or unreadable)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ModelFormatError(f"{folder}: {WEIGHTS_FILE} is missing")
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFormatError(f"{path}: unreadable weights file: {exc}") from None


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
    version = cfg.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFormatError(
            f"{cfg_path}: format_version {version!r} cannot be read by this starlabels, which reads "
            f"format_version {FORMAT_VERSION} (model written by starlabels "
            f"{cfg.get('starlabels_version', 'unknown')})"
        )
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
        model = TrainedModel(
            network=network,
            label_names=labels["names"],
            label_units=labels.get("units"),
            label_scaler=LabelScaler.from_dict(norm["labels"]),
            spectrum_scaler=SpectrumScaler.from_state(norm.get("spectra", {}), tensors),
            preprocessing=cfg.get("preprocessing"),
            calibration=cfg.get("calibration"),
            training=cfg.get("training"),
            history=_read_history(folder / HISTORY_FILE),
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
