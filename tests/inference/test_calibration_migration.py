"""Model folders of the two older calibration layouts (format_version 1) load with the predictions
their layout meant, and are written in the new layout (calibration stored once, under its own key)
when saved again — for networks and for a LabelMethod (The Cannon)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import starlabels
from starlabels import PredictOptions
from starlabels.inference import flags
from starlabels.inference.calibration import calibrate

NAMES = ["TEFF", "LOGG", "FE_H"]
RAW = PredictOptions(calibrated=False)


def _config(folder):
    return json.loads((folder / "config.json").read_text())


def _write_config(folder, cfg):
    (folder / "config.json").write_text(json.dumps(cfg))


def _spectra(n=40, seed=1):
    rng = np.random.default_rng(seed)
    x = 1 + 0.1 * rng.normal(size=(n, 256))
    return x, np.full_like(x, 0.03)


def test_format_1_folder_with_details_in_the_provenance(make_model, tmp_path):
    """The layout with a flat copy (reading 1.0 for the ``parts`` model) and the details in
    training["uncertainty_calibration"]: the details are what applies, per method."""
    folder = tmp_path / "old"
    make_model("bcnn", 256, seed=4).save(folder)
    x, e = _spectra()
    kw = {"preprocessed": True, "seed": 3, "n_samples": 8}
    raw_mc = starlabels.predict(folder, x, e, uncertainty="mc_dropout", options=RAW, **kw)
    raw_delta = starlabels.predict(folder, x, e, uncertainty="delta", options=RAW, **kw)
    a, b = np.array([0.4, 0.7, 1.3]), np.array([1.9, 1.1, 0.8])
    details = {"format": 1, "method": "mc_dropout", "methods": {
        "mc_dropout": {"scales": dict.fromkeys(NAMES, 1.0), "model": "parts",
                       "part_scales": {k: {"epistemic": a[i], "aleatoric": b[i]}
                                       for i, k in enumerate(NAMES)},
                       "sigma_reference": dict.fromkeys(NAMES, 1e9)},
        "delta": {"scales": {"TEFF": 2.0, "LOGG": 0.5, "FE_H": 3.0}, "model": "scale"}},
        "label_range": {"min": [3000.0, 0.0, -2.5], "max": [7000.0, 5.0, 0.5], "source": "dev set"}}
    cfg = _config(folder)
    cfg.update(format_version=1, calibration=dict.fromkeys(NAMES, 1.0))  # the flat copy: 1.0 for "parts"
    cfg["training"] = {**cfg["training"], "uncertainty_calibration": details, "epochs": 3}
    _write_config(folder, cfg)

    loaded = starlabels.load_model(folder)
    assert loaded.training == {**{k: v for k, v in cfg["training"].items() if k != "uncertainty_calibration"}}
    assert set(loaded.calibration["methods"]) == {"mc_dropout", "delta"}
    mc = starlabels.predict(loaded, x, e, uncertainty="mc_dropout", **kw)
    expect = a**2 * raw_mc.variance_parts["epistemic"] + b**2 * raw_mc.variance_parts["aleatoric"]
    np.testing.assert_allclose(mc.std**2, expect, rtol=1e-9)  # not the flat 1.0
    delta = starlabels.predict(loaded, x, e, uncertainty="delta", **kw)
    np.testing.assert_allclose(delta.std, raw_delta.std * [2.0, 0.5, 3.0], rtol=1e-12)
    assert not (mc.flags & flags.bit("UNCALIBRATED")).any()
    default = starlabels.predict(loaded, x, e, **kw)  # the recorded method stays the default
    assert default.uncertainty == "mc_dropout"
    np.testing.assert_array_equal(default.std, mc.std)

    loaded.save(folder)  # migrated on save
    new = _config(folder)
    assert new["format_version"] == 2 and "uncertainty_calibration" not in new["training"]
    assert new["calibration"]["method"] == "mc_dropout"
    part_scales = new["calibration"]["methods"]["mc_dropout"]["part_scales"]
    assert part_scales["LOGG"] == {"epistemic": 0.7, "aleatoric": 1.1}
    assert new["calibration"]["label_range"] == details["label_range"]
    again = starlabels.predict(folder, x, e, uncertainty="mc_dropout", **kw)
    np.testing.assert_array_equal(again.std, mc.std)
    np.testing.assert_array_equal(again.flags, mc.flags)


FIXTURES = Path(__file__).parents[1] / "fixtures"


def test_format_1_folder_written_by_the_old_code_predicts_as_it_did(tmp_path):
    """tests/fixtures/calibrated_format1 (made by make_calibrated_format1.py with the code before the
    calibration was stored once): a ``parts`` calibration for ``mc_dropout`` whose flat copy reads
    1.0, and a ``floor`` one for ``delta``. Loaded now, and after saving it again in the new layout:
    the deterministic ``delta`` prediction equals that code's; every method predicts the same from
    both folders, bit for bit; the ``parts`` factors recorded in the old details are what σ gets
    (not the flat 1.0); the recorded default method is kept. (MC-dropout and noise draws are not
    compared with the old code's numbers: a change of the sampler may change them legitimately.)"""
    src = FIXTURES / "calibrated_format1" / "model"
    ref = np.load(FIXTURES / "calibrated_format1" / "reference.npz")
    x, e = ref["flux"], ref["error"]
    old = _config(src)
    details = old["training"]["uncertainty_calibration"]
    assert old["format_version"] == 1 and old["calibration"] == dict.fromkeys(NAMES, 1.0)
    assert details["methods"]["mc_dropout"]["model"] == "parts"
    migrated = tmp_path / "model"
    starlabels.load_model(src).save(migrated)
    new = _config(migrated)
    assert new["format_version"] == 2 and "uncertainty_calibration" not in new["training"]
    assert new["calibration"]["methods"] == details["methods"]
    kw = {"preprocessed": True, "n_samples": 10, "seed": 2}
    delta = starlabels.predict(migrated, x, e, uncertainty="delta", **kw)
    # float32 network arithmetic: the CPU's kernels set the summation order (1.9e-7 relative between
    # the EPYC the fixture was written on and a Xeon with AVX-512); the calibration is exact on top
    np.testing.assert_allclose(delta.mean, ref["delta_mean"], rtol=1e-6)
    np.testing.assert_allclose(delta.std, ref["delta_std"], rtol=1e-6)
    np.testing.assert_array_equal(delta.flags, ref["delta_flags"])
    for method in ("mc_dropout", "delta", "noise", None):
        a, b = (starlabels.predict(folder, x, e, **kw, **({} if method is None else {"uncertainty": method}))
                for folder in (src, migrated))
        np.testing.assert_array_equal(a.std, b.std, err_msg=str(method))
        np.testing.assert_array_equal(a.flags, b.flags, err_msg=str(method))
    assert b.uncertainty == str(ref["default_method"]) == "mc_dropout"
    raw = starlabels.predict(migrated, x, e, uncertainty="mc_dropout", options=RAW, **kw)
    factors = details["methods"]["mc_dropout"]["part_scales"]
    a2 = np.array([factors[k]["epistemic"] for k in NAMES]) ** 2
    b2 = np.array([factors[k]["aleatoric"] for k in NAMES]) ** 2
    expect = a2 * raw.variance_parts["epistemic"] + b2 * raw.variance_parts["aleatoric"]
    np.testing.assert_allclose(b.std**2, expect, rtol=1e-9)
    assert not np.allclose(b.std, raw.std)  # the flat 1.0 would have left σ as it was


def test_format_1_folder_with_bare_scales_applies_them_to_every_method(make_model, tmp_path):
    folder = tmp_path / "bare"
    make_model("bcnn", 256, seed=5).save(folder)
    x, e = _spectra(seed=2)
    kw = {"preprocessed": True, "seed": 0, "n_samples": 5}
    scales = np.array([1.5, 0.8, 2.5])
    cfg = _config(folder)
    cfg.update(format_version=1, calibration=dict(zip(NAMES, scales.tolist(), strict=True)))
    _write_config(folder, cfg)
    for method in ("delta", "noise", "mc_dropout"):
        raw = starlabels.predict(folder, x, e, uncertainty=method, options=RAW, **kw)
        cal = starlabels.predict(folder, x, e, uncertainty=method, **kw)
        np.testing.assert_allclose(cal.std, raw.std * scales, rtol=1e-12, err_msg=method)
        assert not (cal.flags & flags.bit("UNCALIBRATED")).any()
    model = starlabels.load_model(folder)
    model.save(folder)
    stored = _config(folder)["calibration"]
    as_dict = dict(zip(NAMES, scales.tolist(), strict=True))
    assert stored == {"format": 2, "methods": {"*": {"model": "scale", "scales": as_dict}}}
    # a per-method calibration replaces the one for every method (as the old layout did)
    rng = np.random.default_rng(0)
    dev = raw.mean + raw.std * rng.normal(size=raw.mean.shape)
    calibrate(folder, x, e, dev, uncertainty="delta", preprocessed=True, save=True)
    assert set(_config(folder)["calibration"]["methods"]) == {"delta"}
    noise = starlabels.predict(folder, x[:3], e[:3], uncertainty="noise", **kw)
    assert (noise.flags & flags.bit("UNCALIBRATED")).all()


def test_committed_format_1_fixture_saves_in_the_new_layout(tmp_path):
    fixture = FIXTURES / "apogee_reference" / "model_raw"
    assert _config(fixture)["format_version"] == 1
    model = starlabels.load_model(fixture, device="cpu")
    assert model.calibration is None
    flux = np.random.default_rng(0).normal(1.0, 0.02, (3, model.n_pixels))
    mean, std = model.predict_preprocessed(flux)
    model.save(tmp_path / "m")
    cfg = _config(tmp_path / "m")
    assert cfg["format_version"] == 2 and cfg["calibration"] is None
    assert cfg["training"] == _config(fixture)["training"]
    mean2, std2 = starlabels.load_model(tmp_path / "m", device="cpu").predict_preprocessed(flux)
    np.testing.assert_array_equal(mean2, mean)
    np.testing.assert_array_equal(std2, std)


def test_cannon_folder_of_format_1_is_migrated(tmp_path):
    """The Cannon shares the calibration (the same estimator, attribute and layout)."""
    from starlabels.models.cannon import CannonModel

    rng = np.random.default_rng(0)
    labels = np.array([4800.0, 2.5, -0.2]) + np.array([300.0, 0.8, 0.3]) * rng.uniform(-1, 1, (200, 3))
    x = (labels - labels.mean(0)) / labels.std(0)
    flux = 1 + 0.02 * x @ rng.normal(size=(3, 30)) + 0.01 * (x**2) @ rng.normal(size=(3, 30))
    error = np.full_like(flux, 0.005)
    flux = flux + error * rng.normal(size=flux.shape)
    cannon = CannonModel(NAMES).fit(flux, error, labels)
    entry = calibrate(cannon, flux[:100], error[:100], labels[:100], preprocessed=True)
    assert entry["uncertainty"] == cannon.default_uncertainty
    folder = tmp_path / "cannon"
    cannon.save(folder)
    new = _config(folder)
    assert new["format_version"] == 2 and "uncertainty_calibration" not in new["training"]
    kw = {"preprocessed": True}
    before = starlabels.predict(folder, flux[100:], error[100:], **kw)
    # rewrite as format 1: flat scales + details in the provenance
    info = new["calibration"]
    old = {**new, "format_version": 1, "calibration": info["methods"][info["method"]]["scales"],
           "training": {**new["training"], "uncertainty_calibration": {**info, "format": 1}}}
    _write_config(folder, old)
    loaded = starlabels.load_model(folder)
    assert loaded.calibration["methods"] == info["methods"]
    assert "uncertainty_calibration" not in loaded.training
    after = starlabels.predict(loaded, flux[100:], error[100:], **kw)
    np.testing.assert_array_equal(after.std, before.std)
    assert not (after.flags & flags.bit("UNCALIBRATED")).any()
    loaded.save(folder)
    assert _config(folder)["calibration"] == {**info, "format": 2}
    assert _config(folder)["format_version"] == 2


def test_bad_stored_calibration_is_a_model_format_error(make_model, tmp_path):
    from starlabels.errors import ModelFormatError

    folder = tmp_path / "bad"
    make_model("bcnn", 256, seed=6).save(folder)
    cfg = _config(folder)
    bad = {"format": 2, "methods": {"delta": {"scales": {"VSINI": 2.0}}}}
    _write_config(folder, {**cfg, "calibration": bad})
    with pytest.raises(ModelFormatError, match="VSINI"):
        starlabels.load_model(folder)
