"""The native Cannon (starlabels.CannonModel) against independent computations: exact recovery of
a known polynomial model, scipy's least squares and root finding, the L1 optimality conditions,
censoring against a smaller model, save/load, the predict/calibrate path, and bad input."""

from __future__ import annotations

import json
from itertools import combinations_with_replacement

import numpy as np
import pytest
import scipy.optimize as op
import torch

import starlabels
from starlabels.errors import InputDataError, ModelFormatError
from starlabels.inference.calibration import calibrate
from starlabels.models.cannon import CannonModel
from starlabels.models.cannon_terms import design_derivative, design_matrix, term_exponents, term_names

NAMES = ["TEFF", "LOGG", "FE_H"]
CENTRE = np.array([4800.0, 2.5, -0.2])
SPREAD = np.array([300.0, 0.8, 0.3])


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return CENTRE + SPREAD * rng.uniform(-1.5, 1.5, (n, 3))


def _offsets_scales(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.percentile(labels, 50, axis=0), np.ptp(np.percentile(labels, [2.5, 97.5], axis=0), axis=0)


def _monomials(x: np.ndarray) -> np.ndarray:
    """Quadratic label vector by hand, in thecannon's order (1, a, b, c, a², ab, ac, b², bc, c²)."""
    cols = [np.ones(len(x))] + [x[:, i] for i in range(3)]
    cols += [x[:, i] * x[:, j] for i, j in combinations_with_replacement(range(3), 2)]
    return np.stack(cols, axis=1)


def _known_model(n=300, n_pixels=40, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    labels = _labels(n, rng)
    off, sc = _offsets_scales(labels)
    theta = rng.normal(0, 0.05, (n_pixels, 10))
    theta[:, 0] = 1.0
    flux = _monomials((labels - off) / sc) @ theta.T
    error = np.full_like(flux, 0.01)
    if noise:
        flux = flux + rng.normal(0, noise, flux.shape)
    return labels, flux, error, theta


def test_terms_follow_thecannons_order_and_derivatives_match_finite_differences():
    e = term_exponents(3, 2)
    assert term_names(["a", "b", "c"], e) == ["1", "a", "b", "c", "a^2", "a*b", "a*c", "b^2", "b*c", "c^2"]
    x = torch.tensor([[0.3, -1.2, 0.7], [1.1, 0.4, -0.5]], dtype=torch.float64)
    np.testing.assert_allclose(design_matrix(x, e).numpy(), _monomials(x.numpy()), rtol=1e-14)
    d = design_derivative(x, e).numpy()
    h = 1e-6
    for k in range(3):
        step = torch.zeros(3, dtype=torch.float64)
        step[k] = h
        fd = (design_matrix(x + step, e) - design_matrix(x - step, e)).numpy() / (2 * h)
        np.testing.assert_allclose(d[:, :, k], fd, atol=1e-8)
    assert term_exponents(2, 3).shape == (10, 2)  # 1, 2 linear, 3 quadratic, 4 cubic terms


def test_exact_recovery_of_a_known_polynomial_model():
    labels, flux, error, theta = _known_model()
    m = CannonModel(NAMES).fit(flux, error, labels)
    off, sc = _offsets_scales(labels)
    np.testing.assert_allclose(m.offsets_, off)
    np.testing.assert_allclose(m.scales_, sc)
    np.testing.assert_allclose(m.theta_, theta, atol=1e-10)
    assert np.all(m.s2_ == 0) and m.pixel_used_.all() and m.converged_.all()
    np.testing.assert_allclose(m(labels[:5]), flux[:5], atol=1e-10)
    # the test step finds the labels of noise-free spectra from the default starts
    lab, _, chi2, conv = m.fit_labels(flux[:20], error[:20])
    # to 1e-7 of each label's scale: the test step's χ² = vᵀGv − 2vᵀc + fᵀWf cancels near its minimum,
    # which limits a label to ~1e-8 of its scale; 1e-7 of a label near zero is finer than that (an
    # [Fe/H] of -0.0675 came back 2.2e-7 of itself off on a Xeon with AVX-512, 1.7e-8 of its scale)
    np.testing.assert_array_less(np.abs(lab - labels[:20]) / sc, 1e-7)
    assert conv.all() and np.all(chi2 < 1e-10)


def test_scatter_matches_root_of_thecannons_median_equation():
    rng = np.random.default_rng(3)
    labels, flux, error, _ = _known_model(n=301, seed=3)
    extra = rng.uniform(0.0, 0.03, flux.shape[1])  # intrinsic scatter per pixel
    flux = flux + rng.normal(0, 1, flux.shape) * np.sqrt(0.01**2 + extra**2)
    for n in (301, 300):  # odd (order statistic) and even (bisection) counts
        m = CannonModel(NAMES).fit(flux[:n], error[:n], labels[:n])
        resid2 = (flux[:n] - m(labels[:n])) ** 2
        ivar = 1 / error[:n] ** 2
        for p in range(flux.shape[1]):
            def g(s2, r2=resid2[:, p], iv=ivar[:, p]):
                return np.median(r2 * iv / (1 + iv * s2)) - 1
            if g(0.0) <= 0:
                assert m.s2_[p] == 0
            else:
                root = op.brentq(g, 0.0, 10 * resid2[:, p].max(), xtol=1e-16, rtol=1e-13)
                assert abs(g(m.s2_[p])) < 1e-9
                np.testing.assert_allclose(m.s2_[p], root, rtol=1e-6)


def test_test_step_and_fisher_sigma_match_scipy_least_squares():
    labels, flux, error, _ = _known_model(n=300, n_pixels=60, seed=1, noise=0.01)
    m = CannonModel(NAMES).fit(flux, error, labels)
    f, e = flux[:3] + 0.0, error[:3]
    lab, cov, chi2, conv = m.fit_labels(f, e)
    w = 1 / (e**2 + m.s2_[None])
    for i in range(3):
        def resid(y, i=i):
            return np.sqrt(w[i]) * (m(y[None])[0] - f[i])
        sol = op.least_squares(resid, m.initial_labels_[0], x_scale=m.scales_, xtol=1e-15, ftol=1e-15,
                               gtol=1e-15, method="lm")
        np.testing.assert_allclose(lab[i], sol.x, rtol=1e-7, atol=1e-9 * m.scales_.max())
        np.testing.assert_allclose(chi2[i], 2 * sol.cost, rtol=1e-8)
        jac = _jacobian(resid, sol.x, m.scales_)
        ref = np.linalg.inv(jac.T @ jac)
        np.testing.assert_allclose(np.diag(cov[i]), np.diag(ref), rtol=1e-5)
        norm = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))  # off-diagonals as correlations
        np.testing.assert_allclose(cov[i] / norm, ref / norm, atol=1e-5)
    assert conv.all()


