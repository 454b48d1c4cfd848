"""Per-sample losses shaped (N,) for incomplete, noisy labels (astroNN eqs. 5–7).

``LOSSES`` maps the training config's loss names to functions: ``"mse"`` and ``"mae"`` take
``(pred, target)``; ``"robust"`` takes ``(pred, log_var, target, target_error)`` and needs a network
with a variance head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from starlabels.losses.masked import masked_mae, masked_mse, present_mask
from starlabels.losses.robust import robust_mse

__all__ = ["LOSSES", "masked_mae", "masked_mse", "present_mask", "robust_mse"]

LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "mse": masked_mse,
    "mae": masked_mae,
    "robust": robust_mse,
}
