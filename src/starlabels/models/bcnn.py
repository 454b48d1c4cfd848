"""Bayesian CNN with a predictive-variance head: astroNN's ``ApogeeBCNN`` (Leung & Bovy 2019).

Architecture (astroNN v1 ``ApogeeBCNN``; defaults reproduce it)::

    Conv1d(1→2, k=8, "same") → ReLU → MCDropout
    Conv1d(2→4, k=8, "same") → ReLU → MaxPool(4) → Flatten → MCDropout
    Dense(196) → ReLU → MCDropout → Dense(96) → ReLU ─┬→ Dense(n_labels)  mean
                                                      └→ Dense(n_labels)  log-variance

The dropout layers are ordinary ``nn.Dropout``; they act as Monte-Carlo dropout when the network is
sampled inside :func:`starlabels.models.layers.mc_dropout`. The variance head predicts
``log_var = ln σ²_predictive`` in standardised label units (astroNN eq. 5, ``s_i`` without the label
error), trained with :func:`starlabels.losses.robust_mse`.

astroNN's Gaussian prior on the weights is Keras L2 with λ = 5·10⁻⁹ (``loss += λ Σ w²``). The same
prior as torch's coupled ``weight_decay`` (gradient ``+ wd · w``) is ``wd = 2λ = 1·10⁻⁸``: see
:attr:`BayesianCNN.recommended_weight_decay`; applying it is the optimiser's job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional

from starlabels.models.layers import LabelNetwork

__all__ = ["ASTRONN_L2", "BayesianCNN", "bcnn_trunk", "mc_dropout_passes"]

#: astroNN's Keras L2 coefficient λ (loss += λ Σ w²).
ASTRONN_L2 = 5e-9


def bcnn_trunk(
    n_pixels: int,
    filters: Sequence[int],
    kernel_size: int,
    pool: int,
    hidden: Sequence[int],
    dropout: float,
) -> nn.Sequential:
    """The astroNN Bayesian-CNN feature extractor: (N, 1, n_pixels) → (N, hidden[-1]).

    Two "same"-padded convolutions (ReLU, dropout after the first), max-pool ``pool``, flatten,
    dropout, then dense layers ``hidden`` with ReLU and dropout between them (none after the last,
    which feeds the output heads directly, as in astroNN).
    """
    if len(filters) != 2:
        raise ValueError(f"filters must have 2 entries, got {list(filters)}")
    if not hidden:
        raise ValueError("hidden must list at least one dense layer size")
    n_pool = int(n_pixels) // int(pool)
    if n_pool < 1:
        raise ValueError(f"n_pixels={n_pixels} is shorter than the pool size {pool}")
    f1, f2 = (int(f) for f in filters)
    k = int(kernel_size)
    same = ((k - 1) // 2, k // 2)  # Keras/TF "same": the extra pixel of an even kernel goes right
    layers: list[nn.Module] = [
        nn.ConstantPad1d(same, 0.0),
        nn.Conv1d(1, f1, k),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.ConstantPad1d(same, 0.0),
        nn.Conv1d(f1, f2, k),
        nn.ReLU(),
        nn.MaxPool1d(pool),
        nn.Flatten(),
        nn.Dropout(dropout),
    ]
    n_in = f2 * n_pool
    for i, h in enumerate(hidden):
        layers += [nn.Linear(n_in, int(h)), nn.ReLU()]
        if i < len(hidden) - 1:
            layers.append(nn.Dropout(dropout))
        n_in = int(h)
    return nn.Sequential(*layers)


def _check_dropout(dropout: float, who: str) -> float:
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"{who}: dropout must be in [0, 1), got {dropout}")
    return float(dropout)


class BayesianCNN(LabelNetwork):
    """astroNN ``ApogeeBCNN``: label means and per-label predictive log-variances.

    Parameters
    ----------
    n_labels:
        Number of labels L.
    n_pixels:
        Input length P, any ≥ ``pool`` (the pool floors: P // pool pixels reach the dense layers;
        APOGEE's ASPCAP grid for astroNN).
    dropout:
        MC-dropout probability (astroNN: 0.3).
    filters, kernel_size, pool:
        Convolution filters (2, 4), kernel length 8, max-pool size 4 (astroNN).
    hidden:
        Dense layer sizes (astroNN: 196, 96).

    ``forward(x)`` maps ``(N, 1, P)`` to ``(mean, log_var)``, both ``(N, L)`` in standardised units.
    """

    name: ClassVar[str] = "bcnn"
    has_variance: ClassVar[bool] = True
    recommended_weight_decay: ClassVar[float] = 2 * ASTRONN_L2

    def __init__(
        self,
        n_labels: int,
        n_pixels: int,
        dropout: float = 0.3,
        filters: Sequence[int] = (2, 4),
        kernel_size: int = 8,
        pool: int = 4,
        hidden: Sequence[int] = (196, 96),
    ) -> None:
        super().__init__()
        if n_labels < 1:
            raise ValueError(f"BayesianCNN: n_labels must be >= 1, got {n_labels}")
        self.n_labels = int(n_labels)
        self.n_pixels = int(n_pixels)
        self.dropout = _check_dropout(dropout, "BayesianCNN")
        self.filters = [int(f) for f in filters]
        self.kernel_size = int(kernel_size)
        self.pool = int(pool)
        self.hidden = [int(h) for h in hidden]
        self.trunk = bcnn_trunk(
            self.n_pixels, self.filters, self.kernel_size, self.pool, self.hidden, self.dropout
        )
        self.mean_head = nn.Linear(self.hidden[-1], self.n_labels)
        self.log_var_head = nn.Linear(self.hidden[-1], self.n_labels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 1, P) → ``(mean, log_var)``, each (N, n_labels), standardised label space."""
        self.check_input(x)
        h = self.trunk(x)
        return self.mean_head(h), self.log_var_head(h)

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, P) → (N, hidden[-1]): the trunk's last hidden layer (read by both heads)."""
        self.check_input(x)
        return self.trunk(x)

    def config(self) -> dict[str, Any]:
        return {
            "n_labels": self.n_labels,
            "n_pixels": self.n_pixels,
            "dropout": self.dropout,
            "filters": list(self.filters),
            "kernel_size": self.kernel_size,
            "pool": self.pool,
            "hidden": list(self.hidden),
        }