def _jacobian(fun, x, scales):
    """Central finite differences, step 1e-5 of each label's scale."""
    cols = []
    for k in range(len(x)):
        h = 1e-5 * scales[k]
        dx = np.zeros_like(x)
        dx[k] = h
        cols.append((fun(x + dx) - fun(x - dx)) / (2 * h))
    return np.stack(cols, axis=1)


def test_l1_solution_satisfies_the_optimality_conditions():
    labels, flux, error, _ = _known_model(n=200, n_pixels=30, seed=2, noise=0.01)
    lam = 2000.0
    m = CannonModel(NAMES, regularisation=lam).fit(flux, error, labels)
    m0 = CannonModel(NAMES).fit(flux, error, labels)
    assert m.converged_.all()
    assert (m.theta_[:, 1:] == 0).sum() > (m0.theta_[:, 1:] == 0).sum()
    x = (labels - m.offsets_) / m.scales_
    D = _monomials(x)
    ivar = 1 / error**2
    for p in range(flux.shape[1]):
        grad = 2 * D.T @ (ivar[:, p] * (D @ m.theta_[p] - flux[:, p]))  # ∂χ²/∂θ
        assert abs(grad[0]) < 1e-6 * lam
        nz = m.theta_[p, 1:] != 0
        np.testing.assert_allclose(grad[1:][nz], -lam * np.sign(m.theta_[p, 1:][nz]), rtol=1e-6,
                                   atol=1e-6 * lam)
        assert np.all(np.abs(grad[1:][~nz]) <= lam * (1 + 1e-6))


def test_censoring_zeroes_the_censored_terms_and_matches_a_smaller_model():
    labels, flux, error, _ = _known_model(n=300, n_pixels=20, seed=4, noise=0.01)
    allowed = np.arange(20) % 2 == 0  # FE_H may shape the even pixels only
    m = CannonModel(NAMES, censors={"FE_H": allowed}).fit(flux, error, labels)
    with_feh = np.array(["FE_H" in t for t in m.terms_])
    assert np.all(m.theta_[~allowed][:, with_feh] == 0)
    assert np.all(m.theta_[allowed][:, with_feh] != 0)
    # the censored pixels are fitted as a TEFF, LOGG model with the same label scaling
    small = CannonModel(NAMES[:2]).fit(flux, error, labels[:, :2])
    np.testing.assert_allclose(m.theta_[~allowed][:, ~with_feh], small.theta_[~allowed], rtol=1e-9,
                               atol=1e-12)
    full = CannonModel(NAMES).fit(flux, error, labels)
    np.testing.assert_allclose(m.theta_[allowed], full.theta_[allowed], rtol=1e-12)


