"""Robust loss with a learned predictive variance and known label errors (astroNN eq. 5).

For label d of sample i, with s = ln(σ²_pred + σ²_label) and σ²_pred = exp(log_var)::

    J = ½ (y − ŷ)² e^{−s} + ½ s          (label present)
    J = 0                                (label MISSING or NaN)

averaged over the D labels with the D/D_i correction (eqs. 6–7), i.e. summed over the present labels
and divided by D_i; rows without labels give 0. All quantities are in standardised label units:
pass label errors divided by the label std (``LabelScaler.transform_errors``).
"""

from __future__ import annotations

import torch

from starlabels.constants import MISSING
from starlabels.losses.masked import check_shapes, masked_residual, present_mask, reduce_present

__all__ = ["robust_mse"]


def robust_mse(
    pred: torch.Tensor,
    log_var: torch.Tensor,
    target: torch.Tensor,
    target_error: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample robust loss (astroNN eq. 5 with eqs. 6–7), shape (N,).

    Parameters
    ----------
    pred, log_var:
        (N, D) network means and predictive log-variances (standardised units).
    target:
        (N, D) standardised labels; MISSING or NaN entries contribute nothing (zero loss and exactly
        zero gradient to ``pred`` and ``log_var``).
    target_error:
        (N, D) label uncertainties σ_label in standardised units, or ``None`` (all 0). MISSING, NaN,
        infinite or negative errors count as 0 (only the predictive variance is used).

    ``s`` is evaluated as ``logaddexp(log_var, 2 ln σ_label)``, which is exact and stays finite for
    large ``log_var`` and for σ_label = 0.
    """
    check_shapes("robust_mse", target, pred=pred, log_var=log_var, target_error=target_error)
    present = present_mask(target)
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    lv = torch.where(present, log_var, zero)
    if target_error is None:
        s = lv
    else:
        err = target_error.to(pred.dtype)
        good = torch.isfinite(err) & (err != MISSING) & (err > 0)
        log_err2 = torch.where(good, 2.0 * torch.log(torch.where(good, err, 1.0)), -torch.inf)
        s = torch.logaddexp(lv, log_err2)
    r = masked_residual(pred, target, present)
    per_label = 0.5 * r * r * torch.exp(-s) + 0.5 * s
    return reduce_present(torch.where(present, per_label, zero), present)
