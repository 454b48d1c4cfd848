"""starlabels.predict on any grid: the grid given with the spectra, resample or refuse naming both grids."""

from __future__ import annotations

import numpy as np
import pytest

import starlabels
from starlabels.core.grid import from_wavelength, log_linear_grid
from starlabels.errors import InputDataError
from starlabels.inference import flags
from starlabels.instruments import get
from starlabels.io import Spectrum

from .conftest import raw_spectra

APOGEE = get("apogee")
BOSS = get("boss")


def _spectra(flux, error, bitmask, wave, instrument="apogee", file="star.fits"):
    return [Spectrum(instrument, wave, flux[i], error[i], bitmask[i], {"FILE": file, "HDU": i + 1})
            for i in range(len(flux))]


def test_the_grid_given_in_any_form_gives_the_same_numbers(raw_model_folder):
    """Plain arrays (grid recognised by pixel count), grid=, wavelength= and Spectrum objects on the
    model's own grid all give bit-identical predictions and no RESAMPLED flag."""
    flux, error, bitmask = raw_spectra(3, seed=4)
    bitmask[1, 500:520] = 1
    model = starlabels.load_model(raw_model_folder)
    assert model.input_grid.same_as(APOGEE.grid)
    ref = starlabels.predict(model, flux, error, bitmask=bitmask, uncertainty="delta")
    for kw in ({"grid": "apstar"}, {"grid": APOGEE.grid}, {"wavelength": APOGEE.wavelength.copy()}):
        p = starlabels.predict(model, flux, error, bitmask=bitmask, uncertainty="delta", **kw)
        np.testing.assert_array_equal(p.mean, ref.mean)
        np.testing.assert_array_equal(p.std, ref.std)
        np.testing.assert_array_equal(p.flags, ref.flags)
    p = starlabels.predict(model, _spectra(flux, error, bitmask, APOGEE.wavelength), uncertainty="delta")
    np.testing.assert_array_equal(p.mean, ref.mean)
    np.testing.assert_array_equal(p.flags, ref.flags)
    assert not (p.flags & flags.bit("RESAMPLED")).any()


def test_a_boss_spectrum_to_an_apogee_model_is_refused_naming_both_grids(raw_model_folder):
    rng = np.random.default_rng(0)
    n = BOSS.n_pixels
    flux, error = rng.normal(100, 1, (2, n)), np.ones((2, n))
    with pytest.raises(InputDataError) as exc:
        starlabels.predict(raw_model_folder, flux, error, grid="boss")
    msg = str(exc.value)
    assert BOSS.grid.describe() in msg and APOGEE.grid.describe() in msg and "resample=" in msg
    spectra = _spectra(flux, error, np.zeros((2, n), int), BOSS.wavelength, "boss", file="mwmStar-1.fits")
    with pytest.raises(InputDataError, match=r"mwmStar-1\.fits HDU 1: .*'boss' \(4648 px"):
        starlabels.predict(raw_model_folder, spectra)
    # resampled: nothing of the BOSS range reaches 1.5-1.7 µm, so every pixel is uncovered → the row
    # is kept and flagged (INVALID_SPECTRUM, RESAMPLED), its labels NaN, never unflagged NaN
    p = starlabels.predict(raw_model_folder, spectra, resample="linear")
    assert np.isnan(p.mean).all()
    assert (p.flags & flags.bit("INVALID_SPECTRUM")).all() and (p.flags & flags.bit("RESAMPLED")).all()


