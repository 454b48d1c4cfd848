"""Batch planning: the order of an epoch's rows and the batches each block and rank reads.

:func:`epoch_order` is the row order of one epoch (from the generator it is given), :func:`shard`
this rank's part of a global batch, :func:`block_plan` groups consecutive global batches into
blocks of about ``chunk_rows × buffer_chunks`` rows (index arithmetic only), and
:func:`iter_batches` reads each block once through an
:class:`~starlabels.training.inputs.InputPipeline` and yields the batches as tensors;
:func:`training_split` checks the train/dev/test row numbers they are planned over.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import torch

from starlabels.training.errors import TrainingError

__all__ = ["block_plan", "epoch_order", "iter_batches", "shard", "training_split"]


def training_split(split: Mapping[str, np.ndarray], n_rows: int) -> dict[str, np.ndarray]:
    """``{"train", "dev", "test"}`` → sorted unique int64 row numbers of ``split`` (a missing key:
    none), checked to lie in ``0..n_rows - 1`` and to give train and dev rows (:class:`TrainingError`)."""
    out = {k: np.unique(np.asarray(split.get(k, []), dtype=np.int64)) for k in ("train", "dev", "test")}
    for k, rows in out.items():
        if len(rows) and (rows[0] < 0 or rows[-1] >= n_rows):
            raise TrainingError(f"split '{k}' has row numbers outside 0..{n_rows - 1}")
    if len(out["train"]) == 0 or len(out["dev"]) == 0:
        raise TrainingError(f"need training and dev rows, got {len(out['train'])} and {len(out['dev'])}")
    return out


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


def block_plan(
    order: np.ndarray, batch_size: int, rows_per_block: int, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[list[np.ndarray], list[np.ndarray], np.ndarray]]:
    """Blocks of one epoch: ``(global batches, this rank's shards, sorted unique rows to read)``.

    ``order`` (epoch_order) is cut into global batches of ``batch_size`` rows; a block is the run
    of ``max(1, rows_per_block // batch_size)`` consecutive batches. With several ranks, a last
    batch too small to give every rank a row is dropped.
    """
    n_batches = math.ceil(len(order) / batch_size)
    if world_size > 1 and len(order) % batch_size and len(order) % batch_size < world_size:
        n_batches -= 1  # a last batch too small to give every rank a row is dropped
    per_block = max(1, rows_per_block // batch_size)
    for b0 in range(0, n_batches, per_block):
        batches = [order[i * batch_size:(i + 1) * batch_size]
                   for i in range(b0, min(b0 + per_block, n_batches))]
        mine = [shard(b, rank, world_size) for b in batches]
        yield batches, mine, np.unique(np.concatenate(mine))


def iter_batches(
    inputs,
    rows: np.ndarray,
    rng: np.random.Generator,
    *,
    batch_size: int,
    shuffle: str = "chunks",
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """One epoch of this rank's batches over ``rows``: ``(x, y, y_err, n_global)``.

    ``inputs`` is an :class:`~starlabels.training.inputs.InputPipeline`. Data are read a block at
    a time (:func:`block_plan`); only this rank's shard of each batch is read (noise-augmented with
    ``rng`` when configured), preprocessed and scaled. ``x`` is (n, 1, P) float32, ``y``/``y_err``
    (n, L) standardised; ``n_global`` is the global batch size (for the loss weight in distributed
    training). ``pin_memory`` pins each block (asynchronous host→GPU copies).
    """
    order = epoch_order(rows, rng, shuffle=shuffle, chunk_rows=inputs.chunk_rows,
                        buffer_chunks=inputs.buffer_chunks)
    for batches, mine, need in block_plan(order, batch_size, inputs.block_rows, rank, world_size):
        flux, _ = inputs.preprocess_block(*inputs.read(need, rng))
        x_all = inputs.to_input(flux)
        if pin_memory:
            x_all = x_all.pin_memory()  # lets the host→GPU copies run asynchronously
        y_all, e_all = inputs.targets(need)
        for glob, b in zip(batches, mine, strict=True):
            pos = np.searchsorted(need, b)
            pos_t = torch.from_numpy(pos)
            yield (x_all[pos_t], torch.from_numpy(y_all[pos]), torch.from_numpy(e_all[pos]), len(glob))
