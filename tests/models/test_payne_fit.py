"""The Payne fit (models.payne_spectrum, payne_solver, payne_fit) on small random emulators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares

from starlabels.data.emulator import PayneEmulator
from starlabels.errors import InputDataError, InputFileError, ModelFormatError
from starlabels.models.payne_fit import PayneModel, payne_model
from starlabels.models.payne_solver import FitOptions, fit_spectra
from starlabels.models.payne_spectrum import segments_from

C_KM_S = 299792.458
N_SEG, SEG_PIX = 2, 150
LABELS = ("TEFF", "LOGG", "FE_H")


def wavelengths() -> np.ndarray:
    """Two log-linear segments (apStar spacing) with a gap between them."""
    i = np.r_[np.arange(SEG_PIX), np.arange(SEG_PIX) + SEG_PIX + 100]
    return 10.0 ** (4.18 + 6e-6 * i)


def tiny_emulator(seed: int = 0, n_hidden: int = 4) -> PayneEmulator:
    """A random per-pixel emulator whose flux looks like absorption lines around 1."""
    rng = np.random.default_rng(seed)
    p, n_lab = N_SEG * SEG_PIX, len(LABELS)
    weights = {
        "w_array_0": rng.normal(0, 1.0, (p, n_hidden, n_lab)),
        "b_array_0": rng.normal(0, 0.5, (p, n_hidden)),
        "w_array_1": rng.normal(0, 0.2, (p, n_hidden)),
        "b_array_1": np.ones(p),
        "x_min": np.array([4000.0, 1.0, -1.0]),
        "x_max": np.array([6000.0, 5.0, 0.5]),
    }
    weights = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in weights.items()}
    return PayneEmulator(weights, "per_pixel", LABELS, None, torch.float64)


def tiny_model(**kwargs) -> PayneModel:
    p = N_SEG * SEG_PIX
    kwargs.setdefault("rv_grid", np.arange(-20.0, 20.5, 2.0))
    return PayneModel(tiny_emulator(), LABELS, wavelength=wavelengths(), pixel_index=np.arange(p),
                      n_input_pixels=p, **kwargs)


def make_spectra(model: PayneModel, s: np.ndarray, rv: np.ndarray, cont: np.ndarray) -> np.ndarray:
    sm = model.spectrum_model()
    theta = torch.as_tensor(np.c_[s, rv, cont])
    return sm(theta, jacobian=False)[0].numpy()


def continuum(n: int, model: PayneModel, rng) -> np.ndarray:
    c = np.zeros((n, N_SEG * (model.continuum_degree + 1)))
    c[:, :: model.continuum_degree + 1] = rng.uniform(0.8, 1.2, (n, N_SEG))
    c[:, 1:: model.continuum_degree + 1] = rng.uniform(-0.05, 0.05, (n, N_SEG))
    return c


def test_jacobian_matches_finite_differences():
    model = tiny_model()
    sm = model.spectrum_model()
    rng = np.random.default_rng(1)
    theta = torch.as_tensor(np.c_[rng.uniform(-0.3, 0.3, (2, 3)), [3.1, -7.7], continuum(2, model, rng)])
    _, jac = sm(theta)
    for k in range(sm.n_params):
        step = torch.zeros_like(theta)
        step[:, k] = 1e-6
        fd = (sm(theta + step, False)[0] - sm(theta - step, False)[0]) / 2e-6
        # the velocity derivative of a linear interpolation is exact only between pixel crossings
        tol = 1e-3 if k == 3 else 1e-7
        assert torch.allclose(jac[:, :, k], fd, rtol=tol, atol=tol * float(fd.abs().max()))


def test_fit_recovers_noiseless_labels_rv_and_continuum():
    model = tiny_model(n_starts=3)
    rng = np.random.default_rng(2)
    s = rng.uniform(-0.35, 0.35, (6, 3))
    rv = rng.uniform(-15, 15, 6)
    c = continuum(6, model, rng)
    flux = make_spectra(model, s, rv, c)
    fit = model.fit(flux, np.full_like(flux, 0.01))
    lo, hi = model.emulator.label_range
    assert fit.converged.all()
    np.testing.assert_allclose(fit.labels, (s + 0.5) * (hi - lo) + lo, rtol=0, atol=1e-5 * (hi - lo).max())
    np.testing.assert_allclose(fit.rv, rv, atol=1e-5)
    np.testing.assert_allclose(fit.raw.theta[:, 4:], c, atol=1e-7)
    assert np.all(fit.reduced_chi2 < 1e-8)


def test_rv_shift_recovered_from_numpy_interpolated_spectrum():
    """Shifted with The Payne's own recipe (np.interp at λ·sqrt((1−β)/(1+β)), per segment)."""
    model = tiny_model(continuum_degree=0)
    lo, hi = model.emulator.label_range
    labels = (np.array([0.1, -0.2, 0.15]) + 0.5) * (hi - lo) + lo
    rest = model.emulator(labels).numpy()
    lam = model.wavelength
    for v in (12.3, -31.0):
        d = np.sqrt((1 - v / C_KM_S) / (1 + v / C_KM_S))
        shifted = np.concatenate([np.interp(lam[a:b] * d, lam[a:b], rest[a:b]) for a, b in model.segments])
        keep = np.ones(lam.size, bool)  # edge pixels clamp differently: leave them out
        for a, b in model.segments:
            keep[a:a + 12] = keep[b - 12:b] = False
        error = np.where(keep, 1e-3, np.inf)
        model.rv_grid = np.arange(-40.0, 40.5, 2.0)
        fit = model.fit(shifted[None], error[None])
        assert abs(fit.rv[0] - v) < 1e-4
        np.testing.assert_allclose(fit.labels[0], labels, rtol=1e-6)