def test_linear_resampling_matches_an_independent_interpolation(raw_model_folder):
    """Spectra on a grid offset by 0.37 pixel from apStar, resample='linear': the prediction equals
    the one for spectra interpolated by hand with numpy.interp (σ² = w0²σ0² + w1²σ1²; the apStar
    pixels beyond the offset grid's ends uncovered, i.e. rejected)."""
    model = starlabels.load_model(raw_model_folder)
    shifted = log_linear_grid("shifted", APOGEE.grid.log_linear[0] + 0.37 * APOGEE.grid.log_linear[1],
                              APOGEE.grid.log_linear[1], APOGEE.n_pixels)
    flux, error, _ = raw_spectra(3, seed=7)
    ws, wt = shifted.wavelength, APOGEE.wavelength
    ref_f = np.stack([np.interp(wt, ws, f) for f in flux])
    i = np.clip(np.searchsorted(ws, wt, side="right") - 1, 0, ws.size - 2)
    w1 = (wt - ws[i]) / (ws[i + 1] - ws[i])
    ref_e = np.sqrt((1 - w1) ** 2 * error[:, i] ** 2 + w1**2 * error[:, i + 1] ** 2)
    outside = (wt < ws[0]) | (wt > ws[-1])
    assert outside.sum() == 1  # the first apStar pixel lies below the shifted grid
    ref_e[:, outside] = np.inf
    ref = starlabels.predict(model, ref_f, ref_e, uncertainty="delta")
    with pytest.raises(InputDataError, match="'shifted'"):
        starlabels.predict(model, flux, error, grid=shifted)
    got = starlabels.predict(model, flux, error, wavelength=ws, resample="linear", uncertainty="delta")
    np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-6)
    np.testing.assert_allclose(got.std, ref.std, rtol=1e-6)
    np.testing.assert_allclose(got.masked_fraction, 1 / APOGEE.n_pixels)
    assert (got.flags & flags.bit("RESAMPLED")).all() and not (ref.flags & flags.bit("RESAMPLED")).any()
    # without errors the uncovered pixel is still rejected (never fed to the network as flux 0)
    no_err = starlabels.predict(model, flux, wavelength=ws, resample="linear")
    np.testing.assert_allclose(no_err.masked_fraction, 1 / APOGEE.n_pixels)
    assert np.isnan(no_err.snr).all()
    # flux-conserving: another method, close to linear for equal pixel widths, not identical
    fc = starlabels.predict(model, flux, error, wavelength=ws, resample="flux-conserving")
    assert np.isfinite(fc.mean).all() and not np.array_equal(fc.mean, got.mean)


def test_a_wider_grid_holding_the_models_pixels_is_cut_exactly(raw_model_folder):
    """Spectra on apStar extended by 10 pixels on each side: the model takes its own pixels (no
    interpolation, no RESAMPLED flag) — the same numbers as the apStar part given directly."""
    crval, cdelt = APOGEE.grid.log_linear
    wide = log_linear_grid("wide", crval - 10 * cdelt, cdelt, APOGEE.n_pixels + 20)
    flux, error, bitmask = raw_spectra(2, seed=9)
    pad = lambda a, v: np.pad(a, ((0, 0), (10, 10)), constant_values=v)  # noqa: E731
    ref = starlabels.predict(raw_model_folder, flux, error, bitmask=bitmask, uncertainty=None)
    got = starlabels.predict(raw_model_folder, pad(flux, -5.0), pad(error, 1.0), bitmask=pad(bitmask, 0),
                             grid=wide, uncertainty=None)
    np.testing.assert_array_equal(got.mean, ref.mean)
    np.testing.assert_array_equal(got.flags, ref.flags)


def test_mixed_spectra_keep_their_order_and_bad_arguments(raw_model_folder):
    """A list mixing apStar-grid and offset-grid spectra: each group goes onto the model's grid, the
    rows come back in the given order, only the resampled ones flagged RESAMPLED."""
    flux, error, bitmask = raw_spectra(4, seed=2)
    shifted = from_wavelength(APOGEE.wavelength * (1 + 2e-6), name="shifted")
    spectra = _spectra(flux, error, bitmask, APOGEE.wavelength)
    spectra[1] = Spectrum("apogee", shifted.wavelength, flux[1], error[1], bitmask[1], {})
    p = starlabels.predict(raw_model_folder, spectra, resample="linear", uncertainty=None)
    keep = [0, 2, 3]
    direct = starlabels.predict(raw_model_folder, flux[keep], error[keep], bitmask=bitmask[keep],
                                uncertainty=None)
    np.testing.assert_allclose(p.mean[keep], direct.mean, rtol=1e-5)  # float32 net, other batch
    assert [bool(f & flags.bit("RESAMPLED")) for f in p.flags] == [False, True, False, False]
    with pytest.raises(InputDataError, match="not both"):
        starlabels.predict(raw_model_folder, flux, error, grid="apstar", wavelength=APOGEE.wavelength)
    with pytest.raises(InputDataError, match="resample must be one of"):
        starlabels.predict(raw_model_folder, flux, error, grid="apstar", resample="cubic")
    with pytest.raises(InputDataError, match="Spectrum objects alone"):
        starlabels.predict(raw_model_folder, spectra, error)
    with pytest.raises(InputDataError, match="given grid has 4648"):
        starlabels.predict(raw_model_folder, flux, error, grid="boss")
    with pytest.raises(InputDataError, match="not strictly increasing"):
        starlabels.predict(raw_model_folder, flux, error, wavelength=APOGEE.wavelength[::-1])
