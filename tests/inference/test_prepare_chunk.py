"""prepare_chunk (the per-chunk work in front of the network) against a straightforward row-by-row
computation with numpy: rejection rule, masked fraction, SNR = np.median(f/e) of the kept pixels,
APOGEE Net's raw repair (np.median per detector region, error cap) and the float32 network input,
on float32 and float64 input with NaN, ±inf, zero errors, fully masked, dead-detector and
one-pixel rows; bit for bit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from starlabels.core.apogee import PIXMASK, PIXMASK_BITS
from starlabels.inference.prepare import prepare_chunk
from starlabels.inference.uncertainty import BAD_ERROR
from starlabels.preprocess.grids import APSTAR
from starlabels.preprocess.masking import APSTAR_RAW_REGIONS, BAD_PIXEL_ERROR
from starlabels.preprocess.pipeline import PreprocessConfig

BADPIX = 1 << PIXMASK_BITS["BADPIX"]


def _spectra(n: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """apStar-grid spectra with the awkward rows at the start."""
    rng = np.random.default_rng(7)
    P = APSTAR.n_pixels
    level = rng.lognormal(np.log(300), 0.7, (n, 1))
    flux = level * rng.uniform(0.6, 1.2, (n, P))
    error = level * rng.uniform(0.004, 0.03, (n, P))
    error[:, rng.choice(P, 30, replace=False)] *= 300  # some large errors: the cap acts
    bitmask = np.zeros((n, P), dtype=np.int32)
    bitmask[rng.random((n, P)) < 0.02] = BADPIX
    bitmask[rng.random((n, P)) < 0.01] |= 1 << PIXMASK_BITS["PERSIST_LOW"]  # not a reject bit
    flux[rng.random((n, P)) < 0.003] = np.nan
    flux[:, :246] = np.nan  # apStar edges
    flux[:, 8335:] = np.nan
    flux[0] = np.nan  # NaN-only
    error[1] = 0.0  # no positive error
    bitmask[2] = BADPIX  # fully masked
    bitmask[3, 246:3274] = BADPIX  # one detector dead: the spectrum median repairs it
    flux[4, 1000:1010], flux[4, 2000:2005] = np.inf, -np.inf
    error[4, 3000:3010], error[4, 4000:4003] = np.inf, np.nan
    error[4, 4100:4103] = -1.0
    bitmask[5] = BADPIX
    bitmask[5, 5000] = 0  # one usable pixel
    bitmask[6] = BADPIX
    bitmask[6, 5000:5002] = 0  # two usable pixels: a mean of two middle values
    error[7, 6500:6700] = 5e8  # usable, ≥ the network's BAD_ERROR after the cap? (reference decides)
    error[8, :] = 5e8  # every usable error above BAD_ERROR: invalid after preprocessing
    flux[9, 300:7000] *= -1  # negative flux
    error[10, 7000:7005] = BAD_PIXEL_ERROR  # rejected by value
    return flux.astype(dtype), error.astype(dtype), bitmask


def _reference(flux, error, bitmask, cap: float = 5.0):
    """Row by row with numpy: ``x, xe, ok, snr, masked`` as prepare_chunk documents them."""
    n, P = flux.shape
    with np.errstate(invalid="ignore"):
        rej = ~np.isfinite(flux) | ~np.isfinite(error) | (error <= 0) | (error >= BAD_PIXEL_ERROR)
    rej |= (bitmask.astype(np.int64) & PIXMASK.value()) != 0
    ok = ~rej.all(axis=1)
    masked = rej.mean(axis=1)
    snr = np.full(n, np.nan)
    xs, xes = [], []
    for i in np.flatnonzero(ok):
        keep = ~rej[i]
        with np.errstate(over="ignore"):
            snr[i] = np.median(flux[i][keep] / error[i][keep])  # in the input dtype, as numpy
        f64 = flux[i].astype(np.float64)
        spectrum_median = np.median(f64[keep])
        x = flux[i].copy()
        for a0, a1 in APSTAR_RAW_REGIONS:
            region_keep = keep[a0:a1]
            med = np.median(f64[a0:a1][region_keep]) if region_keep.any() else spectrum_median
            x[a0:a1][~region_keep] = med
        usable_sum = np.where(rej[i], 0.0, error[i].astype(np.float64)).sum()  # the documented sum
        limit = np.asarray(cap * usable_sum / keep.sum()).astype(flux.dtype)
        xe = np.where(keep, np.minimum(error[i], limit), BAD_PIXEL_ERROR).astype(flux.dtype)
        xs.append(x.astype(np.float32))
        xes.append(xe.astype(np.float32))
    x = np.array(xs, dtype=np.float32).reshape(-1, P)
    xe = np.array(xes, dtype=np.float32).reshape(-1, P)
    bad_out = ~(xe < BAD_ERROR)
    idx = np.flatnonzero(ok)
    masked[idx] = np.maximum(masked[idx], bad_out.mean(axis=1))
    valid = np.isfinite(x).all(axis=1) & ~bad_out.all(axis=1)
    ok[idx[~valid]] = False
    return x[valid], np.minimum(xe[valid], np.float32(3e38)), ok, snr, masked


def _raw_model():
    cfg = PreprocessConfig(kind="raw")
    return SimpleNamespace(preprocessing=cfg, n_pixels=cfg.n_pixels)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_raw_chunk_equals_a_row_by_row_numpy_computation(dtype):
    flux, error, bitmask = _spectra(24, dtype)
    copies = flux.copy(), error.copy(), bitmask.copy()
    x, xe, ok, snr, masked = prepare_chunk(_raw_model(), flux, error, bitmask, False, True)
    rx, rxe, rok, rsnr, rmasked = _reference(flux, error, bitmask)
    np.testing.assert_array_equal(ok, rok)
    assert not ok[[0, 1, 2, 8]].any() and ok[[3, 4, 5, 6, 7, 9, 10]].all()
    assert x.dtype == xe.dtype == np.float32 and snr.dtype == masked.dtype == np.float64
    assert x.flags.c_contiguous and xe.flags.c_contiguous
    np.testing.assert_array_equal(x, rx)
    np.testing.assert_array_equal(xe, rxe)
    np.testing.assert_array_equal(snr, rsnr)
    np.testing.assert_array_equal(masked, rmasked)
    for original, passed in zip(copies, (flux, error, bitmask), strict=True):
        np.testing.assert_array_equal(original, passed)  # the input is left as it was


def test_snr_unknown_without_errors_and_all_invalid_chunk():
    flux, error, bitmask = _spectra(12, np.float32)
    _, _, ok, snr, _ = prepare_chunk(_raw_model(), flux, error, bitmask, False, False)
    assert ok.sum() == 8 and np.isnan(snr).all()  # rows 0, 1, 2 and 8 are invalid
    x, xe, ok, snr, masked = prepare_chunk(_raw_model(), flux[:3], error[:3], bitmask[:3], False, True)
    assert x.shape == xe.shape == (0, APSTAR.n_pixels) and not ok.any() and np.isnan(snr).all()
    np.testing.assert_array_equal(masked, [1.0, 1.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_preprocessed_input_errors_capped_and_non_finite_rows_invalid(dtype):
    rng = np.random.default_rng(3)
    x_in = rng.normal(1, 0.1, (6, 50)).astype(dtype)
    e_in = rng.uniform(0.01, 0.1, (6, 50)).astype(dtype)
    e_in[0, :3] = [np.nan, np.inf, -np.inf]  # rejected pixels of a usable row
    e_in[1, 5] = 1e39 if dtype == np.float64 else 3.2e38  # finite, above the 3e38 ceiling
    x_in[2, 7] = np.inf  # a non-finite network input: the row becomes invalid
    x_in[3] = np.nan  # nothing usable
    im = SimpleNamespace(preprocessing=None, n_pixels=50)
    x, xe, ok, snr, masked = prepare_chunk(im, x_in, e_in, None, True, True)
    np.testing.assert_array_equal(ok, [True, True, False, False, True, True])
    keep = [0, 1, 4, 5]
    np.testing.assert_array_equal(x, x_in[keep].astype(np.float32))
    expected = np.minimum(np.where(np.isfinite(e_in[keep]), e_in[keep], np.inf), 3e38).astype(np.float32)
    np.testing.assert_array_equal(xe, expected)
    assert xe[0, :3].tolist() == [np.float32(3e38)] * 3 and xe[1, 5] == np.float32(3e38)
    assert np.isnan(snr[3]) and masked[0] == 3 / 50 and masked[3] == 1.0
    assert snr[0] == np.median((x_in[0] / e_in[0])[3:])
    assert not np.shares_memory(x, x_in) and not np.shares_memory(xe, e_in)


def test_continuum_chunk_around_the_fit_equals_numpy():
    """The continuum kind: x, xe are the config's own apply() on the ok rows (the fit is tested in
    tests/preprocess); ok, snr and the masked fraction (dead detector included) as by hand."""
    flux, error, bitmask = _spectra(12, np.float32)
    cfg = PreprocessConfig(kind="continuum", on_failure="reject")
    im = SimpleNamespace(preprocessing=cfg, n_pixels=cfg.n_pixels)
    x, xe, ok, snr, masked = prepare_chunk(im, flux, error, bitmask, False, True)
    rsnr = _reference(flux, error, bitmask)[3]
    with np.errstate(invalid="ignore"):
        rej = ~np.isfinite(flux) | ~np.isfinite(error) | (error <= 0) | (error >= BAD_PIXEL_ERROR)
    rej |= (bitmask & PIXMASK.value()) != 0
    rows = np.flatnonzero(~rej.all(axis=1))
    ax, axe = cfg.apply(flux[rows], error[rows], bitmask[rows])
    bad_out = ~(axe < BAD_ERROR)
    valid = ~bad_out.all(axis=1)
    expected_ok = np.zeros(len(flux), bool)
    expected_ok[rows[valid]] = True
    np.testing.assert_array_equal(ok, expected_ok)
    np.testing.assert_array_equal(x, ax[valid])
    np.testing.assert_array_equal(xe, axe[valid])
    np.testing.assert_array_equal(snr[rows], rsnr[rows])  # the SNR does not depend on the kind
    expected_masked = rej.mean(axis=1)
    expected_masked[rows] = np.maximum(expected_masked[rows], bad_out.mean(axis=1))
    np.testing.assert_array_equal(masked, expected_masked)
    assert masked[3] >= 3028 / 8575  # the dead detector
