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

import weakref
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional

from starlabels.models.layers import LabelNetwork

__all__ = [
    "ASTRONN_L2",
    "BayesianCNN",
    "bcnn_trunk",
    "check_dropout",
    "dropout_keep_threshold",
    "keep_mask",
    "mc_dropout_passes",
    "random_draws",
]

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


def check_dropout(dropout: float, who: str) -> float:
    """``dropout`` as a float after checking 0 ≤ p < 1 (``ValueError`` naming ``who`` otherwise)."""
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
        self.dropout = check_dropout(dropout, "BayesianCNN")
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


#: Bits per Bernoulli draw of the fused MC-dropout masks: each draw is one 16-bit slice of a
#: 64-bit word from the generator, so a keep probability is realised as ``round(keep·2¹⁶)/2¹⁶``.
MASK_BITS = 16
#: Target size of one chunk of second-convolution output (bytes): the passes of a star are run in
#: chunks this large, so the masked input, the convolution output and the pooling stay in L2 cache.
CHUNK_BYTES = 2 << 20


def dropout_keep_threshold(p: float) -> tuple[int | None, float]:
    """The integer threshold and the exact keep probability of a fused MC-dropout mask.

    A mask element is kept when a uniform signed 16-bit integer ``r`` (−2¹⁵ ≤ r < 2¹⁵) is
    ``< threshold``; that happens with probability ``keep = round((1 − p)·2¹⁶) / 2¹⁶`` exactly
    (p = 0.3: dropped with probability 19661/65536 = 0.300003). Returns ``(threshold, keep)``;
    threshold None when nothing is dropped (keep = 1: p < 2⁻¹⁷, no mask is drawn). The 1/keep
    scale of inverted dropout uses this realised ``keep``, so E[mask/keep] = 1 exactly.
    Raises ``ValueError`` for p so close to 1 that no element would be kept (keep rounds to 0).
    """
    count = round((1.0 - float(p)) * (1 << MASK_BITS))
    if count <= 0:
        raise ValueError(f"dropout p={p} keeps fewer than 1 in 2^{MASK_BITS} elements; not supported")
    if count >= 1 << MASK_BITS:
        return None, 1.0
    return count - (1 << (MASK_BITS - 1)), count / (1 << MASK_BITS)