def test_covariance_matches_scipy_least_squares():
    """σ from (JᵀΣ⁻¹J)⁻¹ at the optimum equals scipy's, with scipy's own finite-difference J."""
    model = tiny_model(continuum_degree=1, clip_sigma=None)
    sm = model.spectrum_model()
    rng = np.random.default_rng(3)
    s, rv, c = rng.uniform(-0.3, 0.3, (1, 3)), np.array([4.0]), continuum(1, model, rng)
    clean = make_spectra(model, s, rv, c)[0]
    sigma = np.full(clean.size, 0.004)
    noisy = clean + rng.normal(size=clean.size) * sigma
    ours = fit_spectra(sm, noisy[None], sigma[None], FitOptions(starts=np.zeros((1, 3)),
                                                               rv_grid=np.arange(-10.0, 10.5, 1.0)))

    def resid(theta):
        return (noisy - sm(torch.as_tensor(theta[None]), False)[0][0].numpy()) / sigma

    ref = least_squares(resid, np.r_[s[0], rv, c[0]], method="lm", xtol=1e-14, ftol=1e-14)
    cov_ref = np.linalg.inv(ref.jac.T @ ref.jac)
    np.testing.assert_allclose(ours.theta[0], ref.x, atol=2e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(ours.covariance[0])), np.sqrt(np.diag(cov_ref)), rtol=2e-3)
    assert abs(ours.chi2[0] - 2 * ref.cost) < 1e-6 * ours.chi2[0]


def test_masked_pixels_do_not_affect_the_fit():
    model = tiny_model(clip_sigma=None)
    rng = np.random.default_rng(4)
    s, rv, c = rng.uniform(-0.3, 0.3, (3, 3)), rng.uniform(-5, 5, 3), continuum(3, model, rng)
    flux = make_spectra(model, s, rv, c)
    error = np.abs(flux) / 100
    flux = flux + rng.normal(size=flux.shape) * error
    bad = rng.random(flux.shape) < 0.05
    bitmask = np.where(bad, 1 << 1, 0)            # CRPIX, rejected by default
    garbage = np.where(bad, 1e4, flux)
    with_mask = model.fit(garbage, error, bitmask)
    reference = model.fit(flux, np.where(bad, np.inf, error))
    np.testing.assert_allclose(with_mask.labels, reference.labels, rtol=1e-9)
    np.testing.assert_allclose(with_mask.std, reference.std, rtol=1e-9)
    unmasked = model.fit(garbage, error)
    assert np.abs(unmasked.labels - reference.labels).max() > 10 * reference.std.max()
    # The Payne's fit mask works the same way
    fit_mask = np.zeros(flux.shape[1], bool)
    fit_mask[::7] = True
    masked_model = tiny_model(clip_sigma=None, fit_mask=fit_mask)
    corrupted = flux.copy()
    corrupted[:, fit_mask] = -50.0
    np.testing.assert_allclose(masked_model.fit(corrupted, error).labels,
                               model.fit(flux, np.where(fit_mask, np.inf, error)).labels, rtol=1e-9)


