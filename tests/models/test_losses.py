"""Masked MSE/MAE and the robust loss: hand-computed values, masking, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.losses import LOSSES, masked_mae, masked_mse, robust_mse

M = MISSING
NAN = float("nan")


def case():
    """Row 0: two labels present; row 1: none present; row 2: one present (NaN prediction elsewhere)."""
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.5, 0.0, 7.0], [1.0, NAN, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, M, 1.0], [M, NAN, M], [2.0, M, NAN]])
    return pred, target


def test_masked_mse_values_and_gradients():
    pred, target = case()
    loss = masked_mse(pred, target)
    # row 0: (1² + 2²)/2 ; row 1: no labels → 0 ; row 2: (1−2)²/1
    assert torch.equal(loss, torch.tensor([2.5, 0.0, 1.0]))
    loss.sum().backward()
    # d/dpred (r²/D_i) = 2r/D_i; exactly 0 on missing entries (even where pred is NaN)
    assert torch.equal(pred.grad, torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 0.0]]))


def test_masked_mae_values_and_gradients():
    pred, target = case()
    loss = masked_mae(pred, target)
    assert torch.equal(loss, torch.tensor([1.5, 0.0, 1.0]))
    loss.sum().backward()
    assert torch.equal(pred.grad, torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]))


def test_correction_factor_makes_missing_labels_neutral():
    """D/D_i: a row missing some labels scores the mean over its present labels."""
    pred = torch.tensor([[1.0, 3.0, 0.0, 0.0], [1.0, 3.0, 0.0, 0.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, M, NAN]])
    full, partial = masked_mse(pred, target)
    assert full == pytest.approx(10 / 4)
    assert partial == pytest.approx(10 / 2)  # = (1/4)(1² + 3²) · 4/2


def test_robust_mse_hand_computed():
    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], requires_grad=True)
    log_var = torch.tensor([[0.0, math.log(3.0), 5.0], [0.0, 0.0, 0.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0, M], [M, M, M]])
    err = torch.tensor([[1.0, 1.0, 0.5], [1.0, 1.0, 1.0]])
    loss = robust_mse(pred, log_var, target, err)
    # label 0: s = ln(1 + 1) → ½·1/2 + ½ ln 2 ; label 1: s = ln(3 + 1) → ½·4/4 + ½ ln 4
    j0 = 0.25 + 0.5 * math.log(2)
    j1 = 0.5 + 0.5 * math.log(4)
    assert loss[0].item() == pytest.approx((j0 + j1) / 2, rel=1e-6)
    assert loss[1].item() == 0.0
    loss.sum().backward()
    # dJ/dŷ = r e^{-s} / D_i ; dJ/dlog_var = ½(1 − r² e^{-s}) · σp²/(σp² + σl²) / D_i
    torch.testing.assert_close(pred.grad, torch.tensor([[0.25, 0.25, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(
        log_var.grad, torch.tensor([[0.0625, 0.0, 0.0], [0.0, 0.0, 0.0]]), atol=1e-7, rtol=0
    )
    assert log_var.grad[0, 2] == 0 and torch.count_nonzero(log_var.grad[1]) == 0


def test_robust_mse_without_errors_and_missing_errors():
    pred = torch.tensor([[2.0, 1.0]])
    log_var = torch.tensor([[math.log(2.0), 0.0]])
    target = torch.tensor([[0.0, 0.0]])
    expected = (0.5 * 4 / 2 + 0.5 * math.log(2) + 0.5 * 1) / 2
    assert robust_mse(pred, log_var, target).item() == pytest.approx(expected, rel=1e-6)
    for bad in (M, NAN, -1.0, 0.0):  # all count as "no label error"
        err = torch.tensor([[bad, bad]])
        assert robust_mse(pred, log_var, target, err).item() == pytest.approx(expected, rel=1e-6)
    # log_var = 0 and no errors: robust = ½ · masked MSE
    pred2, target2 = case()
    torch.testing.assert_close(
        robust_mse(pred2, torch.zeros(3, 3), target2), 0.5 * masked_mse(pred2, target2)
    )


def test_robust_mse_is_finite_for_extreme_log_variance():
    pred = torch.zeros(1, 2, requires_grad=True)
    log_var = torch.tensor([[200.0, -50.0]], requires_grad=True)
    loss = robust_mse(pred, log_var, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.1, 0.1]]))
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all() and torch.isfinite(log_var.grad).all()


def test_missing_entries_get_zero_gradient_even_with_nan_log_var():
    pred = torch.tensor([[0.3, 0.2]], requires_grad=True)
    log_var = torch.tensor([[0.1, NAN]], requires_grad=True)
    loss = robust_mse(pred, log_var, torch.tensor([[1.0, M]]), torch.tensor([[0.2, M]]))
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert pred.grad[0, 1] == 0 and log_var.grad[0, 1] == 0
    assert pred.grad[0, 0] != 0 and log_var.grad[0, 0] != 0


def test_shape_errors_and_registry():
    with pytest.raises(InputDataError, match="pred shape"):
        masked_mse(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(InputDataError, match="log_var"):
        robust_mse(torch.zeros(2, 3), torch.zeros(2, 1), torch.zeros(2, 3))
    with pytest.raises(InputDataError, match=r"\(N, D\)"):
        masked_mae(torch.zeros(3), torch.zeros(3))
    assert {"mse": masked_mse, "mae": masked_mae, "robust": robust_mse} == LOSSES
