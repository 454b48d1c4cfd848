"""Catalogs from SDSS-V files: ``starlabels predict MODEL mwmStar-*.fits -o cat.fits`` on a folder mixing
DR19 and DR20 files (written by the tests with starlabels.io's mwm writer), keyed on SDSS_ID with the
TELESCOPE and HDU of each row; spectra of another instrument listed with file and HDU, never fatal."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import starlabels
from starlabels.inference import catalog as catalogs
from starlabels.inference import flags
from starlabels.instruments import get
from starlabels.io import Spectrum, write_mwm_star
from starlabels.io.read import read_spectra

from .conftest import build_model, raw_spectra

APOGEE, BOSS = get("apogee"), get("boss")


def _boss(seed: int, telescope: str = "apo25m") -> Spectrum:
    rng = np.random.default_rng(seed)
    n = BOSS.n_pixels
    flux = 50.0 + rng.normal(0, 1, n)
    meta = {"TELESCOPE": telescope}
    return Spectrum("boss", BOSS.wavelength, flux, np.full(n, 1.0), np.zeros(n, int), meta)


@pytest.fixture
def sdss5_folder(tmp_path):
    """mwmStar files: DR19 with APOGEE/APO + BOSS/APO (SDSS_ID 101), DR20 with APOGEE/LCO (102),
    DR20 with BOSS only (103), DR19 with both BOSS HDUs (104); plus a text file."""
    flux, error, bitmask = raw_spectra(2, seed=5)
    bitmask[0, 300:310] = 1  # BADPIX
    apo = [Spectrum("apogee", APOGEE.wavelength, flux[i], error[i], bitmask[i], {"TELESCOPE": t, "SNR": 95.0})
           for i, t in enumerate(("apo25m", "lco25m"))]
    d = tmp_path / "mwm"
    write_mwm_star(d / "mwmStar-0.6.0-101.fits", [apo[0], _boss(1)],
                   {"SDSS_ID": 101, "APOGEE_ID": "2M00000101", "RA": 10.5, "DEC": -3.0}, layout="dr19")
    write_mwm_star(d / "mwmStar-0.8.1-102.fits", [apo[1]],
                   {"SDSS_ID": 102, "APOGEE_ID": "2M00000102", "RA": 11.5, "DEC": -4.0}, layout="dr20")
    write_mwm_star(d / "mwmStar-0.8.1-103.fits", [_boss(3)], {"SDSS_ID": 103, "RA": 12.5, "DEC": -5.0},
                   layout="dr20")
    write_mwm_star(d / "mwmStar-0.6.0-104.fits", [_boss(4), _boss(5, "lco25m")],
                   {"SDSS_ID": 104, "RA": 13.5, "DEC": -6.0}, layout="dr19")
    (d / "notes.txt").write_text("not a spectrum\n")
    return d


def test_cli_predict_on_mixed_dr19_dr20_mwmstar_files(raw_model_folder, sdss5_folder, tmp_path):
    from starlabels.cli.main import cli

    files = sorted(str(p) for p in sdss5_folder.glob("mwmStar-*.fits"))  # the shell's mwmStar-*.fits
    out = tmp_path / "cat.fits"
    res = CliRunner().invoke(cli, ["predict", str(raw_model_folder), *files, "-o", str(out),
                                   "--uncertainty", "delta"])
    assert res.exit_code == 0, res.output
    df = catalogs.read_catalog(out)
    assert df["SDSS_ID"].tolist() == [101, 102]
    assert df["TELESCOPE"].tolist() == ["apo25m", "lco25m"]
    assert df["HDU"].tolist() == ["APOGEE/APO", "APOGEE/LCO"]
    assert df["APOGEE_ID"].tolist() == ["2M00000101", "2M00000102"]
    np.testing.assert_array_equal(df["RA"], [10.5, 11.5])
    # the numbers: a direct prediction on the spectra as read back from the files
    spectra = [s for f in files for s in read_spectra(f) if s.instrument == "apogee"]
    assert [s.meta["SDSS_ID"] for s in spectra] == [101, 102]
    ref = starlabels.predict(raw_model_folder, spectra, uncertainty="delta")
    np.testing.assert_allclose(df[["TEFF", "LOGG", "FE_H"]].to_numpy(), ref.mean, rtol=1e-6)
    np.testing.assert_allclose(df["TEFF_ERR"].to_numpy(), ref.std[:, 0], rtol=1e-6)
    assert np.isfinite(df["TEFF"]).all() and not (df["FLAG"] & flags.bit("INVALID_SPECTRUM")).any()
    # every BOSS spectrum is listed with its file and HDU and the reason; none became a row
    skipped = pd.read_csv(str(out) + ".skipped.tsv", sep="\t")
    names = sorted(p.removeprefix(f"{sdss5_folder}/") for p in skipped["path"])
    assert names == ["mwmStar-0.6.0-101.fits[BOSS/APO]", "mwmStar-0.6.0-104.fits[BOSS/APO]",
                     "mwmStar-0.6.0-104.fits[BOSS/LCO]", "mwmStar-0.8.1-103.fits[BOSS/APO]"]
    assert skipped["reason"].str.contains("none of the model's grid").all()
    assert "4 input(s) skipped" in res.output


def test_folder_scanned_by_content_and_a_boss_model_on_the_same_files(raw_model_folder, sdss5_folder,
                                                                      tmp_path):
    """Given the folder, files are found by content (the text file is listed as skipped, not
    ignored). A model on the BOSS grid reads the BOSS rows of the same files and skips the APOGEE
    ones; an APOGEE spectrum resampled onto it would cover none of it either."""
    from astropy.io import fits

    # an mwmStar whose HDUs are all empty: listed with the file named, the run goes on
    with fits.open(sdss5_folder / "mwmStar-0.8.1-103.fits") as h:
        hdus = [h[0].copy()] + [fits.BinTableHDU(data=h[i].data[:0], header=h[i].header) for i in range(1, 5)]
        fits.HDUList(hdus).writeto(sdss5_folder / "mwmStar-0.8.1-105.fits")
    res = catalogs.run_catalog(raw_model_folder, [sdss5_folder], tmp_path / "a.csv")
    assert res.n_rows == 2
    reasons = dict(res.skipped)
    assert any(p.endswith("notes.txt") for p in reasons)
    assert "all of its extensions" in reasons[str(sdss5_folder / "mwmStar-0.8.1-105.fits")]
    (sdss5_folder / "mwmStar-0.8.1-105.fits").unlink()

    from starlabels.preprocess.pipeline import PreprocessConfig

    torch.manual_seed(0)
    boss_model = build_model("bcnn", BOSS.n_pixels, seed=2,
                             preprocessing=PreprocessConfig(kind="raw", instrument="boss").to_dict())
    assert boss_model.input_grid.same_as(BOSS.grid) and boss_model.grid.same_as(BOSS.grid)
    folder = boss_model.save(tmp_path / "boss_model")
    res = catalogs.run_catalog(folder, [sdss5_folder], tmp_path / "b.fits", resample="linear")
    df = catalogs.read_catalog(res.path)
    assert df["SDSS_ID"].tolist() == [101, 104, 104, 103]  # files in path order, HDUs in file order
    assert df["HDU"].tolist() == ["BOSS/APO", "BOSS/APO", "BOSS/LCO", "BOSS/APO"]
    assert df["TELESCOPE"].tolist() == ["apo25m", "apo25m", "lco25m", "apo25m"]
    assert not (df["FLAG"] & flags.bit("RESAMPLED")).any()  # on the model's grid: not resampled
    boss = [s for f in sorted(sdss5_folder.glob("mwmStar-*.fits")) for s in read_spectra(f)
            if s.instrument == "boss"]
    ref = starlabels.predict(folder, boss, uncertainty=None)  # the catalog run above: point estimates
    np.testing.assert_allclose(df[["TEFF", "LOGG", "FE_H"]].to_numpy(), ref.mean, rtol=1e-6)
    assert sorted(p.removeprefix(f"{sdss5_folder}/") for p, _ in res.skipped if "APOGEE" in p) == [
        "mwmStar-0.6.0-101.fits[APOGEE/APO]", "mwmStar-0.8.1-102.fits[APOGEE/LCO]"]


def test_another_grid_of_the_same_instrument_resampled_or_skipped(raw_model_folder, tmp_path):
    """An APOGEE spectrum on a grid shifted by a third of a pixel (a table file with wavelength,
    flux and error): without resample it is skipped naming the file and both grids; with
    resample='linear' it becomes a row flagged RESAMPLED with the same labels as predict gives."""
    flux, error, _ = raw_spectra(1, seed=8)
    crval, cdelt = APOGEE.grid.log_linear
    wave = 10.0 ** (crval + cdelt / 3 + cdelt * np.arange(APOGEE.n_pixels))
    path = tmp_path / "shifted.npz"
    np.savez(path, wavelength=wave, flux=flux[0], error=error[0])
    res = catalogs.run_catalog(raw_model_folder, [path], tmp_path / "a.csv")
    assert res.n_rows == 0 and len(res.skipped) == 1
    where, reason = res.skipped[0]
    assert where.startswith(str(path)) and "'apstar' (8575 px" in reason and "resample=" in reason
    res = catalogs.run_catalog(raw_model_folder, [path], tmp_path / "b.csv", resample="linear")
    df = catalogs.read_catalog(res.path)
    assert len(df) == 1 and df["FLAG"].iloc[0] & flags.bit("RESAMPLED")
    ref = starlabels.predict(raw_model_folder, flux, error, wavelength=wave, resample="linear",
                             uncertainty=None)  # the catalog's point estimates
    np.testing.assert_allclose(df[["TEFF", "LOGG", "FE_H"]].to_numpy(), ref.mean, rtol=1e-6)
    from starlabels.cli.main import cli  # the same through `starlabels predict --resample linear`

    r = CliRunner().invoke(cli, ["predict", str(raw_model_folder), str(path), "-o", str(tmp_path / "c.csv"),
                                 "--resample", "linear", "--uncertainty", "none"])
    assert r.exit_code == 0, r.output
    pd.testing.assert_frame_equal(catalogs.read_catalog(tmp_path / "c.csv"), df)
