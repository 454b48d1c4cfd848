"""Training: configs, the training engine, stratified adaptation and scale-out (DDP) training.

- :mod:`starlabels.training.config` — :class:`TrainConfig` and its sections, :func:`load_config`
  (the TOML format of ``starlabels train``).
- :mod:`starlabels.training.trainer` — :class:`Trainer` (early stopping, ReduceLROnPlateau,
  checkpoints, exact resume), built from :mod:`.data_access` (:class:`TrainingData`: labels in
  memory, spectra streamed from HDF5), :mod:`.inputs` (preprocessing, augmentation, scalers),
  :mod:`.batches` (epoch order and blocks), :mod:`.loop` (losses, optimisers, one step),
  :mod:`.checkpoint` and :mod:`.provenance`.
- :mod:`starlabels.training.from_config` — :func:`train_from_config`, :func:`trainer_from_config`,
  :func:`make_split`.
- :mod:`starlabels.training.stratified` — :func:`adapt`, APOGEE Net's §3.4 stratified adaptation.
- :mod:`starlabels.training.distributed` — DistributedDataParallel under ``torchrun``.

Names are imported lazily, so reading a config does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TrainConfig": "config", "DataConfig": "config", "SplitConfig": "config", "ModelConfig": "config",
    "OptimiserConfig": "config", "TrainingConfig": "config", "StratifiedConfig": "config",
    "OutputConfig": "config", "ConfigError": "config", "load_config": "config",
    "Trainer": "trainer", "TrainingData": "data_access", "TrainingError": "errors",
    "train_from_config": "from_config", "trainer_from_config": "from_config", "make_split": "from_config",
    "adapt": "stratified",
    "DistributedContext": "distributed", "init_distributed": "distributed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"starlabels.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'starlabels.training' has no attribute {name!r}")
