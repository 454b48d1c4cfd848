"""The two-parameter calibration models ("parts", "floor"): recovered from data made with known
parameters, applied by predict exactly as fitted."""

from __future__ import annotations

import numpy as np
import pytest

import starlabels
from starlabels import PredictOptions
from starlabels.errors import InputDataError
from starlabels.inference.calibration import apply_calibration, calibrate, fit_scales
from starlabels.inference.calibration_fits import fit_power, fit_two_parts
from starlabels.inference.prediction import Prediction
from starlabels.statistics import sigma_mad


def test_two_part_fit_recovers_the_factors_of_each_part():
    rng = np.random.default_rng(0)
    n = 6000
    v1 = rng.uniform(0.5, 1.5, n) ** 2            # model part: about constant
    v2 = 10 ** rng.uniform(-2, 1, n)              # noise part: three decades
    r = rng.normal(size=n) * np.sqrt(0.3**2 * v1 + 1.5**2 * v2)
    a, b = fit_two_parts(r, v1, v2, v2 / (v1 + v2), bins=5)
    assert a == pytest.approx(0.3, rel=0.1) and b == pytest.approx(1.5, rel=0.1)
    # one common factor cannot do this: the noisiest and cleanest fifths disagree by > 2x
    s = sigma_mad(r / np.sqrt(v1 + v2))
    order = np.argsort(v2 / (v1 + v2))
    lo, hi = (sigma_mad(r[i] / (s * np.sqrt(v1 + v2)[i])) for i in (order[: n // 5], order[-n // 5:]))
    assert hi / lo > 2


def test_floor_fit_recovers_scale_and_floor_and_zero_floor():
    rng = np.random.default_rng(1)
    n = 6000
    sigma = 10 ** rng.uniform(-2, 0, n)
    r = rng.normal(size=n) * np.sqrt((2.0 * sigma) ** 2 + 0.2**2)
    s, f = fit_two_parts(r, sigma**2, np.ones(n), sigma, allow_zero_second=True)
    assert s == pytest.approx(2.0, rel=0.1) and f == pytest.approx(0.2, rel=0.1)
    r0 = rng.normal(size=n) * 3.0 * sigma
    s0, f0 = fit_two_parts(r0, sigma**2, np.ones(n), sigma, allow_zero_second=True)
    assert s0 == pytest.approx(3.0, rel=0.08) and f0 < 0.01 * np.median(3 * sigma)


def _prediction(parts, mean):
    std = np.sqrt(sum(parts.values()))
    return Prediction(mean=mean, std=std, label_names=["TEFF", "LOGG"], label_units=["K", "dex"],
                      variance_parts=parts,
                      flags=np.zeros(len(mean), np.int32), snr=np.full(len(mean), 100.0),
                      masked_fraction=np.zeros(len(mean)), uncertainty="mc_dropout", n_samples=10,
                      calibrated=False, scales=np.ones(2))


def test_parts_entry_is_applied_as_fitted():
    rng = np.random.default_rng(2)
    n = 3000
    epi = np.stack([rng.uniform(20, 40, n), rng.uniform(0.02, 0.04, n)], 1) ** 2
    ale = np.stack([10 ** rng.uniform(0.5, 2.5, n), 10 ** rng.uniform(-3, -1, n)], 1) ** 2
    true = np.stack([rng.uniform(4000, 5000, n), rng.uniform(1, 3, n)], 1)
    mean = true + rng.normal(size=(n, 2)) * np.sqrt(0.5**2 * epi + 2.0**2 * ale)
    pred = _prediction({"epistemic": epi, "aleatoric": ale}, mean)
    entry = fit_scales(pred, true, model="parts")
    assert entry["model"] == "parts" and entry["scales"] == {"TEFF": 1.0, "LOGG": 1.0}
    for k in ("TEFF", "LOGG"):
        assert entry["part_scales"][k]["epistemic"] == pytest.approx(0.5, rel=0.15)
        assert entry["part_scales"][k]["aleatoric"] == pytest.approx(2.0, rel=0.15)
        assert entry["sigma_mad_after"][k] == pytest.approx(1.0, abs=0.05)
    parts, scales = apply_calibration(pred.variance_parts, ["TEFF", "LOGG"], entry)
    a = np.array([entry["part_scales"][k]["epistemic"] for k in ("TEFF", "LOGG")])
    np.testing.assert_allclose(parts["epistemic"], epi * a**2)
    np.testing.assert_array_equal(scales, [1.0, 1.0])
    with pytest.raises(InputDataError, match="two variance parts"):
        fit_scales(_prediction({"noise": epi}, mean), true, model="parts")
    with pytest.raises(InputDataError, match="model must be"):
        fit_scales(pred, true, model="cubic")


def test_floor_calibration_round_trip_through_the_model_folder(make_model, tmp_path):
    """calibrate(model="floor") on a dev set whose errors span 1.5 decades: saved, and
    predict's σ² is then exactly (sσ)² + f², with a ``floor`` part."""
    model = make_model("apogee_net", 256, dropout=0.0, seed=2)
    folder = tmp_path / "model"
    model.save(folder)
    rng = np.random.default_rng(0)
    x = 1 + 0.1 * rng.normal(size=(600, 256))
    e = 0.05 * 10 ** rng.uniform(-1, 0.5, size=(600, 1)) * np.ones_like(x)
    pred = starlabels.predict(folder, x, e, preprocessed=True, uncertainty="delta",
                              options=PredictOptions(calibrated=False))
    floor = 2.0 * np.median(pred.std, axis=0)
    labels = pred.mean + np.sqrt((1.5 * pred.std) ** 2 + floor**2) * rng.normal(size=pred.mean.shape)
    out = calibrate(folder, x, e, labels, uncertainty="delta", preprocessed=True, save=True,
                    model="floor")
    names = ["TEFF", "LOGG", "FE_H"]
    np.testing.assert_allclose([out["scales"][k] for k in names], 1.5, rtol=0.2)
    np.testing.assert_allclose([out["floor"][k] for k in names], floor, rtol=0.3)
    cal = starlabels.predict(folder, x, e, preprocessed=True, uncertainty="delta")
    s = np.array([out["scales"][k] for k in names])
    f = np.array([out["floor"][k] for k in names])
    np.testing.assert_allclose(cal.std**2, (s * pred.std) ** 2 + f**2, rtol=1e-9)
    np.testing.assert_allclose(cal.variance_parts["floor"], np.broadcast_to(f**2, cal.std.shape), rtol=1e-12)
    assert cal.calibrated


def test_power_model_recovers_the_exponent_and_auto_picks_the_right_model():
    rng = np.random.default_rng(4)
    n = 4000
    sigma = 10 ** rng.uniform(-2, 0, n)
    snr = 1.0 / sigma  # the noise regime: σ falls with SNR
    r = rng.normal(size=n) * 0.5 * sigma**1.5
    s, g = fit_power(r, sigma, snr)
    assert g == pytest.approx(1.5, abs=0.06)
    m = np.median(sigma)
    assert s * m ** (1 - g) == pytest.approx(0.5, rel=0.15)  # s·m·(σ/m)^γ = 0.5 σ^1.5
    # through fit_scales/apply_calibration, with "auto" choosing per label
    mean = np.column_stack([r, rng.normal(size=n) * 2.0 * sigma])  # LOGG: a plain scale of 2
    pred = _prediction({"aleatoric": np.column_stack([sigma, sigma]) ** 2}, mean)
    pred.snr = snr
    entry = fit_scales(pred, np.zeros((n, 2)), model="auto")
    assert entry["models"]["TEFF"] == "power"
    assert entry["power"]["TEFF"]["exponent"] == pytest.approx(1.5, abs=0.06)
    parts, _ = apply_calibration(pred.variance_parts, ["TEFF", "LOGG"], entry)
    std = np.sqrt(parts["aleatoric"])
    p = entry["power"]["TEFF"]
    expect = entry["scales"]["TEFF"] * p["pivot"] * (sigma / p["pivot"]) ** p["exponent"]
    np.testing.assert_allclose(std[:, 0], expect, rtol=1e-9)
    for lo, hi in ((0, n // 5), (4 * n // 5, n)):  # the noisiest and the cleanest fifth both unit-normal
        order = np.argsort(snr)[lo:hi]
        assert sigma_mad(mean[order, 0] / std[order, 0]) == pytest.approx(1.0, abs=0.1)
    if entry["models"]["LOGG"] == "power":  # a plain scale may be fitted as γ ≈ 1
        assert entry["power"]["LOGG"]["exponent"] == pytest.approx(1.0, abs=0.06)
    assert sigma_mad(mean[:, 1] / std[:, 1]) == pytest.approx(1.0, abs=0.02)
