"""``starlabels report``: the page's model card, tables (checked against metrics computed here),
figures, escaping, reference matching and clear errors for bad inputs."""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy.stats import median_abs_deviation

from starlabels.errors import InputFileError
from starlabels.evaluation import metrics as label_metrics
from starlabels.evaluation.report import build_report, read_model_card, read_table


def reference_aligned(inputs, labels):
    """Reference rows aligned to the catalog with a pandas merge (not match_reference)."""
    cat = pd.read_parquet(inputs.catalog)
    ref = pd.read_csv(inputs.reference, dtype={"APOGEE_ID": str})
    merged = cat[["APOGEE_ID"]].merge(ref, on="APOGEE_ID", how="left")
    assert len(merged) == len(cat)
    R = merged[labels].to_numpy(float)
    R[R == -9999.0] = np.nan
    return cat, merged, R


def assert_table_matches(page, table_id, expected, columns, h):
    """Every shown number equals the independently computed one (full value in data-value,
    4 significant figures in the text)."""
    got = h.table_frame(page, table_id)
    text = h.table_frame(page, table_id, text=True)
    assert len(got) == len(expected), (table_id, len(got), len(expected))
    for col in columns:
        for i, exp in enumerate(expected[col].to_numpy()):
            if col in ("label", "group"):
                assert got[col][i] == str(exp)
                continue
            val = float(got[col][i])
            if np.isnan(exp):
                assert np.isnan(val) and text[col][i] == ""
                continue
            assert val == pytest.approx(float(exp), rel=1e-12, abs=1e-300), (table_id, col, i)
            if col not in ("frac_1sigma", "frac_2sigma", "bin_lo", "bin_hi"):
                assert math.isclose(float(text[col][i]), float(exp), rel_tol=1e-3), (col, text[col][i])


# --------------------------------------------------------------------------------------------
# the full report (reference, figure files)
# --------------------------------------------------------------------------------------------


def test_model_card_shows_the_model_folder(report_files, inputs, h):
    page = h.parse_page(report_files / "index.html")
    text = (report_files / "index.html").read_text(encoding="utf-8")
    cfg = json.loads((inputs.model / "config.json").read_text())
    assert "bcnn" in text  # architecture
    assert cfg["created"] in text and "hidden" in text and "reject_bits" in text
    labels = h.table_frame(page, "table-model-labels")
    assert list(labels["label"]) == h.LABELS
    assert list(labels["unit"]) == h.UNITS
    np.testing.assert_allclose(labels["mean_label"].astype(float), cfg["normalisation"]["labels"]["mean"],
                               rtol=1e-12)
    np.testing.assert_allclose(labels["std_label"].astype(float), cfg["normalisation"]["labels"]["std"],
                               rtol=1e-12)
    cal = h.table_frame(page, "table-calibration")
    assert dict(zip(cal["label"], cal["scale"].astype(float), strict=True)) == h.CALIBRATION
    # training provenance: files (escaped), sizes, dates, seed; the training curve
    assert html.escape(f"train {h.ODD}.h5") in text
    for s in ("800", "2025-01-01T03:00:00+00:00", "adam", "random"):
        assert s in text
    assert "8 epoch(s) in history.csv" in text


