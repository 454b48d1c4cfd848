"""APOGEE Net (Olney et al. 2020, AJ 159, 182), exactly as the code of its Appendix B.

Twelve ``Conv1d(k=3, padding=1)`` layers with 8-8-16-16-16-16-32-32-32-32-64-64 filters, a ReLU after
each, max-pool 2 after every second convolution, flatten, then dense 512 → 512 → ``n_labels``. As in
the paper's code, dropout acts on the *pre-activation* of the two hidden dense layers
(``relu(dropout(fc(x)))``) and is not applied to the output layer. The flatten size is computed from
``n_pixels`` (64 × 133 on the apStar grid, as printed in the paper): each max-pool floors, as
``F.max_pool1d``, so any length ≥ 64 works (64 × ⌊P/64⌋; on the BOSS grid 64 × 72).

The layers are kept in two ``nn.Sequential`` blocks (``features``, ``head``) whose parameters come in
the same order as the paper's ``conv1 … conv12, fc1, fc2, fc3``, so weights map one-to-one and the
numerics equal the reference code (tests/models check it against bench/reference).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from starlabels.models.layers import LabelNetwork

__all__ = ["CONV_CHANNELS", "ApogeeNet"]

#: Output channels of the twelve convolutions (Appendix B).
CONV_CHANNELS: tuple[int, ...] = (8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64)
N_POOL = len(CONV_CHANNELS) // 2
HIDDEN = 512


def flat_length(n_pixels: int) -> int:
    """Length of the feature maps after the six max-pool-2 layers (floor at each, as F.max_pool1d)."""
    n = int(n_pixels)
    for _ in range(N_POOL):
        n //= 2
    return n


class ApogeeNet(LabelNetwork):
    """APOGEE Net: deterministic CNN regressor on raw apStar flux, no variance head.

    Parameters
    ----------
    n_labels:
        Number of outputs (standardised labels).
    n_pixels:
        Input length, any ≥ 64 (default: the APOGEE apStar grid's, as in the paper).
    dropout:
        Dropout probability on the two hidden dense layers (the paper used 0.1 in training and
        the code's default 0.0).

    ``forward(x)`` takes ``(N, 1, n_pixels)`` and returns ``(mean, None)`` with ``mean`` shaped
    ``(N, n_labels)``. On the apStar grid with 3 labels it has 4,655,275 parameters.
    """

    name: ClassVar[str] = "apogee_net"
    has_variance: ClassVar[bool] = False

    def __init__(self, n_labels: int, n_pixels: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if n_pixels is None:
            from starlabels.instruments import get

            n_pixels = get("apogee").n_pixels
        if n_labels < 1:
            raise ValueError(f"ApogeeNet: n_labels must be >= 1, got {n_labels}")
        if flat_length(n_pixels) < 1:
            raise ValueError(f"ApogeeNet: n_pixels must be >= {2**N_POOL}, got {n_pixels}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ApogeeNet: dropout must be in [0, 1), got {dropout}")
        self.n_labels = int(n_labels)
        self.n_pixels = int(n_pixels)
        self.dropout = float(dropout)

        layers: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(CONV_CHANNELS):
            layers += [nn.Conv1d(c_in, c_out, kernel_size=3, padding=1), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool1d(2))
            c_in = c_out
        layers.append(nn.Flatten())
        self.features = nn.Sequential(*layers)
        n_flat = CONV_CHANNELS[-1] * flat_length(n_pixels)
        self.head = nn.Sequential(
            nn.Linear(n_flat, HIDDEN),
            nn.Dropout(self.dropout),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.Dropout(self.dropout),
            nn.ReLU(),
            nn.Linear(HIDDEN, self.n_labels),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(N, 1, n_pixels) → ``(mean (N, n_labels), None)`` in standardised label space."""
        self.check_input(x)
        return self.head(self.features(x)), None

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, P) → (N, HIDDEN): the input of the output layer (after the last ReLU)."""
        self.check_input(x)
        return self.head[:-1](self.features(x))

    def config(self) -> dict[str, Any]:
        return {"n_labels": self.n_labels, "n_pixels": self.n_pixels, "dropout": self.dropout}
