"""Training checkpoints: model weights on the CPU and the atomic ``checkpoint.pt`` file a resumed
run continues from.

A checkpoint is a dict (``format="starlabels-checkpoint"``, ``version`` 1) holding the network,
optimiser and scheduler states, the torch/numpy/python (and CUDA) states of the trainer's own
random stream (:class:`starlabels.utils.RandomStream`), the stage state, the best and extra
weights, the history, the scalers, the split and the seed;
:class:`~starlabels.training.trainer.Trainer` builds and restores it. :func:`write_checkpoint`
replaces the file atomically (write a temporary file, fsync, rename), so a kill never leaves a
half-written checkpoint.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from starlabels.errors import InputFileError
from starlabels.training.errors import TrainingError

__all__ = [
    "CHECKPOINT_FORMAT", "CHECKPOINT_NAME", "check_matches_run", "cpu_state", "read_checkpoint",
    "write_checkpoint",
]

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "starlabels-checkpoint"


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``module``'s state dict on the CPU (the best epoch's weights, kept aside)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def write_checkpoint(path: Path, checkpoint: Mapping[str, Any]) -> None:
    """``torch.save`` ``checkpoint`` to ``path`` atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(dict(checkpoint), buf)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(buf.getbuffer())
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint dict at ``path``; :class:`InputFileError` when it is unreadable or not a
    starlabels training checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputFileError(path, f"not a readable checkpoint ({exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputFileError(path, "not a starlabels training checkpoint")
    return ckpt


def check_matches_run(path: Path, checkpoint: Mapping[str, Any], split: Mapping[str, np.ndarray],
                      seed: int) -> None:
    """A :class:`TrainingError` unless the checkpoint's train/dev split and seed are this run's."""
    for k in ("train", "dev"):
        if not np.array_equal(checkpoint["split"][k], split[k]):
            raise TrainingError(f"{path}: the checkpoint's {k} split differs from this run's")
    if int(checkpoint["seed"]) != seed:
        raise TrainingError(f"{path}: checkpoint seed {checkpoint['seed']} != configured seed {seed}")
