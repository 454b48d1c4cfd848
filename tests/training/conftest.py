"""Fixtures for the training tests: a tiny network and small synthetic labelled spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """(N, 1, P) → (mean, log_var) with a pooled linear trunk; counts apply_constraints calls."""

    name = "tiny"

    def __init__(self, n_pixels: int, n_labels: int, dropout: float = 0.0, variance: bool = False,
                 hidden: int = 32, pooled: int = 16):
        super().__init__()
        self.n_pixels, self.n_labels = n_pixels, n_labels
        self.pool = nn.AdaptiveAvgPool1d(pooled)
        self.fc = nn.Linear(pooled, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_labels)
        self.var = nn.Linear(hidden, n_labels) if variance else None
        self.constraint_calls = 0
        self._dropout, self._variance = dropout, variance

    def forward(self, x):
        h = self.drop(torch.relu(self.fc(self.pool(x).flatten(1))))
        return self.out(h), (None if self.var is None else self.var(h))

    def apply_constraints(self):
        self.constraint_calls += 1

    def config(self):
        return {"n_pixels": self.n_pixels, "n_labels": self.n_labels, "dropout": self._dropout,
                "variance": self._variance}


def make_arrays(n: int = 400, n_pixels: int = 64, n_labels: int = 2, seed: int = 0, noise: float = 0.01):
    """Spectra linear in the labels: flux (n, P), error (n, P), labels (n, L) physical-ish units."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, n_labels)).astype(np.float32)
    basis = rng.normal(size=(n_labels, n_pixels)).astype(np.float32)
    flux = (1.0 + 0.1 * z @ basis + noise * rng.normal(size=(n, n_pixels))).astype(np.float32)
    error = np.full_like(flux, noise)
    labels = (z * np.array([500.0, 0.5][:n_labels] + [0.2] * max(0, n_labels - 2), np.float32)
              + np.array([5000.0, 3.0][:n_labels] + [0.0] * max(0, n_labels - 2), np.float32))
    return flux, error, labels.astype(np.float32)


@pytest.fixture
def tiny_net():
    return TinyNet


@pytest.fixture
def arrays():
    return make_arrays


@pytest.fixture(autouse=True)
def _torch_threads():
    """Overrides the root fixture: the training tests use tiny models, for which one intra-op
    thread is fastest (and does not fight the other processes on a shared 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