def test_predict_moments_and_folder_round_trip(tmp_path):
    model = tiny_model(n_starts=2)
    rng = np.random.default_rng(5)
    s, rv, c = rng.uniform(-0.3, 0.3, (4, 3)), rng.uniform(-5, 5, 4), continuum(4, model, rng)
    flux = make_spectra(model, s, rv, c)
    error = np.abs(flux) / 200
    flux = flux + rng.normal(size=flux.shape) * error
    error[1] = np.inf  # nothing usable: a NaN row
    mean, parts = model.predict_moments(flux, error)
    assert set(parts) == {"jacobian"} and mean.shape == (4, 3)
    assert np.isnan(mean[1]).all() and np.isfinite(mean[[0, 2, 3]]).all()
    path = model.save(tmp_path / "payne")
    back = PayneModel.load(path)
    assert back.label_names == list(LABELS) and back.label_units == ["K", "dex", "dex"]
    assert back.segments == model.segments and back.continuum_degree == model.continuum_degree
    mean2, parts2 = back.predict_moments(flux, error)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(parts2["jacobian"], parts["jacobian"])


def test_segments_from_wavelength_ranges_and_gaps():
    lam = wavelengths()
    assert segments_from(None, lam) == [(0, SEG_PIX), (SEG_PIX, 2 * SEG_PIX)]
    assert segments_from([(lam[10], lam[20])], lam) == [(10, 21)]
    assert segments_from([slice(5, 50), (60, 80)], lam) == [(5, 50), (60, 80)]
    with pytest.raises(InputDataError, match="holds no pixel"):
        segments_from([(1.0, 2.0)], lam)


def test_bad_inputs_name_the_file(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(InputFileError, match=r"nope\.npz"):
        payne_model(missing, LABELS)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputFileError, match=r"junk\.npz"):
        payne_model(junk, LABELS)
    with pytest.raises(InputFileError, match=r"junk\.npz"):
        tiny_model(fit_mask=junk)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(InputFileError, match=r"other\.npz.*not a Payne emulator"):
        payne_model(other, LABELS)
    with pytest.raises(InputDataError, match="3 labels"):
        PayneModel(tiny_emulator(), ["TEFF", "LOGG"], wavelength=wavelengths(),
                   pixel_index=np.arange(300), n_input_pixels=300)
    with pytest.raises(InputDataError, match=r"\(N, 300\)"):
        tiny_model().fit(np.ones((2, 10)), np.ones((2, 10)))
    with pytest.raises(ModelFormatError, match="does not exist"):
        PayneModel.load(tmp_path / "no_model")


def test_shared_emulator_fits_a_real_combined_spectrum(shared_data):
    """The dwarfs emulator on The Payne's combined spectrum of 2M13012770+5754582 converges."""
    npz = np.load(shared_data / "real" / "payne_combined_2M13012770+5754582.npz")
    model = payne_model(shared_data / "emulators" / "payne_apogee_dwarfs_5label.npz",
                        ["TEFF", "LOGG", "FE_H", "ALPHA_M", "VMACRO"],
                        fit_mask=shared_data / "apogee" / "payne_fit_mask_7214.npz", n_starts=2,
                        rv_grid=np.arange(-10.0, 10.5, 2.0))
    flux = np.full((1, model.n_input_pixels), np.nan)
    error = np.full_like(flux, np.nan)
    flux[0, model.pixel_index], error[0, model.pixel_index] = npz["spectrum"], npz["spec_err"]
    fit = model.fit(flux, error)
    assert fit.converged[0] and fit.reduced_chi2[0] < 10
    assert 4200 < fit.labels[0, 0] < 7000 and np.all(fit.std[0] > 0)


def test_default_grid_is_the_payne_grid_inside_apstar():
    from starlabels.models.payne_fit import columns_of, default_grid

    lam, cols, n = default_grid()
    expected = np.r_[np.arange(322, 3242), np.arange(3648, 6048), np.arange(6412, 8306)]
    assert n == 8575 and np.array_equal(cols, expected)
    np.testing.assert_allclose(lam, 10.0 ** (4.179 + 6e-6 * expected), rtol=1e-12)
    with pytest.raises(InputDataError, match="not pixels"):
        columns_of(lam[:3] * 1.0001, 10.0 ** (4.179 + 6e-6 * np.arange(8575)))
