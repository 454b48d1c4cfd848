"""The training engine: streaming batches, early stopping, checkpoints and exact resume.

Overview
--------
:class:`TrainingData` holds the labels, label errors and groups of every row in memory — (N, L)
floats, small — and reads spectra lazily, a block of rows at a time, either from in-memory arrays
or from one or more starlabels HDF5 datasets (:class:`starlabels.data.hdf5.SpectraDataset`), so a
file larger than memory can be trained on.

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
- after every epoch a checkpoint (``checkpoint.pt``: network, optimiser, scheduler, torch/numpy/
  python RNG states, epoch, best loss and weights, history, scalers) is written atomically; a
  trainer built with ``resume=True`` continues from it and reproduces the uninterrupted run;
- the network's ``apply_constraints()`` is called after every optimiser step when it exists.

The result is a :class:`~starlabels.models.folder.TrainedModel`, saved to ``folder`` with the
training provenance (data files, sizes, splits, optimiser, epochs, dates, seed) and
``history.csv`` (epoch, train_loss, dev_loss, lr, seconds); the split row indices are written
beside it as ``splits.npz`` (``train``, ``dev``, ``test``: int64 row numbers over the
concatenated files).

Use :func:`train_from_config` for a TOML-described run (``starlabels train``) or build a
:class:`Trainer` directly.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import io
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from starlabels.constants import MISSING
from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.core.instrument import find_grid
from starlabels.errors import InputDataError, InputFileError, StarlabelsError
from starlabels.training.config import OptimiserConfig, TrainConfig, TrainingConfig
from starlabels.utils import get_device, progress, seed_everything

CHECKPOINT_NAME = "checkpoint.pt"
SPLITS_NAME = "splits.npz"
HISTORY_COLUMNS = ("epoch", "train_loss", "dev_loss", "lr", "seconds")

#: spectra read from a source are float32; errors of rejected pixels stay finite
_FLOAT = np.float32
#: rows further apart than this start a new HDF5 read
_RUN_GAP = 32


class TrainingError(StarlabelsError):
    """Training cannot start or continue (bad setup, non-finite loss, checkpoint mismatch)."""


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------

Reader = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


class TrainingData:
    """Rows of spectra for training: labels in memory, spectra read on demand.

    Parameters
    ----------
    reader
        ``reader(rows)`` → ``(flux, error, bitmask)`` for a sorted int64 array of row numbers:
        flux (n, P) float32, error (n, P) float32 or None, bitmask (n, P) int or None.
    labels, label_errors
        (N, L) float32 in physical units, ``MISSING`` (or NaN) where absent.
    label_names, label_units
        length-L lists (allStar names, e.g. ``"TEFF"``; units e.g. ``"K"``).
    n_pixels
        P, spectrum length as stored.
    groups
        (N,) str or None (e.g. ``"payne"``, ``"mdwarf"``, ``"yso"``).
    grid
        Wavelength grid of the stored spectra (a :class:`~starlabels.core.Grid` or a built-in
        grid's name such as ``"apstar"``, ``"boss"``), or None when unknown.
    preprocessing
        ``PreprocessConfig.to_dict()`` the stored spectra already went through, or None (raw).
    files
        Source files (provenance).
    random_access
        True when any row can be read cheaply (in-memory arrays): enables ``shuffle="full"``.
    """

    def __init__(
        self,
        reader: Reader,
        labels: np.ndarray,
        label_names: Sequence[str],
        n_pixels: int,
        *,
        label_errors: np.ndarray | None = None,
        label_units: Sequence[str] | None = None,
        groups: np.ndarray | None = None,
        grid: Any = None,
        preprocessing: dict[str, Any] | None = None,
        files: Sequence[str] = (),
        random_access: bool = False,
    ) -> None:
        labels = np.asarray(labels, dtype=_FLOAT)
        if labels.ndim != 2 or labels.shape[1] != len(label_names):
            raise InputDataError(
                f"labels must be (N, {len(label_names)}) for label_names {list(label_names)}, "
                f"got shape {labels.shape}"
            )
        n = labels.shape[0]
        if label_errors is None:
            label_errors = np.zeros_like(labels)
        label_errors = np.asarray(label_errors, dtype=_FLOAT)
        if label_errors.shape != labels.shape:
            raise InputDataError(f"label_errors shape {label_errors.shape} != labels shape {labels.shape}")
        if groups is not None:
            groups = _as_str_array(groups)
            if groups.shape != (n,):
                raise InputDataError(f"groups must have shape ({n},), got {groups.shape}")
        self._reader = reader
        self.labels = labels
        self.label_errors = label_errors
        self.label_names = [str(s) for s in label_names]
        self.label_units = [str(u) for u in label_units] if label_units is not None else [""] * len(
            self.label_names
        )
        self.groups = groups
        self.n_pixels = int(n_pixels)
        if grid is not None:
            from starlabels.data.hdf5 import as_grid

            grid = as_grid(grid)
        self.grid = grid
        if self.grid is not None and self.grid.n_pixels != self.n_pixels:
            raise InputDataError(
                f"spectra have {self.n_pixels} pixels but grid {self.grid.describe()} has "
                f"{self.grid.n_pixels}"
            )
        self.preprocessing = preprocessing
        self.files = [str(f) for f in files]
        self.random_access = bool(random_access)
        #: number of rows of every :meth:`read` call (lets tests check that reads stay bounded)
        self.read_log: list[int] = []

    @property
    def n_rows(self) -> int:
        """N, the number of rows."""
        return int(self.labels.shape[0])

    def read(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Spectra of ``rows`` (sorted, unique int64): ``(flux, error, bitmask)``, (n, P) each."""
        rows = np.asarray(rows, dtype=np.int64)
        self.read_log.append(len(rows))
        flux, error, bitmask = self._reader(rows)
        flux = np.asarray(flux, dtype=_FLOAT)
        if flux.shape != (len(rows), self.n_pixels):
            raise InputDataError(
                f"reader returned flux of shape {flux.shape}, expected {(len(rows), self.n_pixels)}"
            )
        return flux, (None if error is None else np.asarray(error, dtype=_FLOAT)), bitmask

    @classmethod
    def from_arrays(
        cls,
        flux: np.ndarray,
        labels: np.ndarray,
        label_names: Sequence[str],
        *,
        error: np.ndarray | None = None,
        bitmask: np.ndarray | None = None,
        label_errors: np.ndarray | None = None,
        label_units: Sequence[str] | None = None,
        groups: Sequence[str] | np.ndarray | None = None,
        grid: Any = None,
        preprocessing: dict[str, Any] | None = None,
    ) -> TrainingData:
        """In-memory data: flux/error/bitmask (N, P), labels/label_errors (N, L) physical units."""
        flux = np.asarray(flux, dtype=_FLOAT)
        if flux.ndim != 2:
            raise InputDataError(f"flux must be 2-D (N, n_pixels), got shape {flux.shape}")
        for name, arr in (("error", error), ("bitmask", bitmask)):
            if arr is not None and np.shape(arr) != flux.shape:
                raise InputDataError(f"{name} shape {np.shape(arr)} != flux shape {flux.shape}")
        err = None if error is None else np.asarray(error, dtype=_FLOAT)
        bm = None if bitmask is None else np.asarray(bitmask)

        def reader(rows: np.ndarray):
            return flux[rows], (None if err is None else err[rows]), (None if bm is None else bm[rows])

        labels = np.asarray(labels, dtype=_FLOAT)
        if labels.shape[0] != flux.shape[0]:
            raise InputDataError(f"{flux.shape[0]} spectra but {labels.shape[0]} label rows")
        return cls(
            reader, labels, label_names, flux.shape[1], label_errors=label_errors,
            label_units=label_units, groups=None if groups is None else np.asarray(groups),
            grid=grid, preprocessing=preprocessing, random_access=True,
        )

    @classmethod
    def from_hdf5(
        cls,
        paths: str | Path | Sequence[str | Path],
        label_names: Sequence[str],
        *,
        group_column: str | None = None,
    ) -> TrainingData:
        """Lazy data from one or more starlabels HDF5 datasets (same grid and preprocessing).

        Only the label columns named in ``label_names`` (and their errors) and the group column
        are read into memory; spectra are read by row when training asks for them.
        """
        from starlabels.data.hdf5 import SpectraDataset

        if isinstance(paths, str | Path):
            paths = [paths]
        paths = [Path(p) for p in paths]
        if not paths:
            raise InputDataError("no HDF5 dataset given")
        datasets = [SpectraDataset(p) for p in paths]
        names = [str(n).upper() for n in label_names]
        first = datasets[0]
        labels, errors, groups = [], [], []
        units: list[str] = []
        for p, ds in zip(paths, datasets, strict=True):
            if not ds.grid.same_as(first.grid):
                raise InputFileError(
                    p, f"grid {ds.grid.describe()} differs from {paths[0]}'s {first.grid.describe()}"
                )
            if ds.preprocessing != first.preprocessing:
                raise InputFileError(p, f"its preprocessing differs from {paths[0]}'s")
            have = [str(n).upper() for n in ds.label_names]
            missing = [n for n in names if n not in have]
            if missing:
                raise InputFileError(p, f"has no label(s) {missing}; it has {list(ds.label_names)}")
            idx = [have.index(n) for n in names]
            lab, err = _read_label_columns(ds, idx)
            labels.append(lab)
            errors.append(err)
            units = units or [ds.label_units[i] for i in idx]
            if group_column is not None:
                try:
                    groups.append(_as_str_array(ds.meta(group_column)))
                except KeyError:
                    raise InputFileError(p, f"has no meta/{group_column} column") from None
        offsets = np.cumsum([0] + [len(ds) for ds in datasets])

        def reader(rows: np.ndarray):
            fl, er, bm = [], [], []
            for k, ds in enumerate(datasets):
                a, b = np.searchsorted(rows, [offsets[k], offsets[k + 1]])
                if a == b:
                    continue
                local = rows[a:b] - offsets[k]
                # one read per run of nearby rows: h5py reads a contiguous slab much faster than
                # a scattered selection spanning several chunks (~5x on a 2-chunk block)
                for run in np.split(local, np.flatnonzero(np.diff(local) > _RUN_GAP) + 1):
                    batch = ds.read(run)
                    fl.append(batch.flux)
                    er.append(batch.error)
                    bm.append(batch.bitmask)
            if not fl:
                p = first.n_pixels
                return np.zeros((0, p), _FLOAT), np.zeros((0, p), _FLOAT), np.zeros((0, p), np.int32)
            if len(fl) == 1:
                return fl[0], er[0], bm[0]
            return np.concatenate(fl), np.concatenate(er), np.concatenate(bm)

        return cls(
            reader, np.concatenate(labels), names, first.n_pixels,
            label_errors=np.concatenate(errors), label_units=units,
            groups=np.concatenate(groups) if group_column is not None else None,
            grid=first.grid, preprocessing=first.preprocessing,
            files=[str(Path(p).resolve()) for p in paths], random_access=False,
        )


def _read_label_columns(ds: Any, idx: list[int], step: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """(N, len(idx)) labels and label errors of a SpectraDataset, without touching the spectra.

    Reads the ``labels``/``label_errors`` datasets (DESIGN.md HDF5 format) in row blocks.
    """
    import h5py

    n = len(ds)
    out_l = np.full((n, len(idx)), MISSING, _FLOAT)
    out_e = np.full((n, len(idx)), MISSING, _FLOAT)
    if not idx:
        return out_l, out_e
    with h5py.File(ds.path, "r") as f:
        if "labels" not in f:
            return out_l, out_e
        for a in range(0, n, step):
            rows = ds.rows[a:a + step]
            lo, hi = int(rows.min()), int(rows.max()) + 1
            out_l[a:a + len(rows)] = f["labels"][lo:hi][rows - lo][:, idx]
            out_e[a:a + len(rows)] = f["label_errors"][lo:hi][rows - lo][:, idx]
    return out_l, out_e


def _as_str_array(values: Any) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.kind == "S":
        a = np.char.decode(a, "utf-8")
    elif a.dtype.kind == "O":
        a = np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in a.tolist()])
    return a.astype(str)


