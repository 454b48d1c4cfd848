"""The pieces of the training loop: per-sample losses, optimisers, schedulers, one optimiser step,
and the bookkeeping of a stage (:class:`StageResult`).

:class:`~starlabels.training.trainer.Trainer` runs epochs of :func:`training_step` over the batches
of :func:`~starlabels.training.batches.iter_batches` (:func:`train_batches`), adds their losses
over distributed ranks (:func:`sum_over_ranks`), scores the dev rows with :func:`per_sample_loss`
(:mod:`~starlabels.training.row_losses`), and steps the scheduler from :func:`make_scheduler`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from starlabels.training.config import OptimiserConfig
from starlabels.training.errors import TrainingError

__all__ = [
    "DEFAULT_OPTIMISER_IMPL", "ONE_CYCLE_WARMUP", "StageResult", "check_finished_stage", "make_optimiser",
    "make_scheduler", "network_output", "per_sample_loss", "scheduler_steps_per_batch", "sum_over_ranks",
    "train_batches", "training_step", "wrap_ddp",
]


def per_sample_loss(
    name: str,
    mean: torch.Tensor,
    log_var: torch.Tensor | None,
    target: torch.Tensor,
    target_error: torch.Tensor,
) -> torch.Tensor:
    """(N,) per-sample loss by name: "mse"/"mae" (masked) or "robust" (astroNN eq. 5).

    All tensors are in standardised label space, (N, L); MISSING targets contribute nothing.
    """
    from starlabels import losses

    if name == "mse":
        return losses.masked_mse(mean, target)
    if name == "mae":
        return losses.masked_mae(mean, target)
    if name == "robust":
        if log_var is None:
            raise TrainingError("loss 'robust' needs a network with a variance head (log_var is None)")
        return losses.robust_mse(mean, log_var, target, target_error)
    raise TrainingError(f"unknown loss {name!r}; known: mse, mae, robust")


#: Optimiser kernel used by default. "fused" (one kernel for the whole update) measured 3.0 ms per
#: Adam step on ApogeeNet's 4.66 M parameters vs 13–17 ms "foreach" and 13–50 ms "forloop" (torch's
#: CPU default) — bench/train_throughput.py, 1 CPU thread. Where a device/dtype has no fused
#: kernel, make_optimiser falls back to "foreach".
DEFAULT_OPTIMISER_IMPL: str | None = "fused"


def make_optimiser(
    params, cfg: OptimiserConfig, *, device: torch.device | None = None, impl: str | None = "default"
) -> torch.optim.Optimizer:
    """Adam or SGD from ``cfg`` (learning rate, weight decay, momentum).

    ``impl`` picks torch's kernel for the same update rule: ``"forloop"`` (one tensor at a time),
    ``"foreach"`` (multi-tensor), ``"fused"`` (one fused kernel; falls back to foreach where
    unsupported), None (torch's choice) or ``"default"`` (:data:`DEFAULT_OPTIMISER_IMPL`). The
    kernels agree to floating-point rounding.
    """
    params = list(params)
    if impl == "default":
        impl = DEFAULT_OPTIMISER_IMPL
    flags: dict[str, Any] | None = {
        None: {}, "forloop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True},
    }.get(impl)  # type: ignore[call-overload]
    if flags is None:
        raise TrainingError(f"unknown optimiser implementation {impl!r}")

    def build(**kw: Any) -> torch.optim.Optimizer:
        if cfg.name == "adam":
            return torch.optim.Adam(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, **kw)
        if cfg.name == "sgd":
            return torch.optim.SGD(params, lr=cfg.learning_rate, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay, **kw)
        raise TrainingError(f"unknown optimiser {cfg.name!r}")

    if impl == "fused":
        try:
            return build(**flags)
        except (RuntimeError, ValueError):  # no fused kernel for this device/dtype
            return build(foreach=True)
    return build(**flags)


def wrap_ddp(network: nn.Module, ctx: Any) -> nn.Module:
    """``network`` (already on ``ctx.device``) wrapped in DistributedDataParallel; ``ctx`` is the
    :class:`~starlabels.training.distributed.DistributedContext` of this rank.

    Parameters are broadcast from rank 0 on wrapping, so every rank starts from the same weights.
    """
    from torch.nn.parallel import DistributedDataParallel

    if ctx.device.type == "cuda":
        return DistributedDataParallel(network, device_ids=[ctx.device.index], output_device=ctx.device.index)
    return DistributedDataParallel(network)


#: Share of a one-cycle schedule's steps spent warming up to the learning rate.
ONE_CYCLE_WARMUP = 0.15


def scheduler_steps_per_batch(cfg: OptimiserConfig) -> bool:
    """True when the schedule steps after every optimiser step ("one_cycle"), False when it steps
    once per epoch on the dev loss ("plateau") or there is none."""
    return cfg.scheduler == "one_cycle"


def make_scheduler(optimiser: torch.optim.Optimizer, cfg: OptimiserConfig, *, total_steps: int | None = None):
    """ReduceLROnPlateau on the dev loss, a one-cycle schedule over ``total_steps`` optimiser steps
    (``torch.optim.lr_scheduler.OneCycleLR``, peak ``cfg.learning_rate``, warm-up
    :data:`ONE_CYCLE_WARMUP`), or None."""
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "one_cycle":
        if not total_steps or total_steps < 1:
            raise TrainingError("the one-cycle schedule needs the run's total number of steps")
        return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=cfg.learning_rate,
                                                   total_steps=int(total_steps), pct_start=ONE_CYCLE_WARMUP)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr
    )


def network_output(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``module(x)`` checked to be the ``(mean, log_var)`` pair every training loss takes: (N, L)
    standardised means and (N, L) log variances or None (no variance head)."""
    out = module(x)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TrainingError("the network must return a tuple (mean, log_var)")
    return out


def training_step(
    module: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    y_err: torch.Tensor,
    *,
    loss: str = "mse",
    weight: float | None = None,
    constrain: Callable[[], None] | None = None,
) -> torch.Tensor:
    """One optimiser step on a batch; returns the detached per-sample losses (n,).

    ``x`` (n, 1, P) network input, ``y``/``y_err`` (n, L) standardised targets/errors. The
    minimised quantity is ``weight × sum(per-sample loss)`` (``weight=None``: 1/n, the batch
    mean; distributed ranks pass ``world_size / global_batch``). Gradients are cleared with
    ``set_to_none``; ``constrain`` (the network's ``apply_constraints``) runs after the step.
    """
    per = per_sample_loss(loss, *network_output(module, x), y, y_err)
    total = per.sum() * (1.0 / per.shape[0] if weight is None else weight)
    optimiser.zero_grad(set_to_none=True)
    total.backward()
    optimiser.step()
    if constrain is not None:
        with torch.no_grad():
            constrain()
    return per.detach()


def train_batches(
    module: nn.Module,
    optimiser: torch.optim.Optimizer,
    batches: Iterable[tuple[torch.Tensor, ...]],
    *,
    device: torch.device,
    loss: str,
    world_size: int = 1,
    constrain: Callable[[], None] | None = None,
    scheduler: Any = None,
) -> torch.Tensor:
    """:func:`training_step` on each of ``batches`` (``(x, y, y_err, n_global)``, as
    :func:`~starlabels.training.batches.iter_batches` yields them; moved to ``device``), each
    weighted ``world_size / n_global``; ``scheduler`` (a per-batch schedule, or None) steps after
    every step. Returns the float64 tensor ``[sum of the per-sample losses, their number]`` of this
    rank (on ``device``)."""
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for x, y, e, n_global in batches:
        per = training_step(
            module, optimiser, x.to(device, non_blocking=True), y.to(device, non_blocking=True),
            e.to(device, non_blocking=True), loss=loss, weight=world_size / n_global, constrain=constrain,
        )
        if scheduler is not None:
            scheduler.step()
        total += per.sum().double()
        count += per.shape[0]
    return torch.stack([total, torch.tensor(float(count), dtype=torch.float64, device=device)])


def sum_over_ranks(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """``values`` summed element-wise over the ``world_size`` ranks of the process group (in place,
    all-reduce); returned as they are for one process."""
    if world_size > 1:
        import torch.distributed as dist

        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


@dataclass
class StageResult:
    """Outcome of one training stage (the main run, or one adaptation round)."""

    key: str
    epochs: int
    best_epoch: int
    best_loss: float
    stopped_early: bool


def check_finished_stage(key: str, done: Mapping[str, Any], epochs: int) -> None:
    """A resumed run that asks for ``epochs`` in total of a stage that already finished: nothing to
    do when the stage ran exactly that long (or stopped early before it); otherwise a clear error —
    never a silent no-op. A finished stage kept only its best weights, not its last epoch's state,
    so it cannot be continued exactly."""
    ran = int(done["epochs"])
    if epochs == ran or (done.get("stopped_early") and epochs >= ran):
        return
    if epochs < ran:
        raise TrainingError(
            f"stage {key!r} already finished after {ran} epochs, more than the {epochs} asked for "
            "(--epochs counts epochs in total); nothing was changed"
        )
    raise TrainingError(
        f"stage {key!r} already finished after {ran} of its epochs; --resume --epochs {epochs} cannot "
        "extend a finished training exactly (its last-epoch state is not kept, only the best weights). "
        f"Train again with --overwrite --epochs {epochs}, or resume only interrupted runs"
    )
