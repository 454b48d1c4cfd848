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

Only rank 0 reports: the run summary after training (:func:`run_summary`), or one ``Error: ...``
line when the config or the data are wrong (every rank fails alike; the others exit with status 1
silently, so the launcher's own failure report follows, but no rank prints a traceback).

``starlabels train`` does the same when it finds itself started by ``torchrun`` (``WORLD_SIZE`` >
1 in the environment). Backend: ``nccl`` when CUDA is available, else ``gloo``; each rank uses
``cuda:LOCAL_RANK`` (or the CPU).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


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


def is_main_rank() -> bool:
    """True in the process that reports: rank 0 of a ``torchrun`` job (``RANK``), or a plain run."""
    return int(os.environ.get("RANK", "0")) == 0


#: Seconds a non-zero rank waits before exiting on a config/data error, so that rank 0 prints the
#: one error line before the launcher stops the job.
QUIET_EXIT_DELAY = 3.0


def exit_quietly_unless_main_rank() -> None:
    """On a config or data error (:class:`~starlabels.errors.StarlabelsError`, the same on every
    rank): a non-zero rank exits with status 1 without printing, after :data:`QUIET_EXIT_DELAY`
    seconds (torchrun stops the other ranks when one exits); rank 0 returns and reports."""
    if not is_main_rank():
        import time

        time.sleep(QUIET_EXIT_DELAY)
        raise SystemExit(1)


def run_summary(model: Any, folder: Any) -> str:
    """The lines ``starlabels train`` prints after training a network: sizes, epochs, the best
    dev loss, the stratified rounds and where the model is (printed by rank 0 only under DDP)."""
    t = model.training
    main = t["epochs"]["stages"].get("main", {})
    lines = [f"trained {model.architecture!r} on {t['sizes']['train']} spectra "
             f"(dev {t['sizes']['dev']}, test {t['sizes']['test']}): {t['epochs']['run']} epochs, "
             f"best dev loss {main.get('best_loss', float('nan')):.4g} at epoch {main.get('best_epoch')}"]
    if "stratified" in t:
        s = t["stratified"]
        lines.append(f"stratified adaptation: {len(s['rounds'])} rounds, best round {s['best_round']}")
    lines.append(f"model saved to {folder}")
    return "\n".join(lines)


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


def shutdown() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_as_rank(run: Callable[..., Any], *, device: str | None = None) -> Any:
    """``run(distributed=ctx)`` as this process's rank of a ``torchrun`` job: the process group is
    joined before (:func:`init_distributed`, ``device`` as there) and left after, also when ``run``
    raises (:func:`shutdown`). Returns ``run``'s result, on every rank."""
    ctx = init_distributed(device=device)
    try:
        return run(distributed=ctx)
    finally:
        shutdown()


def run_as_launched(run: Callable[..., Any], *, device: str | None = None) -> Any:
    """``run()`` in a plain process, or :func:`run_as_rank` when started by ``torchrun``
    (:func:`launched_by_torchrun`); the result on the reporting rank (rank 0, or the plain
    process), None on the other ranks (the CLI's ``train`` and ``recipe`` run through this)."""
    if not launched_by_torchrun():
        return run()
    result = run_as_rank(run, device=device)
    return result if is_main_rank() else None


def train_distributed(config_path: str, *, resume: bool = False) -> Any:
    """Run the TOML-described training as one rank of a ``torchrun`` job; returns the model."""
    from starlabels.training.config import load_config
    from starlabels.training.from_config import train_from_config

    cfg = load_config(config_path)
    return run_as_rank(functools.partial(train_from_config, cfg, resume=resume),
                       device=cfg.training.torch_device)


def main(argv: list[str] | None = None) -> int:
    """``python -m starlabels.training.distributed CONFIG.toml [--resume]`` (under torchrun)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m starlabels.training.distributed",
                                     description=main.__doc__)
    parser.add_argument("config")
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args(argv)
    from starlabels.errors import StarlabelsError
    from starlabels.training.config import load_config

    try:
        folder = load_config(args.config).output.folder
        model = train_distributed(args.config, resume=args.resume)
    except (StarlabelsError, FileExistsError) as exc:  # every rank fails alike: rank 0 says why, once
        exit_quietly_unless_main_rank()
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    if is_main_rank():
        print(run_summary(model, folder))
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through torchrun
    sys.exit(main())
