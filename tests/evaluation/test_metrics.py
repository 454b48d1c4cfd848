"""Residual, calibration and APOGEE Net tables of starlabels.evaluation.metrics."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import median_abs_deviation

from starlabels import units
from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.evaluation import columns, label_text, metrics, table_format

LABELS = ["TEFF", "LOGG", "FE_H"]


def smad(x):
    x = np.asarray(x, dtype=float)
    return median_abs_deviation(x, scale="normal")


@pytest.fixture
def sample():
    rng = np.random.default_rng(42)
    n = 600
    ref = np.c_[rng.uniform(3800, 5600, n), rng.uniform(0.8, 3.6, n), rng.uniform(-1.2, 0.4, n)]
    err = np.c_[rng.uniform(20, 80, n), rng.uniform(0.03, 0.15, n), rng.uniform(0.01, 0.06, n)]
    pred = ref + rng.normal(size=(n, 3)) * err + np.array([15.0, 0.02, -0.01])
    # holes: MISSING in the reference, NaN in the prediction
    ref[:7, 0] = MISSING
    pred[10:13, 1] = np.nan
    ref[20, 2] = np.nan
    groups = rng.choice(np.array(["giants", "MStar", "YSO"]), n)
    snr = rng.uniform(10, 400, n)
    return pred, ref, err, groups, snr


def test_sigma_mad_matches_scipy_and_ignores_missing():
    rng = np.random.default_rng(0)
    x = rng.standard_t(3, size=501) * 2.0 + 1.0
    assert metrics.sigma_mad(x) == pytest.approx(smad(x), rel=1e-4)
    y = np.concatenate([x, [MISSING, np.nan, MISSING]])
    assert metrics.sigma_mad(y) == pytest.approx(smad(x), rel=1e-4)
    two = np.stack([x, 3 * x])
    np.testing.assert_allclose(metrics.sigma_mad(two, axis=1), [smad(x), 3 * smad(x)], rtol=1e-4)
    assert np.isnan(metrics.sigma_mad(np.array([np.nan, MISSING])))


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, st.integers(3, 60), elements=st.floats(-1e3, 1e3, allow_nan=False)),
    st.floats(-50, 50), st.floats(0.1, 10),
)
def test_sigma_mad_is_shift_invariant_and_scale_equivariant(x, shift, scale):
    base = metrics.sigma_mad(x)
    assert metrics.sigma_mad(x + shift) == pytest.approx(base, rel=1e-6, abs=1e-6)
    assert metrics.sigma_mad(scale * x) == pytest.approx(scale * base, rel=1e-6, abs=1e-6)


def test_residual_table_overall_matches_independent_computation(sample):
    pred, ref, err, _, _ = sample
    t = metrics.residual_table(pred, ref, LABELS, err=err)
    assert list(t["label"]) == LABELS
    assert list(t["unit"]) == ["K", "dex", "dex"]
    for j, row in t.iterrows():
        ok = np.isfinite(pred[:, j]) & np.isfinite(ref[:, j]) & (ref[:, j] != MISSING)
        r = pred[ok, j] - ref[ok, j]
        assert row["n"] == ok.sum()
        assert row["median"] == pytest.approx(np.median(r))
        assert row["sigma_mad"] == pytest.approx(smad(r), rel=1e-4)
        assert row["median_abs"] == pytest.approx(np.median(np.abs(r)))
        assert row["std"] == pytest.approx(np.std(r, ddof=1))
        assert row["rms"] == pytest.approx(np.sqrt(np.mean(r**2)))
        assert row["median_err"] == pytest.approx(np.median(err[ok, j]))
    assert t.loc[0, "n"] == len(pred) - 7  # the MISSING Teff references are left out
    # the injected offset is recovered
    assert t.loc[0, "median"] == pytest.approx(15.0, abs=8.0)


def test_residual_table_per_group(sample):
    pred, ref, _, groups, _ = sample
    t = metrics.residual_table(pred, ref, LABELS, groups=groups)
    assert set(t["group"]) == {"all", "giants", "MStar", "YSO"}
    assert len(t) == 3 * 4
    sub = t[(t["label"] == "LOGG") & (t["group"] == "MStar")].iloc[0]
    sel = (groups == "MStar") & np.isfinite(pred[:, 1])
    r = pred[sel, 1] - ref[sel, 1]
    assert sub["n"] == sel.sum()
    assert sub["sigma_mad"] == pytest.approx(smad(r), rel=1e-4)
    # the per-group counts add up to the whole sample
    for lab in LABELS:
        rows = t[t["label"] == lab]
        assert rows[rows["group"] != "all"]["n"].sum() == rows[rows["group"] == "all"]["n"].item()
    no_all = metrics.residual_table(pred, ref, LABELS, groups=groups, include_all=False)
    assert "all" not in set(no_all["group"])


def test_residuals_by_snr_bins(sample):
    pred, ref, _, _, snr = sample
    edges = [0, 50, 100, 200, 500]
    t = metrics.residuals_by_snr(pred, ref, LABELS, snr=snr, bins=edges)
    assert len(t) == 3 * 4
    fe = t[t["label"] == "FE_H"].reset_index(drop=True)
    for k in range(4):
        sel = (snr >= edges[k]) & (snr < edges[k + 1]) & np.isfinite(ref[:, 2])
        r = pred[sel, 2] - ref[sel, 2]
        assert fe.loc[k, "n"] == sel.sum()
        assert fe.loc[k, "bin_lo"] == edges[k] and fe.loc[k, "bin_hi"] == edges[k + 1]
        assert fe.loc[k, "sigma_mad"] == pytest.approx(smad(r), rel=1e-4)
        assert fe.loc[k, "by_median"] == pytest.approx(np.median(snr[sel]))


def test_snr_from_catalog_column_and_empty_bins_kept(sample):
    pred, ref, _, _, snr = sample
    cat = pd.DataFrame(pred, columns=LABELS)
    cat["SNR"] = snr
    t = metrics.residuals_by_snr(cat, pd.DataFrame(ref, columns=LABELS), LABELS, bins=[0, 200, 1000, 2000])
    teff = t[t["label"] == "TEFF"]
    assert teff["n"].tolist()[2] == 0 and np.isnan(teff["median"].tolist()[2])
    assert teff["n"].sum() == np.isfinite(np.where(ref[:, 0] == MISSING, np.nan, ref[:, 0])).sum()


def test_residuals_by_label_value_uses_reference_values(sample):
    pred, ref, _, _, _ = sample
    bins = {"TEFF": [3800, 4700, 5600], "LOGG": [0.8, 2.0, 3.6], "FE_H": [-1.2, -0.4, 0.4]}
    t = metrics.residuals_by_label_value(pred, ref, LABELS, bins=bins)
    row = t[(t["label"] == "LOGG") & (t["bin_lo"] == 2.0)].iloc[0]
    sel = (ref[:, 1] >= 2.0) & (ref[:, 1] <= 3.6) & np.isfinite(pred[:, 1])
    assert row["n"] == sel.sum()
    assert row["median_abs"] == pytest.approx(np.median(np.abs(pred[sel, 1] - ref[sel, 1])))
    # astroNN Fig. 10: abundances binned by the reference Teff
    ref_t = Table(ref, names=LABELS)
    t10 = metrics.residuals_by_label_value(pred[:, 2], ref_t, ["FE_H"], by="TEFF", bins=[3800, 4700, 5600])
    sel = (ref[:, 0] >= 4700) & (ref[:, 0] <= 5600) & np.isfinite(ref[:, 2])
    assert t10.iloc[1]["n"] == sel.sum()


def test_tables_as_inputs_match_arrays(sample):
    pred, ref, err, _, _ = sample
    cat = Table(pred, names=LABELS)
    for j, lab in enumerate(LABELS):
        cat[f"{lab}_ERR"] = err[:, j]
    ref_df = pd.DataFrame(ref, columns=LABELS)
    a = metrics.residual_table(pred, ref, LABELS, err=err)
    b = metrics.residual_table(cat, ref_df, LABELS, err="columns")
    pd.testing.assert_frame_equal(a, b)
    d = metrics.residual_table({k: cat[k] for k in cat.colnames}, ref_df.to_records(index=False), LABELS)
    np.testing.assert_allclose(d["sigma_mad"], a["sigma_mad"])


def test_masked_astropy_columns_are_missing():
    cat = Table({"TEFF": np.ma.array([5000.0, 5100.0, 5200.0], mask=[False, True, False])})
    t = metrics.residual_table(cat, {"TEFF": [4990.0, 5000.0, 5210.0]}, ["TEFF"])
    assert t.loc[0, "n"] == 2
    assert t.loc[0, "median"] == pytest.approx(0.0)


def test_match_reference_by_id():
    cat = pd.DataFrame({"APOGEE_ID": ["b", "a", "z", "c"], "TEFF": [1.0, 2.0, 3.0, 4.0]})
    ref = Table({"APOGEE_ID": ["a ", "b", "c"], "TEFF": [20.0, 10.0, MISSING], "LOGG": [1, 2, 3]})
    out = columns.match_reference(cat, ref)
    assert list(out.columns) == ["TEFF"]
    np.testing.assert_array_equal(out["TEFF"], [10.0, 20.0, np.nan, np.nan])
    dup = Table({"APOGEE_ID": ["a", "a"], "TEFF": [1.0, 2.0]})
    with pytest.raises(InputDataError, match="duplicate"):
        columns.match_reference(cat, dup)


def test_zscore_table_calibrated_and_miscalibrated():
    rng = np.random.default_rng(1)
    n = 4000
    ref = rng.normal(size=(n, 2))
    sig = rng.uniform(0.05, 0.3, size=(n, 2))
    pred = ref + rng.normal(size=(n, 2)) * sig
    z = metrics.zscore_table(pred, ref, ["A_FE", "B_FE"], pred_err=sig)
    np.testing.assert_allclose(z["z_sigma_mad"], 1.0, atol=0.06)
    np.testing.assert_allclose(z["frac_1sigma"], metrics.GAUSS_1SIGMA, atol=0.03)
    np.testing.assert_allclose(z["frac_2sigma"], metrics.GAUSS_2SIGMA, atol=0.02)
    zz = (pred - ref) / sig
    assert z.loc[0, "z_sigma_mad"] == pytest.approx(smad(zz[:, 0]), rel=1e-4)
    assert z.loc[1, "frac_1sigma"] == pytest.approx(np.mean(np.abs(zz[:, 1]) <= 1))
    # errors twice too small → widths ≈ 2
    z2 = metrics.zscore_table(pred, ref, ["A_FE", "B_FE"], pred_err=sig / 2)
    np.testing.assert_allclose(z2["z_sigma_mad"], 2.0, atol=0.12)
    # a reference error adds in quadrature
    zr = metrics.zscore_table(pred, ref, ["A_FE", "B_FE"], pred_err=sig, ref_err=sig)
    assert zr.loc[0, "z_sigma_mad"] == pytest.approx(smad(zz[:, 0] / np.sqrt(2)), rel=1e-4)
    # non-positive or missing σ are left out
    sig_bad = sig.copy()
    sig_bad[:10, 0] = 0.0
    sig_bad[10:15, 0] = MISSING
    assert metrics.zscore_table(pred, ref, ["A_FE", "B_FE"], pred_err=sig_bad).loc[0, "n"] == n - 15


def test_zscore_table_binned_by_snr():
    rng = np.random.default_rng(2)
    n = 3000
    snr = rng.uniform(10, 200, n)
    ref = rng.normal(size=n)
    true_sig = 5.0 / snr
    pred = ref + rng.normal(size=n) * true_sig
    # claimed errors right at high SNR, twice too small below SNR 50
    claimed = np.where(snr < 50, true_sig / 2, true_sig)
    z = metrics.zscore_table(pred, ref, "FE_H", pred_err=claimed, by=snr, bins=[10, 50, 200])
    assert z.loc[0, "z_sigma_mad"] == pytest.approx(2.0, abs=0.2)
    assert z.loc[1, "z_sigma_mad"] == pytest.approx(1.0, abs=0.1)


def test_apogee_net_tables_layout_and_invariants():
    rng = np.random.default_rng(3)
    n = 900
    ref = np.c_[rng.normal(4700, 700, n), rng.normal(2.9, 1.2, n), rng.normal(-0.2, 0.3, n)]
    pred = ref + rng.normal(size=(n, 3)) * [100, 0.15, 0.07]
    split = rng.choice(np.array(metrics.SPLITS), n, p=[0.8, 0.1, 0.1])
    groups = rng.choice(np.array(["Payne", "MStar", "YSO"]), n)
    t = metrics.apogee_net_tables(pred, ref, LABELS, split=split, groups=groups)
    train = ref[split == "train"]
    np.testing.assert_allclose(t.standardisation["mean"], train.mean(0))
    np.testing.assert_allclose(t.standardisation["std"], train.std(0))
    t2 = t.table2()
    assert list(t2.columns) == ["group", "train", "dev", "test"]
    assert list(t2["group"]) == ["Full", *pd.unique(groups)]
    t3 = t.table3()
    assert list(t3.columns) == ["group", "label", "unit", "train", "dev", "test"]
    assert len(t3) == 4 * 3
    # Table 2 = mean over labels of (Table 3 RMS / std)² when nothing is missing
    sd = t.standardisation["std"].to_numpy()
    for g in t2["group"]:
        rms = t3[t3["group"] == g][["train", "dev", "test"]].to_numpy()
        expect = np.mean((rms / sd[:, None]) ** 2, axis=0)
        np.testing.assert_allclose(t2[t2["group"] == g][["train", "dev", "test"]].to_numpy()[0], expect)
    # independent check of one cell
    sel = (groups == "YSO") & (split == "test")
    z = (pred[sel] - ref[sel]) / sd
    yso = t.mse[(t.mse["group"] == "YSO") & (t.mse["split"] == "test")].iloc[0]
    assert yso["mse"] == pytest.approx(np.mean(z**2))
    assert yso["n"] == 3 * sel.sum()
    # σ_MAD statistic and user-given normalisation
    t_mad = metrics.apogee_net_tables(pred, ref, LABELS, split=split, label_mean=[4700, 2.9, -0.2],
                                label_std=[733.0, 1.2, 0.3], statistic="sigma_mad")
    row = t_mad.scatter[(t_mad.scatter["label"] == "TEFF") & (t_mad.scatter["split"] == "dev")]
    assert row["scatter"].item() == pytest.approx(smad(pred[split == "dev", 0] - ref[split == "dev", 0]),
                                                  rel=1e-4)
    with pytest.raises(InputDataError, match="not among"):
        metrics.apogee_net_tables(pred, ref, LABELS, split=np.where(split == "dev", "valid", split))


def test_markdown_formatter_round_trips_through_csv_reader(tmp_path):
    df = pd.DataFrame({
        "label": ["TEFF", "LOGG", "X|Y"], "n": [10, 20, 0],
        "sigma_mad": [144.8234, 0.07691234, np.nan], "big": [12345.67, 1e-6, MISSING],
    })
    text = table_format.to_markdown(df)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3
    assert lines[1].startswith("|---") and lines[1].count("|") == 5
    assert lines[1].split("|")[2].endswith(":")  # numeric column right-aligned
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines]
    assert cells[0] == ["label", "n", "sigma_mad", "big"]
    assert cells[3][2] == "0.07691" and cells[3][3] == "1.000e-06"
    assert cells[2][2] == "144.8" and cells[2][3] == "12346"
    assert cells[4][0] == r"X\|Y" and cells[4][2] == "" and cells[4][3] == ""
    assert table_format.to_markdown(df, formats={"sigma_mad": ".1f"}).count("144.8 ") == 1
    md = table_format.write_table(df, tmp_path / "t.md")
    assert md.read_text() == text
    csv = table_format.write_table(df, tmp_path / "t.csv")
    back = pd.read_csv(csv)
    np.testing.assert_allclose(back["sigma_mad"], df["sigma_mad"])
    with pytest.raises(InputDataError, match="format"):
        table_format.write_table(df, tmp_path / "t.txt")
    # astropy tables are written too
    assert "TEFF" in table_format.to_markdown(Table.from_pandas(df))
    assert pd.read_csv(io.StringIO(back.to_csv(index=False))).shape == df.shape


def test_label_names_and_units():
    assert units.label_unit("TEFF_ERR") == "K"
    assert units.label_unit("MG_FE") == "dex" and units.label_unit("FE_H_ERR_NOISE") == "dex"
    assert label_text.label_display("TIII_FE") == "[TiII/Fe]"
    assert label_text.axis_label("LOGG") == r"$\log g$ (dex)"
    assert label_text.axis_label("TEFF", tex=False) == "Teff (K)"


def test_clear_errors():
    with pytest.raises(InputDataError, match="shape"):
        metrics.residual_table(np.zeros((3, 2)), np.zeros((4, 2)), ["A", "B"])
    with pytest.raises(InputDataError, match="bins"):
        metrics.residual_table(np.zeros((3, 1)), np.zeros((3, 1)), ["A"], by=np.ones(3))
    with pytest.raises(InputDataError, match="no column"):
        metrics.residual_table(pd.DataFrame({"TEFF": [1.0]}), pd.DataFrame({"TEFF": [1.0]}), ["LOGG"])
    with pytest.raises(InputDataError, match="increasing"):
        metrics.residuals_by_snr(np.zeros(3), np.zeros(3), "A", snr=np.ones(3), bins=[0, 0, 1])


def test_package_exports_resolve():
    import starlabels.evaluation as ev

    for name in ev.__all__:
        assert getattr(ev, name) is not None
    assert ev.sigma_mad is metrics.sigma_mad
    with pytest.raises(AttributeError):
        _ = ev.no_such_function
