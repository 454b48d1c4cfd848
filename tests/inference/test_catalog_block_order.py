"""A unit read into several blocks (spectra of different grids or kinds are predicted block by block)
comes back as catalog rows in the unit's input order, each row with its own spectrum's labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from starlabels.inference import catalog
from starlabels.inference.catalog import run_settings
from starlabels.inference.catalog_inputs import expand_inputs, plan_units, read_unit
from starlabels.inference.inference_model import resolve


def _rows(block, rows):
    """A block of the given rows of ``block`` (one spectrum per row)."""
    pick = lambda arrays: [np.concatenate(arrays)[rows]]  # noqa: E731
    return dataclasses.replace(block, flux=pick(block.flux), error=pick(block.error),
                               bitmask=pick(block.bitmask) if block.bitmask else [],
                               resampled=pick(block.resampled), meta=[block.meta[r] for r in rows])


def test_rows_of_several_blocks_come_back_in_input_order(raw_model_folder, inputs):
    im = resolve(raw_model_folder)
    items, _ = expand_inputs(inputs[:1])  # the folder of four apStar files
    (unit,), _ = plan_units(items, files_per_unit=4, rows_per_unit=4)
    settings = run_settings(uncertainty=None)
    blocks, skipped = read_unit(unit, im, None)
    ((key, block),) = blocks.items()
    order = [m["_ORDER"] for m in block.meta]
    assert order == sorted(set(order)) and sum(map(len, block.flux)) == 4  # one block, in input order
    one, _ = catalog.predict_blocks(im, unit, ({key: block}, skipped), settings)
    # rows 1 and 3 in a block that is predicted first, rows 0 and 2 in one predicted after it
    split = {(key[0], "0-odd"): _rows(block, [1, 3]), (key[0], "1-even"): _rows(block, [0, 2])}
    assert sorted(split) == [(key[0], "0-odd"), (key[0], "1-even")]
    two, _ = catalog.predict_blocks(im, unit, (split, skipped), settings)
    assert list(two["SOURCE"]) == list(one["SOURCE"]) and one["SOURCE"].is_unique
    assert isinstance(two.index, pd.RangeIndex) and two.index.equals(pd.RangeIndex(4))
    labels = [c for c in one.columns if c in im.label_names]
    # each row its own spectrum's labels (to float32 rounding: a batch of 2 is not summed as one of 4)
    np.testing.assert_allclose(two[labels].to_numpy(), one[labels].to_numpy(), rtol=1e-5)
    assert one[labels[0]].dropna().is_unique and one[labels[0]].isna().sum() == 1  # rows differ; one NaN-only
    assert list(two["FLAG"]) == list(one["FLAG"])  # the NaN-only spectrum's flag stays on its row
    assert list(two.columns) == list(one.columns)


def test_rows_gathered_as_files_are_read_equal_the_rows_concatenated():
    """A unit's raw rows are copied into per-block arrays as each file is read (capacity one row per
    file, grown when files hold several spectra): the same values, cast as np.concatenate casts them."""
    from starlabels.inference.catalog_inputs import Block, _Rows

    rng = np.random.default_rng(5)
    sizes = [1, 3, 2, 1, 4]  # 11 rows into a capacity of 2: grows twice
    flux = [rng.normal(1, 1e-3, (k, 7)) * 1.0000001 for k in sizes]  # float64 that float32 rounds
    error = [rng.uniform(0.01, 0.02, (k, 7)) for k in sizes]
    bitmask = [rng.integers(0, 2**20, (k, 7)) for k in sizes]
    rows = _Rows(2, 7, np.float32)
    for k, (f, e, b) in enumerate(zip(flux, error, bitmask, strict=True)):
        rows.append(f, e, 0 if k == 3 else b)  # a file without a bitmask: zeros
    block = Block("raw", None)
    rows.into(block)
    (f,), (e,), (b,) = block.flux, block.error, block.bitmask
    assert f.dtype == e.dtype == np.float32 and b.dtype == np.int32 and f.shape == (11, 7)
    np.testing.assert_array_equal(f, np.concatenate(flux, dtype=np.float32))
    np.testing.assert_array_equal(e, np.concatenate(error, dtype=np.float32))
    bitmask[3] = np.zeros_like(bitmask[3])
    np.testing.assert_array_equal(b, np.concatenate(bitmask))


@pytest.mark.parametrize("wide", [2**31, -(2**31) - 1, 2**62, np.iinfo(np.uint32).max])
def test_bitmask_rows_take_the_narrowest_dtype_that_holds_them_and_no_bit_is_lost(wide):
    """Bitmask rows are gathered in int16 while every value fits (APOGEE's PIXMASK: bits 0–14), else
    int32, else int64 (a Spectrum's bitmask is int64: four times the reading process's memory
    traffic); a value that does not fit widens every row gathered so far, values intact."""
    from starlabels.inference.catalog_inputs import Block, _Rows

    rng = np.random.default_rng(6)
    pixmask = rng.integers(0, 2**15, (2, 5))  # int64 values as a Spectrum holds them
    wider = rng.integers(-(2**31), 2**31, (1, 5))
    big = np.array([[0, 1, wide, 3, 2**30]], dtype=np.uint32 if wide == np.iinfo(np.uint32).max else np.int64)
    rows = _Rows(1, 5, np.float32)
    dtypes = []
    for b in (pixmask, 0, wider, big, pixmask[:1]):  # 0: a file without a bitmask
        k = 1 if np.ndim(b) == 0 else b.shape[0]
        rows.append(np.ones((k, 5)), np.ones((k, 5)), b)
        dtypes.append(rows.bitmask.dtype)
    assert dtypes == [np.int16, np.int16, np.int32, np.int64, np.int64]
    block = Block("raw", None)
    rows.into(block)
    (b,) = block.bitmask
    expected = np.concatenate([pixmask, np.zeros((1, 5), np.int64), wider, big.astype(np.int64), pixmask[:1]])
    np.testing.assert_array_equal(b, expected)
    assert int(b[4, 2]) == int(wide)
