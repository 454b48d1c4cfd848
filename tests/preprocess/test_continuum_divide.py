"""The division step of continuum normalisation against the straightforward rule, pixel for pixel.

``continuum_normalise`` tests usability on the input once per chunk, skips ``continuum > 0`` where the
coefficients bound the continuum away from 0 and sets rejected pixels through their indices. Here
the same outputs are rebuilt the plain way from the fitted continuum (``fit_continuum``): divide
every pixel, test every quotient, fill — and must agree bit for bit, including continua that cross
zero, non-finite and out-of-range values, reject bits, float32, dense damage and ``out=`` buffers.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlabels.preprocess import continuum as cn
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, PIXMASK_BITS
from starlabels.preprocess.continuum_segments import surely_positive
from starlabels.preprocess.grids import APSTAR, ASPCAP, index_in
from starlabels.preprocess.masking import BAD_PIXEL_ERROR

BADPIX = 1 << PIXMASK_BITS["BADPIX"]


def _plain(flux, error, bitmask, mask, dtype):
    """The straightforward normalisation given ``fit_continuum``'s continuum: (N, 7514) outputs."""
    fit = cn.fit_continuum(flux, error, bitmask, continuum_mask=mask, on_failure="reject")
    cols = index_in(ASPCAP, "apstar") if flux.shape[1] == APSTAR.n_pixels else slice(None)
    fa, ea = flux[:, cols].astype(dtype), error[:, cols].astype(dtype)
    cont = np.nan_to_num(fit.continuum, nan=0.0)  # failed segments: continuum 0
    with np.errstate(all="ignore"):
        of, oe = fa / cont.astype(dtype), ea / cont.astype(dtype)
        good = (ea > 0) & (ea < BAD_PIXEL_ERROR) & np.isfinite(of) & np.isfinite(oe) & (cont > 0)
    if bitmask is not None:
        good &= (bitmask[:, cols] & DEFAULT_REJECT_VALUE) == 0
    of[~good], oe[~good] = 1.0, BAD_PIXEL_ERROR
    return of, oe, fit, ~good


