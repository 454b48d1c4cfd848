"""Per-row losses of a network over dataset rows: what the dev loss and early stopping are made of.

:func:`row_losses` reads the rows a block at a time through an
:class:`~starlabels.training.inputs.InputPipeline` (preprocessed and scaled as in training) and
scores them in eval mode, or with dropout on averaged over several passes (Monte-Carlo dropout);
:func:`group_sums` sums them per group. The :class:`~starlabels.training.trainer.Trainer` adds the
sums over distributed ranks.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from starlabels.training.inputs import InputPipeline
from starlabels.training.loop import network_output, per_sample_loss

__all__ = ["group_sums", "row_losses"]

#: Added to the training seed for the dropout masks of Monte-Carlo dev passes (fixed masks).
MC_MASK_SEED_OFFSET = 7
#: Second word of the seed of the fixed noise a degraded dev copy gets (``[seed, this]``).
DEV_NOISE_SEED_WORD = 104729


@torch.no_grad()
def row_losses(
    network: nn.Module,
    inputs: InputPipeline,
    rows: np.ndarray,
    *,
    loss: str,
    device: torch.device,
    block_rows: int,
    batch_rows: int,
    mc_passes: int = 0,
    seed: int = 0,
    degrade: bool = False,
) -> np.ndarray:
    """(len(rows),) float64 mean per-sample loss of each row, in the order of ``rows``.

    ``rows`` (int64 row numbers) are read ``block_rows`` at a time and scored ``batch_rows`` at a
    time on ``device``. With ``mc_passes`` > 0 and a network with active dropout, each row's loss
    is the mean over that many passes with dropout on; the masks come from a generator seeded by
    ``seed + MC_MASK_SEED_OFFSET`` and forked off the global one (whose state is given back). Else
    the network runs once in eval mode. ``degrade`` scores one fixed degraded copy of the rows
    (the inputs' noise augmentation, seeded by ``[seed, DEV_NOISE_SEED_WORD]``).
    """
    from starlabels.inference.uncertainty import has_active_dropout
    from starlabels.models.layers import mc_dropout

    network.eval()
    mc = mc_passes > 0 and has_active_dropout(network)
    passes = mc_passes if mc else 1
    noise_rng = np.random.default_rng([seed, DEV_NOISE_SEED_WORD]) if degrade else None
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros(len(rows), dtype=np.float64)
    k = 0
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked, enabled=mc), \
            (mc_dropout(network) if mc else contextlib.nullcontext()):
        if mc:
            torch.manual_seed(seed + MC_MASK_SEED_OFFSET)
        for a in range(0, len(rows), block_rows):
            block = rows[a:a + block_rows]
            flux, _ = inputs.preprocess_block(*inputs.read(block, noise_rng))
            x_all = inputs.to_input(flux)
            y_all, e_all = inputs.targets(block)
            for i in range(0, len(block), batch_rows):
                x = x_all[i:i + batch_rows].to(device)
                y = torch.from_numpy(y_all[i:i + batch_rows]).to(device)
                e = torch.from_numpy(e_all[i:i + batch_rows]).to(device)
                per = sum(
                    per_sample_loss(loss, *network_output(network, x), y, e).double() for _ in range(passes)
                ) / passes
                out[k:k + per.shape[0]] = per.cpu().numpy()
                k += per.shape[0]
    return out


def group_sums(losses: np.ndarray, groups: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """(G, 2) float64: for each group in ``names``, the sum of ``losses`` over its rows and their
    number (``groups`` holds each row's group, aligned with ``losses``)."""
    return np.array([[losses[groups == n].sum(), float((groups == n).sum())] for n in names],
                    dtype=np.float64).reshape(len(names), 2)
