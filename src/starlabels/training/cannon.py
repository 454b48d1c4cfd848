"""``starlabels train`` with ``[model] name = "cannon"``: The Cannon from a training TOML file.

Reads the HDF5 datasets of ``[data]``, splits them as a network run would (``[data.split]``),
applies ``[preprocess]`` (continuum normalisation) unless the files are already preprocessed,
trains :class:`~starlabels.models.cannon.CannonModel` on the train rows that have every label,
calibrates its inverse-Fisher σ on the complete dev rows (≥ 5) and writes the model folder (with
``splits.npz``, as networks). The keys are documented in :mod:`starlabels.training.config`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.training.config import ConfigError, TrainConfig

#: rows read and preprocessed at once
CHUNK_ROWS = 1024
#: dev rows needed to calibrate
MIN_DEV_ROWS = 5


def complete_rows(labels: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The ``rows`` whose labels are all present (not MISSING, finite)."""
    lab = labels[rows]
    return rows[np.all(np.isfinite(lab) & (lab != MISSING), axis=1)]


def read_rows(data: Any, rows: np.ndarray, preprocess: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flux and error (n, P) float64 of ``rows`` (sorted), preprocessed when ``preprocess`` is given;
    rejected pixels get error = inf (The Cannon's "unused")."""
    from starlabels.preprocess.masking import is_rejected_error

    fl, er = [], []
    for start in range(0, len(rows), CHUNK_ROWS):
        f, e, b = data.read(rows[start:start + CHUNK_ROWS])
        if e is None:
            raise InputDataError("The Cannon needs per-pixel errors; the training files hold none")
        if preprocess is not None:
            f, e = preprocess.apply(f, e, b)
        f, e = np.asarray(f, np.float64), np.asarray(e, np.float64)
        bad = ~np.isfinite(f) | ~np.isfinite(e) | (e <= 0) | is_rejected_error(e)
        fl.append(np.where(bad, 0.0, f))
        er.append(np.where(bad, np.inf, e))
    return np.concatenate(fl), np.concatenate(er)


def load_censor_masks(paths: dict[str, str]) -> dict[str, np.ndarray]:
    """``{label: path of a .npy file}`` from a config's ``censors`` → ``{label: (P,) bool}`` pixel
    masks (nonzero = True); a file that is not a 1-D NumPy array is an :class:`InputFileError` naming
    it and its label."""
    from starlabels.io.array_file import load_pixel_vector

    return {label: load_pixel_vector(path, f"censor mask of {label}").astype(bool)
            for label, path in paths.items()}


def train_cannon_from_config(cfg: TrainConfig) -> Any:
    """Train, calibrate and save The Cannon described by ``cfg``; returns the CannonModel."""
    from starlabels.inference.calibration import calibrate
    from starlabels.models.cannon import CannonModel, censors_from_windows
    from starlabels.preprocess.pipeline import PreprocessConfig
    from starlabels.training.data_access import TrainingData
    from starlabels.training.from_config import make_split
    from starlabels.training.provenance import SPLITS_NAME

    t0 = time.perf_counter()
    folder = Path(cfg.output.folder)
    if folder.exists() and any(folder.iterdir()) and not cfg.output.overwrite:
        raise FileExistsError(f"{folder}: output folder exists and is not empty (pass --overwrite)")
    data = TrainingData.from_hdf5(cfg.data.files, cfg.data.label_names, group_column=cfg.data.group_column)
    split, info = make_split(data, cfg.data.split, int(cfg.training.seed))
    if data.preprocessing is not None:
        stored = PreprocessConfig.from_dict(data.preprocessing)
        if stored.kind != "continuum":
            raise ConfigError("The Cannon needs continuum-normalised spectra; the files hold "
                              f"{stored.kind!r} preprocessed flux")
        apply, model_pre = None, stored
    elif cfg.preprocess is not None:
        apply = model_pre = PreprocessConfig.from_dict(cfg.preprocess)
    else:
        raise ConfigError("The Cannon needs continuum-normalised flux: add [preprocess] kind = 'continuum' "
                          "(the files hold raw spectra)")
    kwargs = dict(cfg.model.kwargs)
    windows = kwargs.pop("censor_windows", None)
    censors = {} if windows is None else censors_from_windows(cfg.data.label_names, windows)
    censors.update(load_censor_masks(kwargs.pop("censors", {})))
    train_rows = complete_rows(data.labels, np.sort(split["train"]))
    if len(train_rows) == 0:
        raise InputDataError("no training row has every label; The Cannon needs complete label rows")
    flux, error = read_rows(data, train_rows, apply)
    model = CannonModel(cfg.data.label_names, label_units=data.label_units, censors=censors or None,
                        preprocessing=model_pre, device=cfg.training.torch_device, **kwargs)
    model.fit(flux, error, data.labels[train_rows].astype(np.float64))
    del flux, error
    dev_rows = complete_rows(data.labels, np.sort(split["dev"]))
    calibration = None
    if len(dev_rows) >= MIN_DEV_ROWS:
        f, e = read_rows(data, dev_rows, apply)
        calibration = calibrate(model, f, e, data.labels[dev_rows].astype(np.float64), preprocessed=True)
    model.training.update({
        "config": json.loads(json.dumps(cfg.to_dict(), default=str)),
        "data_files": list(data.files),
        "split": info,
        "sizes": {k: len(v) for k, v in split.items()},
        "complete_rows": {"train": len(train_rows), "dev": len(dev_rows)},
        "seconds": time.perf_counter() - t0,
    })
    model.save(folder)
    np.savez(folder / SPLITS_NAME, **{k: np.asarray(v, np.int64) for k, v in split.items()})
    model.last_calibration = calibration
    return model