# --------------------------------------------------------------------------------------------
# Batch plans (index arithmetic only; no data is touched)
# --------------------------------------------------------------------------------------------


def epoch_order(
    rows: np.ndarray,
    rng: np.random.Generator,
    *,
    shuffle: str = "chunks",
    chunk_rows: int = 1024,
    buffer_chunks: int = 4,
) -> np.ndarray:
    """The order in which ``rows`` (sorted row numbers) are visited in one epoch.

    ``shuffle="full"``: a uniform permutation. ``shuffle="chunks"``: rows are grouped by file
    chunk (``row // chunk_rows``), the chunk order is permuted, and rows are permuted within each
    window of ``buffer_chunks`` consecutive (shuffled) chunks — so any window of the order touches
    at most ``buffer_chunks`` (+1 at window edges) file chunks.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if shuffle == "full":
        return rows[rng.permutation(len(rows))]
    if shuffle != "chunks":
        raise ValueError(f"shuffle must be 'full' or 'chunks', got {shuffle!r}")
    if len(rows) == 0:
        return rows
    chunk_id = rows // int(chunk_rows)
    starts = np.flatnonzero(np.r_[True, chunk_id[1:] != chunk_id[:-1]])
    bounds = np.r_[starts, len(rows)]
    n_chunks = len(starts)
    chunk_perm = rng.permutation(n_chunks)
    lengths = np.diff(bounds)[chunk_perm]
    # rows of the chunks in shuffled chunk order (vectorised gather of variable-length ranges)
    first = np.repeat(bounds[:-1][chunk_perm], lengths)
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    ordered = rows[first + within]
    # permute within windows of buffer_chunks chunks: sort by (window, random key)
    window = np.repeat(np.arange(n_chunks) // int(buffer_chunks), lengths)
    key = rng.random(len(ordered))
    return ordered[np.lexsort((key, window))]


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous part of a global batch (``np.array_split`` order)."""
    if world_size == 1:
        return batch
    return np.array_split(batch, world_size)[rank]


