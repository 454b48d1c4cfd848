"""A training's output folder and what a finished training leaves in it: the provenance facts, the
model with ``splits.npz`` beside the checkpoint, and the trust references (coverage, domain shift).

:func:`training_provenance` builds the provenance dict stored in the model's ``config.json``
(``training``) from a :class:`~starlabels.training.trainer.Trainer`'s settings and stage state
(with its data-dependent parts :func:`label_range` and :func:`now`); :func:`claim_output_folder`
locks the folder when a run starts, :func:`save_model_folder` writes it and
:func:`fit_trust_references` fits the trust references.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import StarlabelsError
from starlabels.training.checkpoint import CHECKPOINT_NAME
from starlabels.training.data_access import FLOAT
from starlabels.training.errors import TrainingError

__all__ = ["HISTORY_COLUMNS", "SPLITS_NAME", "claim_output_folder", "fit_trust_references", "label_range",
           "now", "save_model_folder", "training_provenance"]

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


def training_provenance(
    *,
    files: Sequence[str],
    split: Mapping[str, np.ndarray],
    split_info: Mapping[str, Any],
    optimiser: Any,
    training: Any,
    state: Mapping[str, Any],
    seed: int,
    train_labels: np.ndarray,
    device: Any,
    world_size: int,
    streaming: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """The ``training`` entry of a trained model's ``config.json``: data files, split sizes (and
    ``split_info`` with the ``splits.npz`` name), the optimiser and loop settings (``optimiser``: an
    :class:`~starlabels.training.config.OptimiserConfig`, ``training``: a
    :class:`~starlabels.training.config.TrainingConfig`), the epochs run per stage (from the
    trainer's stage ``state``), dates, seed, the (N, L) ``train_labels``' :func:`label_range`,
    device, world size and ``streaming`` settings; ``extra`` entries are added last (they win)."""
    return {
        "data_files": list(files),
        "sizes": {k: len(v) for k, v in split.items()},
        "splits": {**split_info, "file": SPLITS_NAME},
        "optimiser": dict(optimiser.__dict__),
        "loss": training.loss,
        "batch_size": int(training.batch_size),
        "patience": int(training.patience),
        "epochs": {"max": int(training.epochs), "run": int(state["global_epoch"]), "stages": state["stages"]},
        "dates": {"started": state["started"], "finished": now()},
        "seed": seed,
        "label_range": label_range(train_labels),
        "device": str(device),
        "world_size": world_size,
        "streaming": dict(streaming),
        **extra,
    }


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


def claim_output_folder(folder: Path, *, refuse_existing: bool) -> Any:
    """Take ``folder``'s output lock (:class:`~starlabels.output_lock.OutputLock`: one training per
    output folder at a time; the kernel drops it if the process dies) and return it, held. With
    ``refuse_existing`` (a fresh run, no overwrite) a folder that already holds a checkpoint or a
    model is a :class:`~starlabels.training.errors.TrainingError`."""
    from starlabels.output_lock import OutputLock

    lock = OutputLock(folder, "training", same_process_ok=True).__enter__()
    if refuse_existing:
        clash = [p for p in (CHECKPOINT_NAME, "config.json") if (folder / p).exists()]
        if clash:
            raise TrainingError(f"{folder} already holds {clash}; resume (--resume) or set overwrite")
    return lock


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
