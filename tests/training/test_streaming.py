"""Epoch orders and streaming: chunked reads keep the rows held in memory bounded."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from starlabels.training.batches import epoch_order, shard
from starlabels.training.config import OptimiserConfig, TrainingConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.trainer import Trainer


@pytest.mark.parametrize("chunk_rows, buffer_chunks", [(10, 1), (16, 3), (7, 4)])
def test_chunk_order_is_a_permutation_made_of_chunk_windows(chunk_rows, buffer_chunks):
    rows = np.sort(np.random.default_rng(1).choice(1000, size=700, replace=False))
    order = epoch_order(rows, np.random.default_rng(5), shuffle="chunks", chunk_rows=chunk_rows,
                        buffer_chunks=buffer_chunks)
    np.testing.assert_array_equal(np.sort(order), rows)
    # chunks in order of first appearance; the order runs through windows of buffer_chunks of them
    chunk = order // chunk_rows
    _, first = np.unique(chunk, return_index=True)
    visit = chunk[np.sort(first)]
    rank = np.empty(visit.max() + 1, int)
    rank[visit] = np.arange(len(visit))
    window = rank[chunk] // buffer_chunks
    assert np.all(np.diff(window) >= 0)
    # chunks are visited in shuffled order, and rows are shuffled within windows
    assert not np.all(np.diff(visit) > 0)
    assert not np.all(np.diff(order) > 0)
    other = epoch_order(rows, np.random.default_rng(6), shuffle="chunks", chunk_rows=chunk_rows,
                        buffer_chunks=buffer_chunks)
    assert not np.array_equal(order, other)


def test_dense_chunk_order_touches_at_most_buffer_chunks_per_window():
    rows = np.arange(1000)
    order = epoch_order(rows, np.random.default_rng(2), shuffle="chunks", chunk_rows=25, buffer_chunks=4)
    for a in range(0, 1000, 100):
        assert len(np.unique(order[a:a + 100] // 25)) == 4


def test_full_order_and_shards():
    rows = np.arange(50, 150)
    order = epoch_order(rows, np.random.default_rng(0), shuffle="full")
    np.testing.assert_array_equal(np.sort(order), rows)
    b = np.arange(10)
    parts = [shard(b, r, 3) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate(parts), b)
    assert [len(p) for p in parts] == [4, 3, 3]
    with pytest.raises(ValueError, match="shuffle"):
        epoch_order(rows, np.random.default_rng(0), shuffle="sorted")


def _write_h5(path, n, n_pixels, labels_fn, chunk_rows):
    from starlabels.data.hdf5 import DatasetWriter

    rng = np.random.default_rng(0)
    with DatasetWriter(path, n_pixels, "payne", ["TEFF", "LOGG"], compression=None,
                       chunk_rows=chunk_rows) as w:
        for a in range(0, n, 200):
            m = min(200, n - a)
            rows = np.arange(a, a + m)
            flux = (1 + 0.01 * rng.normal(size=(m, n_pixels))).astype(np.float32)
            w.append(flux, np.full_like(flux, 0.01), labels=labels_fn(rows),
                     label_errors=np.full((m, 2), 1.0, np.float32),
                     meta={"group": np.where(rows % 5 == 0, "mdwarf", "payne")})


def test_hdf5_epoch_reads_bounded_blocks_and_visits_each_row_once(tmp_path, tiny_net):
    """A 600-row file (~52 MB of spectra) streamed with a 64-row buffer: every read is at most
    64 rows, each training row is seen exactly once per epoch, and the numpy memory traced while
    iterating an epoch stays far below the size of the file's spectra."""
    n, p = 600, 7214
    path = tmp_path / "big.h5"
    _write_h5(path, n, p, lambda r: np.stack([4000.0 + r, 2.0 + 0 * r], 1).astype(np.float32), 16)
    data = TrainingData.from_hdf5(path, ["TEFF", "LOGG"], group_column="group")
    assert data.n_rows == n and not data.random_access
    np.testing.assert_array_equal(data.labels[:, 0], 4000.0 + np.arange(n))
    assert set(data.groups) == {"mdwarf", "payne"}
    split = {"train": np.arange(0, 540), "dev": np.arange(540, 600), "test": np.arange(0)}
    trainer = Trainer(tiny_net(p, 2), data, split, optimiser=OptimiserConfig(),
                      training=TrainingConfig(batch_size=16, epochs=1, device="cpu"),
                      chunk_rows=16, buffer_chunks=2)
    assert trainer.shuffle == "chunks"
    data.read_log.clear()
    seen = []
    tracemalloc.start()
    try:
        for _x, y, _e, n_global in trainer.iter_batches(split["train"], np.random.default_rng(3)):
            assert n_global == len(y) <= 16
            seen.append(y[:, 0].numpy().copy())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    spectra_bytes = n * p * (4 + 4 + 4)
    assert max(data.read_log) <= 32
    assert sum(data.read_log) == 540
    buffer_bytes = 32 * p * (4 + 4 + 4)
    assert peak < 3 * buffer_bytes, (peak, buffer_bytes)
    assert peak < spectra_bytes / 5, (peak, spectra_bytes)
    # the labels identify rows: TEFF = 4000 + row (standardised; undo it)
    teff = np.concatenate(seen) * trainer.label_scaler.std[0] + trainer.label_scaler.mean[0]
    np.testing.assert_allclose(np.sort(teff), 4000.0 + np.arange(540), atol=0.05)
    # the order is shuffled across chunks
    assert not np.all(np.diff(teff) > 0)
