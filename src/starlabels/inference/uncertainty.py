"""Batched predictive uncertainties: Monte-Carlo dropout, noise realisations, delta method.

Every function here works on a :class:`PhysicalNetwork` — the trained network wrapped with the
spectrum scaler in front and the label scaler behind it — so its input is the *preprocessed* flux
(the network's own grid, before the spectrum scaler) and its outputs are in **physical label
units** (K, dex). Realisations and passes ride in the batch dimension (a spectrum repeated
``n_samples`` times is one block of rows), chunked so one forward pass never sees more than
``batch_size`` rows; there is no Python loop over spectra or realisations.

Methods (all return ``(mean, parts)`` with ``mean`` (N, L) and ``parts`` a dict of (N, L)
*variances*, physical units squared):

``mc_dropout``  astroNN §2.2, eq. 3: N stochastic passes with dropout on; total variance =
                variance of the pass means (``"epistemic"``) + mean of the predicted variances
                (``"aleatoric"``, only for networks with a variance head).
``noise``       APOGEE Net §3.5: N copies of each spectrum with Gaussian noise drawn from its
                per-pixel errors, errors capped at ``error_cap`` (5) × the spectrum's mean error;
                the scatter of the predictions is ``"noise"`` (+ mean ``"aleatoric"`` if any).
``delta``       first-order propagation σ_k² = Σ_i (∂y_k/∂x_i)² σ_i² (``"delta"``), with the
                Jacobian from autograd (:mod:`starlabels.inference.jacobian`): one forward and one
                batched backward pass per label for a whole chunk of spectra, network in eval mode.

Pixel errors (both ``noise`` and ``delta``) go through :func:`effective_errors`: pixels that
preprocessing rejected (error ≥ ``bad_error`` ≈ the inflated ``BAD_PIXEL_ERROR``, or non-finite)
carry **no** noise — their network input is a fixed fill value, not a measurement — and the rest are
capped at ``error_cap`` × the mean error of the good pixels. So a masked pixel with a 1e10 error is
zero-weighted and never blows the delta-method variance up.

Where the delta method breaks down (``bench/predict_throughput.py``, part 3: APOGEE Net's
architecture trained on a 1024-pixel synthetic survey; median σ_delta/σ_noise over 96 stars, 100
realisations each):

- **high SNR** (≥ 20): agreement within 5 % in the median (SNR 50: 0.96–0.97, 100: 1.00–1.02,
  200: 1.00–1.02); ~90 % of single stars within 15 %, which is the sampling noise of a σ measured
  from 100 realisations (±7 %);
- **low SNR**: the noise moves the input beyond the region where the network is linear and the
  two diverge — median ratio 1.09 at SNR 10, 1.19 at SNR 5 (only a third of the stars within 15 %);
- **ReLU kinks / max-pool switches**: a ReLU network's Jacobian is piecewise constant; the delta
  estimate is the slope of the one linear piece at the input, while finite noise crosses kinks and
  averages slopes — the cause of the low-SNR excess above;
- **non-linear regimes from input scaling**: what matters is the noise in the network's *input
  units*. A per-pixel spectrum scaler with a tiny std floor amplified the noise of flat continuum
  pixels ~1000×, and the delta σ came out 2× the noise σ at *every* SNR up to 200 — check the
  agreement on a few stars when the scaler divides by small numbers;
- **masked pixels**: handled by zero weight (see above) — both methods then measure the
  sensitivity to the *measured* pixels only; an unmasked pixel with a huge error is capped.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from starlabels.errors import InputDataError, StarlabelsError
from starlabels.inference.jacobian import jacobian_mode, label_gradients
from starlabels.preprocess.masking import BAD_PIXEL_ERROR

#: Errors at or above this (preprocessed flux units) mark pixels that preprocessing rejected
#: (they carry BAD_PIXEL_ERROR = 1e10; the margin survives float32 rounding and scaling).
BAD_ERROR: float = 0.01 * BAD_PIXEL_ERROR

#: Default error cap of the noise realisations (APOGEE Net §3.5): 5 × the spectrum's mean error.
ERROR_CAP: float = 5.0

METHODS = ("mc_dropout", "noise", "delta")


class PhysicalNetwork(nn.Module):
    """The network with its input scaler and label scaler folded in, as one differentiable map.

    ``forward(flux)``: ``flux`` (B, P) float32 preprocessed flux on the network's grid
    → ``(mean, var)``: ``mean`` (B, L) in physical units, ``var`` (B, L) physical units² from the
    variance head (``exp(log_var)`` × label scale²) or ``None`` for networks without one.

    Both scalers must be per-pixel/per-label affine maps (``x' = offset + slope·x``); they are
    given as tensors so autograd applies the chain rule through them (the delta method needs
    ∂y/∂flux = ∂y/∂x' · slope).
    """

    def __init__(
        self,
        network: nn.Module,
        in_offset: torch.Tensor,
        in_slope: torch.Tensor,
        out_offset: torch.Tensor,
        out_slope: torch.Tensor,
    ):
        super().__init__()
        self.network = network
        self.register_buffer("in_offset", torch.as_tensor(in_offset, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("in_slope", torch.as_tensor(in_slope, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("out_offset", torch.as_tensor(out_offset, dtype=torch.float32).reshape(1, -1))
        self.register_buffer("out_slope", torch.as_tensor(out_slope, dtype=torch.float32).reshape(1, -1))

    @property
    def n_pixels(self) -> int:
        return int(self.in_offset.shape[1])

    @property
    def n_labels(self) -> int:
        return int(self.out_offset.shape[1])

    def forward(self, flux: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = (flux * self.in_slope + self.in_offset).unsqueeze(1)
        out = self.network(x)
        mean, log_var = out if isinstance(out, tuple) else (out, None)
        mean = mean * self.out_slope + self.out_offset
        var = None if log_var is None else torch.exp(log_var) * self.out_slope**2
        return mean, var


def effective_errors(
    error: torch.Tensor, *, error_cap: float | None = ERROR_CAP, bad_error: float = BAD_ERROR
) -> torch.Tensor:
    """Per-pixel 1σ errors used for noise realisations and the delta method.

    ``error`` (B, P) preprocessed flux errors → (B, P): 0 where the pixel was rejected
    (error ≥ ``bad_error``, non-finite or ≤ 0), else ``min(error, error_cap × mean good error)``
    (no cap when ``error_cap`` is None). A spectrum without any good pixel gets all zeros.
    """
    good = torch.isfinite(error) & (error > 0) & (error < bad_error)
    e = torch.where(good, error, torch.zeros((), dtype=error.dtype, device=error.device))
    if error_cap is not None:
        n_good = good.sum(dim=1, keepdim=True).clamp_min(1)
        mean = e.sum(dim=1, keepdim=True) / n_good
        e = torch.minimum(e, error_cap * mean)
    return e


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` and each submodule in eval mode inside; afterwards each is as it was (only those
    that were training are touched: a module in eval mode already, as between a catalog's units,
    is not walked twice more)."""
    # a frozen TorchScript submodule has no training flag: nothing to switch there
    training = [m for m in module.modules() if getattr(m, "training", False)]
    for m in training:
        m.training = False
    try:
        yield
    finally:
        for m in training:
            m.training = True


def fresh_seed() -> int:
    """A random 63-bit seed from the OS (leaves torch's global RNG alone)."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def call_generator(
    device: torch.device, seed: int | None = None, generator: torch.Generator | None = None
) -> torch.Generator:
    """``generator``, else a new generator on ``device`` seeded with ``seed`` (fresh OS entropy
    when None). One per call: concurrent calls (threads of a Dask worker) never share random
    state, and torch's global RNG is never touched."""
    if generator is not None:
        return generator
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed) if seed is not None else fresh_seed())
    return gen


