"""Catalogs: columns and units, bad inputs listed not fatal, resuming, the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import starlabels
from starlabels.errors import StarlabelsError
from starlabels.inference import catalog as catalogs
from starlabels.inference import flags
from starlabels.inference.catalog_parts import _resume_hint, parts_dir


@pytest.fixture
def inputs(tmp_path, spectra):
    """A folder of 5 apStar files (one NaN-only), a truncated file, an apStar of the wrong grid
    length, an aspcapStar (unusable by a raw-flux model) and a 3-row HDF5 dataset."""
    from astropy.io import fits

    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.io import write_apstar, write_aspcapstar

    flux, error, bitmask = spectra(5, seed=7)
    flux[2] = np.nan
    d = tmp_path / "in"
    d.mkdir()
    for i in range(5):
        write_apstar(d / f"apStar-dr17-2M0000000{i}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": f"2M0000000{i}", "RA": 10.0 + i, "DEC": -5.0, "SNR": 90.0 + i})
    (d / "apStar-dr17-2M0000000x.fits").write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    short = [fits.PrimaryHDU()] + [fits.ImageHDU(np.ones(7514, np.float32)) for _ in range(2)]
    fits.HDUList([*short, fits.ImageHDU(np.zeros(7514, np.int32))]).writeto(d / "apStar-dr17-2M0000000y.fits")
    write_aspcapstar(d / "aspcapStar-dr17-2M0000000z.fits", np.ones(8575), np.full(8575, 0.01),
                     {"APOGEE_ID": "2M0000000z"})
    with DatasetWriter(tmp_path / "rows.h5", 8575, "apstar") as w:
        w.append(flux[:3], error[:3], bitmask[:3], meta={"apogee_id": ["h0", "h1", "h2"], "ra": [1.0, 2, 3]})
    return d, tmp_path / "rows.h5", (flux, error, bitmask)


def test_catalog_columns_values_units_and_skipped_inputs(raw_model_folder, inputs, tmp_path):
    d, h5, (flux, error, bitmask) = inputs
    out = tmp_path / "cat.fits"
    res = catalogs.run_catalog(raw_model_folder, [d, h5, tmp_path / "missing.fits"], out, uncertainty="delta",
                        files_per_unit=2, rows_per_unit=2)
    # planning opens no file: 8 files / 2 + 3 HDF5 rows / 2 units; the truncated and the 7514-pixel
    # "apStar" are recognised as no spectrum when read (skipped, listed below)
    assert res.n_rows == 8 and res.units_computed == res.units_total == 6
    df = catalogs.read_catalog(out)
    parts = ["ERR", "ERR_ALEATORIC", "ERR_DELTA"]
    labels = [c for x in ("TEFF", "LOGG", "FE_H") for c in (x, *(f"{x}_{p}" for p in parts))]
    assert list(df.columns) == ["SDSS_ID", "APOGEE_ID", "TELESCOPE", "HDU", "RA", "DEC", "SNR", "SOURCE",
                                *labels, "DOMAIN_SHIFT", "FLAG", "MODEL_NAME", "MODEL_VERSION"]
    assert (df["SDSS_ID"] == -1).all()  # DR17 apStar files and this dataset carry no SDSS_ID
    assert df["APOGEE_ID"].tolist() == [f"2M0000000{i}" for i in range(5)] + ["h0", "h1", "h2"]
    assert df["SOURCE"].iloc[5].endswith("rows.h5[0]")
    np.testing.assert_array_equal(df["RA"].to_numpy()[:5], [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(df["SNR"].to_numpy()[[0, 1, 3]], [90, 91, 93])  # header SNR
    assert (df["MODEL_NAME"] == raw_model_folder.name).all()
    # numbers equal a direct prediction on the same arrays
    ref = starlabels.predict(raw_model_folder, flux, error, bitmask=bitmask, uncertainty="delta")
    good = [0, 1, 3, 4]
    np.testing.assert_allclose(df["TEFF"].to_numpy()[good], ref.mean[good, 0], rtol=1e-6)
    np.testing.assert_allclose(df["LOGG_ERR_DELTA"].to_numpy()[good],
                               np.sqrt(ref.variance_parts["delta"][good, 1]), rtol=1e-6)
    np.testing.assert_allclose(df["FE_H"].to_numpy()[5:7], ref.mean[:2, 2], rtol=1e-6, atol=1e-6)
    # the NaN-only star: row kept, NaN labels, flagged
    for row in (2, 7):
        assert np.isnan(df.loc[row, ["TEFF", "TEFF_ERR", "LOGG", "FE_H_ERR_DELTA"]].astype(float)).all()
        assert df.loc[row, "FLAG"] & flags.bit("INVALID_SPECTRUM")
    assert df["FLAG"].dtype == np.int32
    # units in the FITS header: FITS-standard ones as TUNITn; dex (not FITS-standard) in astropy's
    # serialized columns and the TTYPE comment — Table.read gives them all back without a warning
    import warnings

    from astropy import units as astropy_units
    from astropy.io import fits
    from astropy.table import Table

    h = fits.getheader(out, 1)
    units = {h[f"TTYPE{i}"]: h.get(f"TUNIT{i}") for i in range(1, h["TFIELDS"] + 1)}
    assert units["RA"] == "deg" and units["TEFF_ERR_DELTA"] == "K" and units["FE_H"] is None
    assert h.comments[f"TTYPE{list(units).index('FE_H') + 1}"] == "[dex]"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = Table.read(out)
    assert (
        t["FE_H"].unit == astropy_units.dex
        and t["LOGG_ERR"].unit == astropy_units.dex
        and t["TEFF"].unit == astropy_units.K
    )
    # unusable inputs are listed with a reason, not fatal
    skipped = pd.read_csv(res.skipped_path, sep="\t")
    reasons = dict(zip(skipped["path"].map(lambda p: p.rsplit("/", 1)[-1]), skipped["reason"], strict=True))
    assert set(reasons) == {
        "apStar-dr17-2M0000000x.fits",
        "apStar-dr17-2M0000000y.fits",
        "aspcapStar-dr17-2M0000000z.fits[1]",
        "missing.fits",
    }
    assert "no known spectrum format" in reasons["apStar-dr17-2M0000000y.fits"]
    assert "model takes raw flux" in reasons["aspcapStar-dr17-2M0000000z.fits[1]"]
    assert reasons["missing.fits"] == "does not exist"
    assert not parts_dir(out).exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_hold_the_same_catalog(raw_model_folder, inputs, tmp_path, fmt):
    d, _, _ = inputs
    catalogs.run_catalog(raw_model_folder, [d], tmp_path / "a.fits", files_per_unit=3)
    catalogs.run_catalog(raw_model_folder, [d], tmp_path / f"b.{fmt}", files_per_unit=3)
    a, b = catalogs.read_catalog(tmp_path / "a.fits"), catalogs.read_catalog(tmp_path / f"b.{fmt}")
    pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-7)


def test_the_same_spectra_give_the_same_rows_from_fits_files_and_from_hdf5(make_model, inputs, tmp_path):
    """apStar files 0-2 and the HDF5 rows hold the same float32 spectra: a continuum-normalising
    model's label columns for them are equal bit for bit (both preprocessed in float32; the FITS
    reader's float64 arrays used to be fitted in float64), whatever container they came in."""
    from starlabels.preprocess.pipeline import PreprocessConfig

    d, h5, _ = inputs
    model = make_model("bcnn", 7514, preprocessing=PreprocessConfig(kind="continuum").to_dict(), seed=3,
                       dropout=0.0)
    res = catalogs.run_catalog(model, [d, h5], tmp_path / "c.parquet", uncertainty="delta",
                               files_per_unit=3, rows_per_unit=3)
    df = catalogs.read_catalog(res.path)
    cols = [c for c in df.columns if c.startswith(("TEFF", "LOGG", "FE_H"))]
    ids = df["APOGEE_ID"].tolist()
    fits_rows = df.iloc[[ids.index("2M00000000"), ids.index("2M00000001")]][cols].to_numpy()
    h5_rows = df.iloc[[ids.index("h0"), ids.index("h1")]][cols].to_numpy()
    assert np.isfinite(fits_rows).all()
    np.testing.assert_array_equal(fits_rows, h5_rows)