def _damaged(n: int, seed: int, frac: float, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """apStar-grid spectra: smooth positive continua, a few segments whose continuum crosses zero,
    every kind of bad value and reject bits at rate ``frac``."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, APSTAR.n_pixels)
    flux = rng.uniform(50, 500, (n, 1)) * (1 + 0.2 * x) + rng.normal(0, 1, (n, APSTAR.n_pixels))
    flux[::3] = 300 * (x - rng.uniform(-0.5, 0.5, (len(flux[::3]), 1)))  # crosses zero: continuum < 0
    error = rng.uniform(0.5, 2, flux.shape)
    for value, where in ((np.nan, flux), (np.inf, flux), (-np.inf, flux), (np.nan, error),
                         (0.0, error), (-1.0, error), (np.inf, error), (BAD_PIXEL_ERROR, error),
                         (2 * BAD_PIXEL_ERROR, error)):
        where[rng.random(flux.shape) < frac / 9] = value
    bitmask = np.where(rng.random(flux.shape) < frac, BADPIX, 0).astype(np.int32)
    return flux.astype(dtype), error.astype(dtype), bitmask


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("frac", [0.0, 0.02, 0.5])
def test_outputs_equal_the_plain_rule_bit_for_bit(dtype, frac):
    flux, error, bitmask = _damaged(70, seed=3, frac=frac, dtype=dtype)
    mask = np.zeros(ASPCAP.n_pixels, bool)
    mask[::9] = True
    expected_f, expected_e, fit, rejected = _plain(flux, error, bitmask, mask, dtype)
    assert (np.nan_to_num(fit.continuum) <= 0).any()  # the zero-crossing continua are exercised
    got_f, got_e = cn.continuum_normalise(flux, error, bitmask, mask, on_failure="reject")
    assert got_f.dtype == dtype
    np.testing.assert_array_equal(got_f, expected_f)
    np.testing.assert_array_equal(got_e, expected_e)
    np.testing.assert_array_equal(fit.rejected, rejected)
    # into reused buffers holding garbage: every pixel is written
    out = (np.full(got_f.shape, np.nan, dtype), np.full(got_f.shape, -7.0, dtype))
    cn.continuum_normalise(flux, error, bitmask, mask, on_failure="reject", out=out)
    np.testing.assert_array_equal(out[0], expected_f)
    np.testing.assert_array_equal(out[1], expected_e)


def test_a_continuum_below_the_dtype_is_rejected_like_the_plain_rule():
    # float32 input whose continuum is ~1e-40 (subnormal): flux / continuum overflows float32 where
    # the flux is ~1
    flux = np.full((2, ASPCAP.n_pixels), 1e-40, np.float32)
    error = np.full_like(flux, 1e-42)
    flux[:, 100] = 1.0
    mask = np.zeros(ASPCAP.n_pixels, bool)
    mask[::5] = True
    mask[100] = False
    expected_f, expected_e, _, _ = _plain(flux, error, None, mask, np.float32)
    got_f, got_e = cn.continuum_normalise(flux, error, None, mask)
    assert got_f[0, 100] == 1.0 and got_e[0, 100] == BAD_PIXEL_ERROR
    np.testing.assert_array_equal(got_f, expected_f)
    np.testing.assert_array_equal(got_e, expected_e)


@settings(max_examples=200, deadline=None)
@given(coef=st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=4),
       scale=st.sampled_from([1e-300, 1.0, 1e300]))
def test_surely_positive_is_only_claimed_for_positive_series(coef, scale):
    c = np.asarray(coef) * scale
    claimed = bool(surely_positive(c[None, None, :])[0, 0])
    x = np.linspace(-1, 1, 4001)
    values = np.polynomial.chebyshev.chebvander(x, 3) @ c
    if claimed:
        assert (values > 0).all()
    if c[0] > 0 and c[0] > 1.001 * np.abs(c[1:]).sum():
        assert claimed  # a clear margin is recognised


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rejected_from_the_caller_gives_the_same_outputs(dtype):
    from starlabels.errors import InputDataError
    from starlabels.preprocess.masking import rejected_pixels

    flux, error, bitmask = _damaged(40, seed=5, frac=0.05, dtype=dtype)
    mask = np.zeros(ASPCAP.n_pixels, bool)
    mask[::9] = True
    expected = cn.continuum_normalise(flux, error, bitmask, mask, on_failure="reject")
    rejected = rejected_pixels(flux, error, bitmask)
    got = cn.continuum_normalise(flux, error, bitmask, mask, on_failure="reject", rejected=rejected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    one = cn.continuum_normalise(flux[3], error[3], bitmask[3], mask, on_failure="reject",
                                 rejected=rejected[3])
    np.testing.assert_array_equal(one[0], cn.continuum_normalise(flux[3], error[3], bitmask[3], mask,
                                                                 on_failure="reject")[0])
    # a usable pixel the caller calls rejected is rejected: the caller's mask is what is used
    cols = index_in(ASPCAP, "apstar")
    pixel = int(np.flatnonzero(~rejected[0, cols] & (expected[0][0] != 1.0))[0])  # usable, flux ≠ 1
    rejected[0, cols[pixel]] = True
    again = cn.continuum_normalise(flux, error, bitmask, mask, on_failure="reject", rejected=rejected)
    assert again[0][0, pixel] == 1.0 and again[1][0, pixel] == BAD_PIXEL_ERROR
    with pytest.raises(InputDataError, match="rejected must be a bool array"):
        cn.continuum_normalise(flux, error, bitmask, mask, rejected=rejected[:, :100])
    with pytest.raises(InputDataError, match="rejected must be a bool array"):
        cn.continuum_normalise(flux, error, bitmask, mask, rejected=rejected.astype(np.uint8))


def test_the_pipeline_forwards_the_callers_rejected_pixels_to_the_continuum():
    """PreprocessConfig.apply(rejected=) reaches the continuum fit (prepare_chunk passes the pixels it
    rejected for the SNR): same outputs as without, and a pixel the caller rejects is rejected."""
    from starlabels.preprocess.masking import rejected_pixels
    from starlabels.preprocess.pipeline import PreprocessConfig

    flux, error, bitmask = _damaged(12, seed=8, frac=0.05, dtype=np.float32)
    cfg = PreprocessConfig(kind="continuum", continuum_pixels=list(range(0, ASPCAP.n_pixels, 9)))
    cfg.on_failure = "reject"
    rejected = rejected_pixels(flux, error, bitmask, bits=cfg.reject_bits, bitmask_def=cfg.bitmask)
    expected = cfg.apply(flux, error, bitmask)
    got = cfg.apply(flux, error, bitmask, rejected=rejected)
    for a, b in zip(got, expected, strict=True):
        assert a.tobytes() == b.tobytes()
    cols = index_in(ASPCAP, "apstar")
    pixel = int(np.flatnonzero(~rejected[0, cols] & (expected[0][0] != 1.0))[0])
    rejected[0, cols[pixel]] = True
    again = cfg.apply(flux, error, bitmask, rejected=rejected)
    assert again[0][0, pixel] == 1.0 and again[1][0, pixel] == np.float32(BAD_PIXEL_ERROR)
