"""Training the photometric young-star network (APOGEE Net §2.4) through the shared
:class:`~starlabels.training.trainer.Trainer`.

:func:`train_yso_network` turns a synthetic population (:func:`starlabels.labels.yso.synthetic_population`)
into :class:`~starlabels.training.data_access.TrainingData` — the (N, F) photometric inputs play
the part of the spectra, the (N, T) targets that of the labels — and trains a
:class:`~starlabels.models.yso.YSOPhotometryCNN` with the Trainer: inputs standardised per feature
(``spectrum_scaling="standardised"``, i.e. feature mean and population std of the training rows),
targets standardised, MSE loss, Adam with a one-cycle learning-rate schedule stepped every batch,
rows drawn in a fresh permutation each epoch (the Trainer's ``shuffle="full"`` from the seed), no
early stopping, and the epoch with the lowest dev loss kept when there is a dev population. The
result is a :class:`~starlabels.models.yso.YSOLabeler`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from starlabels.errors import InputDataError
from starlabels.labels.yso import (
    ALL_BANDS,
    PAPER_LIMITS,
    TARGET_UNITS,
    TARGETS,
    feature_names,
    observed_inputs,
)
from starlabels.models.yso import YSOLabeler, YSOPhotometryCNN, input_transform
from starlabels.training.config import OptimiserConfig, TrainingConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.trainer import Trainer

__all__ = ["train_yso_network"]


def _arrays(table: Any, features: Sequence[str], limits: Mapping[str, float],
            targets: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, F) transformed inputs and (n, T) targets of the table's usable rows (all finite)."""
    x = input_transform(observed_inputs(table, features, limits), features)
    y = np.stack([np.asarray(table[t], dtype=float) for t in targets], axis=1)
    good = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    return x[good], y[good]


def train_yso_network(
    train: Any,
    *,
    dev: Any | None = None,
    targets: Sequence[str] = TARGETS,
    epochs: int = 60,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    channels: Sequence[int] = (32, 64, 128),
    kernel_size: int = 3,
    hidden: int = 256,
    seed: int = 0,
    device: str | None = None,
    limits: Mapping[str, float] | None = None,
) -> tuple[YSOLabeler, list[dict[str, float]]]:
    """Train the YSO photometry CNN on a synthetic population (table from
    :func:`~starlabels.labels.yso.synthetic_population`) through the shared Trainer.

    Inputs: the bands present in ``train.meta["bands"]`` (else in the table), radius, log L and
    distance (as log10), standardised; targets standardised. MSE loss, Adam (``lr`` peak,
    ``weight_decay``) with a one-cycle learning-rate schedule; with ``dev`` the epoch with the
    lowest dev loss is kept. The network is so small that one torch intra-op thread is fastest on
    the CPU (several are many times slower on a busy machine); the thread setting is process-wide,
    so it is the caller's: ``starlabels labels yso-train`` sets one (``--threads``), scripts call
    ``torch.set_num_threads(1)`` themselves. The caller's global random states are left as they were.
    Returns the labeler and the history (one dict per epoch, counted from 0: ``epoch, train_loss,
    dev_loss, lr, seconds``; ``dev_loss`` NaN without ``dev``).
    """
    return _fit_labeler(train, dev, targets, epochs, batch_size, lr, weight_decay, channels, kernel_size,
                        hidden, seed, device, limits)


def _fit_labeler(train, dev, targets, epochs, batch_size, lr, weight_decay, channels, kernel_size, hidden,
                 seed, device, limits) -> tuple[YSOLabeler, list[dict[str, float]]]:
    """The work of :func:`train_yso_network`: arrays from the tables, one Trainer run, the labeler."""
    from starlabels.labels.mdwarf import table_columns
    from starlabels.utils import seeded

    bands = list(train.meta.get("bands", [])) if hasattr(train, "meta") else []
    if not bands:
        bands = [b for b in ALL_BANDS if b in table_columns(train)]
    features = feature_names(bands)
    lim = {b: float(v) for b, v in {**PAPER_LIMITS, **(limits or {})}.items() if b in bands}
    targets = list(targets)
    x, y = _arrays(train, features, lim, targets)
    if len(x) < 2:
        raise InputDataError("training population has fewer than two usable stars")
    x_dev, y_dev = _arrays(dev, features, lim, targets) if dev is not None else (x[:0], y[:0])
    n_train, n_dev = len(x), len(x_dev)

    arch = {"n_inputs": len(features), "n_outputs": len(targets), "channels": list(channels),
            "kernel_size": kernel_size, "hidden": hidden}
    with seeded(seed):  # the network's initial weights, without touching the caller's random states
        network = YSOPhotometryCNN(**arch)
    data = TrainingData.from_arrays(
        np.concatenate([x, x_dev]), np.concatenate([y, y_dev]), targets,
        label_units=[TARGET_UNITS.get(t, "") for t in targets],
    )
    rows = np.arange(n_train + n_dev)
    # without a dev population nothing picks an epoch: the dev split is a formality (never scored)
    split = {"train": rows[:n_train], "dev": rows[n_train:] if n_dev else rows[:n_train]}
    trainer = Trainer(
        network, data, split,
        optimiser=OptimiserConfig(learning_rate=lr, weight_decay=weight_decay, scheduler="one_cycle"),
        training=TrainingConfig(loss="mse", epochs=epochs, patience=epochs, batch_size=batch_size,
                                seed=seed, device=device or "auto"),
        spectrum_scaling="standardised", shuffle="full",
    )
    dev_loss = None if n_dev else (lambda: float("nan"))
    result = trainer.run_stage("main", split["train"], dev_loss)
    trainer.release_output()
    network = trainer.network.cpu().eval()
    scaler = trainer.spectrum_scaler
    best = float(result.best_loss) if n_dev and np.isfinite(result.best_loss) else None
    labeler = YSOLabeler(
        model=network, features=features, targets=targets,
        x_mean=scaler.mean.double().numpy(), x_std=scaler.std.double().numpy(),
        y_mean=np.asarray(trainer.label_scaler.mean, dtype=float),
        y_std=np.asarray(trainer.label_scaler.std, dtype=float), limits=lim, arch=arch,
        training={"n_train": n_train, "n_dev": n_dev, "epochs": epochs, "batch_size": batch_size,
                  "lr": lr, "seed": seed, "best_dev_loss": best, "trainer": "starlabels.training.Trainer",
                  "population": {k: v for k, v in getattr(train, "meta", {}).items()
                                 if isinstance(v, (str, int, float, list, dict))}},
    )
    history = [{"epoch": r["epoch"] - 1, "train_loss": r["train_loss"], "dev_loss": r["dev_loss"],
                "lr": r["lr"], "seconds": r["seconds"]} for r in trainer.history]
    return labeler, history