def test_inf_error_pixels_are_unused():
    labels, flux, error, _ = _known_model(n=200, n_pixels=30, seed=5, noise=0.01)
    m = CannonModel(NAMES).fit(flux, error, labels)
    f2, e2 = flux.copy(), error.copy()
    rng = np.random.default_rng(0)
    bad = rng.random(flux.shape) < 0.1
    f2[bad], e2[bad] = np.nan, np.inf
    e2[:, 7] = np.inf  # one pixel never observed: unused, as thecannon's Σ ivar < N rule
    m2 = CannonModel(NAMES).fit(f2, e2, labels)
    assert not m2.pixel_used_[7] and m2.s2_[7] == np.inf and np.all(m2.theta_[7] == [1] + [0] * 9)
    assert np.all(np.abs(m2.theta_[m2.pixel_used_] - m.theta_[m2.pixel_used_]) < 0.05)
    a, _, _, _ = m2.fit_labels(f2[:5], e2[:5])
    b, _, _, _ = m2.fit_labels(np.where(bad[:5], 1e6, f2[:5]), e2[:5])
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip_and_predict_through_the_folder(tmp_path):
    labels, flux, error, _ = _known_model(n=300, n_pixels=40, seed=6, noise=0.01)
    m = CannonModel(NAMES, label_units=["K", "dex", "dex"], regularisation=10.0,
                    censors={"LOGG": np.arange(40) < 30}).fit(flux, error, labels)
    folder = m.save(tmp_path / "cannon")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["method"] == "cannon" and cfg["labels"]["names"] == NAMES
    loaded = starlabels.load_model(folder)
    assert isinstance(loaded, CannonModel)
    for attr in ("theta_", "s2_", "offsets_", "scales_", "initial_labels_", "label_mask_"):
        np.testing.assert_array_equal(getattr(loaded, attr), getattr(m, attr))
    assert loaded.regularisation == 10.0 and loaded.terms_ == m.terms_
    p1 = starlabels.predict(m, flux[:10], error[:10], preprocessed=True)
    p2 = starlabels.predict(folder, flux[:10], error[:10], preprocessed=True)
    np.testing.assert_array_equal(p1.mean, p2.mean)
    np.testing.assert_array_equal(p1.std, p2.std)
    assert p1.uncertainty == "fisher" and p1.label_units == ["K", "dex", "dex"]
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"weights\.safetensors"):
        starlabels.load_model(folder)


def test_predict_and_calibrate_like_a_network():
    from starlabels.inference import flags

    labels, flux, error, _ = _known_model(n=400, n_pixels=60, seed=7, noise=0.01)
    m = CannonModel(NAMES).fit(flux[:300], error[:300], labels[:300])
    p = starlabels.predict(m, flux[300:], error[300:], preprocessed=True)
    assert p.mean.shape == p.std.shape == (100, 3)
    assert np.all(p.flags & flags.bit("UNCALIBRATED"))
    np.testing.assert_allclose(p.std**2, p.variance_parts["fisher"])
    entry = calibrate(m, flux[300:], error[300:], labels[300:], preprocessed=True)
    assert entry["uncertainty"] == "fisher"
    q = starlabels.predict(m, flux[300:], error[300:], preprocessed=True)
    assert q.calibrated and not np.any(q.flags & flags.bit("UNCALIBRATED"))
    z = (q.mean - labels[300:]) / q.std
    mad = 1.4826 * np.median(np.abs(z - np.median(z, axis=0)), axis=0)
    np.testing.assert_allclose(mad, 1.0, rtol=1e-6)
    # a spectrum without any usable pixel: NaN labels and the INVALID_SPECTRUM flag
    e = error[300:303].copy()
    e[1] = np.inf
    r = starlabels.predict(m, flux[300:303], e, preprocessed=True)
    assert np.isnan(r.mean[1]).all() and r.flags[1] & flags.bit("INVALID_SPECTRUM")
    assert np.isfinite(r.mean[[0, 2]]).all()