def test_an_interrupted_run_resumes_and_skips_finished_units(raw_model_folder, inputs, tmp_path, monkeypatch):
    d, h5, _ = inputs
    kw = dict(uncertainty="noise", n_samples=6, seed=11, files_per_unit=1, rows_per_unit=1)
    full = catalogs.run_catalog(raw_model_folder, [d, h5], tmp_path / "full.csv", **kw)

    real, calls = catalogs.run_unit, []

    def crash_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        calls.append(args[1].name)
        return real(*args, **kwargs)

    out = tmp_path / "resumed.csv"
    monkeypatch.setattr(catalogs, "run_unit", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        catalogs.run_catalog(raw_model_folder, [d, h5], out, **kw)
    assert not out.exists() and len(list(parts_dir(out).glob("unit-*.json"))) == 3
    monkeypatch.setattr(catalogs, "run_unit", real)
    res = catalogs.run_catalog(raw_model_folder, [d, h5], out, **kw)
    assert res.units_computed == full.units_total - 3
    pd.testing.assert_frame_equal(catalogs.read_catalog(out), catalogs.read_catalog(full.path))
    assert res.skipped == full.skipped


def test_resuming_with_other_settings_is_refused_unless_overwrite(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    d, _, _ = inputs
    out = tmp_path / "c.csv"

    def boom(*args, **kwargs):  # an interrupted run (a failing unit would be retried and recorded)
        raise KeyboardInterrupt("stop")

    monkeypatch.setattr(catalogs, "run_unit", boom)
    with pytest.raises(KeyboardInterrupt):
        catalogs.run_catalog(raw_model_folder, [d], out, uncertainty="delta")
    monkeypatch.undo()
    with pytest.raises(StarlabelsError, match="overwrite"):
        catalogs.run_catalog(raw_model_folder, [d], out, uncertainty="noise", n_samples=4)
    res = catalogs.run_catalog(raw_model_folder, [d], out, uncertainty="noise", n_samples=4, overwrite=True)
    assert res.n_rows == 5


def test_a_run_begun_with_other_unit_sizes_names_them_and_resumes_with_them(
    raw_model_folder, inputs, tmp_path, monkeypatch
):
    from starlabels.cli.main import cli

    d, _, _ = inputs  # 5 files
    out = tmp_path / "c.csv"
    real, calls = catalogs.run_unit, []

    def stop_after_one(*args, **kwargs):  # interrupted after its first unit (as by the former default)
        if calls:
            raise KeyboardInterrupt("stop")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(catalogs, "run_unit", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        catalogs.run_catalog(raw_model_folder, [d], out, uncertainty="delta", files_per_unit=2)
    monkeypatch.undo()
    with pytest.raises(StarlabelsError) as err:  # resumed with the default (256 files per unit)
        catalogs.run_catalog(raw_model_folder, [d], out, uncertainty="delta")
    assert str(err.value).endswith("to resume it, pass files_per_unit=2 (--files-per-unit 2)")
    r = CliRunner().invoke(cli, ["predict", str(raw_model_folder), str(d), "-o", str(out),
                                 "--uncertainty", "delta", "--files-per-unit", "2"])
    assert r.exit_code == 0, r.output
    whole = catalogs.run_catalog(raw_model_folder, [d], tmp_path / "whole.csv", uncertainty="delta")
    pd.testing.assert_frame_equal(catalogs.read_catalog(out), catalogs.read_catalog(whole.path))
    # another setting differing too: no hint (the sizes alone would not resume it)
    assert _resume_hint({"settings": {"uncertainty": "delta"}, "files_per_unit": 2},
                        {"settings": {"uncertainty": "noise"}, "files_per_unit": 256}) == ""


def test_cli_predict_writes_a_catalog_and_reports_bad_models_cleanly(raw_model_folder, inputs, tmp_path):
    from starlabels.cli.main import cli

    d, h5, _ = inputs
    out = tmp_path / "cli.parquet"
    r = CliRunner().invoke(
        cli,
        [
            "predict",
            str(raw_model_folder),
            str(d),
            str(h5),
            "-o",
            str(out),
            "--uncertainty",
            "delta",
            "--files-per-unit",
            "2",
        ],
    )
    assert r.exit_code == 0, r.output
    assert "wrote 8 rows" in r.output and "3 input(s) skipped" in r.output
    df = catalogs.read_catalog(out)
    assert "TEFF_ERR_DELTA" in df.columns and len(df) == 8

    empty = tmp_path / "not_a_model"
    empty.mkdir()
    r = CliRunner().invoke(cli, ["predict", str(empty), str(d), "-o", str(tmp_path / "x.csv")])
    assert r.exit_code == 1
    assert "config.json" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["predict", str(raw_model_folder), str(d), "-o", str(tmp_path / "x.txt")])
    assert r.exit_code == 1 and "format" in r.output


def test_floor_and_coverage_parts_get_columns_and_add_up(raw_model_folder, spectra, tmp_path):
    """A model with a floor calibration and a fitted label coverage: the catalog carries
    X_ERR_FLOOR and X_ERR_COVERAGE, and X_ERR² = Σ parts² row by row."""
    import shutil

    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.inference.coverage import fit_coverage

    folder = tmp_path / "model"
    shutil.copytree(raw_model_folder, folder)
    tm = starlabels.load_model(folder)
    names = ["TEFF", "LOGG", "FE_H"]
    entry = {"scales": dict.fromkeys(names, 1.5), "floor": {"TEFF": 40.0, "LOGG": 0.05, "FE_H": 0.02}}
    tm.calibration = {"format": 1, "method": "delta", "methods": {"delta": entry}}
    tm.save(folder)
    flux, error, bitmask = spectra(40, seed=3)
    labels = np.column_stack([np.full(40, 5000.0), np.full(40, 3.0), np.zeros(40)])
    labels[:20, 1] = -9999.0
    dev_f, dev_e, dev_b = spectra(20, seed=4)
    fit_coverage(
        folder,
        flux,
        error,
        labels,
        dev_f,
        dev_e,
        labels[20:],
        train_bitmask=bitmask,
        dev_bitmask=dev_b,
        k=3,
        save=True,
    )
    f, e, b = spectra(6, seed=5)
    with DatasetWriter(tmp_path / "rows.h5", 8575, "apstar") as w:
        w.append(f, e, b, meta={"apogee_id": [f"s{i}" for i in range(6)]})
    out = tmp_path / "cat.csv"
    catalogs.run_catalog(folder, [tmp_path / "rows.h5"], out, uncertainty="delta")
    df = catalogs.read_catalog(out)
    for x in names:
        parts = [f"{x}_ERR_{p}" for p in ("ALEATORIC", "DELTA", "FLOOR", "COVERAGE")]
        assert set(parts) <= set(df.columns)
        total = sum(df[c].to_numpy() ** 2 for c in parts)
        np.testing.assert_allclose(df[f"{x}_ERR"].to_numpy() ** 2, total, rtol=1e-6)
    np.testing.assert_allclose(df["LOGG_ERR_FLOOR"], 0.05, rtol=1e-6)