# --------------------------------------------------------------------------------------------
# Losses, optimisers
# --------------------------------------------------------------------------------------------


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


def make_scheduler(optimiser: torch.optim.Optimizer, cfg: OptimiserConfig):
    """ReduceLROnPlateau on the dev loss, or None."""
    if cfg.scheduler == "none":
        return None
    return torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimiser, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr
    )


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
    out = module(x)
    if not isinstance(out, tuple) or len(out) != 2:
        raise TrainingError("the network must return a tuple (mean, log_var)")
    mean, log_var = out
    per = per_sample_loss(loss, mean, log_var, y, y_err)
    total = per.sum() * (1.0 / per.shape[0] if weight is None else weight)
    optimiser.zero_grad(set_to_none=True)
    total.backward()
    optimiser.step()
    if constrain is not None:
        with torch.no_grad():
            constrain()
    return per.detach()


# --------------------------------------------------------------------------------------------
# RNG state helpers
# --------------------------------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------


@dataclass
class StageResult:
    """Outcome of one training stage (the main run, or one adaptation round)."""

    key: str
    epochs: int
    best_epoch: int
    best_loss: float
    stopped_early: bool


def _check_finished_stage(key: str, done: Mapping[str, Any], epochs: int) -> None:
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


class Trainer:
    """Train ``network`` on ``data`` with early stopping, checkpoints and exact resume.

    Parameters
    ----------
    network
        A module mapping (N, 1, P_in) float32 to ``(mean, log_var)`` in standardised label space
        (``log_var`` may be None), as every ``starlabels.models`` network does.
    data
        :class:`TrainingData`.
    split
        ``{"train": rows, "dev": rows, "test": rows}`` (int64 row numbers), e.g. from
        :func:`make_split`.
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
        Streaming (see :func:`epoch_order`); ``shuffle="auto"`` is "full" for in-memory data and
        "chunks" otherwise.
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
        self.data = data
        self.split = {
            k: np.unique(np.asarray(split.get(k, []), dtype=np.int64)) for k in ("train", "dev", "test")
        }
        for k, rows in self.split.items():
            if len(rows) and (rows[0] < 0 or rows[-1] >= data.n_rows):
                raise TrainingError(f"split '{k}' has row numbers outside 0..{data.n_rows - 1}")
        if len(self.split["train"]) == 0 or len(self.split["dev"]) == 0:
            raise TrainingError(
                f"need training and dev rows, got {len(self.split['train'])} and {len(self.split['dev'])}"
            )
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

        # ---- preprocessing: stored config wins; raw data gets ours applied per block
        self.preprocess, self._apply_preprocess = self._resolve_preprocess(preprocess)
        if self._apply_preprocess is not None and data.random_access:
            self.data = self._preprocess_in_memory(data)
            self._apply_preprocess = None

        self.network = network.to(self.device)
        self.model_net: nn.Module = self.network
        if self.world_size > 1:
            from starlabels.training.distributed import wrap_ddp

            self.model_net = wrap_ddp(self.network, distributed)
        self.optimiser = make_optimiser(self.network.parameters(), self.optimiser_cfg, device=self.device)
        self.scheduler = make_scheduler(self.optimiser, self.optimiser_cfg)

        self.history: list[dict[str, Any]] = []
        self.state: dict[str, Any] = {
            "stage": None, "epoch": 0, "best_loss": math.inf, "best_epoch": 0, "bad_epochs": 0,
            "global_epoch": 0, "done": [], "stages": {}, "started": _now(), "adapt": None,
        }
        self.best_state: dict[str, torch.Tensor] | None = None
        self.extra_states: dict[str, dict[str, torch.Tensor]] = {}

        # one training per output folder at a time (the lock is dropped by the kernel if we die)
        self._output_lock = None
        if self.folder is not None and self.is_main:
            from starlabels.output_lock import OutputLock

            self._output_lock = OutputLock(self.folder, "training", same_process_ok=True).__enter__()
        ckpt_path = self.checkpoint_path
        if resume:
            if ckpt_path is None or not ckpt_path.is_file():
                raise TrainingError(f"cannot resume: no checkpoint at {ckpt_path}")
            self._load_checkpoint(ckpt_path)
        else:
            if self.folder is not None and self.is_main and not overwrite:
                clash = [p for p in (CHECKPOINT_NAME, "config.json") if (self.folder / p).exists()]
                if clash:
                    raise TrainingError(
                        f"{self.folder} already holds {clash}; resume (--resume) or set overwrite"
                    )
            self.label_scaler = self._fit_label_scaler()
            self.spectrum_scaler = self._fit_spectrum_scaler(spectrum_scaling)
            # dropout etc. draw from the global generators: seed them (per rank) for a fresh run;
            # a resumed run restores them from the checkpoint instead
            seed_everything(self.seed + 7919 * self.rank)

    # ---------------------------------------------------------------- setup helpers

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.folder is None else self.folder / CHECKPOINT_NAME

    def _resolve_preprocess(self, preprocess: Any):
        """(config stored in the model, config applied to each block or None)."""
        from starlabels.preprocess.pipeline import PreprocessConfig

        if isinstance(preprocess, Mapping):
            preprocess = PreprocessConfig.from_dict(dict(preprocess))
        stored = self.data.preprocessing
        if stored is not None:
            stored_cfg = PreprocessConfig.from_dict(dict(stored))
            if preprocess is not None and preprocess.to_dict() != stored_cfg.to_dict():
                raise TrainingError(
                    "the training data were already preprocessed with "
                    f"{stored_cfg.to_dict()}, which differs from the requested {preprocess.to_dict()}"
                )
            return stored_cfg, None
        grid = self.data.grid
        if preprocess is not None and grid is not None and not preprocess.accepts(grid):
            raise TrainingError(
                f"the training spectra are on grid {grid.describe()}, but the preprocessing takes "
                f"{preprocess.grid.describe()}; ingest them onto it (resample) or set [preprocess] "
                "instrument/input_grid to match"
            )
        return preprocess, preprocess

    def _preprocess_block(self, flux: np.ndarray, error: np.ndarray | None, bitmask: np.ndarray | None):
        """Raw block → network-input block (n, P_in) float32, via the PreprocessConfig."""
        if self._apply_preprocess is None:
            return flux, error
        if error is None:
            raise TrainingError("preprocessing needs flux errors; the training data have none")
        f, e = self._apply_preprocess.apply(flux, error, bitmask, grid=self.data.grid)
        return np.asarray(f, dtype=_FLOAT), np.asarray(e, dtype=_FLOAT)

    def _preprocess_in_memory(self, data: TrainingData) -> TrainingData:
        """Apply the PreprocessConfig once to in-memory data, block by block."""
        rows = np.arange(data.n_rows)
        step = self.chunk_rows * self.buffer_chunks
        parts_f, parts_e = [], []
        for a in progress(range(0, data.n_rows, step), desc="preprocess", unit="block"):
            f, e = self._preprocess_block(*data.read(rows[a:a + step]))
            parts_f.append(f)
            parts_e.append(e)
        flux, err = np.concatenate(parts_f), np.concatenate(parts_e)
        out = TrainingData.from_arrays(
            flux, data.labels, data.label_names, error=err, label_errors=data.label_errors,
            label_units=data.label_units, groups=data.groups,
            grid=getattr(self.preprocess, "output_grid", None),
            preprocessing=self.preprocess.to_dict(),
        )
        out.files = data.files
        return out

    def _fit_label_scaler(self):
        from starlabels.data.normalization import LabelScaler

        return LabelScaler(names=self.data.label_names).fit(self.data.labels[self.split["train"]])

    def _fit_spectrum_scaler(self, mode: str):
        """SpectrumScaler fitted on the training rows, streaming block by block (float64 sums)."""
        from starlabels.data.normalization import SpectrumScaler

        scaler = SpectrumScaler(mode=mode)
        if mode == "none":
            return scaler
        for flux, error in self._iter_blocks(self.split["train"], desc="spectrum mean"):
            scaler.partial_fit(flux, error)
        return scaler.finalize()

    def _iter_blocks(
        self, rows: np.ndarray, desc: str = ""
    ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """Preprocessed blocks of ``rows`` in file order (for fitting and evaluation)."""
        step = self.chunk_rows * self.buffer_chunks
        for a in progress(range(0, len(rows), step), desc=desc, unit="block"):
            yield self._preprocess_block(*self.data.read(rows[a:a + step]))

    # ---------------------------------------------------------------- batches

    def _targets(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Standardised labels and label errors (n, L) for ``rows``; missing stays MISSING."""
        y = self.data.labels[rows]
        e = self.data.label_errors[rows]
        ys = np.asarray(self.label_scaler.transform(y), dtype=_FLOAT)
        es = np.asarray(self.label_scaler.transform_errors(e), dtype=_FLOAT)
        es = np.where((es == MISSING) | ~(es >= 0), 0.0, es).astype(_FLOAT)  # unknown error: 0
        return ys, es

    def _to_input(self, flux: np.ndarray) -> torch.Tensor:
        """(n, P) float32 numpy → (n, 1, P) tensor after the spectrum scaler (CPU)."""
        x = np.asarray(self.spectrum_scaler.transform(flux), dtype=_FLOAT)
        return torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1)

    def _read(self, rows: np.ndarray, rng: np.random.Generator | None):
        """``data.read(rows)``, noise-augmented with ``rng`` when augmentation is configured.

        Augmentation acts on the spectra as stored (raw, or already preprocessed when the data
        say so or were preprocessed in memory), before the per-block preprocessing.
        """
        flux, error, bitmask = self.data.read(rows)
        if self.augment is None or rng is None:
            return flux, error, bitmask
        if error is None:
            raise TrainingError("noise augmentation needs flux errors; the training data have none")
        flux, error = self.augment(flux, error, rng, bitmask, bitmask_def=self._bitmask_definition())
        return flux, error, bitmask

    def _bitmask_definition(self) -> PixelBitmask | None:
        """The bitmask definition of the stored spectra: the preprocessing's instrument's, else the
        instrument owning the data's grid, else None (APOGEE_PIXMASK)."""
        if self.preprocess is not None:
            return self.preprocess.bitmask
        grid = getattr(self.data, "grid", None)
        known = find_grid(grid) if isinstance(grid, Grid) else None
        return None if known is None else known[0].bitmask()

    def iter_batches(self, rows: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        """One epoch of this rank's batches over ``rows``: ``(x, y, y_err, n_global)``.

        Data are read a block at a time: a block is the run of consecutive global batches
        covering about ``chunk_rows × buffer_chunks`` rows; only this rank's shard of each batch
        is read, preprocessed and scaled. ``n_global`` is the global batch size (for the loss
        weight in distributed training).
        """
        order = epoch_order(rows, rng, shuffle=self.shuffle, chunk_rows=self.chunk_rows,
                            buffer_chunks=self.buffer_chunks)
        bs = self.batch_size
        n_batches = math.ceil(len(order) / bs)
        if self.world_size > 1 and len(order) % bs and len(order) % bs < self.world_size:
            n_batches -= 1  # a last batch too small to give every rank a row is dropped
        per_block = max(1, (self.chunk_rows * self.buffer_chunks) // bs)
        for b0 in range(0, n_batches, per_block):
            batches = [order[i * bs:(i + 1) * bs] for i in range(b0, min(b0 + per_block, n_batches))]
            mine = [shard(b, self.rank, self.world_size) for b in batches]
            need = np.unique(np.concatenate(mine))
            flux, _ = self._preprocess_block(*self._read(need, rng))
            x_all = self._to_input(flux)
            if self.device.type == "cuda":
                x_all = x_all.pin_memory()  # lets the host→GPU copies run asynchronously
            y_all, e_all = self._targets(need)
            for glob, b in zip(batches, mine, strict=True):
                pos = np.searchsorted(need, b)
                pos_t = torch.from_numpy(pos)
                yield (x_all[pos_t], torch.from_numpy(y_all[pos]), torch.from_numpy(e_all[pos]), len(glob))

    # ---------------------------------------------------------------- steps

    def _forward(self, module: nn.Module, x: torch.Tensor):
        out = module(x)
        if not isinstance(out, tuple) or len(out) != 2:
            raise TrainingError("the network must return a tuple (mean, log_var)")
        return out

    def train_epoch(self, rows: np.ndarray, rng: np.random.Generator, desc: str = "") -> float:
        """One pass over ``rows``; returns the mean per-sample training loss (over all ranks)."""
        self.model_net.train()
        constrain = getattr(self.network, "apply_constraints", None)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        n_batches = math.ceil(len(rows) / self.batch_size)
        for x, y, e, n_global in progress(self.iter_batches(rows, rng), desc=desc, total=n_batches,
                                          unit="batch"):
            per = training_step(
                self.model_net, self.optimiser, x.to(self.device, non_blocking=True),
                y.to(self.device, non_blocking=True), e.to(self.device, non_blocking=True),
                loss=self.training_cfg.loss, weight=self.world_size / n_global, constrain=constrain,
            )
            total += per.sum().double()
            count += per.shape[0]
        total_count = self._all_sum(torch.stack([total, torch.tensor(float(count), dtype=torch.float64,
                                                                          device=self.device)]))
        mean_loss = float(total_count[0] / total_count[1])
        if not math.isfinite(mean_loss):
            raise TrainingError(
                f"non-finite training loss ({mean_loss}); lower the learning rate or check the data"
            )
        return mean_loss

    @torch.no_grad()
    def evaluate(self, rows: np.ndarray, by_group: bool = False) -> float | dict[str, float]:
        """Mean per-sample loss over ``rows``, or ``{group: loss}`` with ``by_group``.

        Eval mode, or with dropout on averaged over ``dev_mc_samples`` passes (fixed masks, drawn
        without touching the training's random stream) when that is > 0 and the network has
        dropout. With noise augmentation whose ``dev`` is set, the rows are scored on one fixed
        degraded copy (the same noise at every call).
        """
        from starlabels.inference.uncertainty import has_active_dropout
        from starlabels.models.layers import mc_dropout

        self.network.eval()
        passes = int(self.training_cfg.dev_mc_samples)
        mc = passes > 0 and has_active_dropout(self.network)
        passes = passes if mc else 1
        aug_rng = np.random.default_rng([self.seed, 104729]) if self.augment and self.augment.dev else None
        rows = np.asarray(rows, dtype=np.int64)
        mine = rows[self.rank::self.world_size]
        losses_out = np.zeros(len(mine), dtype=np.float64)
        k = 0
        forked = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked, enabled=mc), \
                (mc_dropout(self.network) if mc else contextlib.nullcontext()):
            if mc:
                torch.manual_seed(self.seed + 7)
            for a in range(0, len(mine), self.chunk_rows * self.buffer_chunks):
                blk = mine[a:a + self.chunk_rows * self.buffer_chunks]
                flux, _ = self._preprocess_block(*self._read(blk, aug_rng))
                x_all = self._to_input(flux)
                y_all, e_all = self._targets(blk)
                for i in range(0, len(blk), self.eval_batch_size):
                    x = x_all[i:i + self.eval_batch_size].to(self.device)
                    y = torch.from_numpy(y_all[i:i + self.eval_batch_size]).to(self.device)
                    e = torch.from_numpy(e_all[i:i + self.eval_batch_size]).to(self.device)
                    loss = self.training_cfg.loss
                    per = sum(
                        per_sample_loss(loss, *self._forward(self.network, x), y, e).double()
                        for _ in range(passes)
                    ) / passes
                    losses_out[k:k + per.shape[0]] = per.cpu().numpy()
                    k += per.shape[0]
        if not by_group:
            s = self._all_sum(torch.tensor([losses_out.sum(), float(len(mine))], dtype=torch.float64,
                                            device=self.device))
            return float(s[0] / max(float(s[1]), 1.0))
        if self.data.groups is None:
            raise TrainingError("per-group losses need groups in the training data")
        g_all = self.data.groups
        names = sorted(set(g_all[rows].tolist()))
        g = g_all[mine]
        sums = torch.tensor([[losses_out[g == n].sum(), float((g == n).sum())] for n in names],
                            dtype=torch.float64, device=self.device).reshape(len(names), 2)
        sums = self._all_sum(sums)
        return {n: float(sums[i, 0] / max(float(sums[i, 1]), 1.0)) for i, n in enumerate(names)}

    def _all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    # ---------------------------------------------------------------- stages

    def reset_optimiser(self) -> None:
        """Fresh optimiser and scheduler at the configured learning rate (adaptation rounds)."""
        self.optimiser = make_optimiser(self.network.parameters(), self.optimiser_cfg, device=self.device)
        self.scheduler = make_scheduler(self.optimiser, self.optimiser_cfg)

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
            _check_finished_stage(key, st["stages"][key], epochs)
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
                self.best_state = _cpu_state(self.network)
        train_rows = np.asarray(train_rows, dtype=np.int64)
        min_delta = float(self.training_cfg.min_delta)
        while st["epoch"] < epochs and st["bad_epochs"] < patience:
            epoch = st["epoch"] + 1
            rng = np.random.default_rng([self.seed, stage_index, epoch])
            t0 = time.perf_counter()
            train_loss = self.train_epoch(train_rows, rng, desc=f"{key} epoch {epoch}")
            dev = float(dev_loss())
            if self.scheduler is not None:
                self.scheduler.step(dev)
            if dev < st["best_loss"] - min_delta:
                st.update(best_loss=dev, best_epoch=epoch, bad_epochs=0)
                self.best_state = _cpu_state(self.network)
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

    def _scaler_state(self) -> dict[str, Any]:
        return {"labels": self.label_scaler.to_dict(), "spectra": self.spectrum_scaler.to_dict(),
                "spectra_tensors": self.spectrum_scaler.state_dict()}

    def _restore_scalers(self, state: Mapping[str, Any]) -> None:
        from starlabels.data.normalization import LabelScaler, SpectrumScaler

        self.label_scaler = LabelScaler.from_dict(state["labels"])
        self.spectrum_scaler = SpectrumScaler.from_state(state["spectra"], state["spectra_tensors"])

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` atomically (rank 0 only; nothing without a folder)."""
        path = self.checkpoint_path
        if path is None or not self.is_main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt = {
            "format": "starlabels-checkpoint", "version": 1,
            "network": self.network.state_dict(),
            "optimiser": self.optimiser.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "rng": _rng_state(),
            "state": copy.deepcopy(self.state),
            "best_state": self.best_state,
            "extra_states": self.extra_states,
            "history": self.history,
            "scalers": self._scaler_state(),
            "split": self.split,
            "seed": self.seed,
        }
        buf = io.BytesIO()
        torch.save(ckpt, buf)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(buf.getbuffer())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    def _load_checkpoint(self, path: Path) -> None:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise InputFileError(path, f"not a readable checkpoint ({exc})") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != "starlabels-checkpoint":
            raise InputFileError(path, "not a starlabels training checkpoint")
        for k in ("train", "dev"):
            if not np.array_equal(ckpt["split"][k], self.split[k]):
                raise TrainingError(f"{path}: the checkpoint's {k} split differs from this run's")
        if int(ckpt["seed"]) != self.seed:
            raise TrainingError(f"{path}: checkpoint seed {ckpt['seed']} != configured seed {self.seed}")
        self.network.load_state_dict(ckpt["network"])
        self.optimiser.load_state_dict(ckpt["optimiser"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        self.state = ckpt["state"]
        self.best_state = ckpt["best_state"]
        self.extra_states = ckpt.get("extra_states") or {}
        self.history = list(ckpt["history"])
        self._restore_scalers(ckpt["scalers"])
        _set_rng_state(ckpt["rng"])

    # ---------------------------------------------------------------- result

    def provenance(self) -> dict[str, Any]:
        """Training provenance stored in the model's ``config.json``."""
        opt = dict(self.optimiser_cfg.__dict__)
        return {
            "data_files": list(self.data.files),
            "sizes": {k: len(v) for k, v in self.split.items()},
            "splits": {**self.split_info, "file": SPLITS_NAME},
            "optimiser": opt,
            "loss": self.training_cfg.loss,
            "batch_size": self.batch_size,
            "patience": int(self.training_cfg.patience),
            "epochs": {"max": int(self.training_cfg.epochs), "run": int(self.state["global_epoch"]),
                       "stages": self.state["stages"]},
            "dates": {"started": self.state["started"], "finished": _now()},
            "seed": self.seed,
            "label_range": self._label_range(),
            "device": str(self.device),
            "world_size": self.world_size,
            "streaming": {"shuffle": self.shuffle, "chunk_rows": self.chunk_rows,
                          "buffer_chunks": self.buffer_chunks},
            **self.extra_provenance,
        }

    def _label_range(self) -> dict[str, Any]:
        """Per-label min/max of the training rows' present labels (MISSING/NaN ignored); the
        inference flags mark predictions outside it (LABEL_OUT_OF_RANGE)."""
        from starlabels.constants import MISSING

        lab = np.asarray(self.data.labels[self.split["train"]], dtype=np.float64)
        lab = np.where((lab == MISSING) | ~np.isfinite(lab), np.nan, lab)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-missing label → NaN → null
            lo, hi = np.nanmin(lab, axis=0), np.nanmax(lab, axis=0)
        as_list = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # noqa: E731
        return {"min": as_list(lo), "max": as_list(hi), "source": "training set"}

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
        fitted = self._fit_trust(model) if self.is_main else ()
        if self.folder is not None and self.is_main:
            self._save_model(model)
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

    def _fit_trust(self, model: Any) -> tuple[Any, ...]:
        """Fit the label coverage and the domain-shift estimator of the trained ``model`` on (up
        to :attr:`TRUST_ROWS`) train and dev rows (:func:`starlabels.inference.domain_shift.fit_trust`),
        so every trained model knows when a spectrum is out of its depth. A failure (e.g. too few
        dev rows) warns and leaves the model without them; it never loses the trained model."""
        from starlabels.inference.domain_shift import fit_trust

        rng = np.random.default_rng(self.seed)

        def pick(rows: np.ndarray):
            if len(rows) > self.TRUST_ROWS:
                rows = np.sort(rng.choice(rows, self.TRUST_ROWS, replace=False))
            f, e = self._preprocess_block(*self.data.read(rows))
            return np.asarray(f, _FLOAT), None if e is None else np.asarray(e, _FLOAT), self.data.labels[rows]

        try:
            tf, te, tl = pick(self.split["train"])
            df, de, dl = pick(self.split["dev"])
            return fit_trust(model, tf, te, tl, df, de, dl, seed=self.seed)
        except (StarlabelsError, ValueError) as exc:
            warnings.warn(f"the model was trained, but its coverage/domain-shift reference could not be "
                          f"fitted ({exc}); predictions will carry no DOMAIN_SHIFT flag", stacklevel=2)
            return ()

    def _save_model(self, model: Any) -> None:
        """Save ``model`` into the folder, keeping our checkpoint and writing ``splits.npz``.

        ``TrainedModel.save`` refuses a non-empty folder that is not yet a model folder, so on the
        first save the checkpoint is moved beside the folder and back.
        """
        folder = self.folder
        assert folder is not None
        parked: list[tuple[Path, Path]] = []
        if folder.is_dir() and not (folder / "config.json").exists():
            for name in (CHECKPOINT_NAME, SPLITS_NAME):
                if (folder / name).exists():
                    aside = folder.parent / f".{folder.name}.{name}"
                    os.replace(folder / name, aside)
                    parked.append((aside, folder / name))
            if not any(folder.iterdir()):
                folder.rmdir()
        try:
            model.save(folder)
        finally:
            for aside, back in parked:
                back.parent.mkdir(parents=True, exist_ok=True)
                os.replace(aside, back)
        np.savez(folder / SPLITS_NAME, **self.split)


# --------------------------------------------------------------------------------------------
# From a TrainConfig
# --------------------------------------------------------------------------------------------


def make_split(data: TrainingData, cfg: Any, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``({"train", "dev", "test"} rows, description)`` from a :class:`SplitConfig`."""
    from starlabels.data.splits import group_split, random_split

    seed = int(cfg.seed if cfg.seed is not None else seed)
    if cfg.method == "random":
        parts = random_split(data.n_rows, cfg.fractions, seed=seed)
        info = {"method": "random", "fractions": list(cfg.fractions), "seed": seed}
    else:
        if data.groups is None:
            raise TrainingError("a group split needs a group column in the data")
        parts = group_split(data.groups, cfg.groups, default=cfg.fractions, seed=seed)
        info = {"method": "group", "groups": {k: list(v) for k, v in cfg.groups.items()},
                "default": list(cfg.fractions), "seed": seed}
    split = dict(zip(("train", "dev", "test"), parts, strict=True))
    if data.groups is not None:
        info["group_sizes"] = {
            part: {str(g): int(c) for g, c in zip(*np.unique(data.groups[rows], return_counts=True),
                                                   strict=True)}
            for part, rows in split.items()
        }
    return split, info


def network_kwargs(architecture: str, kwargs: dict[str, Any], data: TrainingData, preprocess: Any) -> dict:
    """``kwargs`` for :func:`~starlabels.models.build_network`, with a censored network's element
    ``windows`` (a file, or the name of the instrument's windows such as ``"dr14"``) moved onto the
    grid of the network input (the preprocessing's output grid, or the data's)."""
    if str(architecture).lower().replace("-", "_") != "bcnn_censored" or "windows" not in kwargs:
        return kwargs
    from starlabels.core import find_grid
    from starlabels.models.censored import windows_on_grid

    stored = data.preprocessing
    if stored is not None:
        from starlabels.preprocess.pipeline import PreprocessConfig

        preprocess = PreprocessConfig.from_dict(dict(stored))
    grid = preprocess.output_grid if preprocess is not None else data.grid
    if grid is None:
        return kwargs
    if preprocess is not None:
        instrument = preprocess.instrument
    else:
        hit = find_grid(grid)
        instrument = hit[0].name if hit is not None else "apogee"
    w, names = windows_on_grid(kwargs["windows"], kwargs.get("element_names"), grid, instrument)
    from starlabels.models.censored import check_element_labels

    check_element_labels(names, data.label_names, int(kwargs.get("n_main_labels", 3)))
    return {**kwargs, "windows": w, "element_names": names}


def trainer_from_config(
    cfg: TrainConfig, *, resume: bool = False, distributed: Any = None,
    callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
) -> Trainer:
    """Open the data, split it, build the network and return a ready :class:`Trainer`."""
    from starlabels.models import build_network
    from starlabels.preprocess.pipeline import PreprocessConfig

    seed = int(cfg.training.seed)
    data = TrainingData.from_hdf5(cfg.data.files, cfg.data.label_names, group_column=cfg.data.group_column)
    split, info = make_split(data, cfg.data.split, seed)
    preprocess = None if cfg.preprocess is None else PreprocessConfig.from_dict(cfg.preprocess)
    if data.preprocessing is not None:
        n_in = data.n_pixels
    elif preprocess is not None:
        n_in = preprocess.n_pixels
    else:
        n_in = data.n_pixels
    kwargs = network_kwargs(cfg.model.architecture, {"n_labels": len(cfg.data.label_names), "n_pixels": n_in,
                                                     **cfg.model.kwargs}, data, preprocess)
    seed_everything(seed)
    network = build_network(cfg.model.architecture, **kwargs)
    if cfg.model.init == "kaiming":
        from starlabels.models.init import kaiming_init

        kaiming_init(network)
    return Trainer(
        network, data, split, optimiser=cfg.optimiser, training=cfg.training, preprocess=preprocess,
        spectrum_scaling=cfg.model.spectrum_scaling,
        folder=cfg.output.folder, resume=resume, overwrite=cfg.output.overwrite,
        chunk_rows=cfg.data.chunk_rows, buffer_chunks=cfg.data.buffer_chunks, shuffle=cfg.data.shuffle,
        split_info=info, provenance={"config": json.loads(json.dumps(cfg.to_dict(), default=str))},
        distributed=distributed, callbacks=callbacks,
    )


def train_from_config(
    cfg: TrainConfig, *, resume: bool = False, distributed: Any = None,
    callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
) -> Any:
    """Run a whole TOML-described training (+ stratified adaptation when configured);
    ``callbacks(trainer, history_row)`` run after every epoch (e.g. the CLI's epoch line)."""
    trainer = trainer_from_config(cfg, resume=resume, distributed=distributed, callbacks=callbacks)
    if cfg.stratified is not None:  # a bad [stratified] section fails now, not after training
        from starlabels.training.stratified import check_groups

        check_groups(trainer, cfg.stratified.focus_groups, cfg.stratified.large_group)
    trainer.run_stage("main", trainer.split["train"])
    if cfg.stratified is not None:
        from starlabels.training.stratified import adapt

        s = cfg.stratified
        adapt(trainer, s.focus_groups, s.large_group, fraction=s.fraction, max_rounds=s.max_rounds,
              round_patience=s.round_patience, epochs=s.epochs, criterion=s.criterion,
              large_tolerance=s.large_tolerance)
    return trainer.finish()