def random_draws(
    n: int, generator: torch.Generator | None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``n`` independent uniform signed 16-bit integers (int16, shape (n,)): the four 16-bit slices
    of each of ⌈n/4⌉ full-range 64-bit words from ``generator`` (``random_(-2**63, None)``)."""
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=device)
    words.random_(-(1 << 63), None, generator=generator)
    return words.view(torch.int16)[:n]


def keep_mask(
    out: torch.Tensor,
    threshold: int | None,
    generator: torch.Generator | None = None,
    draws: torch.Tensor | None = None,
) -> torch.Tensor:
    """Fill ``out`` (float, any shape) with independent 0/1 dropout-keep draws; returns it.

    Each element is 1 with probability ``keep`` of :func:`dropout_keep_threshold`: a uniform
    signed 16-bit integer compared with ``threshold`` — from ``draws`` (int16, ``out``'s number of
    elements) when given, else :func:`random_draws` from ``generator`` (four draws per 64-bit word:
    4-6x cheaper than one float uniform per element). ``threshold`` None fills ones (nothing dropped).
    """
    if threshold is None:
        return out.fill_(1.0)
    if draws is None:
        draws = random_draws(out.numel(), generator, out.device)
    if draws.shape != out.shape:
        draws = draws.reshape(out.shape)
    return torch.lt(draws, threshold, out=out)


@torch.no_grad()
def mc_dropout_passes(
    network: BayesianCNN, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_samples`` Monte-Carlo-dropout passes of every spectrum of ``x`` (b, 1, P), fused.

    Returns ``(mean, log_var)``, each (b·n_samples, L), spectrum-major (rows s·n_samples … of
    spectrum s) — the same distribution as ``n_samples`` forward passes of the repeated input with
    the dropout layers in train mode, with fresh masks per pass, per star and per element, drawn
    from ``generator`` (torch's default generator when None). Keep probabilities are realised to
    2⁻¹⁶ (:func:`dropout_keep_threshold`: p = 0.3 is 0.300003). It is faster because:

    - the first convolution (before any dropout) is computed once per spectrum, not per pass;
    - masks are 16-bit slices of 64-bit random words compared with an integer threshold
      (:func:`keep_mask`), written straight as 0/1 floats, and the 1/keep scale of inverted
      dropout is folded into the next layer's weights;
    - the second convolution runs channels-last (oneDNN's fast layout for 2→4 channels), on
      chunks of passes whose activations stay in cache (:data:`CHUNK_BYTES`);
    - max-pooling is a tree of elementwise maxima on the channels-last memory, ReLU after it
      (max and ReLU commute); the first dense layer's weight columns are permuted to that
      position-major order once per layer and weight version (memoised).
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
    f1, f2, q = conv1.out_channels, conv2.out_channels, pool.kernel_size
    left, right = pad2.padding
    width = left + P + right
    n_pool = P // q
    # first convolution once per spectrum, channels-last (b, P, f1)
    h1 = torch.relu(conv1(pad1(x))).transpose(1, 2).contiguous()
    threshold1, keep1 = dropout_keep_threshold(drop1.p)
    threshold2, keep2 = dropout_keep_threshold(drop2.p)
    w2 = (conv2.weight / keep1).unsqueeze(2)
    feats = x.new_empty((b * S, n_pool * f2))  # pooled features, position-major: j·f2 + c
    # chunks of passes of one star, or of whole stars (all their passes) when S is small
    # (on a GPU one chunk: caches are not the limit there, kernel launches are)
    chunk = max(1, CHUNK_BYTES // (4 * P * f2)) if x.device.type == "cpu" else b * S
    stars_per_chunk = max(1, chunk // S)
    passes_per_chunk = min(S, chunk)
    rows_max = stars_per_chunk * passes_per_chunk
    buf = x.new_zeros((rows_max, width, f1))  # padded channels-last input of the second conv
    mask = x.new_empty((rows_max, P, f1))
    mask2 = x.new_empty((rows_max, n_pool * f2))
    # every mask draw of a star, in one fixed block per star (conv input, fc1 input, then each
    # hidden dropout; passes in order), the stars' blocks drawn one after the other: a star's masks
    # depend on the generator's state and on nothing else — not on the chunking, nor on which
    # other stars share the call
    n1, n2 = S * P * f1, S * n_pool * f2
    hidden_starts = [n1 + n2 + S * sum(network.hidden[:i]) for i in range(n_hidden)]
    per_star = 4 * ((hidden_starts[-1] + 3) // 4)
    draws = random_draws(b * per_star, generator, x.device).view(b, per_star)
    for s0 in range(0, b, stars_per_chunk):
        ns = min(stars_per_chunk, b - s0)
        stars = slice(s0, s0 + ns)
        for r0 in range(0, S, passes_per_chunk):
            nr = min(passes_per_chunk, S - r0)
            rows = ns * nr
            keep_mask(mask[:rows].view(ns, -1), threshold1,
                      draws=draws[stars, r0 * P * f1:(r0 + nr) * P * f1])
            torch.mul(mask[:rows].view(ns, nr, P, f1), h1[stars].unsqueeze(1),
                      out=buf[:rows, left:left + P].view(ns, nr, P, f1))
            h2 = functional.conv2d(buf[:rows].view(rows, 1, width, f1).permute(0, 3, 1, 2), w2,
                                   conv2.bias)  # (rows, f2, 1, P), channels-last memory
            taps = h2.permute(0, 2, 3, 1).reshape(rows, P, f2)[:, : n_pool * q].view(rows, n_pool, q, f2)
            first = s0 * S + r0  # rows of consecutive stars are consecutive when nr == S
            out = feats[first:first + rows]
            _max_over_taps(taps, out.view(rows, n_pool, f2))
            m2 = keep_mask(mask2[:rows].view(ns, -1), threshold2,
                           draws=draws[stars, n1 + r0 * n_pool * f2:n1 + (r0 + nr) * n_pool * f2])
            out.relu_().mul_(m2.view(rows, -1))
    lin = t[8]
    h = functional.linear(feats, _position_major_weight(lin, f2, n_pool, keep2), lin.bias).relu_()
    for i in range(1, n_hidden):
        threshold, keep = dropout_keep_threshold(t[9 + 2 * (i - 1)].p)
        start = hidden_starts[i - 1]
        m = keep_mask(torch.empty_like(h).view(b, -1), threshold,
                      draws=draws[:, start:start + S * h.shape[1]])
        h.mul_(m.view(h.shape))
        lin = t[8 + 2 * i]
        h = functional.linear(h, lin.weight / keep, lin.bias).relu_()
    return network.mean_head(h), network.log_var_head(h)


#: First-dense-layer weights permuted for the fused path, per layer (dropped with the layer):
#: (weight version, data pointer, f2, n_pool, keep) → weight. Recomputed whenever the weights change.
_PERMUTED: weakref.WeakKeyDictionary[nn.Linear, tuple[tuple, torch.Tensor]] = weakref.WeakKeyDictionary()


def _position_major_weight(lin: nn.Linear, f2: int, n_pool: int, keep: float) -> torch.Tensor:
    """``lin.weight / keep`` with its columns permuted from Flatten's channel-major order
    (c·n_pool + j) to the fused path's position-major order (j·f2 + c); memoised per layer while
    its weights are unchanged (the permutation is a strided pass over 1.5M weights — as long
    as the rest of a 2-star call)."""
    w = lin.weight
    key = (w._version, w.data_ptr(), w.dtype, w.device, f2, n_pool, keep)
    hit = _PERMUTED.get(lin)
    if hit is not None and hit[0] == key:
        return hit[1]
    out = torch.stack(w.detach().view(-1, f2, n_pool).unbind(1), dim=2).div_(keep)
    out = out.view(w.shape[0], -1)
    _PERMUTED[lin] = (key, out)
    return out


def _max_over_taps(taps: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` (rows, n, f) ← max of ``taps`` (rows, n, q, f) over q: halving tree of maxima
    (log₂ q passes for q a power of two; the remainder sequentially)."""
    while taps.shape[2] > 2 and taps.shape[2] % 2 == 0:
        half = taps.shape[2] // 2
        taps = torch.maximum(taps[:, :, :half], taps[:, :, half:])
    if taps.shape[2] == 1:
        return out.copy_(taps[:, :, 0])
    torch.maximum(taps[:, :, 0], taps[:, :, 1], out=out)
    for i in range(2, taps.shape[2]):
        torch.maximum(out, taps[:, :, i], out=out)
    return out