#: The generator :class:`GeneratorDropout` layers draw from in the current thread/context.
_DROPOUT_GENERATOR: contextvars.ContextVar[torch.Generator | None] = contextvars.ContextVar(
    "starlabels_dropout_generator", default=None
)
_SWAP_LOCK = threading.Lock()  # guards the one-time structural swap only, never a forward pass


class GeneratorDropout(nn.Dropout):
    """``nn.Dropout`` whose mask comes from the generator set by :func:`dropout_generator`.

    Same semantics as ``nn.Dropout`` (each element zeroed with probability ``p``, survivors scaled
    by 1/(1−p); identity in eval mode). Without a generator set it is exactly ``nn.Dropout``
    (torch's default generator). A subclass, so ``isinstance(m, nn.Dropout)`` still holds and the
    state dict is unchanged (dropout has no parameters).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gen = _DROPOUT_GENERATOR.get()
        if gen is None or not self.training or self.p == 0:
            return super().forward(x)
        if self.p >= 1:
            return torch.zeros_like(x)
        keep = torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) >= self.p
        return x * keep / (1.0 - self.p)


def use_generator_dropout(module: nn.Module) -> nn.Module:
    """Replace (in place) every plain ``nn.Dropout`` inside ``module`` by a
    :class:`GeneratorDropout` with the same ``p``/``inplace``/``training``; returns ``module``.
    Idempotent; numerically identical until a generator is set."""
    with _SWAP_LOCK:
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Dropout:
                    new = GeneratorDropout(child.p, inplace=child.inplace)
                    new.train(child.training)
                    setattr(parent, name, new)
    return module


@contextlib.contextmanager
def dropout_generator(generator: torch.Generator) -> Iterator[None]:
    """Within the block (this thread/context only), :class:`GeneratorDropout` layers draw their
    masks from ``generator``."""
    token = _DROPOUT_GENERATOR.set(generator)
    try:
        yield
    finally:
        _DROPOUT_GENERATOR.reset(token)


def _unsupported_random_dropout(module: nn.Module) -> list[str]:
    """Active dropout layers that cannot draw from a passed generator (not ``nn.Dropout``)."""
    return [
        type(m).__name__ for m in module.modules()
        if isinstance(m, nn.modules.dropout._DropoutNd) and float(m.p) > 0
        and not isinstance(m, GeneratorDropout) and type(m) is not nn.Dropout
    ]


def has_active_dropout(module: nn.Module) -> bool:
    """True when ``module`` holds at least one dropout layer with p > 0."""
    return any(
        isinstance(m, nn.modules.dropout._DropoutNd) and float(m.p) > 0 for m in module.modules()
    )


def _replicated_moments(
    fn: PhysicalNetwork,
    flux: torch.Tensor,
    n_samples: int,
    batch_size: int,
    *,
    unbiased: bool,
    copies: Callable[[slice], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Mean and variance over ``n_samples`` copies per spectrum, copies riding in the batch.

    ``copies(rows)`` returns the (b·S, P) spectrum-major copies of the spectra ``rows``; chunks
    of rows keep b·S near ``batch_size``. Returns ``mean``, ``var`` (N, L) over the copies and the
    mean predicted variance (N, L), or None for a network without a variance head.
    """
    n, L = flux.shape[0], fn.n_labels
    mean = flux.new_empty((n, L))
    var = flux.new_empty((n, L))
    ale = None
    for sl in _chunks(n, _rows_per_chunk(batch_size, n_samples)):
        b = sl.stop - sl.start
        m, v = fn(copies(sl))
        m = m.reshape(b, n_samples, L)
        mean[sl] = m.mean(dim=1)
        var[sl] = m.var(dim=1, unbiased=unbiased)
        if v is not None:
            if ale is None:
                ale = flux.new_empty((n, L))
            ale[sl] = v.reshape(b, n_samples, L).mean(dim=1)
    return mean, var, ale


