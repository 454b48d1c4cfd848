"""The one autograd Jacobian (starlabels.inference.jacobian) against torch.autograd.functional.jacobian
computed star by star, and its mode switch (eval mode restored, StopGrad bypassed)."""

from __future__ import annotations

import torch
from torch import nn

from starlabels.inference.jacobian import iter_label_gradients, jacobian_mode, label_gradients
from starlabels.models.layers import StopGrad


def _network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv1d(1, 4, 5, padding=2), nn.Tanh(), nn.Flatten(), nn.Dropout(0.3),
                         nn.Linear(4 * 30, 3))


def test_label_gradients_equal_per_star_jacobians():
    net = _network()
    x = torch.randn(6, 1, 30, dtype=torch.float64)
    net = net.double()
    with jacobian_mode(net):
        xg = x.clone().requires_grad_(True)
        got = label_gradients(net(xg), xg)  # (L, B, 1, P)
    assert got.shape == (3, 6, 1, 30)
    net.eval()
    for b in range(6):
        ref = torch.autograd.functional.jacobian(lambda row: net(row[None])[0], x[b])  # (L, 1, P)
        torch.testing.assert_close(got[:, b], ref, rtol=1e-12, atol=1e-12)
    with jacobian_mode(net):
        xg = x.clone().requires_grad_(True)
        some = list(iter_label_gradients(net(xg), xg, labels=[2, 0]))
    torch.testing.assert_close(torch.stack(some), got[[2, 0]], rtol=0, atol=0)


def test_jacobian_mode_restores_training_and_bypasses_stopgrad():
    net = nn.Sequential(nn.Linear(3, 3), StopGrad(), nn.Dropout(0.5))
    net.train()
    x = torch.ones(2, 3, requires_grad=True)
    with jacobian_mode(net):
        assert not net.training and not net[2].training
        g = label_gradients(net(x), x)
        assert torch.all(g.abs().sum(dim=(1, 2)) > 0)  # gradients pass the StopGrad
    assert net.training and net[2].training
    with jacobian_mode(net, through_stopgrad=False):
        out = net(x)
        assert not out.requires_grad  # StopGrad detaches: no gradient path without the bypass
    assert net.training
