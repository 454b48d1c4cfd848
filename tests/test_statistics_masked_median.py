"""starlabels.statistics.masked_median_rows / middle_values_rows / count_per_row against numpy
computed row by row (np.median of the kept entries, np.count_nonzero)."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.statistics import count_per_row, masked_median_rows, middle_values_rows


def _rows(dtype, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.normal(100, 30, size=(40, width)).astype(dtype)
    masked = rng.random(values.shape) < rng.uniform(0, 0.9, (40, 1))  # 0–90% masked per row
    masked[0] = True  # nothing kept
    masked[1] = True
    masked[1, -1] = False  # one kept entry
    masked[2] = False  # nothing masked
    masked[3, : width // 2] = True  # a masked block (apStar edges, a dead detector)
    values[4, ::3] = np.inf  # ±inf are values
    values[5, ::4] = -np.inf
    if width > 1:
        values[6, :2] = [-np.inf, np.inf]
        masked[6] = True
        masked[6, :2] = False  # middle of −inf and +inf: NaN, as numpy
    values[7, :] = 7.0  # ties
    values[8, :] = np.round(values[8] / 20)  # many ties
    values[9, rng.random(width) < 0.5] = np.nan  # NaN counts as masked
    return values, masked


def _reference(values: np.ndarray, masked: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan, dtype=values.dtype)
    for i, (row, m) in enumerate(zip(values, masked, strict=True)):
        kept = row[~m & ~np.isnan(row)]
        if kept.size:
            with np.errstate(invalid="ignore"):
                out[i] = np.median(kept)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [1, 2, 3, 8, 601, 2900, 8575])
def test_masked_median_rows_equals_numpy_row_by_row(dtype, width):
    values, masked = _rows(dtype, width, width)
    before = values.copy()
    got = masked_median_rows(values, masked)
    expected = _reference(values, masked)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(values, before)  # not overwritten without overwrite_input
    assert np.isnan(got[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_middle_values_and_counts_by_hand(dtype):
    values = np.array([[5, 1, 4, 2, 3, 9], [5, 1, 4, 2, 3, 9], [8, 6, 7, 0, 0, 0]], dtype=dtype)
    masked = np.array([[0, 0, 0, 0, 0, 1], [1, 0, 0, 0, 0, 1], [0, 0, 0, 1, 1, 1]], dtype=bool)
    low, high, count = middle_values_rows(values, masked)
    # kept: [5 1 4 2 3] → 3, 3;  [1 4 2 3] → 2, 3;  [8 6 7] → 7, 7
    np.testing.assert_array_equal(low, [3, 2, 7])
    np.testing.assert_array_equal(high, [3, 3, 7])
    np.testing.assert_array_equal(count, [5, 4, 3])
    np.testing.assert_array_equal(masked_median_rows(values, masked), [3, 2.5, 7])


def test_overwrite_input_and_nan_free_give_the_same_numbers():
    values, masked = _rows(np.float32, 8575, 3)
    values[9] = np.where(np.isnan(values[9]), 1.0, values[9])  # nan_free: no NaN anywhere
    expected = _reference(values, masked)
    work = values.copy()
    got = masked_median_rows(work, masked, overwrite_input=True, nan_free=True)
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(work, values)  # the work array was used (reordered, padded)


def test_a_float32_overflowing_mean_of_two_middle_values_is_inf_as_in_numpy():
    big = np.finfo(np.float32).max
    values = np.array([[big, big, 1.0]], dtype=np.float32)
    got = masked_median_rows(values, np.array([[False, False, True]]))
    assert got[0] == np.float32(np.inf)  # numpy: (big + big) / 2 in float32


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match="2-D"):
        middle_values_rows(np.zeros(5), None)
    with pytest.raises(ValueError, match="same shape"):
        middle_values_rows(np.zeros((2, 5)), np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match="float"):
        middle_values_rows(np.zeros((2, 5), int), None)
    low, high, count = middle_values_rows(np.zeros((3, 0)), None)
    assert np.isnan(low).all() and np.isnan(high).all() and (count == 0).all()


@pytest.mark.parametrize("width", [0, 1, 255, 256, 8575, 70_000])  # uint16 accumulator up to 65535
def test_count_per_row_equals_count_nonzero(width):
    rng = np.random.default_rng(width)
    mask = rng.random((5, width)) < 0.5
    if width:
        mask[0] = True
    np.testing.assert_array_equal(count_per_row(mask), np.count_nonzero(mask, axis=1))
    view = mask[:, ::2]  # non-contiguous
    np.testing.assert_array_equal(count_per_row(view), np.count_nonzero(view, axis=1))
    assert count_per_row(mask).dtype == np.int64