def _rows_per_chunk(batch_size: int, n_samples: int) -> int:
    """How many spectra fit in one forward pass of ``batch_size`` rows with ``n_samples`` copies."""
    return max(1, int(batch_size) // max(1, int(n_samples)))


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def point(
    fn: PhysicalNetwork, flux: torch.Tensor, *, batch_size: int = 256
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Deterministic prediction (eval mode): ``mean`` (N, L), parts ``{"aleatoric"}`` if any."""
    means, variances = [], []
    with _eval_mode(fn), torch.inference_mode():
        for sl in _chunks(flux.shape[0], max(1, batch_size)):
            m, v = fn(flux[sl])
            means.append(m)
            if v is not None:
                variances.append(v)
    mean = _cat(means, flux, fn.n_labels)
    parts = {"aleatoric": torch.cat(variances)} if variances else {}
    return mean, parts


def mc_dropout(
    fn: PhysicalNetwork,
    flux: torch.Tensor,
    *,
    n_samples: int = 100,
    batch_size: int = 256,
    seed: int | None = None,
    dropout_context: Callable[[nn.Module], contextlib.AbstractContextManager] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Monte-Carlo dropout (astroNN eq. 3), ``n_samples`` passes per spectrum in the batch dimension.

    ``flux`` (N, P) → ``mean`` (N, L) = mean of the passes; parts ``"epistemic"`` (N, L) = population
    variance of the pass means, ``"aleatoric"`` (N, L) = mean of the predicted variances (networks
    with a variance head only). ``dropout_context(network)`` keeps dropout on and the rest in eval
    mode (default :func:`starlabels.models.layers.mc_dropout`). Raises :class:`StarlabelsError` for a
    network without dropout (it would report zero model uncertainty).

    A :class:`~starlabels.models.bcnn.BayesianCNN` (without a custom ``dropout_context``) takes
    the fused path :func:`~starlabels.models.bcnn.mc_dropout_passes` (same distribution, fresh
    masks per pass, star and element, keep probability realised to 2^-16; 9.2 ms per star for 100
    passes on one thread against 83.5 ms for per-pass Bernoulli masks, ``bench/results/throughput.md``);
    masks come
    from ``generator``; the generic path (other networks) swaps their ``nn.Dropout`` layers for
    :class:`GeneratorDropout` (same distribution) drawing from it. Without ``generator`` a new one
    is seeded with ``seed`` (fresh entropy when None). Torch's global RNG is never used, so
    concurrent calls in threads are independent and a seeded call gives the same numbers whatever
    else runs. Other dropout types (``Dropout1d``, ``AlphaDropout``…) raise :class:`StarlabelsError`.
    """
    _check_samples(n_samples)
    if not has_active_dropout(fn.network):
        raise StarlabelsError(
            "MC-dropout uncertainties need a network with dropout (p > 0); this one has none — "
            "use uncertainty='noise' or 'delta'"
        )
    from starlabels.models.bcnn import BayesianCNN

    gen = call_generator(flux.device, seed, generator)
    if dropout_context is None and type(fn.network) is BayesianCNN:
        with torch.inference_mode():
            mean, epi, ale = _fused_mc_moments(fn, flux, n_samples, batch_size, gen)
    else:
        if dropout_context is None:
            from starlabels.models.layers import mc_dropout as dropout_context
        use_generator_dropout(fn.network)
        other = _unsupported_random_dropout(fn.network)
        if other:
            raise StarlabelsError(
                f"MC dropout draws from a per-call generator; these dropout layers cannot: {other} "
                "(use nn.Dropout)"
            )
        with dropout_generator(gen), dropout_context(fn.network), torch.inference_mode():
            mean, epi, ale = _replicated_moments(
                fn, flux, n_samples, batch_size, unbiased=False,
                copies=lambda sl: flux[sl].repeat_interleave(n_samples, dim=0),  # spectrum-major
            )
    parts = {"epistemic": epi}
    if ale is not None:
        parts["aleatoric"] = ale
    return mean, parts


def _fused_mc_moments(
    fn: PhysicalNetwork, flux: torch.Tensor, n_samples: int, batch_size: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`_replicated_moments` for a BayesianCNN through its fused MC-dropout passes."""
    from starlabels.models.bcnn import mc_dropout_passes

    n, L = flux.shape[0], fn.n_labels
    mean, var, ale = (flux.new_empty((n, L)) for _ in range(3))
    for sl in _chunks(n, _rows_per_chunk(batch_size, n_samples)):
        b = sl.stop - sl.start
        x = (flux[sl] * fn.in_slope + fn.in_offset).unsqueeze(1)
        m, log_var = mc_dropout_passes(fn.network, x, n_samples, generator)
        m = (m * fn.out_slope + fn.out_offset).reshape(b, n_samples, L)
        mean[sl] = m.mean(dim=1)
        var[sl] = m.var(dim=1, unbiased=False)
        ale[sl] = (torch.exp(log_var) * fn.out_slope**2).reshape(b, n_samples, L).mean(dim=1)
    return mean, var, ale


def noise_realisations(
    fn: PhysicalNetwork,
    flux: torch.Tensor,
    error: torch.Tensor,
    *,
    n_samples: int = 100,
    batch_size: int = 256,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    error_cap: float | None = ERROR_CAP,
    bad_error: float = BAD_ERROR,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """APOGEE Net §3.5: scatter of the predictions over ``n_samples`` noisy copies per spectrum.

    ``flux``, ``error`` (N, P) preprocessed → ``mean`` (N, L) over the realisations; parts
    ``"noise"`` (N, L) = their (unbiased) variance, ``"aleatoric"`` = mean predicted variance if the
    network has a variance head. Errors pass through :func:`effective_errors` (capped at
    ``error_cap`` × mean, rejected pixels noise-free). Network in eval mode. Noise comes from
    ``generator`` (else a new one seeded with ``seed``).
    """
    _check_samples(n_samples)
    if n_samples < 2:
        raise InputDataError("noise realisations need n_samples >= 2 to measure a scatter")
    sigma = effective_errors(error, error_cap=error_cap, bad_error=bad_error)
    P = flux.shape[1]
    gen = call_generator(flux.device, seed, generator)

    def noisy_copies(sl: slice) -> torch.Tensor:
        b = sl.stop - sl.start
        eps = torch.randn((b, n_samples, P), generator=gen, device=flux.device, dtype=flux.dtype)
        return (flux[sl].unsqueeze(1) + eps * sigma[sl].unsqueeze(1)).reshape(b * n_samples, P)

    with _eval_mode(fn), torch.inference_mode():
        mean, var, ale = _replicated_moments(fn, flux, n_samples, batch_size, unbiased=True,
                                             copies=noisy_copies)
    parts = {"noise": var}
    if ale is not None:
        parts["aleatoric"] = ale
    return mean, parts


def delta_method(
    fn: PhysicalNetwork,
    flux: torch.Tensor,
    error: torch.Tensor,
    *,
    batch_size: int = 64,
    error_cap: float | None = ERROR_CAP,
    bad_error: float = BAD_ERROR,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """First-order propagation of the flux errors: σ_k² = Σ_i (∂y_k/∂x_i)² σ_i².

    ``flux``, ``error`` (N, P) preprocessed → ``mean`` (N, L) the point prediction, parts
    ``"delta"`` (N, L) the propagated variance in physical units² (the chain rule through the
    spectrum and label scalers is part of :class:`PhysicalNetwork`'s graph) and ``"aleatoric"`` when
    the network has a variance head. Per chunk of ``batch_size`` spectra: one forward pass and one
    backward pass per label.
    Spectra are independent in eval mode, so ∂(Σ_b y_bk)/∂x_b = ∂y_bk/∂x_b. ``StopGrad`` layers are
    bypassed (their Jacobian is the identity; they only shape training).
    """
    sigma2 = effective_errors(error, error_cap=error_cap, bad_error=bad_error) ** 2
    n, L = flux.shape[0], fn.n_labels
    means, deltas, ales = [], [], []
    # StopGrad layers block gradients for *training* only; the sensitivity needs the full Jacobian
    with jacobian_mode(fn):
        for sl in _chunks(n, max(1, batch_size)):
            x = flux[sl].detach().clone().requires_grad_(True)
            m, v = fn(x)
            grads = label_gradients(m, x)  # (L, b, P)
            deltas.append((grads.square() * sigma2[sl].unsqueeze(0)).sum(dim=2).T)
            means.append(m.detach())
            if v is not None:
                ales.append(v.detach())
    mean = _cat(means, flux, L)
    parts = {"delta": _cat(deltas, flux, L)}
    if ales:
        parts["aleatoric"] = torch.cat(ales)
    return mean, parts


def _check_samples(n_samples: int) -> None:
    if int(n_samples) < 1:
        raise InputDataError(f"n_samples must be >= 1, got {n_samples}")


def _cat(chunks: list[torch.Tensor], like: torch.Tensor, n_labels: int) -> torch.Tensor:
    if chunks:
        return torch.cat(chunks)
    return like.new_empty((0, n_labels))


def total_variance(parts: dict[str, torch.Tensor | np.ndarray]):
    """Sum of the variance parts (elementwise), or ``None`` when there are none."""
    vals = list(parts.values())
    if not vals:
        return None
    out = vals[0]
    for v in vals[1:]:
        out = out + v
    return out
