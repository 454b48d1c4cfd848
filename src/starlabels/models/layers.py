"""Building blocks shared by the networks: gradient stopping, max-norm constraint, MC dropout.

- :class:`StopGrad` — identity in the forward pass, zero gradient in the backward pass (astroNN's
  ``StopGrad``), used by the censored network so abundance errors never train the main branch.
- :class:`MaxNorm` — weight constraint ‖w‖₂ ≤ δ per output unit (Keras ``MaxNorm``), applied in place
  after each optimiser step through a network's ``apply_constraints()``.
- :func:`mc_dropout` — context manager: the model in eval mode except its dropout layers, for
  Monte-Carlo dropout (dropout variational inference, Gal & Ghahramani 2015).
- :func:`bypass_stopgrad` — context manager that lets gradients through every :class:`StopGrad`
  (sensitivity / Jacobian analysis, astroNN §4.4).
- :func:`n_parameters` — parameter count.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import torch
from torch import nn

from starlabels.errors import InputDataError

__all__ = [
    "DROPOUT_TYPES",
    "LabelNetwork",
    "MaxNorm",
    "StopGrad",
    "bypass_stopgrad",
    "mc_dropout",
    "n_parameters",
]

#: Module types switched on by :func:`mc_dropout`.
DROPOUT_TYPES: tuple[type[nn.Module], ...] = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)


class StopGrad(nn.Module):
    """Identity transform whose gradient is zero: ``forward(x) = x.detach()``.

    Any shape in, the same tensor values out (no copy). During training this blocks every gradient
    path through the layer — in :class:`~starlabels.models.censored.CensoredBayesianCNN` it keeps
    the per-element abundance losses from training the main (Teff, log g, [Fe/H]) branch.

    **Sensitivity analysis.** As astroNN notes, the layer is "stop gradient" only for *training*; for
    the sensitivity of an output to the input spectrum (∂label/∂flux, astroNN §4.4, Figs. 14–15) the
    true derivative includes the path through the main branch, i.e. the layer's Jacobian is the
    identity. Use :func:`bypass_stopgrad` (or set ``layer.enabled = False``) while computing such
    Jacobians::

        with bypass_stopgrad(net):
            flux.requires_grad_(True)
            mean, _ = net(flux)
            mean[:, k].sum().backward()   # flux.grad: full sensitivity of label k

    Without the bypass, ``flux.grad`` of an abundance only holds its direct (in-window) part.
    """

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        #: When False the layer is a plain identity (gradients pass).
        self.enabled = enabled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach() if self.enabled else x

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}"


@contextmanager
def bypass_stopgrad(model: nn.Module) -> Iterator[nn.Module]:
    """Let gradients through every :class:`StopGrad` in ``model`` inside the block (restored after).

    For sensitivity/Jacobian analysis only; never train inside this block.
    """
    layers = [m for m in model.modules() if isinstance(m, StopGrad)]
    saved = [m.enabled for m in layers]
    for m in layers:
        m.enabled = False
    try:
        yield model
    finally:
        for m, s in zip(layers, saved, strict=True):
            m.enabled = s


class MaxNorm:
    """Constraint ‖w‖₂ ≤ ``max_norm`` for every output unit of a weight (Keras ``MaxNorm``).

    The norm is taken over ``dim`` (default 1: the input axis of an ``nn.Linear`` weight shaped
    (out_features, in_features), so each output unit's incoming weight vector is bounded — Keras'
    ``axis=0`` on its (in, out) kernels). Rows whose norm exceeds ``max_norm`` are rescaled onto the
    sphere of radius ``max_norm``; the others are left untouched. Call it after each optimiser step::

        constraint = MaxNorm(0.5)
        constraint(layer.weight)     # in place, no autograd
    """

    def __init__(self, max_norm: float, dim: int | tuple[int, ...] = 1) -> None:
        if not max_norm > 0:
            raise ValueError(f"MaxNorm: max_norm must be > 0, got {max_norm}")
        self.max_norm = float(max_norm)
        self.dim = dim

    @torch.no_grad()
    def __call__(self, weight: torch.Tensor) -> torch.Tensor:
        """Rescale ``weight`` in place so every unit's norm is ≤ ``max_norm``; returns ``weight``."""
        norms = torch.linalg.vector_norm(weight, dim=self.dim, keepdim=True)
        # scale ≤ 1, slightly below max_norm/‖w‖ so rounding cannot push the result above max_norm
        scale = torch.where(
            norms > self.max_norm, (self.max_norm / norms) * (1.0 - 1e-6), torch.ones_like(norms)
        )
        weight.mul_(scale)
        return weight

    def __repr__(self) -> str:
        return f"MaxNorm(max_norm={self.max_norm}, dim={self.dim})"


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode but keep its dropout layers sampling (Monte-Carlo dropout).

    Inside the block every module is in eval mode except those of :data:`DROPOUT_TYPES`, which are in
    train mode, so repeated forward passes draw different dropout masks (astroNN eq. 3). Every
    module's previous ``training`` flag is restored on exit.
    """
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    for m in model.modules():
        if isinstance(m, DROPOUT_TYPES):
            m.train()
    try:
        yield model
    finally:
        for m, flag in saved:
            m.training = flag


def n_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class LabelNetwork(nn.Module):
    """Base class of the label networks (the contract in docs/DESIGN.md, "Networks").

    Subclasses take input ``(N, 1, n_pixels)`` float32 and return ``(mean, log_var)``, both
    ``(N, n_labels)`` in standardised label space (``log_var`` is ``None`` without a variance head,
    ``log_var`` = ln σ²_predictive otherwise). They set the class attribute ``name`` (the
    :data:`starlabels.models.ARCHITECTURES` key) and ``has_variance``, and instance attributes
    ``n_labels`` and ``n_pixels``; :meth:`config` returns JSON-serialisable kwargs that rebuild the
    network (``build_network(name, **net.config())``).
    """

    name: ClassVar[str] = ""
    has_variance: ClassVar[bool] = False
    #: Suggested L2 coefficient (``weight_decay`` of torch.optim.Adam/SGD) for this architecture.
    recommended_weight_decay: ClassVar[float] = 0.0
    n_labels: int
    n_pixels: int

    def config(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply_constraints(self) -> None:
        """Enforce weight constraints in place; the trainer calls this after every optimiser step."""

    def embedding(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, n_pixels) → (N, D): the last hidden layer the label outputs are read from (the
        label-coverage uncertainty, :mod:`starlabels.inference.coverage`, measures distances there)."""
        raise NotImplementedError(f"{type(self).__name__} does not define an embedding")

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~starlabels.errors.InputDataError` unless ``x`` is (N, 1, n_pixels)."""
        if x.ndim != 3 or x.shape[1] != 1 or x.shape[2] != self.n_pixels:
            raise InputDataError(
                f"{type(self).__name__} expects input shaped (N, 1, {self.n_pixels}), "
                f"got {tuple(x.shape)}"
            )
