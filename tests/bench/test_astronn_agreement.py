"""Imported astroNN models against astroNN 1.1.0 itself: ``bench/astronn_agreement.py --quick`` trains
and saves ApogeeBCNN and ApogeeBCNNCensored with astroNN (TensorFlow 2.13, in the bench's own
virtual environment) and predicts with them; here starlabels predicts the same spectra from the
folders astroNN wrote and every number is compared afresh. Skips with the pip error when astroNN's
environment cannot be installed."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

import starlabels
from starlabels.models import from_astronn
from starlabels.models.astronn_import import astronn_predict


@pytest.fixture(scope="module")
def run(bench_run):
    """``bench/astronn_agreement.py --quick``, started in the background after collection (conftest.py)."""
    returncode, output, work = bench_run("astronn")
    if returncode != 0 and "could not set up astroNN's environment" in output:
        pytest.skip(f"astroNN's virtual environment could not be installed here: {output[-800:]}")
    assert returncode == 0, output
    data_dir = Path(json.loads((work / "summary.json").read_text())["meta"]["astronn_data"])
    return work, dict(np.load(work / "astronn_out.npz")), dict(np.load(work / "astronn_in.npz")), data_dir


def _import(work: Path, key: str, data_dir: Path):
    return from_astronn(work / key, continuum_mask=data_dir / "dr17_contmask.npy",
                        element_windows=data_dir / "aspcap_l31c_masks.npy")


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("key", ["bcnn", "censored"])
def test_dropout_off_equals_astronn(run, key):
    work, an, inp, data_dir = run
    model = _import(work, key, data_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pred = starlabels.predict(model, an["test_flux"], preprocessed=True, uncertainty=None)
        raw = starlabels.predict(model, inp["raw_flux"], inp["raw_error"], bitmask=inp["raw_bitmask"],
                                 uncertainty=None)
    ref, scale = an[f"{key}_mean"], np.asarray(model.label_scaler.std)
    assert np.all(np.isfinite(ref)) and np.all(np.abs(ref) < 9000)  # astroNN trained (no NaN → -9999)
    assert np.max(np.abs(pred.mean - ref) / np.maximum(np.abs(ref), scale)) <= 1e-4
    assert np.max(np.abs(pred.std - an[f"{key}_sigma"]) / an[f"{key}_sigma"]) <= 1e-3
    # raw apStar through the model's astroNN continuum = apogee_continuum then astroNN
    assert np.max(np.abs(raw.mean - ref) / np.maximum(np.abs(ref), scale)) <= 1e-4


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("key", ["bcnn", "censored"])
def test_mc_dropout_within_monte_carlo_error(run, key):
    work, an, _inp, data_dir = run
    model = _import(work, key, data_dir)
    pred = starlabels.predict(model, an["test_flux"], preprocessed=True, uncertainty="mc_dropout",
                              n_samples=100, seed=11)
    sigma_model = an[f"{key}_mc1_model"]
    assert np.all(sigma_model > 0)  # astroNN's passes differ: its dropout was on
    z = (pred.mean - an[f"{key}_mc1_mean"]) / (np.sqrt(2.0 / 100) * sigma_model)
    z_an = (an[f"{key}_mc2_mean"] - an[f"{key}_mc1_mean"]) / (np.sqrt(2.0 / 100) * sigma_model)
    assert 0.5 < np.sqrt(np.mean(z**2)) < 1.6 and 0.5 < np.sqrt(np.mean(z_an**2)) < 1.6
    ours = np.sqrt(pred.variance_parts["epistemic"])
    rel = (ours - sigma_model) / sigma_model
    rel_an = (an[f"{key}_mc2_model"] - sigma_model) / sigma_model
    # σ of the passes: scatter like astroNN's own run-to-run scatter, no bias beyond it. A statistical
    # check: with our seeded 100-pass σ standing in for astroNN's runs (six astroNN trainings, 4000
    # triples each) RMS(rel) ≥ 1.5 × RMS(rel_an) came out in 0.05–0.18 % of draws; over 288 σ of the
    # six models our pass-to-pass mean square 0.0095–0.0106 (Gaussian theory 2/(2·99) = 0.0101),
    # astroNN's 0.0072–0.0103, pooled ratio 1.13 [0.98, 1.34] (95 %, spectra resampled)
    assert np.sqrt(np.mean(rel**2)) < 1.5 * np.sqrt(np.mean(rel_an**2))
    assert abs(np.median(rel)) < 3 * np.sqrt(np.mean(rel_an**2)) / np.sqrt(rel.size) + 0.01
    # σ total with astroNN's own aggregation of the predictive variance (exp of the mean log-variance)
    _mean, sig = astronn_predict(model, an["test_flux"], 100, seed=5)
    ref = an[f"{key}_mc1_total"]
    rel_t = (sig["total"] - ref) / ref
    rel_t_an = (an[f"{key}_mc2_total"] - ref) / ref
    # (medians of |Δ|: with 12 spectra a few heavy-tailed entries would dominate an RMS)
    assert np.median(np.abs(rel_t)) < 2.0 * np.median(np.abs(rel_t_an))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_round_trip_and_report(run, tmp_path):
    work, an, _inp, _data_dir = run
    for key in ("bcnn", "censored"):  # the bench saved the imports as starlabels folders
        cfg = json.loads((work / f"{key}_starlabels" / "config.json").read_text())
        assert cfg["preprocessing"]["continuum_weights"] == "astronn"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pred = starlabels.predict(work / f"{key}_starlabels", an["test_flux"], preprocessed=True,
                                      uncertainty=None)
        ref = an[f"{key}_mean"]
        assert np.max(np.abs(pred.mean - ref) / np.maximum(np.abs(ref), 1e-3)) < 1e-3
    report = (work / "report.md").read_text()
    assert "| quantity | bcnn | censored | target |" in report


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_shared_masks_are_astronns(run, shared_data):
    """The reference data's DR17 continuum mask and DR14 element windows are astroNN's own."""
    from starlabels.models.astronn_import import load_astronn_windows

    _work, _an, _inp, data_dir = run
    np.testing.assert_array_equal(np.load(shared_data / "apogee" / "continuum_mask_dr17_7514.npy"),
                                  np.load(data_dir / "dr17_contmask.npy"))
    ours = load_astronn_windows(shared_data / "apogee" / "aspcap_element_windows_dr14_7514.npz")
    theirs = load_astronn_windows(data_dir / "aspcap_l31c_masks.npy")
    assert set(ours) == set(theirs)
    for name in theirs:
        np.testing.assert_array_equal(ours[name], theirs[name])
