"""starlabels.statistics.nanmedian_rows against numpy's nanmedian, bit for bit."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from starlabels.statistics import nanmedian_rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [1, 7, 8, 599, 600, 601, 8575])  # numpy switches method at 600
def test_equals_numpy_nanmedian_bit_for_bit(dtype, width):
    rng = np.random.default_rng(width)
    a = rng.normal(100, 30, size=(30, width)).astype(dtype)
    a[rng.random(a.shape) < 0.3] = np.nan  # gaps: odd and even counts per row
    a[0] = np.nan  # no value at all
    a[1] = np.nan
    a[1, -1] = 5.0  # one value
    a[2, 0] = np.inf
    if width > 1:
        a[3] = np.nan
        a[3, :2] = [-np.inf, np.inf]  # numpy: mean of -inf and inf is NaN
        a[4, :2] = [np.finfo(dtype).max, np.finfo(dtype).max]  # their sum overflows, as in numpy
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(a, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for the all-NaN row
        got = nanmedian_rows(a)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    assert np.isnan(got[0])


def test_hand_values_integers_and_shape_errors():
    rows = np.array([[3.0, np.nan, 1.0, 2.0], [4.0, 1.0, np.nan, np.nan], [np.nan] * 4])
    np.testing.assert_array_equal(nanmedian_rows(rows), [2.0, 2.5, np.nan])
    ints = np.array([[1, 2, 3, 10], [5, 5, 6, 9]])
    got = nanmedian_rows(ints)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [2.5, 5.5])
    np.testing.assert_array_equal(nanmedian_rows(np.zeros((2, 0))), [np.nan, np.nan])
    with pytest.raises(ValueError, match="2-D"):
        nanmedian_rows(np.zeros(5))
