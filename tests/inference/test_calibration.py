"""Uncertainty calibration: σ_MAD of the z-scores is 1 after, stored in the model folder, applied."""

from __future__ import annotations

import json

import numpy as np
import pytest

import starlabels
from starlabels import PredictOptions
from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.inference import flags
from starlabels.inference.calibration import calibrate, report
from starlabels.statistics import sigma_mad


@pytest.fixture
def dev_set(make_model, tmp_path):
    """A saved ApogeeNet model (no variance head, so σ is the delta-method σ) and a dev set whose
    labels scatter around the predictions by 2.5 × the predicted σ, with outliers and gaps."""
    model = make_model("apogee_net", 256, dropout=0.0, seed=2)
    folder = tmp_path / "model"
    model.save(folder)
    rng = np.random.default_rng(0)
    x = 1 + 0.1 * rng.normal(size=(300, 256))
    e = np.full_like(x, 0.05)
    pred = starlabels.predict(folder, x, e, preprocessed=True, uncertainty="delta",
                              options=PredictOptions(calibrated=False))
    labels = pred.mean + np.array([2.5, 0.5, 1.0]) * pred.std * rng.normal(size=pred.mean.shape)
    labels[:15] += 50 * pred.std[:15]  # 5 % gross outliers: σ_MAD ignores them
    labels[20:40, 0] = MISSING
    labels[40:50, 1] = np.nan
    return folder, x, e, labels, pred


def test_scales_make_sigma_mad_of_z_one_and_are_saved(dev_set):
    folder, x, e, labels, pred = dev_set
    out = calibrate(folder, x, e, labels, uncertainty="delta", preprocessed=True, save=True)
    assert out["uncertainty"] == "delta"
    np.testing.assert_allclose([out["scales"][k] for k in ("TEFF", "LOGG", "FE_H")], [2.5, 0.5, 1.0],
                               rtol=0.15)
    for k in ("TEFF", "LOGG", "FE_H"):
        assert out["sigma_mad_before"][k] == pytest.approx(out["scales"][k])
        assert out["sigma_mad_after"][k] == pytest.approx(1.0, abs=1e-9)
    assert out["n_dev"] == {"TEFF": 280, "LOGG": 290, "FE_H": 300}  # missing labels ignored
    assert "before -> after" in report(out)

    cfg = json.loads((folder / "config.json").read_text())
    info = cfg["calibration"]  # stored once, under its own key (not in the training provenance)
    assert "uncertainty_calibration" not in cfg["training"] and cfg["format_version"] == 2
    assert info["methods"]["delta"]["scales"] == pytest.approx(out["scales"])
    assert info["method"] == "delta"
    assert set(info["methods"]["delta"]["sigma_reference"]) == {"TEFF", "LOGG", "FE_H"}
    loaded = starlabels.load_model(folder).calibration
    assert loaded["methods"]["delta"]["scales"] == pytest.approx(out["scales"])

    # applied by default when predicting from the folder: z-scores now have σ_MAD 1
    cal = starlabels.predict(folder, x, e, preprocessed=True, uncertainty="delta")
    assert cal.calibrated and not (cal.flags & flags.bit("UNCALIBRATED")).any()
    np.testing.assert_allclose(cal.std, pred.std * [out["scales"][k] for k in cal.label_names], rtol=1e-9)
    lab = np.where(labels == MISSING, np.nan, labels)
    z = (cal.mean - lab) / cal.std
    np.testing.assert_allclose([sigma_mad(z[:, k]) for k in range(3)], 1.0, atol=1e-9)
    # ... and only for the method it was fitted for
    other = starlabels.predict(folder, x[:3], e[:3], preprocessed=True, uncertainty="noise", n_samples=5)
    assert (other.flags & flags.bit("UNCALIBRATED")).all()


def test_high_uncertainty_flag_uses_the_stored_reference(dev_set):
    folder, x, e, labels, _ = dev_set
    calibrate(folder, x, e, labels, uncertainty="delta", preprocessed=True, save=True, percentile=99.0)
    same = starlabels.predict(folder, x, e, preprocessed=True, uncertainty="delta")
    frac = np.mean(same.flags & flags.bit("HIGH_UNCERTAINTY") > 0)
    assert 0 < frac <= 0.03  # the 99th percentile of each of 3 labels
    noisy = starlabels.predict(folder, x[:20], 10 * e[:20], preprocessed=True, uncertainty="delta")
    assert (noisy.flags & flags.bit("HIGH_UNCERTAINTY")).all()  # σ × 10 is out of distribution


def test_calibration_needs_labels(dev_set):
    folder, x, e, labels, _ = dev_set
    labels = labels.copy()
    labels[:, 2] = MISSING
    with pytest.raises(InputDataError, match="FE_H"):
        calibrate(folder, x, e, labels, uncertainty="delta", preprocessed=True)
