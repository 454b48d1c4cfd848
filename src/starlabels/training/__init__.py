"""Training: configs, the training engine, stratified adaptation and scale-out (DDP) training.

- :mod:`starlabels.training.config` — :class:`TrainConfig` and its sections, :func:`load_config`
  (the TOML format of ``starlabels train``).
- :mod:`starlabels.training.trainer` — :class:`TrainingData` (labels in memory, spectra streamed
  from HDF5), :class:`Trainer` (early stopping, ReduceLROnPlateau, checkpoints, exact resume),
  :func:`train_from_config`.
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
    "Trainer": "trainer", "TrainingData": "trainer", "TrainingError": "trainer",
    "train_from_config": "trainer", "trainer_from_config": "trainer", "make_split": "trainer",
    "adapt": "stratified",
    "DistributedContext": "distributed", "init_distributed": "distributed",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"starlabels.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'starlabels.training' has no attribute {name!r}")
