"""Fixtures for the inference tests: tiny networks with known, analytic behaviour."""

from __future__ import annotations

import pytest
import torch
from torch import nn


class LinearNet(nn.Module):
    """y = W x + b, log_var = constant ``log_var`` (per label). Input (N, 1, P)."""

    has_variance = True

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, log_var: float | None = None):
        super().__init__()
        self.n_labels, self.n_pixels = weight.shape
        self.lin = nn.Linear(self.n_pixels, self.n_labels)
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.copy_(torch.zeros(self.n_labels) if bias is None else bias)
        self.log_var = log_var
        self.has_variance = log_var is not None

    def forward(self, x):
        y = self.lin(x[:, 0])
        lv = None if self.log_var is None else torch.full_like(y, self.log_var)
        return y, lv


class SmoothNet(nn.Module):
    """A small smooth (tanh) CNN with a variance head: the delta method's home ground."""

    has_variance = True

    def __init__(self, n_pixels: int = 128, n_labels: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.n_pixels, self.n_labels = n_pixels, n_labels
        self.conv = nn.Conv1d(1, 4, 5, padding=2)
        self.fc1 = nn.Linear(4 * n_pixels, 32)
        self.mean = nn.Linear(32, n_labels)
        self.lv = nn.Linear(32, n_labels)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / max(1, p.shape[-1]) ** 0.5))

    def forward(self, x):
        h = torch.tanh(self.conv(x)).flatten(1)
        h = torch.tanh(self.fc1(h))
        return self.mean(h), self.lv(h)


class DropoutLinear(nn.Module):
    """y = w · dropout(h(x)) with h(x) = x (identity features): Var over masks is analytic,
    Σ_i w_i² x_i² p/(1-p). log_var = const."""

    has_variance = True

    def __init__(self, w: torch.Tensor, p: float, log_var: float = 0.0):
        super().__init__()
        self.n_labels, self.n_pixels = w.shape
        self.w = nn.Parameter(w.clone())
        self.drop = nn.Dropout(p)
        self.log_var = log_var

    def forward(self, x):
        y = self.drop(x[:, 0]) @ self.w.T
        return y, torch.full_like(y, self.log_var)


class CountingNet(nn.Module):
    """Wraps a network and records the batch size of every forward call."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.n_labels, self.n_pixels = net.n_labels, net.n_pixels
        self.has_variance = getattr(net, "has_variance", False)
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(int(x.shape[0]))
        return self.net(x)


@pytest.fixture
def nets():
    """Namespace of the test network classes."""

    class N:
        Linear = LinearNet
        Smooth = SmoothNet
        DropoutLinear = DropoutLinear
        Counting = CountingNet

    return N
