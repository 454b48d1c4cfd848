"""The one autograd Jacobian of network outputs with respect to their input spectra.

Used by the delta method (:func:`starlabels.inference.uncertainty.delta_method`: σ_k² = Σ_i
(∂y_k/∂x_i)² σ_i²) and by the sensitivity analysis
(:func:`starlabels.evaluation.diagnostics.sensitivity`: mean ∂label/∂flux over groups of stars).

Each output row must depend only on its own input row — true for every starlabels network in eval
mode (no batch statistics, dropout off) — so the gradient of the *batch sum* of one output gives
every row's derivative at once: one backward pass per label for a whole batch, never a loop over
spectra.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from starlabels.models.layers import bypass_stopgrad

__all__ = ["iter_label_gradients", "jacobian_mode", "label_gradients"]


@contextlib.contextmanager
def jacobian_mode(module: nn.Module, *, through_stopgrad: bool = True) -> Iterator[nn.Module]:
    """Inside the block ``module`` is in eval mode (its previous mode is restored after), gradients
    are enabled, and — with ``through_stopgrad`` — its :class:`~starlabels.models.layers.StopGrad`
    layers let gradients through (their Jacobian is the identity; they only shape training)."""
    was = module.training
    module.eval()
    try:
        bypass = bypass_stopgrad(module) if through_stopgrad else contextlib.nullcontext(module)
        with bypass, torch.enable_grad():
            yield module
    finally:
        module.train(was)


def iter_label_gradients(
    outputs: torch.Tensor, inputs: torch.Tensor, labels: Sequence[int] | None = None
) -> Iterator[torch.Tensor]:
    """∂outputs[:, k]/∂inputs for each ``k`` in ``labels`` (default: every column), one at a time.

    ``outputs`` (B, L) computed from ``inputs`` (B, …) with ``requires_grad``; each yielded
    gradient has the shape of ``inputs``. One backward pass per label over the whole batch; the
    graph is kept until the last label. Yielding one label at a time keeps memory at one input-sized
    tensor when the caller reduces each gradient right away.
    """
    index = range(outputs.shape[1]) if labels is None else list(labels)
    last = len(index) - 1
    for n, k in enumerate(index):  # over labels (few), never over spectra
        (grad,) = torch.autograd.grad(outputs[:, k].sum(), inputs, retain_graph=n < last)
        yield grad


def label_gradients(
    outputs: torch.Tensor, inputs: torch.Tensor, labels: Sequence[int] | None = None
) -> torch.Tensor:
    """(L', B, …) Jacobian rows: :func:`iter_label_gradients` stacked along a new first axis.

    (A single vmapped backward, ``is_grads_batched=True``, was measured slightly slower on CPU.)
    """
    return torch.stack(list(iter_label_gradients(outputs, inputs, labels)))
