"""Rejected pixels and the raw-flux (APOGEE Net) path."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlabels.errors import InputDataError
from starlabels.preprocess import masking
from starlabels.preprocess.bitmask import PIXMASK_BITS
from starlabels.preprocess.grids import APSTAR, ASPCAP, index_in
from starlabels.preprocess.masking import BAD_PIXEL_ERROR, raw_flux, rejected_pixels


def test_rejected_pixels_rule():
    f = np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0, np.inf, 1.0, 1.0, 1.0])
    e = np.array([0.1, 0.1, np.nan, 0.0, -1.0, BAD_PIXEL_ERROR, 0.1, 0.1, 0.1, 0.1])
    b = np.zeros(10, dtype=np.int64)
    b[7] = 1 << PIXMASK_BITS["SIG_SKYLINE"]
    b[8] = 1 << PIXMASK_BITS["PERSIST_HIGH"]  # not rejected by default
    b[9] = 1 << 20  # unnamed bit, not rejected by default
    expected = [False, True, True, True, True, True, True, True, False, False]
    assert rejected_pixels(f, e, b).tolist() == expected
    assert rejected_pixels(f, e).tolist() == [*expected[:7], False, False, False]
    by_name = rejected_pixels(f, e, b, bits=["persist_high"])  # names are case-insensitive
    assert by_name.tolist() == [*expected[:7], False, True, False]
    assert rejected_pixels(f, e, b, bits=[20]).tolist() == [*expected[:7], False, False, True]
    assert rejected_pixels(f, e, b, bits=[]).tolist() == rejected_pixels(f, e).tolist()
    with pytest.raises(InputDataError, match="unknown"):
        rejected_pixels(f, e, b, bits=["NOT_A_BIT"])


def _raw_spectra(n: int, seed: int):
    rng = np.random.default_rng(seed)
    level = rng.uniform(100, 1000, (n, 1))
    flux = level * rng.uniform(0.5, 1.5, (n, APSTAR.n_pixels))
    error = level * rng.uniform(0.005, 0.02, (n, APSTAR.n_pixels))
    error[:, rng.choice(APSTAR.n_pixels, 40, replace=False)] *= 1000  # a few huge errors
    bitmask = np.zeros((n, APSTAR.n_pixels), dtype=np.int32)
    bitmask[rng.random(bitmask.shape) < 0.02] = 1 << PIXMASK_BITS["BADPIX"]
    flux[rng.random(flux.shape) < 0.01] = np.nan
    flux[:, 3274:3585] = np.nan  # a detector gap
    return flux, error, bitmask


def test_raw_flux_repairs_with_detector_medians_and_caps_errors():
    flux, error, bitmask = _raw_spectra(6, seed=0)
    out_f, out_e = raw_flux(flux, error, bitmask)
    assert out_f.shape == out_e.shape == (6, APSTAR.n_pixels)
    assert np.isfinite(out_f).all() and np.isfinite(out_e).all()
    rej = ~np.isfinite(flux) | (bitmask != 0)
    bounds = [0, 3429, 6212, APSTAR.n_pixels]
    for i in range(6):
        ok = ~rej[i]
        cap = 5.0 * error[i][ok].mean()
        # usable pixels: flux unchanged, error capped
        np.testing.assert_array_equal(out_f[i][ok], flux[i][ok])
        np.testing.assert_allclose(out_e[i][ok], np.minimum(error[i][ok], cap))
        assert (error[i][ok] > cap).any()  # the cap did something
        # rejected pixels: the median of the usable pixels of their detector
        for a, b in itertools.pairwise(bounds):
            med = np.median(flux[i, a:b][ok[a:b]])
            np.testing.assert_allclose(out_f[i, a:b][rej[i, a:b]], med)
        assert np.all(out_e[i][rej[i]] == BAD_PIXEL_ERROR)


def test_raw_flux_options_and_shapes():
    flux, error, bitmask = _raw_spectra(2, seed=1)
    _, e_nocap = raw_flux(flux, error, bitmask, error_cap=None)
    ok = np.isfinite(flux) & (bitmask == 0)
    np.testing.assert_array_equal(e_nocap[ok], error[ok])
    f1, e1 = raw_flux(flux[1], error[1], bitmask[1])
    f2, e2 = raw_flux(flux, error, bitmask)
    np.testing.assert_array_equal(f1, f2[1])
    np.testing.assert_array_equal(e1, e2[1])
    f32, _ = raw_flux(flux.astype(np.float32), error.astype(np.float32))
    assert f32.dtype == np.float32
    # the ASPCAP grid is accepted and kept
    fa, _ = raw_flux(flux[:, index_in(ASPCAP, "apstar")], error[:, index_in(ASPCAP, "apstar")])
    assert fa.shape == (2, ASPCAP.n_pixels)
    with pytest.raises(InputDataError, match="error_cap"):
        raw_flux(flux, error, error_cap=0)


def test_raw_flux_detector_without_usable_pixels_takes_the_spectrum_median():
    flux, error, _ = _raw_spectra(1, seed=2)
    flux[0, 6212:] = np.nan  # whole red detector
    out_f, _ = raw_flux(flux, error)
    ok = np.isfinite(flux[0])
    np.testing.assert_allclose(out_f[0, 6212:], np.median(flux[0][ok]))


def test_raw_flux_nan_only_spectrum_raises_with_its_index():
    flux, error, bitmask = _raw_spectra(3, seed=3)
    flux[2] = np.nan
    with pytest.raises(InputDataError, match=r"no usable pixel.*index 2"):
        raw_flux(flux, error, bitmask)


def test_raw_flux_wrong_length_raises():
    with pytest.raises(InputDataError, match="8000 pixels"):
        raw_flux(np.ones((1, 8000)), np.ones((1, 8000)))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cap=st.floats(1.0, 20.0), frac=st.floats(0.0, 0.95))
def test_raw_flux_invariants(seed, cap, frac):
    rng = np.random.default_rng(seed)
    flux = rng.uniform(1, 10, (2, APSTAR.n_pixels))
    error = rng.lognormal(0, 1.5, flux.shape)
    flux[rng.random(flux.shape) < frac] = np.nan
    flux[:, 0] = 5.0  # keep one usable pixel per spectrum
    out_f, out_e = raw_flux(flux, error, error_cap=cap)
    ok = np.isfinite(flux)
    assert np.isfinite(out_f).all() and np.isfinite(out_e).all()
    # repaired fluxes lie within the range of the spectrum's usable fluxes
    for i in range(2):
        lo, hi = flux[i][ok[i]].min(), flux[i][ok[i]].max()
        assert np.all((out_f[i] >= lo) & (out_f[i] <= hi))
        assert out_e[i][ok[i]].max() <= cap * error[i][ok[i]].mean() * (1 + 1e-12)


def test_check_has_valid_pixels_lists_the_rows():
    rej = np.zeros((4, 5), dtype=bool)
    rej[[1, 3]] = True
    with pytest.raises(InputDataError, match=r"2 spectrum/spectra .*index 1, 3"):
        masking.check_has_valid_pixels(rej)
    masking.check_has_valid_pixels(rej[[0, 2]])  # no error


@pytest.mark.parametrize("check", [rejected_pixels, masking.as_batch])
def test_shape_mismatches_are_named_by_both_entry_points(check):
    ones = np.ones((2, 5))
    with pytest.raises(InputDataError, match=r"flux shape \(2, 5\) and error shape \(2, 4\) differ"):
        check(ones, np.ones((2, 4)))
    with pytest.raises(InputDataError, match=r"bitmask shape \(5,\) differs from flux shape \(2, 5\)"):
        check(ones, ones, np.zeros(5, np.int32))


def test_as_batch_checks_values_before_shapes_and_the_bitmask_dtype_after():
    with pytest.raises(InputDataError, match="flux must be 1-D"):
        masking.as_batch(np.ones((1, 2, 3)), np.ones(4))
    with pytest.raises(InputDataError, match="bitmask must be an integer array"):
        masking.as_batch(np.ones(4), np.ones(4), np.zeros(4))
    f, e, b, was_1d = masking.as_batch(np.ones(4), np.ones(4), np.zeros(4, np.int16))
    assert f.shape == e.shape == b.shape == (1, 4) and was_1d
