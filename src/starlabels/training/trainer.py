"""The training engine: streaming batches, early stopping, checkpoints and exact resume.

:class:`Trainer` fits the :class:`~starlabels.data.normalization.LabelScaler` (and the
:class:`~starlabels.data.normalization.SpectrumScaler`, streaming) on the training rows, applies
the model's :class:`~starlabels.preprocess.pipeline.PreprocessConfig` to each block of raw
spectra it reads, and runs epochs of mini-batch training:

- each epoch's row order comes from a generator seeded by ``(seed, stage, round, epoch)``: with
  ``shuffle="chunks"`` the training rows are cut into file chunks of ``chunk_rows`` rows, the
  chunk order is shuffled and rows are shuffled within windows of ``buffer_chunks`` chunks, so at
  most about ``chunk_rows × buffer_chunks`` (+ one batch) spectra are in memory; with
  ``shuffle="full"`` (in-memory data) the rows are permuted freely;
- the dev loss (mean per-sample loss over the dev rows) after each epoch drives
  ReduceLROnPlateau and early stopping (``patience`` epochs without improvement); the best weights
  are kept and restored at the end;
- what training draws from the global generators (``nn.Dropout`` masks) comes from the trainer's
  own :class:`~starlabels.utils.RandomStream`, seeded by ``seed`` (+ 7919 × rank), swapped in
  while ``run_stage``, ``train_epoch``, ``evaluate`` and ``finish`` run: the caller's global
  torch/numpy/python random states are as they were after each call;
- after every epoch a checkpoint (``checkpoint.pt``: network, optimiser, scheduler, the random
  stream's torch/numpy/python states, epoch, best loss and weights, history, scalers) is written
  atomically; a trainer built with ``resume=True`` continues from it and reproduces the
  uninterrupted run;
- the network's ``apply_constraints()`` is called after every optimiser step when it exists.

The result is a :class:`~starlabels.models.folder.TrainedModel`, saved to ``folder`` with the
training provenance (data files, sizes, splits, optimiser, epochs, dates, seed) and
``history.csv`` (epoch, train_loss, dev_loss, lr, seconds); the split row indices are written
beside it as ``splits.npz`` (``train``, ``dev``, ``test``: int64 row numbers over the
concatenated files).

Use :func:`~starlabels.training.from_config.train_from_config` for a TOML-described run
(``starlabels train``) or build a :class:`Trainer` directly.

Module layout: :mod:`~starlabels.training.data_access` (TrainingData: labels in memory, spectra
read a block at a time), :mod:`.inputs` (preprocessing, augmentation, scalers), :mod:`.batches`
(split rows, epoch order, blocks, shards), :mod:`.loop` (losses, optimisers, one step, one pass
over the batches), :mod:`.row_losses` (dev losses), :mod:`.checkpoint` (atomic checkpoint),
:mod:`.provenance` (provenance, model folder, trust references) and :mod:`.from_config`; this
module holds the :class:`Trainer`, whose stage/epoch/best-weights state ties them together.
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from starlabels.training import batches as batch_planning
from starlabels.training.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    check_matches_run,
    cpu_state,
    read_checkpoint,
    write_checkpoint,
)
from starlabels.training.config import OptimiserConfig, TrainingConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.errors import TrainingError
from starlabels.training.inputs import InputPipeline
from starlabels.training.loop import (
    StageResult,
    check_finished_stage,
    make_optimiser,
    make_scheduler,
    scheduler_steps_per_batch,
    sum_over_ranks,
    train_batches,
    wrap_ddp,
)
from starlabels.training.provenance import (
    HISTORY_COLUMNS,
    SPLITS_NAME,
    claim_output_folder,
    fit_trust_references,
    now,
    save_model_folder,
    training_provenance,
)
from starlabels.training.row_losses import group_sums, row_losses
from starlabels.utils import RandomStream, get_device, progress

__all__ = ["CHECKPOINT_NAME", "HISTORY_COLUMNS", "SPLITS_NAME", "StageResult", "Trainer",
           "TrainingData", "TrainingError"]


def _on_own_stream(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a :class:`Trainer` method on the trainer's own random stream (``random_stream``): what
    it draws from the global generators (dropout masks) comes from the trainer's seeded stream,
    and the caller's global random states are given back afterwards."""

    @functools.wraps(method)
    def on_stream(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        with self.random_stream.active():
            return method(self, *args, **kwargs)

    return on_stream


class Trainer:
    """Train ``network`` on ``data`` with early stopping, checkpoints and exact resume.

    Parameters
    ----------
    network
        A module mapping (N, 1, P_in) float32 to ``(mean, log_var)`` in standardised label space
        (``log_var`` may be None), as every ``starlabels.models`` network does.
    data
        :class:`~starlabels.training.data_access.TrainingData`.
    split
        ``{"train": rows, "dev": rows, "test": rows}`` (int64 row numbers), e.g. from
        :func:`~starlabels.training.from_config.make_split`.
    optimiser, training
        :class:`~starlabels.training.config.OptimiserConfig`, :class:`TrainingConfig`.
    preprocess
        :class:`~starlabels.preprocess.pipeline.PreprocessConfig` (or its dict) applied to each
        block of raw spectra; None when ``data`` is already network input. When ``data`` says it
        was preprocessed, its own config is stored in the model instead and nothing is re-applied.
    spectrum_scaling
        ``"centred"`` (subtract the training set's per-pixel mean), ``"standardised"`` (and
        divide by its per-pixel standard deviation) or ``"none"``.
    folder
        Output folder (model + ``checkpoint.pt``); None trains without writing anything.
    resume
        Continue from ``folder/checkpoint.pt``.
    chunk_rows, buffer_chunks, shuffle
        Streaming (see :func:`~starlabels.training.batches.epoch_order`); ``shuffle="auto"`` is
        "full" for in-memory data and "chunks" otherwise.
    eval_batch_size
        Rows per forward pass when computing dev losses (default 4 × batch size).
    distributed
        A :class:`starlabels.training.distributed.DistributedContext` for DistributedDataParallel
        (each rank trains on its shard of every global batch); None for one process.
    callbacks
        Called as ``callback(trainer, history_row)`` after each epoch's checkpoint.
    """

    def __init__(
        self,
        network: nn.Module,
        data: TrainingData,
        split: Mapping[str, np.ndarray],
        *,
        optimiser: OptimiserConfig | None = None,
        training: TrainingConfig | None = None,
        preprocess: Any = None,
        spectrum_scaling: str = "none",
        folder: str | Path | None = None,
        resume: bool = False,
        overwrite: bool = False,
        chunk_rows: int = 1024,
        buffer_chunks: int = 4,
        shuffle: str = "auto",
        eval_batch_size: int | None = None,
        split_info: Mapping[str, Any] | None = None,
        provenance: Mapping[str, Any] | None = None,
        distributed: Any = None,
        callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
    ) -> None:
        self.optimiser_cfg = optimiser or OptimiserConfig()
        self.training_cfg = training or TrainingConfig()
        self.split = batch_planning.training_split(split, data.n_rows)
        self.split_info = dict(split_info or {})
        self.extra_provenance = dict(provenance or {})
        self.callbacks = list(callbacks)
        self.dist = distributed
        self.rank = 0 if distributed is None else int(distributed.rank)
        self.world_size = 1 if distributed is None else int(distributed.world_size)
        self.is_main = self.rank == 0
        self.folder = None if folder is None else Path(folder)
        self.batch_size = int(self.training_cfg.batch_size)
        if self.world_size > 1 and self.batch_size < self.world_size:
            raise TrainingError(f"batch_size {self.batch_size} < world size {self.world_size}")
        self.eval_batch_size = int(eval_batch_size or 4 * self.batch_size)
        self.chunk_rows = int(chunk_rows)
        self.buffer_chunks = int(buffer_chunks)
        if shuffle == "auto":
            shuffle = "full" if data.random_access else "chunks"
        self.shuffle = shuffle
        self.seed = int(self.training_cfg.seed)
        self.augment = self.training_cfg.noise_augmentation()
        self.device = (
            distributed.device if distributed is not None else get_device(self.training_cfg.torch_device)
        )
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TrainingError(f"device {self.device} was asked for, but CUDA is not available here")

        # ---- preprocessing (stored config wins; raw data gets ours applied per block), scalers
        self.inputs = InputPipeline(data, preprocess, chunk_rows=self.chunk_rows,
                                    buffer_chunks=self.buffer_chunks, augment=self.augment)

        self.network = network.to(self.device)
        self.model_net: nn.Module = self.network
        if self.world_size > 1:
            self.model_net = wrap_ddp(self.network, distributed)
        self.optimiser = make_optimiser(self.network.parameters(), self.optimiser_cfg, device=self.device)
        self.scheduler = make_scheduler(self.optimiser, self.optimiser_cfg, total_steps=self._total_steps())
        self.step_scheduler_per_batch = scheduler_steps_per_batch(self.optimiser_cfg)

        self.history: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {
            "stage": None, "epoch": 0, "best_loss": math.inf, "best_epoch": 0, "bad_epochs": 0,
            "global_epoch": 0, "done": [], "stages": {}, "started": now(), "adapt": None,
        }
        self.best_state: dict[str, torch.Tensor] | None = None
        self.extra_states: dict[str, dict[str, torch.Tensor]] = {}

        self._output_lock = None
        if self.folder is not None and self.is_main:
            self._output_lock = claim_output_folder(self.folder, refuse_existing=not (resume or overwrite))
        ckpt_path = self.checkpoint_path
        if resume:
            if ckpt_path is None or not ckpt_path.is_file():
                raise TrainingError(f"cannot resume: no checkpoint at {ckpt_path}")
            self._load_checkpoint(ckpt_path)
        else:
            self.inputs.fit_scalers(self.split["train"], spectrum_scaling)
            # dropout etc. draw from the global generators: the trainer swaps in a stream of its own
            # (seeded per rank) while it runs; a resumed run continues the checkpoint's stream instead
            self.random_stream = RandomStream(self.seed + 7919 * self.rank)

    # ---------------------------------------------------------------- data and batches

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.folder is None else self.folder / CHECKPOINT_NAME

    @property
    def data(self) -> TrainingData:
        """The training data (preprocessed in memory when they were raw in-memory arrays)."""
        return self.inputs.data

    @property
    def preprocess(self) -> Any:
        """The PreprocessConfig stored in the model (None: the data are network input)."""
        return self.inputs.preprocess

    @property
    def label_scaler(self) -> Any:
        """The :class:`~starlabels.data.normalization.LabelScaler` fitted on the training rows."""
        return self.inputs.label_scaler

    @property
    def spectrum_scaler(self) -> Any:
        """The :class:`~starlabels.data.normalization.SpectrumScaler` fitted on the training rows."""
        return self.inputs.spectrum_scaler

    def iter_batches(self, rows: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """One epoch of this rank's batches over ``rows``: ``(x, y, y_err, n_global)``, read a block of
        about ``chunk_rows × buffer_chunks`` rows at a time (:func:`~.batches.iter_batches`)."""
        return batch_planning.iter_batches(
            self.inputs, rows, rng, batch_size=self.batch_size, shuffle=self.shuffle, rank=self.rank,
            world_size=self.world_size, pin_memory=self.device.type == "cuda",
        )

    # ---------------------------------------------------------------- steps

    @_on_own_stream
    def train_epoch(self, rows: np.ndarray, rng: np.random.Generator, desc: str = "") -> float:
        """One pass over ``rows``; returns the mean per-sample training loss (over all ranks)."""
        self.model_net.train()
        n_batches = math.ceil(len(rows) / self.batch_size)
        batches = progress(self.iter_batches(rows, rng), desc=desc, total=n_batches, unit="batch")
        sums = train_batches(self.model_net, self.optimiser, batches, device=self.device,
                             loss=self.training_cfg.loss, world_size=self.world_size,
                             constrain=getattr(self.network, "apply_constraints", None),
                             scheduler=self.scheduler if self.step_scheduler_per_batch else None)
        total, count = sum_over_ranks(sums, self.world_size)
        mean_loss = float(total / count)
        if not math.isfinite(mean_loss):
            raise TrainingError(
                f"non-finite training loss ({mean_loss}); lower the learning rate or check the data"
            )
        return mean_loss

    @_on_own_stream
    def evaluate(self, rows: np.ndarray, by_group: bool = False) -> float | dict[str, float]:
        """Mean per-sample loss over ``rows``, or ``{group: loss}`` with ``by_group``
        (:func:`~starlabels.training.row_losses.row_losses` of this rank's share, summed over ranks).

        Eval mode, or with dropout on averaged over ``dev_mc_samples`` passes (fixed masks, drawn
        without touching the training's random stream) when that is > 0 and the network has
        dropout. With noise augmentation whose ``dev`` is set, the rows are scored on one fixed
        degraded copy (the same noise at every call).
        """
        rows = np.asarray(rows, dtype=np.int64)
        mine = rows[self.rank::self.world_size]
        losses = row_losses(
            self.network, self.inputs, mine, loss=self.training_cfg.loss, device=self.device,
            block_rows=self.chunk_rows * self.buffer_chunks, batch_rows=self.eval_batch_size,
            mc_passes=int(self.training_cfg.dev_mc_samples), seed=self.seed,
            degrade=bool(self.augment and self.augment.dev),
        )
        if not by_group:
            s = sum_over_ranks(torch.tensor([losses.sum(), float(len(mine))], dtype=torch.float64,
                                            device=self.device), self.world_size)
            return float(s[0] / max(float(s[1]), 1.0))
        if self.data.groups is None:
            raise TrainingError("per-group losses need groups in the training data")
        names = sorted(set(self.data.groups[rows].tolist()))
        sums = group_sums(losses, self.data.groups[mine], names)
        sums = sum_over_ranks(torch.from_numpy(sums).to(self.device), self.world_size)
        return {n: float(sums[i, 0] / max(float(sums[i, 1]), 1.0)) for i, n in enumerate(names)}

    # ---------------------------------------------------------------- stages

    def _total_steps(self) -> int:
        """Optimiser steps of the main stage (``epochs × batches per epoch``; a one-cycle schedule
        spans them)."""
        return int(self.training_cfg.epochs) * max(1, math.ceil(len(self.split["train"]) / self.batch_size))

    def reset_optimiser(self) -> None:
        """Fresh optimiser and scheduler at the configured learning rate (adaptation rounds)."""
        if self.step_scheduler_per_batch:
            raise TrainingError("a one-cycle schedule spans one training stage; adaptation rounds need "
                                "scheduler = 'plateau' or 'none'")
        self.optimiser = make_optimiser(self.network.parameters(), self.optimiser_cfg, device=self.device)
        self.scheduler = make_scheduler(self.optimiser, self.optimiser_cfg)

    @_on_own_stream
    def run_stage(
        self,
        key: str,
        train_rows: np.ndarray,
        dev_loss: Callable[[], float] | None = None,
        *,
        epochs: int | None = None,
        patience: int | None = None,
        start_from_current: bool = False,
        stage_index: int = 0,
    ) -> StageResult:
        """Train on ``train_rows`` until early stopping; restore and return the best epoch.

        ``dev_loss()`` (default: the mean loss over the dev split) is evaluated after each
        epoch. With ``start_from_current`` the weights at the start count as epoch 0's best (so a
        stage never ends worse than it started on its own criterion). A stage already finished
        (after a resume) is skipped; one in progress continues from its checkpointed epoch.
        """
        epochs = int(epochs or self.training_cfg.epochs)
        patience = int(patience or self.training_cfg.patience)
        dev_loss = dev_loss or (lambda: self.evaluate(self.split["dev"]))  # type: ignore[assignment]
        st = self.state
        if key in st["done"]:
            check_finished_stage(key, st["stages"][key], epochs)
            return StageResult(**st["stages"][key])
        if st["stage"] == key and st["epoch"] > epochs:
            raise TrainingError(
                f"stage {key!r} is checkpointed at epoch {st['epoch']}, beyond the {epochs} epochs asked "
                f"for; resume with --epochs {st['epoch']} or more (epochs count in total, not in addition)"
            )
        if st["stage"] != key:
            st.update(stage=key, epoch=0, best_loss=math.inf, best_epoch=0, bad_epochs=0)
            self.best_state = None
            if start_from_current:
                st["best_loss"] = float(dev_loss())
                self.best_state = cpu_state(self.network)
        train_rows = np.asarray(train_rows, dtype=np.int64)
        min_delta = float(self.training_cfg.min_delta)
        while st["epoch"] < epochs and st["bad_epochs"] < patience:
            epoch = st["epoch"] + 1
            rng = np.random.default_rng([self.seed, stage_index, epoch])
            t0 = time.perf_counter()
            train_loss = self.train_epoch(train_rows, rng, desc=f"{key} epoch {epoch}")
            dev = float(dev_loss())
            if self.scheduler is not None and not self.step_scheduler_per_batch:
                self.scheduler.step(dev)
            if dev < st["best_loss"] - min_delta:
                st.update(best_loss=dev, best_epoch=epoch, bad_epochs=0)
                self.best_state = cpu_state(self.network)
            else:
                st["bad_epochs"] += 1
            st["epoch"] = epoch
            st["global_epoch"] += 1
            row = {
                "epoch": st["global_epoch"], "train_loss": train_loss, "dev_loss": dev,
                "lr": float(self.optimiser.param_groups[0]["lr"]),
                "seconds": time.perf_counter() - t0, "stage": key,
            }
            self.history.append(row)
            self.save_checkpoint()
            for cb in self.callbacks:
                cb(self, row)
        if self.best_state is not None:
            self.network.load_state_dict(self.best_state)
        result = StageResult(key=key, epochs=st["epoch"], best_epoch=st["best_epoch"],
                             best_loss=float(st["best_loss"]), stopped_early=st["bad_epochs"] >= patience)
        st["stages"][key] = result.__dict__.copy()
        st["done"].append(key)
        st["stage"] = None
        self.best_state = None
        self.save_checkpoint()
        return result

    def fit(self) -> Any:
        """Train on the train split (stage ``"main"``) and return the :class:`TrainedModel`."""
        self.run_stage("main", self.split["train"])
        return self.finish()

    # ---------------------------------------------------------------- checkpoints

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` atomically (rank 0 only; nothing without a folder)."""
        path = self.checkpoint_path
        if path is None or not self.is_main:
            return
        write_checkpoint(path, {
            "format": CHECKPOINT_FORMAT, "version": 1,
            "network": self.network.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": self.random_stream.snapshot(),
            "state": copy.deepcopy(self.state),
            "best_state": self.best_state,
            "extra_states": self.extra_states,
            "history": self.history,
            "scalers": self.inputs.scaler_state(),
            "split": self.split,
            "seed": self.seed,
        })

    def _load_checkpoint(self, path: Path) -> None:
        ckpt = read_checkpoint(path)
        check_matches_run(path, ckpt, self.split, self.seed)
        self.network.load_state_dict(ckpt["network"])
        self.optimiser.load_state_dict(ckpt["optimiser"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = ckpt["state"]
        self.best_state = ckpt["best_state"]
        self.extra_states = ckpt.get("extra_states") or {}
        self.history = list(ckpt["history"])
        self.inputs.restore_scalers(ckpt["scalers"])
        self.random_stream = RandomStream(state=ckpt["rng"])

    # ---------------------------------------------------------------- result

    def provenance(self) -> dict[str, Any]:
        """Training provenance stored in the model's ``config.json``
        (:func:`~starlabels.training.provenance.training_provenance` of this run)."""
        return training_provenance(
            files=self.data.files, split=self.split, split_info=self.split_info,
            optimiser=self.optimiser_cfg, training=self.training_cfg, state=self.state, seed=self.seed,
            train_labels=self.data.labels[self.split["train"]], device=self.device,
            world_size=self.world_size,
            streaming={"shuffle": self.shuffle, "chunk_rows": self.chunk_rows,
                       "buffer_chunks": self.buffer_chunks},
            extra=self.extra_provenance,
        )

    @_on_own_stream
    def finish(self) -> Any:
        """Build the :class:`TrainedModel` (network in eval mode, on the CPU), save it when there is
        a folder (rank 0), and return it."""
        from starlabels.models.folder import TrainedModel

        self.network.eval()
        model = TrainedModel(
            network=self.network,
            label_names=self.data.label_names,
            label_units=self.data.label_units,
            label_scaler=self.label_scaler,
            spectrum_scaler=self.spectrum_scaler,
            preprocessing=None if self.preprocess is None else self.preprocess.to_dict(),
            grid=self.data.grid if self.preprocess is None else self.preprocess.output_grid,
            training=self.provenance(),
            history=[{k: r[k] for k in (*HISTORY_COLUMNS, "stage")} for r in self.history],
        )
        # the label coverage and domain-shift references, so every trained model knows when a
        # spectrum is out of its depth (rank 0; up to TRUST_ROWS train and dev rows)
        fitted = (fit_trust_references(model, self.inputs, self.split, self.seed, self.TRUST_ROWS)
                  if self.is_main else ())
        if self.folder is not None and self.is_main:
            save_model_folder(model, self.folder, self.split)
            for part in fitted:  # coverage.safetensors, domain_shift.safetensors
                part.save(self.folder)
        self.release_output()
        return model

    def release_output(self) -> None:
        """Release the output folder's lock (taken in ``__init__``); :meth:`finish` calls it."""
        if getattr(self, "_output_lock", None) is not None:
            self._output_lock.__exit__(None, None, None)
            self._output_lock = None

    #: Rows of each split used to fit the label coverage and the domain shift at the end.
    TRUST_ROWS = 5000