def _keep(dropout: nn.Module) -> float:
    return 1.0 - float(dropout.p)


def _masked_(values: torch.Tensor, keep: float, generator: torch.Generator | None) -> torch.Tensor:
    """In place: ``values`` × a Bernoulli(``keep``) mask, independent per element (unscaled: the
    1/keep of inverted dropout is folded into the next layer's weights by the caller).

    The mask is one uniform draw per element compared with ``keep`` — P(kept) = keep to the 2⁻²⁴
    resolution of float32 uniforms, the resolution of ``torch.bernoulli_`` as well."""
    draw = torch.empty_like(values).uniform_(generator=generator)
    return values.mul_(draw.lt_(keep))


@torch.no_grad()
def mc_dropout_passes(
    network: BayesianCNN, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_samples`` Monte-Carlo-dropout passes of every spectrum of ``x`` (b, 1, P), fused.

    Returns ``(mean, log_var)``, each (b·n_samples, L), spectrum-major (rows s·n_samples … of
    spectrum s) — the same distribution as ``n_samples`` forward passes of the repeated input with
    the dropout layers in train mode, with fresh masks per pass, per star and per element, drawn
    from ``generator`` (torch's default generator when None). It is faster because:

    - the first convolution (before any dropout) is computed once per spectrum, not per pass;
    - the second convolution runs channels-last (oneDNN's fast layout for 2→4 channels);
    - masks are one uniform draw compared in place, and the 1/keep scale of inverted dropout is
      folded into the next layer's weights (one multiply per element less);
    - max-pooling is done on the channels-last memory with elementwise maxima, ReLU after it.
    Requires the trunk built by :func:`bcnn_trunk` (checked).
    """
    n_hidden = len(network.hidden)
    # the trunk without its ReLUs (inference copies move a ReLU behind the max-pool or make it
    # in-place, which changes nothing here: ReLU commutes with max-pooling and with dropout masks)
    t = [m for m in network.trunk if not isinstance(m, nn.ReLU)]
    expected = [nn.ConstantPad1d, nn.Conv1d, nn.Dropout, nn.ConstantPad1d, nn.Conv1d, nn.MaxPool1d,
                nn.Flatten, nn.Dropout] + [nn.Linear, nn.Dropout] * (n_hidden - 1) + [nn.Linear]
    n_relu = sum(isinstance(m, nn.ReLU) for m in network.trunk)
    same = len(t) == len(expected) and all(isinstance(m, e) for m, e in zip(t, expected, strict=False))
    if not same or n_relu != 2 + n_hidden:
        raise ValueError("mc_dropout_passes needs the trunk built by bcnn_trunk")
    pad1, conv1, drop1, pad2, conv2, pool, drop2 = t[0], t[1], t[2], t[3], t[4], t[5], t[7]
    b, S, P = x.shape[0], int(n_samples), x.shape[-1]
    f1 = conv1.out_channels
    left, right = pad2.padding
    n_pool = P // pool.kernel_size
    rows = b * S
    # first convolution once per spectrum, laid out (b, P, f1)
    h1 = torch.relu(conv1(pad1(x))).transpose(1, 2)
    # padded channels-last input of the second convolution, rows spectrum-major
    buf = x.new_zeros((rows, left + P + right, f1))
    inner = buf[:, left:left + P, :].view(b, S, P, f1)
    inner.uniform_(generator=generator).lt_(_keep(drop1)).mul_(h1.unsqueeze(1))
    w2 = (conv2.weight / _keep(drop1)).unsqueeze(2)
    h2 = functional.conv2d(buf.view(rows, 1, left + P + right, f1).permute(0, 3, 1, 2), w2, conv2.bias)
    # max-pool over positions in the (rows, P, f2) memory of the channels-last output (relu after
    # the pool: max and relu commute), features position-major: index j·f2 + c
    f2, q = conv2.out_channels, pool.kernel_size
    taps = h2.permute(0, 2, 3, 1).reshape(rows, P, f2)[:, : n_pool * q].view(rows, n_pool, q, f2)
    pooled = taps[:, :, 0].clone()
    for i in range(1, q):
        torch.maximum(pooled, taps[:, :, i], out=pooled)
    feats = pooled.relu_().view(rows, n_pool * f2)
    _masked_(feats, _keep(drop2), generator)
    keep = _keep(drop2)
    h = feats
    for i in range(n_hidden):
        lin = t[8 + 2 * i]
        w = lin.weight
        if i == 0:  # Flatten's channel-major order (c·n_pool + j) → our position-major order
            w = w.view(-1, f2, n_pool).transpose(1, 2).reshape(w.shape[0], -1)
        h = torch.relu_(functional.linear(h, w / keep, lin.bias))
        if i < n_hidden - 1:
            drop = t[9 + 2 * i]
            keep = _keep(drop)
            _masked_(h, keep, generator)
        else:
            keep = 1.0
    return network.mean_head(h), network.log_var_head(h)
