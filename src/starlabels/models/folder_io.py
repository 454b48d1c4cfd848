"""Reading and writing model folders: the one atomic folder writer and the file readers.

Every model — a network's :class:`~starlabels.models.folder.TrainedModel` and a
:class:`~starlabels.models.method.LabelMethod` (The Cannon, a Payne fitter) — is a folder of
``config.json`` (JSON), ``weights.safetensors`` (tensors) and optionally ``history.csv`` (one row
per epoch), written by :func:`write_model_folder` and read by :func:`read_config`,
:func:`read_weights` and :func:`read_history`. :func:`network_grid` resolves the wavelength grid of
a model's input, also for folders written before grids were stored.

Saving is atomic: the files are written to a temporary folder beside the destination which then
replaces it by rename; on any failure the destination is left as it was. Files in an existing
destination that are not part of the format (e.g. the trainer's ``checkpoint.pt``, the label
coverage's ``coverage.safetensors``) are carried over.
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

from starlabels.errors import InputDataError, ModelFormatError
from starlabels.utils import give_default_permissions

__all__ = [
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "HISTORY_COLUMNS",
    "HISTORY_FILE",
    "READABLE_FORMAT_VERSIONS",
    "WEIGHTS_FILE",
    "check_format_version",
    "jsonable",
    "network_grid",
    "now_utc",
    "read_config",
    "read_history",
    "read_weights",
    "write_model_folder",
]

#: ``format_version`` written: 2 stores the uncertainty calibration once, under ``"calibration"``
#: (:mod:`starlabels.models.calibration_store`).
FORMAT_VERSION = 2
#: Versions this starlabels reads (1: calibration split over ``calibration`` and ``training``).
READABLE_FORMAT_VERSIONS = (1, 2)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
HISTORY_FILE = "history.csv"
HISTORY_COLUMNS = ("epoch", "train_loss", "dev_loss", "lr", "seconds")
#: The files a model folder is made of (anything else in it is carried over on save).
OWN_FILES = (CONFIG_FILE, WEIGHTS_FILE, HISTORY_FILE)


def now_utc() -> str:
    """The current UTC time as ISO 8601 to the second (``created`` stamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy/torch scalars and arrays, tuples and Paths turned into JSON types,
    recursively; non-finite floats become ``None`` (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def check_format_version(config: Mapping[str, Any], folder: str | Path) -> None:
    """Raise :class:`ModelFormatError` when ``config["format_version"]`` is not one this
    starlabels reads."""
    version = config.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        raise ModelFormatError(
            f"{Path(folder) / CONFIG_FILE}: format_version {version!r} cannot be read by this "
            f"starlabels, which reads format_version {', '.join(map(str, READABLE_FORMAT_VERSIONS))} "
            f"(model written by starlabels {config.get('starlabels_version', 'unknown')})"
        )


def write_model_folder(
    folder: str | Path,
    config: Mapping[str, Any],
    tensors: Mapping[str, torch.Tensor],
    history: Sequence[Mapping[str, Any]] | None = None,
    overwrite: bool = True,
) -> Path:
    """Write a model folder atomically (module docstring); returns its path.

    ``config``: the content of ``config.json`` (made JSON-able with :func:`jsonable`; other odd
    objects in provenance, e.g. dates, are stored as their ``str()``); ``tensors``: everything in
    ``weights.safetensors``; ``history``: ``history.csv`` rows (none: no file). An existing model
    folder is replaced (``overwrite=True``) — extra files in it are kept — or refused
    (``overwrite=False``: ``FileExistsError``). A non-empty folder without ``config.json`` is never
    replaced (``FileExistsError``).
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
    config_text = json.dumps(jsonable(config), indent=2, allow_nan=False, default=str)
    cpu_tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    give_default_permissions(tmp, directory=True)  # mkdtemp makes it owner-only (0700)
    moved: list[str] = []
    backup: Path | None = None
    try:
        (tmp / CONFIG_FILE).write_text(config_text + "\n")
        save_file(cpu_tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "starlabels"})
        if history:
            _write_history(tmp / HISTORY_FILE, list(history))
        for written in tmp.iterdir():  # safetensors writes its file owner-only (0600)
            give_default_permissions(written)
        if folder.exists():
            for entry in sorted(os.listdir(folder)):
                if entry not in OWN_FILES:
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


def _write_history(path: Path, records: list[Mapping[str, Any]]) -> None:
    columns = list(HISTORY_COLUMNS)
    for r in records:
        columns += [k for k in r if k not in columns]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, restval="")
        w.writeheader()
        for r in records:
            w.writerow({k: jsonable(v) for k, v in r.items()})


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


def read_history(folder: str | Path) -> list[dict[str, Any]] | None:
    """The rows of a model folder's ``history.csv`` (numbers parsed; None when there is none)."""
    path = Path(folder) / HISTORY_FILE
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        return [{k: _parse_number(v) for k, v in row.items()} for row in csv.DictReader(f)] or None


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


def network_grid(grid: Any, preprocessing: Mapping[str, Any] | None, n_pixels: int) -> Any:
    """The :class:`~starlabels.core.Grid` of a model input of ``n_pixels`` pixels: ``grid`` (a
    Grid, a built-in grid's name or a ``Grid.to_dict()``) when given — ``InputDataError`` when it
    is not a grid or has another pixel count — else the output grid of ``preprocessing`` (a
    ``PreprocessConfig.to_dict()``), else the built-in grid with ``n_pixels`` pixels; ``None``
    when none of those fits (see :class:`TrainedModel`'s ``grid``)."""
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
