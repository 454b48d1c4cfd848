"""Masked regression losses for incomplete labels (astroNN, Leung & Bovy 2019, eqs. 6–7).

A target is *present* when it is finite and not :data:`starlabels.constants.MISSING`. With D labels
of which D_i are present for sample i, the per-sample loss is the mean over the D labels of the
per-label loss (missing labels contribute 0), times the correction D/D_i — i.e. the mean over the
present labels only. Samples with no present label give exactly 0 (not NaN), and missing entries get
exactly zero gradient, whatever the prediction there (even NaN/inf predictions are masked before
any arithmetic).
"""

from __future__ import annotations

import torch

from starlabels.constants import MISSING
from starlabels.errors import InputDataError

__all__ = ["check_shapes", "masked_mae", "masked_mse", "masked_residual", "present_mask", "reduce_present"]


def present_mask(target: torch.Tensor) -> torch.Tensor:
    """(N, D) bool: target is finite and not MISSING."""
    return torch.isfinite(target) & (target != MISSING)


def check_shapes(name: str, target: torch.Tensor, **others: torch.Tensor | None) -> None:
    """Raise InputDataError unless every tensor in ``others`` has the (N, D) shape of ``target``."""
    if target.ndim != 2:
        raise InputDataError(f"{name}: target must be (N, D), got shape {tuple(target.shape)}")
    for key, t in others.items():
        if t is not None and t.shape != target.shape:
            raise InputDataError(
                f"{name}: {key} shape {tuple(t.shape)} differs from target shape {tuple(target.shape)}"
            )


def reduce_present(per_label: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(N, D) per-label losses (already 0 where absent) → (N,) = Σ_present / D_i (0 when D_i = 0).

    Equals ``(1/D) Σ_d J_d · D/D_i`` (astroNN eqs. 6–7).
    """
    n_present = present.sum(dim=1)
    return per_label.sum(dim=1) / n_present.clamp(min=1).to(per_label.dtype)


def masked_residual(pred: torch.Tensor, target: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(N, D) ``pred − target`` where ``present``, exactly 0 elsewhere (same shape and dtype as ``pred``).

    Both inputs are masked before the subtraction, so a NaN or infinite target or prediction at an
    absent entry never reaches the arithmetic (nor its gradient).
    """
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    # mask inputs first so neither a NaN target nor a NaN prediction reaches the arithmetic
    p = torch.where(present, pred, zero)
    t = torch.where(present, target.to(pred.dtype), zero)
    return p - t


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample masked mean squared error, shape (N,).

    ``pred``, ``target``: (N, D), standardised labels; missing targets (MISSING or NaN) ignored.
    Loss_i = Σ_{d present} (pred − target)² / D_i, 0 for rows without labels.
    """
    check_shapes("masked_mse", target, pred=pred)
    present = present_mask(target)
    r = masked_residual(pred, target, present)
    return reduce_present(r * r, present)


def masked_mae(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample masked mean absolute error, shape (N,) (same masking as :func:`masked_mse`)."""
    check_shapes("masked_mae", target, pred=pred)
    present = present_mask(target)
    return reduce_present(masked_residual(pred, target, present).abs(), present)