def check_rows(text: str) -> dict[str, str]:
    """The model card's "What to check" table as {row heading: cell text} (unescaped)."""
    block = text[text.index('<table class="kv check">'):]
    block = block[:block.index("</table>")]
    return {html.unescape(k): html.unescape(v)
            for k, v in re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", block)}


def test_model_card_leads_with_what_a_reader_checks_and_folds_the_rest(report_files, h):
    text = (report_files / "index.html").read_text(encoding="utf-8")
    rows = check_rows(text)
    assert list(rows) == ["method", "labels and units", "training set", "instrument and grid", "uncertainty",
                          "calibration σ_MAD(z) before → after", "label coverage", "domain shift", "warnings"]
    assert rows["method"] == "bcnn network"
    assert rows["labels and units"] == ", ".join(f"{x} ({u})" for x, u in zip(h.LABELS, h.UNITS, strict=True))
    assert rows["training set"] == "800 stars (and dev 100, test 100)"  # training["sizes"] of conftest
    assert rows["uncertainty"] == "every method, calibrated with one scale per label"
    # conftest calibrates TEFF ×1.3 and MG_FE ×0.9 with bare scales: no z-widths recorded
    assert rows["calibration σ_MAD(z) before → after"] == (
        "Teff: scale 1.300 (z-widths not recorded)<br>[Mg/Fe]: scale 0.9000 (z-widths not recorded)")
    assert rows["label coverage"].startswith("not fitted") and rows["domain shift"].startswith("not fitted")
    # the full provenance comes after, folded: card → <details> → catalog summary
    card, details = text.index('<table class="kv check">'), text.index('<details class="model-details">')
    end = text.index("</details>", text.index("Training data and provenance"))
    assert card < details < end < text.index('<h2 id="catalog">')
    for s in ("reject_bits", html.escape(f"train {h.ODD}.h5"), "adam", "2025-01-01T03:00:00+00:00", "hidden"):
        assert details < text.index(s) < end, s


def test_model_card_with_per_method_calibration_and_fitted_coverage(tmp_path):
    model = write_partial_model(tmp_path / "model")
    cat = small_catalog_with_truth()
    cat.to_csv(tmp_path / "cat.csv", index=False)
    text = build_report(model, tmp_path / "cat.csv", tmp_path / "out", figures=False).path.read_text("utf-8")
    rows = check_rows(text)
    assert rows["method"] == "apogee_net network"
    assert rows["training set"] == "not recorded"
    assert rows["uncertainty"] == "mc_dropout, calibrated"
    # σ_MAD(z) before → after as recorded in config.json (write_partial_model)
    assert rows["calibration σ_MAD(z) before → after"] == (
        "Teff: 1.310 → 1.000 (scale 1.310)<br>log g: 0.820 → 1.000 (scale 0.8200)")
    assert "config.json has no 'training' entry: training provenance not recorded" in rows["warnings"]
    assert rows["label coverage"].startswith("not fitted")
    # a folder with the fitted label coverage and domain-shift score says so
    from starlabels.inference.domain_shift import DOMAIN_SHIFT_FILE
    from starlabels.inference.label_coverage import COVERAGE_FILE

    fitted = tmp_path / "fitted"
    shutil.copytree(model, fitted)
    (fitted / COVERAGE_FILE).write_bytes(b"")
    (fitted / DOMAIN_SHIFT_FILE).write_bytes(b"")
    res = build_report(fitted, tmp_path / "cat.csv", tmp_path / "out2", figures=False)
    rows = check_rows(res.path.read_text("utf-8"))
    assert rows["label coverage"] == f"fitted ({COVERAGE_FILE} in the model folder)"
    assert rows["domain shift"] == f"fitted ({DOMAIN_SHIFT_FILE} in the model folder)"


def test_residual_tables_match_metrics_computed_independently(report_files, inputs, h):
    page = h.parse_page(report_files / "index.html")
    cat, merged, R = reference_aligned(inputs, h.LABELS)
    P = cat[h.LABELS].to_numpy(float)
    E = cat[[f"{x}_ERR" for x in h.LABELS]].to_numpy(float)
    cols = ["label", "n", "median", "sigma_mad", "median_abs", "mean", "std", "rms", "median_err",
            "mean_err"]

    expected = label_metrics.residual_table(P, R, h.LABELS, err=E)
    assert_table_matches(page, "table-residuals", expected, cols, h)
    # and straight from numpy/scipy for Teff: star 11 is not in the reference, one Teff is
    # MISSING there and star 10 is an invalid spectrum
    d = P[:, 0] - R[:, 0]
    d = d[np.isfinite(d)]
    assert d.size == h.N_STARS - 3
    row = h.table_frame(page, "table-residuals").iloc[0]
    assert int(row["n"]) == d.size
    assert float(row["median"]) == pytest.approx(np.median(d), rel=1e-12)
    assert float(row["sigma_mad"]) == pytest.approx(median_abs_deviation(d, scale="normal"), rel=1e-4)

    groups = merged["GROUP"].fillna("not in reference").to_numpy()
    by_group = label_metrics.residual_table(P, R, h.LABELS, err=E, groups=groups)
    by_group = by_group[by_group["n"] > 0].reset_index(drop=True)
    assert set(by_group["group"]) == {"all", "dwarfs", "giants"}
    assert_table_matches(page, "table-groups", by_group, ["group", *cols], h)

    by_snr = label_metrics.residuals_by_snr(P, R, h.LABELS, snr=cat["SNR"].to_numpy(), err=E)
    by_snr = by_snr[by_snr["n"] > 0].reset_index(drop=True)
    assert_table_matches(page, "table-snr", by_snr,
                         ["label", "bin_lo", "bin_hi", "by_median", "n", "median", "sigma_mad",
                          "median_abs", "median_err"], h)

    # z-scores: the reference's TEFF_ERR enters in quadrature, the other labels have none
    Er = np.zeros_like(R)
    Er[:, 0] = merged["TEFF_ERR"].to_numpy(float)
    z = label_metrics.zscore_table(P, R, h.LABELS, pred_err=E, ref_err=Er)
    assert_table_matches(page, "table-zscores", z,
                         ["label", "n", "z_median", "z_sigma_mad", "z_std", "z_rms", "frac_1sigma",
                          "frac_2sigma"], h)
    zt = (P[:, 0] - R[:, 0]) / np.sqrt(E[:, 0] ** 2 + Er[:, 0] ** 2)
    zt = zt[np.isfinite(zt)]
    got = h.table_frame(page, "table-zscores").iloc[0]
    assert float(got["frac_1sigma"]) == pytest.approx(np.mean(np.abs(zt) <= 1), rel=1e-12)
    # full-precision copies beside the page
    csv = pd.read_csv(report_files / "tables" / "residuals.csv")
    np.testing.assert_allclose(csv["sigma_mad"], expected["sigma_mad"], rtol=1e-12)


def test_catalog_summary_counts_flags_and_ranges(report_files, inputs, h):
    page = h.parse_page(report_files / "index.html")
    cat = pd.read_parquet(inputs.catalog)
    counts = dict(h.table_frame(page, "table-counts", text=True).itertuples(index=False))
    assert counts["stars (rows)"] == str(h.N_STARS)
    assert counts["rows with FLAG = 0"] == str(int((cat["FLAG"] == 0).sum()))
    assert counts["rows with every label"] == str(h.N_STARS - 1)
    flags = h.table_frame(page, "table-flags")
    by_name = {r.flag: r for r in flags.itertuples(index=False)}
    for name, bit in (("INVALID_SPECTRUM", 0), ("LOW_SNR", 1), ("HIGH_UNCERTAINTY", 3),
                      ("LABEL_OUT_OF_RANGE", 4), ("NO_UNCERTAINTY", 7)):
        n = int(((cat["FLAG"].to_numpy() >> bit) & 1).sum())
        assert int(by_name[name].n) == n
        assert float(by_name[name].fraction) == pytest.approx(n / h.N_STARS)
    assert int(by_name["LOW_SNR"].n) > 0 and int(by_name["any"].n) == int((cat["FLAG"] != 0).sum())
    labels = h.table_frame(page, "table-labels").set_index("label")
    for x in h.LABELS:
        v = cat[x].to_numpy(float)
        assert float(labels.loc[x, "min"]) == pytest.approx(np.nanmin(v))
        assert float(labels.loc[x, "max"]) == pytest.approx(np.nanmax(v))
        assert float(labels.loc[x, "median"]) == pytest.approx(np.nanmedian(v))
        assert float(labels.loc[x, "median_err"]) == pytest.approx(np.nanmedian(cat[f"{x}_ERR"]))
        assert float(labels.loc[x, "median_err_epistemic"]) == pytest.approx(
            np.nanmedian(cat[f"{x}_ERR_EPISTEMIC"]))


EXPECTED_FIGURES = {
    "training_history", "kiel", "young_selection", "uncertainty_vs_snr_1", "uncertainty_vs_snr_2",
    "pred_vs_ref_1", "pred_vs_ref_2", "residuals_vs_snr", "zscores_1", "zscores_2",
}


def test_every_figure_is_a_file_beside_the_page_and_not_blank(report_files, h):
    page = h.parse_page(report_files / "index.html")
    srcs = page.images
    assert {s.removeprefix("figures/").removesuffix(".png") for s in srcs} == EXPECTED_FIGURES
    for src in srcs:
        path = report_files / src
        assert path.is_file(), src
        assert h.png_not_blank(imread(path)), src
    # nothing else in figures/, nothing skipped with every input given
    assert {p.name for p in (report_files / "figures").iterdir()} == {s.split("/")[-1] for s in srcs}
    text = (report_files / "index.html").read_text(encoding="utf-8")
    assert "Everything could be shown." in text
    assert "PARSEC isochrones from iso.fits" in text and "Lines: PARSEC isochrones" in text
    assert "<h3>Predicted vs reference (2 of 2)</h3>" in text  # 5 labels: 3 + 2 panels


def test_odd_strings_are_escaped(report_files, report_embed, h):
    for out in (report_files, report_embed):
        text = (out / "index.html").read_text(encoding="utf-8")
        assert "<script" not in text
        assert html.escape(h.ODD) in text  # MODEL_NAME of the catalog, training file name
    text = (report_files / "index.html").read_text(encoding="utf-8")
    page = h.parse_page(report_files / "index.html")
    assert page.text_of["title"] == h.TITLE and page.text_of["h1"] == h.TITLE
    assert html.escape(h.TITLE) in text and h.TITLE not in text


# --------------------------------------------------------------------------------------------
# embedded figures, no reference
# --------------------------------------------------------------------------------------------


def test_embedded_report_without_reference(report_embed, h):
    page = h.parse_page(report_embed / "index.html")
    text = (report_embed / "index.html").read_text(encoding="utf-8")
    assert not (report_embed / "figures").exists()
    assert len(page.images) == 5  # training curve, Kiel, young stars, σ vs SNR ×2
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        img = imread(io.BytesIO(base64.b64decode(src.split(",", 1)[1])), format="png")
        assert h.png_not_blank(img)
    # no accuracy tables, and the page says why; the catalog summary is there
    assert "table-residuals" not in page.tables and "table-zscores" not in page.tables
    assert "No reference labels were given" in text
    assert "<strong>Predicted vs reference</strong>: no reference labels (pass --reference)" in text
    assert "<strong>z-score histograms</strong>" in text
    assert "isochrones not drawn (turned off)" in text
    assert {"table-counts", "table-flags", "table-labels", "table-model-labels"} <= set(page.tables)


# --------------------------------------------------------------------------------------------
# other inputs: hand-written partial config, reference columns in the catalog, FITS tables
# --------------------------------------------------------------------------------------------


def write_partial_model(folder):
    """A model folder with a hand-written config: no training, no normalisation, the
    per-method calibration of starlabels.inference.calibration."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {
        "format_version": 1, "architecture": {"name": "apogee_net", "kwargs": {"n_labels": 2}},
        "labels": {"names": ["TEFF", "LOGG"], "units": ["K", "dex"]},
        "preprocessing": None,
        "calibration": {"format": 1, "methods": {"mc_dropout": {
            "scales": {"TEFF": 1.31, "LOGG": 0.82}, "sigma_mad_before": {"TEFF": 1.31, "LOGG": 0.82},
            "sigma_mad_after": {"TEFF": 1.0, "LOGG": 1.0}, "n_dev": {"TEFF": 500, "LOGG": 498},
            "sigma_reference": {"TEFF": 143.0, "LOGG": 0.2}}},
            "label_range": {"min": [3000, 0], "max": [7000, 5]}},
    }
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def small_catalog_with_truth(n=80, seed=5):
    rng = np.random.default_rng(seed)
    true_t, true_g = rng.uniform(3500, 6000, n), rng.uniform(0.5, 4.5, n)
    et, eg = rng.uniform(30, 80, n), rng.uniform(0.05, 0.1, n)
    return pd.DataFrame({
        "APOGEE_ID": [f"2M{i:08d}" for i in range(n)], "SNR": rng.uniform(20, 300, n),
        "TEFF": true_t + rng.normal(size=n) * et, "TEFF_ERR": et, "TRUE_TEFF": true_t,
        "LOGG": true_g + rng.normal(size=n) * eg, "LOGG_ERR": eg, "logg_true": true_g,
        "FLAG": np.zeros(n, np.int32),
    })


def test_partial_config_and_reference_columns_in_the_catalog(tmp_path):
    model = write_partial_model(tmp_path / "model")
    cat = small_catalog_with_truth()
    cat.to_csv(tmp_path / "cat.csv", index=False)
    res = build_report(model, tmp_path / "cat.csv", tmp_path / "out", figures=False)
    text = res.path.read_text(encoding="utf-8")
    # missing sections are said to be missing, not invented
    assert any("'training'" in n for n in res.notes) and any("'normalisation'" in n for n in res.notes)
    assert "Training provenance not recorded." in text
    assert "Label normalisation (means, standard deviations) not recorded." in text
    assert "None: the network takes the spectra as stored." in text
    cal = res.tables["calibration"].set_index("label")
    assert cal.loc["TEFF", "scale"] == 1.31 and cal.loc["LOGG", "method"] == "mc_dropout"
    assert cal.loc["LOGG", "n_dev"] == 498 and cal.loc["TEFF", "sigma_reference"] == 143.0
    # TRUE_TEFF and logg_true (any case) are the reference
    P = cat[["TEFF", "LOGG"]].to_numpy()
    R = cat[["TRUE_TEFF", "logg_true"]].to_numpy()
    errors = cat[["TEFF_ERR", "LOGG_ERR"]].to_numpy()
    expected = label_metrics.residual_table(P, R, ["TEFF", "LOGG"], err=errors)
    pd.testing.assert_frame_equal(res.tables["residuals"], expected)
    assert "TEFF ← TRUE_TEFF" in html.unescape(text)
    # naming the catalog as its own reference gives the same tables
    res2 = build_report(
        model, tmp_path / "cat.csv", tmp_path / "out2", reference=tmp_path / "cat.csv", figures=False
    )
    pd.testing.assert_frame_equal(res2.tables["zscores"], res.tables["zscores"])
    assert not list((tmp_path / "out").glob("figures/*"))


def test_fits_catalog_and_allstar_like_reference(tmp_path, inputs, h):
    """FITS inputs (byte-string ids with padding, a 2-D column, MISSING) give the same tables as
    the Parquet/CSV inputs."""
    from astropy.table import Table

    cat = pd.read_parquet(inputs.catalog)
    Table.from_pandas(cat).write(tmp_path / "cat.fits")
    ref = pd.read_csv(inputs.reference, dtype={"APOGEE_ID": str})
    t = Table.from_pandas(ref.drop(columns=["APOGEE_ID"]))
    t["APOGEE_ID"] = np.array([f"{s}  " for s in ref["APOGEE_ID"]], dtype="S24")
    t["X_H"] = np.zeros((len(ref), 3), dtype=np.float32)
    t.write(tmp_path / "ref.fits")
    assert read_table(tmp_path / "ref.fits", "reference")["APOGEE_ID"][0] == ref["APOGEE_ID"][0]
    a = build_report(
        inputs.model, tmp_path / "cat.fits", tmp_path / "a", reference=tmp_path / "ref.fits", figures=False
    )
    b = build_report(inputs.model, inputs.catalog, tmp_path / "b", reference=inputs.reference, figures=False)
    for name in ("residuals", "residuals_by_group", "residuals_by_snr", "zscores", "summary_flags"):
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    assert ("Figures", "left out on request (figures=False / --no-figures)") in a.skipped


def test_isochrones_from_the_shared_data_folder(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(shared_data))
    monkeypatch.delenv("STARLABELS_ISOCHRONES", raising=False)
    model = write_partial_model(tmp_path / "model")
    rng = np.random.default_rng(2)
    teff = rng.uniform(4000, 5200, 60)
    pd.DataFrame(
        {
            "APOGEE_ID": [f"s{i}" for i in range(60)],
            "TEFF": teff,
            "LOGG": 1 + (teff - 4000) / 1200 * 2,
            "FE_H": rng.normal(-0.3, 0.2, 60),
        }
    ).to_csv(tmp_path / "cat.csv", index=False)
    res = build_report(model, tmp_path / "cat.csv", tmp_path / "out")
    assert [f.key for f in res.figures] == ["kiel", "young_selection"]
    assert any(n.startswith("PARSEC isochrones from parsec_photometry_grid.fits.gz") for n in res.notes)
    skipped = dict(res.skipped)
    assert skipped["Training curve"] == "the model folder has no history.csv"
    assert skipped["Uncertainty vs SNR"] == "the catalog has no uncertainties (X_ERR)"
    assert skipped["Kiel diagram coloured by uncertainty"] == "the catalog has no uncertainties"


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_model_folder_errors_are_clear(tmp_path, inputs, h):
    res = h.run_cli(tmp_path / "nope", inputs.catalog, "-o", tmp_path / "o")
    assert res.exit_code == 1 and "nope: model folder does not exist" in res.output
    (tmp_path / "empty").mkdir()
    res = h.run_cli(tmp_path / "empty", inputs.catalog, "-o", tmp_path / "o")
    assert res.exit_code == 1 and "not a starlabels model folder: it has no config.json" in res.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    res = h.run_cli(tmp_path / "bad", inputs.catalog, "-o", tmp_path / "o")
    assert res.exit_code == 1 and "config.json: not valid JSON" in res.output
    (tmp_path / "bad" / "config.json").write_text("[1, 2]")
    with pytest.raises(InputFileError, match="expected a JSON object, got list"):
        read_model_card(tmp_path / "bad")


def test_catalog_and_reference_errors_are_clear(tmp_path, inputs, h):
    res = h.run_cli(inputs.model, tmp_path / "cat.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "cat.csv: catalog file does not exist" in res.output
    (tmp_path / "cat.txt").write_text("a,b\n")
    res = h.run_cli(inputs.model, tmp_path / "cat.txt", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "unknown catalog format" in res.output
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    res = h.run_cli(inputs.model, tmp_path / "broken.parquet", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "cannot read the catalog as a PARQUET table" in res.output
    pd.DataFrame({"APOGEE_ID": ["a"], "X": [1.0], "X_ERR": [0.1]}).to_csv(tmp_path / "other.csv")
    res = h.run_cli(inputs.model, tmp_path / "other.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "has none of the model's label columns (TEFF, LOGG" in res.output
    # a reference without common stars, with duplicate ids, without label columns
    pd.DataFrame({"APOGEE_ID": ["x", "y"], "TEFF": [1.0, 2.0]}).to_csv(tmp_path / "r1.csv", index=False)
    res = h.run_cli(inputs.model, inputs.catalog, "-r", tmp_path / "r1.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "r1.csv: no APOGEE_ID in common with the catalog" in res.output
    cat = pd.read_parquet(inputs.catalog)
    ids = cat["APOGEE_ID"].iloc[[0, 0]]
    pd.DataFrame({"APOGEE_ID": ids, "TEFF": [1.0, 2.0]}).to_csv(tmp_path / "r2.csv", index=False)
    res = h.run_cli(inputs.model, inputs.catalog, "-r", tmp_path / "r2.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "r2.csv: reference has duplicate ids" in res.output
    pd.DataFrame({"APOGEE_ID": ids[:1], "VHELIO": [1.0]}).to_csv(tmp_path / "r3.csv", index=False)
    res = h.run_cli(inputs.model, inputs.catalog, "-r", tmp_path / "r3.csv", "-o", tmp_path / "o")
    assert res.exit_code == 1 and "r3.csv: has no reference column for any label" in res.output
    res = h.run_cli(
        inputs.model,
        inputs.catalog,
        "--groups",
        "FIELD",
        "-o",
        tmp_path / "o",
        "-r",
        inputs.reference,
        "--no-figures",
    )
    assert res.exit_code == 1 and "no group column 'FIELD'" in res.output
    res = h.run_cli(
        inputs.model,
        inputs.catalog,
        "-o",
        tmp_path / "o",
        "--no-isochrones",
        "--isochrones",
        inputs.isochrones,
    )
    assert res.exit_code == 2 and "exclude each other" in res.output
    res = h.run_cli(inputs.model, inputs.catalog, "-o", tmp_path / "o", "--isochrones", tmp_path / "i.fits")
    assert res.exit_code == 1 and "i.fits: isochrone file does not exist" in res.output
    assert not (tmp_path / "o").exists()  # nothing written on error


def test_sdss5_catalog_matched_on_sdss_id_and_the_grids_on_the_card(tmp_path):
    """A catalog of SDSS-V files (SDSS_ID, no APOGEE_ID for BOSS stars) against an astra-style
    reference with a lower-case sdss_id: matched on SDSS_ID (id "auto"); the model card names the
    raw input grid and the network grid (Grid.describe()) instead of listing the stored grid."""
    from starlabels.instruments import get
    from starlabels.preprocess.pipeline import PreprocessConfig

    model = write_partial_model(tmp_path / "model")
    cfg = json.loads((model / "config.json").read_text())
    boss = get("boss").grid
    cfg["preprocessing"] = PreprocessConfig(kind="raw", instrument="boss").to_dict()
    cfg["grid"] = boss.to_dict()
    (model / "config.json").write_text(json.dumps(cfg))
    cat = small_catalog_with_truth().drop(columns=["TRUE_TEFF", "logg_true"])
    cat.insert(0, "SDSS_ID", np.arange(len(cat)) + 1000)
    cat["APOGEE_ID"] = ""  # BOSS stars have none
    cat.to_csv(tmp_path / "cat.csv", index=False)
    truth = small_catalog_with_truth()
    rev = slice(None, None, -1)  # the reference in another order
    ref = pd.DataFrame(
        {
            "sdss_id": (np.arange(len(cat)) + 1000)[rev],
            "TEFF": truth["TRUE_TEFF"].to_numpy()[rev],
            "LOGG": truth["logg_true"].to_numpy()[rev],
        }
    )
    ref.to_csv(tmp_path / "ref.csv", index=False)
    res = build_report(
        model, tmp_path / "cat.csv", tmp_path / "out", reference=tmp_path / "ref.csv", figures=False
    )
    P = cat[["TEFF", "LOGG"]].to_numpy()
    R = truth[["TRUE_TEFF", "logg_true"]].to_numpy()
    expected = label_metrics.residual_table(
        P, R, ["TEFF", "LOGG"], err=cat[["TEFF_ERR", "LOGG_ERR"]].to_numpy()
    )
    pd.testing.assert_frame_equal(res.tables["residuals"], expected)
    text = html.unescape(res.path.read_text(encoding="utf-8"))
    assert f"Input grid (raw spectra, instrument boss): {boss.describe()}" in text
    assert f"Network input grid: {boss.describe()}" in text
    assert boss.checksum in text and "'checksum'" not in text
    with pytest.raises(InputFileError, match=r"no 'APOGEE_ID' column"):
        build_report(
            model,
            tmp_path / "cat.csv",
            tmp_path / "o2",
            reference=tmp_path / "ref.csv",
            id_column="APOGEE_ID",
            figures=False,
        )
