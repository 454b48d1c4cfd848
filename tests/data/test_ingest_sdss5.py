"""Ingest SDSS-V files: mwmStar DR19/DR20 folders by content, astraAllStar labels joined on sdss_id,
one dataset per instrument (the grid stored in it), other grids resampled or listed."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.data.hdf5 import SpectraDataset
from starlabels.data.ingest import ingest_files
from starlabels.errors import InputDataError
from starlabels.instruments import get
from starlabels.io import Spectrum, write_mwm_star
from starlabels.io.read import read_spectra

APOGEE, BOSS = get("apogee"), get("boss")


def _spectrum(inst, seed, telescope="apo25m"):
    rng = np.random.default_rng(seed)
    grid = get(inst).grid
    n = grid.n_pixels
    flux = 100.0 + rng.normal(0, 1, n)
    error = np.full(n, 0.5)
    error[:5] = np.inf  # ivar 0 on the file
    bits = np.zeros(n, np.int64)
    bits[10:12] = 1
    return Spectrum(inst, grid.wavelength, flux, error, bits, {"TELESCOPE": telescope, "SNR": 40.0 + seed})


@pytest.fixture
def sdss5(tmp_path):
    d = tmp_path / "spectra"
    write_mwm_star(d / "a" / "mwmStar-0.6.0-101.fits", [_spectrum("apogee", 1), _spectrum("boss", 2)],
                   {"SDSS_ID": 101, "APOGEE_ID": "2M101", "RA": 1.0, "DEC": 2.0}, layout="dr19")
    write_mwm_star(d / "b" / "renamed-star.fits", [_spectrum("apogee", 3, "lco25m")],
                   {"SDSS_ID": 102, "APOGEE_ID": "2M102", "RA": 3.0, "DEC": 4.0}, layout="dr20")
    write_mwm_star(d / "b" / "mwmStar-0.8.1-103.fits", [_spectrum("boss", 4, "lco25m")],
                   {"SDSS_ID": 103, "RA": 5.0, "DEC": 6.0}, layout="dr20")
    # an astraAllStarASPCAP table: 101 twice (the flag_bad row dropped), 102 with result flags, 999 absent
    apogee_rows = fits.BinTableHDU.from_columns([
        fits.Column("sdss_id", "K", array=[101, 101, 102, 999]),
        fits.Column("sdss4_apogee_id", "10A", array=["2M101", "2M101", "2M102", ""]),
        fits.Column("telescope", "6A", array=["apo25m", "apo25m", "lco25m", "apo25m"]),
        fits.Column("snr", "E", array=[40, 90, 43, 10]),
        fits.Column("teff", "E", array=[4600, 9999, 5100, 4000]),
        fits.Column("e_teff", "E", array=[12, 1, 15, 10]),
        fits.Column("logg", "E", array=[2.5, 9.0, 4.1, 1.0]),
        fits.Column("e_logg", "E", array=[0.05, 0.01, 0.04, 0.1]),
        fits.Column("fe_h", "E", array=[-0.25, 9.0, 0.125, 0.0]),
        fits.Column("e_fe_h", "E", array=[0.02, 0.01, 0.03, 0.1]),
        fits.Column("flag_bad", "L", array=[False, True, False, False]),
        fits.Column("flag_warn", "L", array=[False, False, True, False]),
        fits.Column("result_flags", "K", array=[0, 0, 4, 0]),
        fits.Column("spectrum_flags", "K", array=[0, 0, 0, 0]),
    ], name="APOGEE")
    boss_rows = fits.BinTableHDU.from_columns([fits.Column("sdss_id", "K", array=np.zeros(0, np.int64))],
                                              name="BOSS")
    primary = fits.PrimaryHDU()
    primary.header["PIPELINE"] = "ASPCAP"
    primary.header["V_ASTRA"] = "0.8.1"
    table = tmp_path / "astraAllStarASPCAP-0.8.1.fits"
    fits.HDUList([primary, boss_rows, apogee_rows]).writeto(table)
    return d, table


def test_apogee_dataset_from_mwmstar_with_astra_labels(sdss5, tmp_path):
    d, table = sdss5
    out = tmp_path / "apogee.h5"
    res = ingest_files([d], out, labels=table)
    assert res.rows_total == 2 and res.files_added == 2 and res.rows_unlabelled == 0
    ds = SpectraDataset(out)
    assert ds.grid.same_as(APOGEE.grid) and ds.instrument == "apogee"
    assert ds.meta("sdss_id").tolist() == [101, 102]  # a/… then b/renamed-star.fits, found by content
    assert ds.meta("apogee_id").tolist() == ["2M101", "2M102"]
    assert ds.meta("telescope").tolist() == ["apo25m", "lco25m"]
    assert ds.meta("hdu").tolist() == ["APOGEE/APO", "APOGEE/LCO"]
    assert ds.meta("label_flags").tolist() == [0, 4]  # the pipeline's result_flags, kept
    b = ds.read()
    f32 = np.float32
    np.testing.assert_array_equal(b.labels, [[f32(4600), f32(2.5), f32(-0.25)],
                                             [f32(5100), f32(4.1), f32(0.125)]])
    np.testing.assert_array_equal(b.label_errors[:, 0], [f32(12), f32(15)])
    # the spectra as read_spectra gives them (inf σ where ivar = 0, pixel flags kept)
    want = [s for f in (d / "a" / "mwmStar-0.6.0-101.fits", d / "b" / "renamed-star.fits")
            for s in read_spectra(f) if s.instrument == "apogee"]
    np.testing.assert_array_equal(b.flux, np.stack([s.flux for s in want]).astype(np.float32))
    np.testing.assert_array_equal(b.error, np.stack([s.error for s in want]).astype(np.float32))
    np.testing.assert_array_equal(b.bitmask, np.stack([s.bitmask for s in want]))
    assert np.isinf(b.error[:, :5]).all()
    # the BOSS spectra are listed with file and HDU; a file with only BOSS spectra as the file
    skipped = {p.removeprefix(f"{d}/"): r for p, r in res.skipped}
    assert set(skipped) == {"a/mwmStar-0.6.0-101.fits[BOSS/APO]", "b/mwmStar-0.8.1-103.fits"}
    assert all("boss spectrum" in r for r in skipped.values())


def test_boss_dataset_through_the_cli(sdss5, tmp_path):
    d, _ = sdss5
    out = tmp_path / "boss.h5"
    r = CliRunner().invoke(cli, ["ingest", str(d), "-o", str(out), "--instrument", "boss"])
    assert r.exit_code == 0, r.output
    ds = SpectraDataset(out)
    assert ds.grid.same_as(BOSS.grid) and ds.instrument == "boss" and ds.grid.name == "boss"
    assert ds.meta("sdss_id").tolist() == [101, 103]
    assert ds.meta("hdu").tolist() == ["BOSS/APO", "BOSS/LCO"]
    assert ds.label_names == ()


def test_other_grids_are_cut_resampled_or_listed(tmp_path):
    """A table spectrum on APOGEE's grid shifted by half a pixel: listed without resample (both
    grids named), resampled with it (flux equal to numpy.interp, the first pixel uncovered); one
    on the Payne sub-grid ingested into a Payne-grid dataset from an apStar-grid spectrum is cut."""
    crval, cdelt = APOGEE.grid.log_linear
    wave = 10.0 ** (crval + 0.5 * cdelt + cdelt * np.arange(APOGEE.n_pixels))
    flux = 100.0 + np.sin(np.arange(APOGEE.n_pixels) / 7.0)
    path = tmp_path / "in" / "shifted.npz"
    path.parent.mkdir()
    np.savez(path, wavelength=wave, flux=flux, error=np.full(APOGEE.n_pixels, 0.5))
    res = ingest_files([path], tmp_path / "none.h5")
    assert res.rows_total == 0 and len(res.skipped) == 1
    assert "'apstar' (8575 px" in res.skipped[0][1] and "resample" in res.skipped[0][1]
    res = ingest_files([path], tmp_path / "lin.h5", resample="linear")
    b = SpectraDataset(tmp_path / "lin.h5").read()
    inside = APOGEE.wavelength >= wave[0]
    assert (~inside).sum() == 1 and np.isinf(b.error[0, ~inside]).all()
    np.testing.assert_allclose(b.flux[0, inside], np.interp(APOGEE.wavelength[inside], wave, flux), rtol=1e-6)
    np.testing.assert_allclose(b.error[0, inside], 0.5 * np.sqrt(0.5), rtol=1e-6)  # two halves: σ/√2
    # apStar-grid spectrum into a Payne-grid dataset: the Payne pixels are cut, no interpolation
    apstar_file = tmp_path / "in2" / "apstar.npz"
    apstar_file.parent.mkdir()
    np.savez(apstar_file, wavelength=APOGEE.wavelength, flux=flux, error=np.full(APOGEE.n_pixels, 0.5))
    ingest_files([apstar_file], tmp_path / "payne.h5", grid="payne")
    ds = SpectraDataset(tmp_path / "payne.h5")
    payne = APOGEE.get_grid("payne")
    assert ds.grid.same_as(payne)
    np.testing.assert_array_equal(ds.read().flux[0], flux[payne.positions_in(APOGEE.grid)].astype(np.float32))
    assert ds.meta("sdss_id").tolist() == [-1]
    with pytest.raises(InputDataError, match="resample must be"):
        ingest_files([path], tmp_path / "x.h5", resample="cubic")
