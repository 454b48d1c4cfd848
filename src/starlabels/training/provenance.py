"""What a finished training leaves behind: the provenance facts, the model folder with
``splits.npz`` beside the checkpoint, and the trust references (label coverage, domain shift).

:class:`~starlabels.training.trainer.Trainer` builds the provenance dict stored in the model's
``config.json`` (``training``) from its settings; the helpers here compute its data-dependent
parts (:func:`label_range`, :func:`now`), write the folder (:func:`save_model_folder`) and fit the
trust references (:func:`fit_trust_references`).
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import StarlabelsError
from starlabels.training.checkpoint import CHECKPOINT_NAME
from starlabels.training.data_access import FLOAT

__all__ = ["HISTORY_COLUMNS", "SPLITS_NAME", "fit_trust_references", "label_range", "now",
           "save_model_folder"]

SPLITS_NAME = "splits.npz"
HISTORY_COLUMNS = ("epoch", "train_loss", "dev_loss", "lr", "seconds")


def now() -> str:
    """The current UTC time, ISO 8601 to the second (provenance dates)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def label_range(labels: np.ndarray) -> dict[str, Any]:
    """Per-label min/max of (N, L) training labels' present values (MISSING/NaN ignored; null for a
    label with none); the inference flags mark predictions outside it (LABEL_OUT_OF_RANGE)."""
    lab = np.asarray(labels, dtype=np.float64)
    present = (lab != MISSING) & np.isfinite(lab)
    # an all-missing label gives ±inf here (never numpy's all-NaN warning) and null below
    lo = np.where(present, lab, np.inf).min(axis=0, initial=np.inf)
    hi = np.where(present, lab, -np.inf).max(axis=0, initial=-np.inf)
    as_list = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # noqa: E731
    return {"min": as_list(lo), "max": as_list(hi), "source": "training set"}


def fit_trust_references(model: Any, inputs: Any, split: Mapping[str, np.ndarray], seed: int,
                         max_rows: int) -> tuple[Any, ...]:
    """Fit the label coverage and the domain-shift estimator of the trained ``model`` on (up to
    ``max_rows``) train and dev rows (:func:`starlabels.inference.trust.fit_trust`), read
    and preprocessed through ``inputs`` (an :class:`~starlabels.training.inputs.InputPipeline`).

    A failure (e.g. too few dev rows) warns and returns ``()``: it never loses the trained model.
    """
    from starlabels.inference.trust import fit_trust

    rng = np.random.default_rng(seed)

    def pick(rows: np.ndarray):
        if len(rows) > max_rows:
            rows = np.sort(rng.choice(rows, max_rows, replace=False))
        f, e = inputs.preprocess_block(*inputs.data.read(rows))
        return np.asarray(f, FLOAT), None if e is None else np.asarray(e, FLOAT), inputs.data.labels[rows]

    try:
        tf, te, tl = pick(split["train"])
        df, de, dl = pick(split["dev"])
        return fit_trust(model, tf, te, tl, df, de, dl, seed=seed)
    except (StarlabelsError, ValueError) as exc:
        warnings.warn(f"the model was trained, but its coverage/domain-shift reference could not be "
                      f"fitted ({exc}); predictions will carry no DOMAIN_SHIFT flag", stacklevel=2)
        return ()


def save_model_folder(model: Any, folder: Path, split: Mapping[str, np.ndarray]) -> None:
    """Save ``model`` into ``folder``, keeping the training checkpoint, and write ``splits.npz``
    (``train``, ``dev``, ``test`` row numbers).

    ``TrainedModel.save`` refuses a non-empty folder that is not yet a model folder, so on the
    first save the checkpoint (and an old ``splits.npz``) is moved beside the folder and back.
    """
    parked: list[tuple[Path, Path]] = []
    if folder.is_dir() and not (folder / "config.json").exists():
        for name in (CHECKPOINT_NAME, SPLITS_NAME):
            if (folder / name).exists():
                aside = folder.parent / f".{folder.name}.{name}"
                os.replace(folder / name, aside)
                parked.append((aside, folder / name))
        if not any(folder.iterdir()):
            folder.rmdir()
    try:
        model.save(folder)
    finally:
        for aside, back in parked:
            back.parent.mkdir(parents=True, exist_ok=True)
            os.replace(aside, back)
    np.savez(folder / SPLITS_NAME, **split)
