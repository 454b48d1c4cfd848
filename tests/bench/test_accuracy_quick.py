"""bench/accuracy.py: its pure helpers compute what they claim (no simulation, no training)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def acc():
    """The bench script as a module (it is not part of the package)."""
    yield load_script(ROOT / "bench" / "accuracy.py", "bench_accuracy", register=True)
    sys.modules.pop("bench_accuracy", None)


def test_config_quick_overrides_and_paths(acc):
    full = acc.load_config(acc.DEFAULT_CONFIG)
    quick = acc.load_config(acc.DEFAULT_CONFIG, quick=True)
    assert quick["survey"]["n_train"] < full["survey"]["n_train"]
    assert quick["survey"]["seed"] == full["survey"]["seed"]  # keys not overridden are kept
    assert quick["data"]["work"] != full["data"]["work"]
    assert full["data"]["output"] == ROOT / "bench" / "results" / "accuracy.md"
    assert "${SHARED}" not in str(full["data"]["emulator"])
    assert Path(full["data"]["emulator"]).is_absolute()


def test_config_rejects_unknown_keys(acc, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(acc.DEFAULT_CONFIG.read_text() + "\n[quick.bcnn_typo]\nepochs = 1\n")
    with pytest.raises(acc.BenchError, match="bcnn_typo"):
        acc.load_config(bad, quick=True)


def test_deep_merge_merges_tables_and_copies(acc):
    base = {"a": {"x": 1, "y": 2}, "b": 3}
    out = acc.deep_merge(base, {"a": {"y": 5}, "b": 4})
    assert out == {"a": {"x": 1, "y": 5}, "b": 4}
    assert base == {"a": {"x": 1, "y": 2}, "b": 3}


def test_sigma_mad_is_gaussian_sigma_and_ignores_nan(acc):
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 200_000)
    x[:10] = np.nan
    assert acc.sigma_mad(x) == pytest.approx(2.0, rel=0.01)
    cols = np.column_stack([x, 0.5 * x])
    assert np.allclose(acc.sigma_mad(cols, axis=0), [2.0, 1.0], rtol=0.01)
    assert np.isnan(acc.sigma_mad(np.full(4, np.nan)))


def test_residual_stats_median_scatter_and_failures(acc):
    true = np.zeros((5, 2))
    pred = np.array([[1.0, 10], [2, 20], [3, 30], [4, np.nan], [5, 50]])
    s = acc.residual_stats(pred, true)
    assert s["median"].tolist() == [3.0, 25.0]
    assert s["n"].tolist() == [5, 4]
    assert s["failed"].tolist() == [0, 1]
    assert s["sigma_mad"][0] == pytest.approx(1.4826)  # median |r - 3| = 1


def test_z_widths_before_and_after_scaling(acc):
    rng = np.random.default_rng(1)
    true = rng.normal(size=(50_000, 2))
    sigma = np.array([0.5, 2.0])
    pred = true + rng.normal(size=true.shape) * sigma
    reported = np.broadcast_to(sigma / 2, pred.shape)  # σ underestimated by 2x
    assert np.allclose(acc.z_widths(pred, reported, true), [2.0, 2.0], rtol=0.02)
    assert np.allclose(acc.z_widths(pred, reported, true, scales=np.array([2.0, 2.0])), [1, 1], rtol=0.02)
    zero = reported.copy()
    zero[:, 1] = 0.0  # unusable σ is left out, not infinite
    assert np.isnan(acc.z_widths(pred, zero, true)[1])


def test_cannon_ivar_zero_for_rejected_pixels(acc):
    err = np.array([[0.5, 1e10, np.inf, 0.0, np.nan, 0.1]])
    ivar = acc.cannon_ivar(err)
    assert ivar.dtype == np.float32
    assert np.allclose(ivar, [[4.0, 0, 0, 0, 0, 100.0]])


def test_group_initial_labels_uses_complete_rows(acc):
    labels = np.array([[1.0, 10], [3, 30], [100, -9999.0], [5, 50], [7, 70]])
    groups = np.array(["g", "g", "g", "d", "d"])
    starts = acc.group_initial_labels(labels, groups)
    assert starts.tolist() == [[6.0, 60.0], [2.0, 20.0]]  # sorted: "d", "g"
    with pytest.raises(acc.BenchError):
        acc.group_initial_labels(np.full((2, 2), -9999.0), np.array(["a", "b"]))


def test_ood_ratio(acc):
    std = np.array([0.1, 0.1, 0.3, 0.5, np.nan])
    groups = np.array(["giants", "giants", "dwarfs", "cool_dwarfs", "dwarfs"])
    r = acc.ood_ratio(std, groups, ["dwarfs", "cool_dwarfs"])
    assert r == pytest.approx({"ood": 0.4, "reference": 0.1, "ratio": 4.0})
    assert np.isnan(acc.ood_ratio(std, groups, ["nobody"])["ratio"])


def _stats(sig):
    return {"median": np.zeros(len(sig)), "sigma_mad": np.asarray(sig, float),
            "n": np.ones(len(sig), int), "failed": np.zeros(len(sig), int)}


def test_accuracy_target_picks_best_network_and_reports_failures(acc):
    labels = ("TEFF", "LOGG", "FE_H", "ALPHA_M")
    stats = {
        "cannon": {"test": _stats([100, 0.1, 0.05, 0.05]), "visits": _stats([200, 0.2, 0.1, 0.1])},
        "apogee_net": {"test": _stats([90, 0.09, 0.045, 0.01]), "visits": _stats([100, 0.1, 0.05, 0.01])},
        "bcnn": {"test": _stats([60, 0.06, 0.03, 0.2]), "visits": _stats([150, 0.1, 0.05, 0.2])},
    }
    t = acc.accuracy_target(stats, labels, ["TEFF", "LOGG", "FE_H"], 0.7)
    assert t["ratios"]["apogee_net"][("TEFF", "test")] == pytest.approx(0.9)
    assert t["best"] == "bcnn"  # worst ratio 0.75 (TEFF visits) beats APOGEE Net's 0.9
    assert not t["met"]
    assert [(lab, b) for lab, b, _ in t["failing"]] == [("TEFF", "visits")]
    stats["bcnn"]["visits"] = _stats([100, 0.1, 0.05, 0.2])
    t = acc.accuracy_target(stats, labels, ["TEFF", "LOGG", "FE_H"], 0.7)
    assert t["met"] and t["best"] == "bcnn" and t["worst"] == pytest.approx(0.6)  # ALPHA_M not checked


def test_z_target(acc):
    widths = {"test": np.array([1.0, 0.9, 1.3, 0.5]), "visits": np.array([1.0, 1.0, 1.0, 1.0])}
    t = acc.z_target(widths, ("TEFF", "LOGG", "FE_H", "ALPHA_M"), 0.85, 1.2)
    assert not t["met"]
    assert [(lab, b) for lab, b, _ in t["outside"]] == [("FE_H", "test"), ("ALPHA_M", "test")]


def test_markdown_table_and_fmt(acc):
    rows = [["TEFF", acc.fmt(12.345, "TEFF")], ["LOGG", acc.fmt(np.nan)]]
    md = acc.markdown_table(["label", "value"], rows)
    lines = md.strip().splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("|---") and lines[1].endswith(":|")
    assert "12.3" in lines[2] and "—" in lines[3]
    assert acc.fmt(0.01234, "LOGG", signed=True) == "+0.012"


def test_calibration_set_degrades_the_dev_spectra_and_calibration_text(acc):
    from starlabels.data.augment import spectrum_snr
    from starlabels.preprocess.pipeline import PreprocessConfig

    @dataclasses.dataclass
    class Survey:
        flux: np.ndarray
        error: np.ndarray
        bitmask: np.ndarray
        snr: np.ndarray
        true_labels: np.ndarray

    rng = np.random.default_rng(0)
    flux = 100 + 10 * rng.random((300, 500))
    dev = Survey(flux, flux / 300.0, np.zeros(flux.shape, np.int32), np.full(300, 300.0), np.zeros((300, 4)))
    pp = PreprocessConfig(kind="raw")
    assert acc.calibration_set(dev, {}, pp) is dev
    cal = acc.calibration_set(dev, {"snr": [15, 150]}, pp)
    snr = spectrum_snr(cal.flux, cal.error)
    assert snr.min() > 14 and snr.max() < 152 and np.median(snr) < 60
    np.testing.assert_allclose(cal.snr, snr, rtol=0.03)
    np.testing.assert_array_equal(cal.true_labels, dev.true_labels)
    assert acc.calibration_text({"scales": {"TEFF": 1.234}}, "TEFF") == "×1.23"
    assert acc.calibration_text({"scales": {"TEFF": 2.0}, "floor": {"TEFF": 15.0}}, "TEFF") == "×2.00 ⊕ 15.0"
    parts = {"scales": {"LOGG": 1.0}, "part_scales": {"LOGG": {"epistemic": 0.3, "aleatoric": 0.9}}}
    assert acc.calibration_text(parts, "LOGG") == "epistemic ×0.30, aleatoric ×0.90"
