"""The faster pixel rejection and raw repair give the rule's numbers: blocks, dtypes, views, and
a precomputed ``rejected=`` mask, against the rule written out with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.core.apogee import PIXMASK, PIXMASK_BITS
from starlabels.errors import InputDataError
from starlabels.preprocess import masking
from starlabels.preprocess.grids import APSTAR
from starlabels.preprocess.masking import BAD_PIXEL_ERROR, raw_flux, rejected_pixels, usable_mean


def _rule(flux, error, bitmask=None, bits=None):
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(flux) | ~np.isfinite(error) | (error <= 0) | (error >= BAD_PIXEL_ERROR)
    if bitmask is not None:
        bad |= (np.asarray(bitmask).astype(np.int64) & PIXMASK.value(bits)) != 0
    return bad


def _values(shape, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    flux = rng.normal(1, 0.5, shape).astype(dtype)
    error = rng.uniform(-0.01, 0.2, shape).astype(dtype)  # some ≤ 0
    flux[rng.random(shape) < 0.05] = np.nan
    flux[rng.random(shape) < 0.01] = np.inf
    error[rng.random(shape) < 0.02] = np.nan
    error[rng.random(shape) < 0.01] = BAD_PIXEL_ERROR
    error[rng.random(shape) < 0.01] = -np.inf
    bitmask = rng.integers(0, 1 << 15, shape).astype(np.int32) * (rng.random(shape) < 0.1)
    return flux, error, bitmask


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rejected_pixels_across_blocks_views_and_shapes(dtype):
    n = masking._BLOCK // 1000 + 7  # several blocks, the last one partial
    flux, error, bitmask = _values((n, 1000), 0, dtype)
    np.testing.assert_array_equal(rejected_pixels(flux, error, bitmask), _rule(flux, error, bitmask))
    np.testing.assert_array_equal(rejected_pixels(flux, error), _rule(flux, error))
    view = (flux[::2, 3:], error[::2, 3:], bitmask[::2, 3:])  # non-contiguous
    np.testing.assert_array_equal(rejected_pixels(*view), _rule(*view))
    cube = tuple(a[:60].reshape(3, 20, 1000) for a in (flux, error, bitmask))
    got = rejected_pixels(*cube, bits=["BADPIX", 14])
    assert got.shape == (3, 20, 1000)
    np.testing.assert_array_equal(got, _rule(*cube, bits=["BADPIX", 14]))


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, bool]
)
def test_bitmask_rule_in_every_integer_dtype(dtype):
    """The AND runs in the bitmask's own dtype where the reject value fits below its sign bit;
    the numbers equal the int64 rule, negative values (sign-extended) included."""
    values = np.arange(-128, 128) if np.issubdtype(dtype, np.signedinteger) else np.arange(0, 256)
    bitmask = values.astype(dtype)
    for bits in (None, [0], [6], [7], [12, 14], [15], [30], []):
        expected = (bitmask.astype(np.int64) & PIXMASK.value(bits)) != 0
        np.testing.assert_array_equal(PIXMASK.rejected(bitmask, bits), expected)


def test_usable_mean_is_the_documented_float64_sum_bit_for_bit():
    flux, error, bitmask = _values((130, APSTAR.n_pixels), 1)  # more rows than one block holds
    rej = _rule(flux, error, bitmask)
    rej[5] = True
    rej[5, 17] = False  # one usable pixel
    expected = np.where(rej, 0.0, error.astype(np.float64)).sum(axis=1) / (~rej).sum(axis=1)
    np.testing.assert_array_equal(usable_mean(error, rej), expected)
    assert usable_mean(error, rej)[5] == np.float64(error[5, 17])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_raw_flux_with_a_precomputed_mask_is_the_same(dtype):
    rng = np.random.default_rng(2)
    flux = rng.uniform(100, 200, (9, APSTAR.n_pixels)).astype(dtype)
    error = rng.uniform(1, 3, (9, APSTAR.n_pixels)).astype(dtype)
    bitmask = np.zeros(flux.shape, np.int16)
    bitmask[rng.random(flux.shape) < 0.05] = 1 << PIXMASK_BITS["SIG_SKYLINE"]
    flux[:, :246] = np.nan
    rej = rejected_pixels(flux, error, bitmask)
    given = raw_flux(flux, error, bitmask, rejected=rej)
    for a, b in zip(raw_flux(flux, error, bitmask), given, strict=True):
        assert a.dtype == b.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(a, b)
    one = raw_flux(flux[0], error[0], bitmask[0], rejected=rej[0])
    np.testing.assert_array_equal(one[0], raw_flux(flux, error, bitmask)[0][0])
    with pytest.raises(InputDataError, match="rejected shape"):
        raw_flux(flux, error, bitmask, rejected=rej[:, :10])
