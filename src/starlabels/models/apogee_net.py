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

**Inference on CPU** (gradients off): the convolutions run on chunks of a few spectra at a time
(:data:`CHUNK_BYTES` of first-stage activations), channels-last (oneDNN's fast layout for 1–16
channels), max-pool as one elementwise maximum of the even and odd positions, ReLU after it (max and
ReLU commute). The activations of a chunk stay in cache and, small, are reused by the allocator, so
no page faults: with glibc's default allocator a batch of 128 spectra on the apStar grid otherwise
page-faults in 35 MB per layer (measured in ``bench/throughput.py``). Same layers, same weights,
same arithmetic per output (equal to the full-batch path to float32 rounding; tested).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional

from starlabels.models.layers import LabelNetwork

__all__ = ["CHUNK_BYTES", "CONV_CHANNELS", "ApogeeNet", "chunked_features"]

#: Output channels of the twelve convolutions (Appendix B).
CONV_CHANNELS: tuple[int, ...] = (8, 8, 16, 16, 16, 16, 32, 32, 32, 32, 64, 64)
N_POOL = len(CONV_CHANNELS) // 2
HIDDEN = 512
#: Inference on CPU: size of one chunk's first-stage activations (8 channels × n_pixels, float32);
#: 2 MiB = 7 spectra on the apStar grid (measured best of 1-8 MiB on a 2-core EPYC).
CHUNK_BYTES = 2 << 20


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
        return self.head(self._features(x)), None

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, P) → (N, HIDDEN): the input of the output layer (after the last ReLU)."""
        self.check_input(x)
        return self.head[:-1](self._features(x))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``features(x)``; on CPU without gradients through :func:`chunked_features`."""
        if torch.is_grad_enabled() or x.device.type != "cpu":
            return self.features(x)
        convs = [m for m in self.features if isinstance(m, nn.Conv1d)]
        if len(convs) != len(CONV_CHANNELS) or any(
            c.kernel_size != (3,) or c.padding != (1,) or c.stride != (1,) or c.dilation != (1,)
            or c.groups != 1 or c.padding_mode != "zeros" for c in convs
        ):
            return self.features(x)  # not the architecture built here (edited by hand)
        return chunked_features(convs, x)

    def config(self) -> dict[str, Any]:
        return {"n_labels": self.n_labels, "n_pixels": self.n_pixels, "dropout": self.dropout}


def chunked_features(
    convs: list[nn.Conv1d], x: torch.Tensor, chunk_bytes: int = CHUNK_BYTES
) -> torch.Tensor:
    """APOGEE Net's convolutional stage for inference: (N, 1, P) → (N, 64·⌊P/64⌋), Flatten's order.

    ``convs``: the twelve ``Conv1d(k=3, padding=1)`` layers; a ReLU follows each and a max-pool of 2
    (floor) every second one. Runs ``chunk_bytes`` of first-stage activations at a time in
    channels-last memory (``conv2d`` on (n, C, 1, L)); pooling is the elementwise maximum of the
    even and odd positions, ReLU after it. No autograd (call under ``torch.no_grad``).
    """
    n, _, length = x.shape
    per_spectrum = 4 * convs[0].out_channels * length
    step = max(1, int(chunk_bytes) // per_spectrum)
    out: torch.Tensor | None = None
    for start in range(0, n, step):
        for i, conv in enumerate(convs):
            if i == 0:
                h = _first_conv(x[start:start + step], conv)
            else:
                h = functional.conv2d(h, conv.weight.unsqueeze(2), conv.bias, padding=(0, 1))
            if i % 2 == 1:
                h = _pool_pairs(h)
            h = h.relu_()
        if out is None:
            out = h.new_empty((n, h.shape[1] * h.shape[3]))
        c = h.shape[0]
        out[start:start + c].view(c, h.shape[1], 1, h.shape[3]).copy_(h)
    assert out is not None
    return out


def _first_conv(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """The one-channel first convolution (k=3, padding 1) of ``x`` (n, 1, L) as a matrix product
    of each position's three taps (n, L, 3) with the (3, C_out) weights → (n, C_out, 1, L),
    channels-last. ``conv2d`` on a one-channel input returns channels-first memory (the layout is
    ambiguous for one channel; torch 2.13), and the max-pool keeps the layout it is given, so the
    whole stage ran channels-first: the forward took 1.40x as long on a 2-core Xeon with AVX-512
    (``bench/apogee_net_layers.py``)."""
    n, _, length = x.shape
    taps = functional.pad(x[:, 0], (1, 1)).unfold(1, 3, 1)  # (n, L, 3): x[j-1], x[j], x[j+1]
    h = torch.matmul(taps, conv.weight[:, 0].t())  # (n, L, C_out)
    if conv.bias is not None:
        h += conv.bias
    return h.view(n, 1, length, -1).permute(0, 3, 1, 2)


def _pool_pairs(h: torch.Tensor) -> torch.Tensor:
    """Max-pool 2 (floor) along the last axis of ``h`` (n, C, 1, L) in channels-last memory:
    the elementwise maximum of positions 2j and 2j + 1 → (n, C, 1, L // 2), channels-last."""
    n, c, _, length = h.shape
    half = length // 2
    pairs = h.permute(0, 2, 3, 1).reshape(n, length, c)[:, : 2 * half].view(n, half, 2, c)
    return torch.maximum(pairs[:, :, 0], pairs[:, :, 1]).view(n, 1, half, c).permute(0, 3, 1, 2)
