"""The fused BayesianCNN MC-dropout passes as committed before this session's mask change
(669aa2d, ``starlabels.models.bcnn.mc_dropout_passes``) — benchmark reference only.

Kept verbatim so ``bench/throughput.py`` can time it side by side with the current library
function in one run: masks are one float32 uniform per element compared with keep
(``uniform_`` + ``lt_``), all passes of a call at once (no chunking), max-pool by sequential
maxima, the first dense layer's weights permuted on every call. Not part of the starlabels package.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


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
    network: nn.Module, x: torch.Tensor, n_samples: int, generator: torch.Generator | None = None
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
