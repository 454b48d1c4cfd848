"""The three fitted estimators — UncertaintyCalibration, LabelCoverage, DomainShift — follow
scikit-learn's conventions (settings in the constructor, which does nothing else; fitted state in
attributes ending in "_"; a clear error when used unfitted) and round-trip through to_dict/from_dict
(and JSON) to the same numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from starlabels.errors import InputDataError
from starlabels.inference.calibration import calibrate, fit_scales
from starlabels.inference.domain_shift import DomainShift
from starlabels.inference.label_coverage import LabelCoverage
from starlabels.inference.prediction import Prediction
from starlabels.inference.uncertainty_calibration import UncertaintyCalibration, apply_calibration
from starlabels.statistics import sigma_mad

NAMES = ["TEFF", "LOGG", "FE_H"]


def _dev_prediction(n=3000, seed=3):
    """An uncalibrated two-part prediction over SNRs 10–300 whose true errors are 0.5·epistemic
    and 1.7·aleatoric, and the true labels (zeros, with gaps)."""
    rng = np.random.default_rng(seed)
    snr = 10 ** rng.uniform(1, 2.5, n)
    epi = np.tile(rng.uniform(0.5, 1.5, (n, 1)) ** 2, (1, 3)) * [100.0, 0.01, 0.001]
    ale = (30.0 / snr[:, None]) ** 2 * [100.0, 0.01, 0.001]
    mean = rng.normal(size=(n, 3)) * np.sqrt(0.25 * epi + 2.89 * ale)
    pred = Prediction(mean=mean, std=np.sqrt(epi + ale), label_names=NAMES, label_units=["K", "dex", "dex"],
                      variance_parts={"epistemic": epi, "aleatoric": ale}, flags=np.zeros(n, np.int32),
                      snr=snr, masked_fraction=np.zeros(n), uncertainty="mc_dropout", n_samples=20,
                      calibrated=False, scales=np.ones(3))
    labels = np.zeros((n, 3))
    labels[:40, 1] = -9999.0
    labels[40:70, 2] = np.nan
    return pred, labels


def _public_state(estimator):
    return {k for k in vars(estimator) if not k.startswith("__")}


def test_calibration_constructor_only_stores_settings_and_fit_adds_underscored_state():
    est = UncertaintyCalibration("cubic", bins=7, percentile=95.0)  # not checked here
    assert _public_state(est) == {"model", "bins", "percentile"}
    assert (est.model, est.bins, est.percentile) == ("cubic", 7, 95.0)
    pred, labels = _dev_prediction()
    with pytest.raises(InputDataError, match="model must be"):
        est.fit(pred, labels)
    with pytest.raises(InputDataError, match="not fitted"):
        UncertaintyCalibration().apply(pred.variance_parts, NAMES)
    with pytest.raises(InputDataError, match="not fitted"):
        UncertaintyCalibration().to_dict()
    fitted = UncertaintyCalibration("parts").fit(pred, labels)
    new = _public_state(fitted) - {"model", "bins", "percentile"}
    assert new and all(k.endswith("_") for k in new)
    assert (fitted.model, fitted.bins, fitted.percentile) == ("parts", 5, 99.0)  # settings untouched
    # the fitted part factors are the generating ones, and σ_MAD(z) is 1 after
    for k in NAMES:
        assert fitted.part_scales_[k]["epistemic"] == pytest.approx(0.5, rel=0.2)
        assert fitted.part_scales_[k]["aleatoric"] == pytest.approx(1.7, rel=0.2)
        assert fitted.sigma_mad_after_[k] == pytest.approx(1.0, abs=1e-6)
    assert fitted.n_dev_ == {"TEFF": 3000, "LOGG": 2960, "FE_H": 2970}


@pytest.mark.parametrize("model", ["scale", "parts", "floor", "power", "auto"])
def test_calibration_round_trips_through_to_dict_and_json(model):
    pred, labels = _dev_prediction(n=300)
    fitted = UncertaintyCalibration(model).fit(pred, labels)
    stored = json.loads(json.dumps(fitted.to_dict()))
    back = UncertaintyCalibration.from_dict(stored)
    assert back.to_dict() == fitted.to_dict()
    assert (back.model, back.bins, back.percentile) == (model, 5, 99.0)
    parts, scales = fitted.apply(pred.variance_parts, NAMES)
    parts2, scales2 = back.apply(pred.variance_parts, NAMES)
    np.testing.assert_array_equal(scales2, scales)
    assert parts.keys() == parts2.keys()
    for p in parts:
        np.testing.assert_array_equal(parts2[p], parts[p])
    # the dict functions are the estimator: fit_scales = fit().to_dict(), apply_calibration = apply()
    entry = fit_scales(pred, labels, model=model)
    assert {k: v for k, v in entry.items() if k != "created"} == {
        k: v for k, v in fitted.to_dict().items() if k != "created"}
    parts3, _ = apply_calibration(pred.variance_parts, NAMES, entry)
    for p in parts:
        np.testing.assert_array_equal(parts3[p], parts[p])
    # calibrated z-scores: σ_MAD 1 over all the dev rows
    lab = np.where(labels == -9999.0, np.nan, labels)
    z = (pred.mean - lab) / np.sqrt(sum(parts.values()))
    np.testing.assert_allclose([sigma_mad(z[:, k]) for k in range(3)], 1.0, atol=1e-6)


def test_calibration_apply_orders_labels_by_name_and_leaves_coverage_alone():
    cal = UncertaintyCalibration.from_dict({"scales": {"LOGG": 3.0, "TEFF": 2.0}})  # a bare entry
    v = {"noise": np.ones((2, 3)), "coverage": np.full((2, 3), 5.0)}
    parts, scales = cal.apply(v, NAMES)
    np.testing.assert_array_equal(scales, [2.0, 3.0, 1.0])  # FE_H unknown: 1
    np.testing.assert_array_equal(parts["noise"], np.tile([4.0, 9.0, 1.0], (2, 1)))
    np.testing.assert_array_equal(parts["coverage"], v["coverage"])


def test_calibrate_keeps_model_kind_as_a_deprecated_alias(make_model):
    tm = make_model("apogee_net", 256, dropout=0.0, seed=2)
    rng = np.random.default_rng(0)
    x = 1 + 0.1 * rng.normal(size=(120, 256))
    e = np.full_like(x, 0.05)
    labels = rng.normal(size=(120, 3)) * [100.0, 0.1, 0.05] + [5000.0, 3.0, 0.0]
    new = calibrate(tm, x, e, labels, uncertainty="delta", preprocessed=True, model="floor")
    with pytest.warns(DeprecationWarning, match="model_kind"):
        old = calibrate(tm, x, e, labels, uncertainty="delta", preprocessed=True, model_kind="floor")
    assert old["model"] == new["model"] == "floor" and old["floor"] == new["floor"]
    assert tm.calibration["methods"]["delta"]["floor"] == new["floor"]


def _embeddings(rng, n, dim=6, shift=0.0):
    return rng.normal(size=(n, dim)) + shift


def test_coverage_conventions_and_round_trip():
    rng = np.random.default_rng(0)
    est = LabelCoverage(k=-1, percentile=95.0)  # checked by fit, not by the constructor
    assert _public_state(est) == {"k", "percentile", "snr_bins", "max_reference", "seed"}
    train, dev = _embeddings(rng, 400), _embeddings(rng, 300)
    t_lab = rng.normal(size=(400, 2)) * [100.0, 0.5]
    t_lab[200:, 1] = -9999.0
    d_lab = np.zeros((300, 2))
    with pytest.raises(InputDataError, match="k >= 1"):
        est.fit(train, t_lab, dev, d_lab)
    with pytest.raises(InputDataError, match="not fitted"):
        LabelCoverage().variance(dev)
    snr = 10 ** rng.uniform(1, 2.5, 300)
    cov = LabelCoverage(k=5, max_reference=300).fit(train, t_lab, dev, d_lab, snr,
                                                    label_names=["TEFF", "LOGG"], network_fingerprint="abc")
    assert all(k.endswith("_") for k in _public_state(cov) - _public_state(est))
    assert cov.reference_.shape == (300, 6) and cov.has_label_.shape == (300, 2)
    assert cov.d_ref_.shape == (2, 3)  # 300 dev rows: 3 SNR bins of 100
    np.testing.assert_allclose(cov.tau_, [np.std(t_lab[:, 0]), np.std(t_lab[:200, 1])])
    # the reference rows are the documented seeded subset
    rows = cov.reference_rows(t_lab)
    np.testing.assert_array_equal(cov.reference_, train[rows].astype(np.float32))
    d = cov.to_dict()
    back = LabelCoverage.from_dict({"meta": json.loads(json.dumps(d["meta"])), "arrays": d["arrays"]})
    assert (back.k, back.percentile, back.max_reference, back.fingerprint_) == (5, 95.0, 300, "abc")
    far = _embeddings(rng, 20, shift=4.0)
    np.testing.assert_array_equal(back.variance(far, snr[:20]), cov.variance(far, snr[:20]))
    assert (cov.transform(far, snr[:20]) > 0).all()


def test_domain_shift_conventions_and_json_round_trip():
    rng = np.random.default_rng(1)
    est = DomainShift("pca", n_components=3)
    settings = {"method", "n_components", "k", "percentile", "max_reference", "z2_cap", "seed"}
    assert _public_state(est) == settings
    with pytest.raises(InputDataError, match="not fitted"):
        est.score(np.zeros((2, 8)))
    train, dev = _embeddings(rng, 300, dim=8), _embeddings(rng, 100, dim=8)
    est.fit(train, dev, network_fingerprint="w1")
    assert all(k.endswith("_") for k in _public_state(est) - settings)
    d = est.to_dict()
    back = DomainShift.from_dict({"meta": json.loads(json.dumps(d["meta"])), "arrays": d["arrays"]})
    assert back.fingerprint_ == "w1" and back.threshold_ == est.threshold_
    x = _embeddings(rng, 10, dim=8, shift=1.0)
    np.testing.assert_allclose(back.transform(x), est.score(x), rtol=1e-5)  # arrays stored as float32
