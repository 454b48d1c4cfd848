"""The Trainer's stateless pieces: split checking, one pass over batches, per-group loss sums."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from starlabels.training.batches import training_split
from starlabels.training.errors import TrainingError
from starlabels.training.loop import sum_over_ranks, train_batches
from starlabels.training.row_losses import group_sums


def test_training_split_sorts_deduplicates_and_checks_rows():
    split = training_split({"train": [5, 1, 5, 3], "dev": np.array([2, 0])}, n_rows=6)
    assert {k: v.tolist() for k, v in split.items()} == {"train": [1, 3, 5], "dev": [0, 2], "test": []}
    assert all(v.dtype == np.int64 for v in split.values())
    with pytest.raises(TrainingError, match=r"split 'dev' has row numbers outside 0..5"):
        training_split({"train": [0], "dev": [6]}, n_rows=6)
    with pytest.raises(TrainingError, match="need training and dev rows, got 2 and 0"):
        training_split({"train": [0, 1], "test": [2]}, n_rows=6)


def test_group_sums_by_hand():
    losses = np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    groups = np.array(["a", "b", "a", "c", "b"])
    np.testing.assert_array_equal(group_sums(losses, groups, ["a", "b", "c"]),
                                  [[4.0, 2.0], [2.5, 2.0], [4.0, 1.0]])
    assert group_sums(losses, groups, []).shape == (0, 2)


class _Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, x):
        return self.layer(x[:, 0]), None


def test_train_batches_sums_the_per_sample_losses_of_every_batch():
    torch.manual_seed(0)
    net = _Linear()
    x = torch.randn(10, 1, 4)
    y = torch.randn(10, 2)
    y[3, 1] = -9999.0  # a missing label: averaged over the present one only
    batches = [(x[:6], y[:6], torch.zeros(6, 2), 10), (x[6:], y[6:], torch.zeros(4, 2), 10)]
    steps = []
    scheduler = type("Counter", (), {"step": lambda self: steps.append(1)})()
    # lr 0: the weights stay, so the losses are those of the starting network
    sums = train_batches(net, torch.optim.SGD(net.parameters(), lr=0.0), batches, device=torch.device("cpu"),
                         loss="mse", scheduler=scheduler)
    with torch.no_grad():
        pred = net(x)[0]
    present = y != -9999.0
    per_row = (((pred - y) ** 2) * present).sum(1) / present.sum(1)
    assert sums.dtype == torch.float64 and sums[1].item() == 10 and len(steps) == 2
    assert sums[0].item() == pytest.approx(per_row.double().sum().item(), rel=1e-6)
    assert sum_over_ranks(sums, world_size=1) is sums
