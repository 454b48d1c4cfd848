"""Scale-out training with DistributedDataParallel (DDP), launched by ``torchrun``.

Every rank builds the same :class:`~starlabels.training.trainer.Trainer` (same seed, data, split,
batch order); given a :class:`DistributedContext`, the trainer wraps the network in DDP and each
rank reads, preprocesses and trains on its contiguous shard of every *global* batch
(``batch_size`` is the global batch size). Each rank's loss is ``sum(per-sample loss) ×
world_size / global_batch_size``, and DDP averages gradients over ranks, so a step equals the
single-process step on the whole global batch (up to floating-point summation order). Dev losses
are summed over ranks with ``all_reduce``; only rank 0 writes checkpoints and the model folder.

Launch a TOML-described run on 4 GPUs (or CPU processes, gloo) of one node::

    torchrun --nproc_per_node=4 -m starlabels.training.distributed CONFIG.toml [--resume]

``starlabels train`` does the same when it finds itself started by ``torchrun`` (``WORLD_SIZE`` >
1 in the environment). Backend: ``nccl`` when CUDA is available, else ``gloo``; each rank uses
``cuda:LOCAL_RANK`` (or the CPU).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistributedContext:
    """This process's place in the job: ``rank`` of ``world_size``, and its torch ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process job (``WORLD_SIZE`` > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(backend: str | None = None, device: str | None = None) -> DistributedContext:
    """Join the process group described by the ``torchrun`` environment variables.

    ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT`` must be set (torchrun
    and :func:`torch.multiprocessing.spawn`-style launchers set them). ``backend`` defaults to
    ``nccl`` with CUDA and ``gloo`` otherwise; ``device="cpu"`` forces CPU ranks.
    """
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    use_cuda = torch.cuda.is_available() and (device is None or str(device).startswith("cuda"))
    if backend is None:
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistributedContext(rank=rank, world_size=world, local_rank=local, device=dev, backend=backend)


def wrap_ddp(network: nn.Module, ctx: DistributedContext) -> nn.Module:
    """``network`` (already on ``ctx.device``) wrapped in DistributedDataParallel.

    Parameters are broadcast from rank 0 on wrapping, so every rank starts from the same weights.
    """
    from torch.nn.parallel import DistributedDataParallel

    if ctx.device.type == "cuda":
        return DistributedDataParallel(network, device_ids=[ctx.device.index], output_device=ctx.device.index)
    return DistributedDataParallel(network)


def shutdown() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def train_distributed(config_path: str, *, resume: bool = False) -> Any:
    """Run the TOML-described training as one rank of a ``torchrun`` job; returns the model."""
    from starlabels.training.config import load_config
    from starlabels.training.trainer import train_from_config

    cfg = load_config(config_path)
    ctx = init_distributed(device=cfg.training.torch_device)
    try:
        return train_from_config(cfg, resume=resume, distributed=ctx)
    finally:
        shutdown()


def main(argv: list[str] | None = None) -> int:
    """``python -m starlabels.training.distributed CONFIG.toml [--resume]`` (under torchrun)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m starlabels.training.distributed",
                                     description=main.__doc__)
    parser.add_argument("config")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    train_distributed(args.config, resume=args.resume)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through torchrun
    sys.exit(main())
