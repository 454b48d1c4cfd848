"""StopGrad, MaxNorm, mc_dropout, n_parameters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from starlabels.models.layers import MaxNorm, StopGrad, bypass_stopgrad, mc_dropout, n_parameters


def test_stopgrad_identity_forward_zero_gradient():
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    sg = StopGrad()
    y = sg(x)
    assert torch.equal(y, x)
    # y = 2·x + 3·stopgrad(x): the gradient only sees the first term
    (2 * x + 3 * sg(x)).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), 2.0))


def test_bypass_stopgrad_restores_identity_jacobian_then_state():
    model = nn.Sequential(StopGrad(), StopGrad(enabled=False))
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    with bypass_stopgrad(model):
        assert not model[0].enabled
        (3 * model(x)).sum().backward()
    assert torch.equal(x.grad, torch.full((2,), 3.0))
    assert model[0].enabled and not model[1].enabled  # previous flags restored
    assert not model(x).requires_grad


def test_maxnorm_rescales_only_rows_above_the_bound():
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])  # norms 5, 0.5, 0
    MaxNorm(1.0)(w)
    norms = w.norm(dim=1)
    assert norms[0] <= 1.0 and norms[0] == pytest.approx(1.0, rel=1e-5)
    torch.testing.assert_close(w[0], torch.tensor([0.6, 0.8]), rtol=1e-5, atol=0)
    assert torch.equal(w[1], torch.tensor([0.3, 0.4]))  # untouched (below the bound)
    assert torch.equal(w[2], torch.zeros(2))


def test_maxnorm_is_inplace_without_autograd_and_rejects_bad_bound():
    lin = nn.Linear(10, 2)
    with torch.no_grad():
        lin.weight.mul_(100)
    out = MaxNorm(0.25)(lin.weight)
    assert out is lin.weight and lin.weight.grad_fn is None
    assert (lin.weight.norm(dim=1) <= 0.25).all()
    with pytest.raises(ValueError, match="max_norm"):
        MaxNorm(0.0)


def test_mc_dropout_keeps_only_dropout_sampling_and_restores_modes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.BatchNorm1d(64), nn.Dropout(0.5), nn.Linear(64, 1))
    model.train()
    x = torch.randn(8, 4)
    with mc_dropout(model):
        assert not model[1].training  # batch norm uses running statistics
        assert model[2].training  # dropout samples
        a, b = model(x), model(x)
        assert not torch.equal(a, b)
    assert all(m.training for m in model.modules())  # restored
    model.eval()
    with mc_dropout(model):
        pass
    assert not any(m.training for m in model.modules())
    assert torch.equal(model(x), model(x))


def test_n_parameters_counts_scalars():
    lin = nn.Linear(3, 2)  # 6 weights + 2 biases
    assert n_parameters(lin) == 8
    lin.bias.requires_grad_(False)
    assert n_parameters(lin, trainable_only=True) == 6