def test_bad_input_is_refused_with_clear_errors():
    labels, flux, error, _ = _known_model(n=100, n_pixels=20, seed=8)
    with pytest.raises(InputDataError, match="not fitted"):
        CannonModel(NAMES).fit_labels(flux, error)
    bad = labels.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputDataError, match="non-finite labels"):
        CannonModel(NAMES).fit(flux, error, bad)
    with pytest.raises(InputDataError, match="labels have shape"):
        CannonModel(NAMES).fit(flux, error, labels[:, :2])
    with pytest.raises(InputDataError, match="must both be"):
        CannonModel(NAMES).fit(flux, error[:, :5], labels)
    f = flux.copy()
    f[0, 0] = np.nan
    with pytest.raises(InputDataError, match="error = inf"):
        CannonModel(NAMES).fit(f, error, labels)
    with pytest.raises(InputDataError, match="polynomial terms"):
        CannonModel(NAMES).fit(flux[:5], error[:5], labels[:5])
    with pytest.raises(InputDataError, match="regularisation"):
        CannonModel(NAMES, regularisation=-1.0)
    with pytest.raises(InputDataError, match="unknown label"):
        CannonModel(NAMES, censors={"MG_FE": np.ones(20, bool)})
    with pytest.raises(InputDataError, match="censor mask"):
        CannonModel(NAMES, censors={"FE_H": np.ones(3, bool)}).fit(flux, error, labels)
    m = CannonModel(NAMES).fit(flux, error, labels)
    with pytest.raises(InputDataError, match="pixels"):
        starlabels.predict(m, flux[:, :10], error[:, :10], preprocessed=True)
    with pytest.raises(InputDataError, match="errors"):
        starlabels.predict(m, flux, preprocessed=True)
    with pytest.raises(InputDataError, match="fisher"):
        starlabels.predict(m, flux, error, preprocessed=True, uncertainty="mc_dropout")


def test_censors_from_element_windows(tmp_path):
    from starlabels.models.cannon import censors_from_windows

    windows = np.zeros((3, 20), bool)
    windows[0, :5], windows[1, 5:12], windows[2, 12:] = True, True, True
    path = tmp_path / "windows.npz"
    np.savez(path, windows=windows, elements=np.array(["Mg", "Fe", "Al"]))
    c = censors_from_windows(["TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE", "K_FE"], path)
    assert sorted(c) == ["AL_FE", "MG_FE"]  # FE_H shapes every pixel; K has no window
    np.testing.assert_array_equal(c["MG_FE"], windows[0])
    np.testing.assert_array_equal(c["AL_FE"], windows[2])
    labels, flux, error, _ = _known_model(n=300, n_pixels=20, seed=9, noise=0.01)
    names = ["TEFF", "LOGG", "MG_FE"]
    m = CannonModel(names, censors=censors_from_windows(names, windows, ["Mg", "Fe", "Al"])).fit(
        flux, error, labels)
    with_mg = np.array(["MG_FE" in t for t in m.terms_])
    assert np.all(m.theta_[~windows[0]][:, with_mg] == 0) and np.all(m.theta_[windows[0]][:, with_mg] != 0)
    with pytest.raises(InputDataError, match="element name"):
        censors_from_windows(names, windows, ["Mg"])


def test_the_older_spelling_regularization_still_works(tmp_path):
    """``regularization=`` (before one British spelling) warns and means ``regularisation=``; model
    folders written with the key ``"regularization"`` (config value or per-pixel tensor) still load."""
    from safetensors.torch import load_file, save_file

    labels, flux, error, _ = _known_model(n=200, n_pixels=30, seed=2, noise=0.01)
    lam = np.linspace(0.0, 2000.0, 30)
    new = CannonModel(NAMES, regularisation=lam).fit(flux, error, labels)
    with pytest.warns(DeprecationWarning, match="regularisation"):
        old = CannonModel(NAMES, regularization=lam)
    np.testing.assert_array_equal(old.fit(flux, error, labels).theta_, new.theta_)
    with pytest.warns(DeprecationWarning, match="regularisation"):
        np.testing.assert_array_equal(new.regularization, lam)
    for per_pixel in (True, False):
        model = new if per_pixel else CannonModel(NAMES, regularisation=7.0).fit(flux, error, labels)
        folder = model.save(tmp_path / f"cannon_{per_pixel}")
        cfg = json.loads((folder / "config.json").read_text())
        cfg["cannon"]["regularization"] = cfg["cannon"].pop("regularisation")
        (folder / "config.json").write_text(json.dumps(cfg))
        weights = load_file(folder / "weights.safetensors")
        assert ("regularisation" in weights) == per_pixel
        if per_pixel:
            weights["regularization"] = weights.pop("regularisation")
            save_file(weights, folder / "weights.safetensors")
        loaded = CannonModel.load(folder)
        np.testing.assert_array_equal(loaded.regularisation, lam if per_pixel else 7.0)
        np.testing.assert_array_equal(loaded.theta_, model.theta_)
