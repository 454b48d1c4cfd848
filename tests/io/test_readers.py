"""apVisit (raw and resampled), aspcapStar and allStar readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.io import fits

from starlabels.constants import MISSING
from starlabels.errors import InputFileError
from starlabels.io import read_allstar, read_apvisit, read_aspcapstar, write_aspcapstar
from starlabels.preprocess import grids

BADPIX = 1
C_KM_S = 299792.458
REAL_APVISIT = "real/apVisit-r13-9518-57729-104.fits"


# --- apVisit ------------------------------------------------------------------------------
def _write_apvisit(path, wave, flux, error, mask, header=None):
    prim = fits.PrimaryHDU()
    prim.header.update(header or {})
    hdus = [prim, fits.ImageHDU(flux.astype(np.float32)), fits.ImageHDU(error.astype(np.float32)),
            fits.ImageHDU(mask.astype(np.int16)), fits.ImageHDU(wave.astype(np.float64))]
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture
def small_visit(tmp_path):
    """3 chips × 300 pixels, stored like APOGEE (red chip first, wavelength descending);
    flux linear in λ so that linear interpolation must reproduce it exactly."""
    edges = [(16475.0, 16945.0), (15865.0, 16425.0), (15150.0, 15800.0)]  # red, green, blue
    wave = np.stack([np.linspace(hi, lo, 300) for lo, hi in edges])
    flux = 100.0 + 0.01 * (wave - 15000.0)
    error = np.full_like(wave, 2.0)
    mask = np.zeros(wave.shape, np.int64)
    mask[1, 150] = 1 << 9  # PERSIST_HIGH on one green pixel
    header = {"OBJID": "2M00000002+0000002", "VRAD": 30.0, "SNR": 50.0, "TELESCOP": "apo25m"}
    path = _write_apvisit(tmp_path / "apVisit-test.fits", wave, flux, error, mask, header)
    return path, wave, flux, error, mask


def test_apvisit_raw_is_as_stored(small_visit):
    path, wave, flux, _error, mask = small_visit
    v = read_apvisit(path)
    assert not v.resampled and v.flux.shape == (3, 300)
    np.testing.assert_array_equal(v.wavelength, wave)
    np.testing.assert_array_equal(v.flux, flux.astype(np.float32))
    np.testing.assert_array_equal(v.bitmask, mask)
    assert v.meta["APOGEE_ID"] == "2M00000002+0000002" and v.meta["VRAD"] == 30.0


def test_apvisit_resampled_interpolates_linearly(small_visit):
    path, wave, flux, _error, _mask = small_visit
    v = read_apvisit(path, resample=True, rest_frame=False)  # observed frame
    lam = 10.0 ** (4.179 + 6e-6 * np.arange(8575))
    assert v.resampled and v.flux.shape == (8575,)
    np.testing.assert_allclose(v.wavelength, lam, rtol=1e-13)
    covered = np.zeros(8575, bool)
    for lo, hi in [(w.min(), w.max()) for w in wave]:
        covered |= (lam >= lo) & (lam <= hi)
    f32 = flux.astype(np.float32).astype(np.float64)
    # inside: the linear spectrum comes back (up to float32 storage); outside: NaN + BADPIX
    np.testing.assert_allclose(v.flux[covered], 100.0 + 0.01 * (lam[covered] - 15000.0), rtol=1e-6)
    assert np.isnan(v.flux[~covered]).all() and np.isnan(v.error[~covered]).all()
    np.testing.assert_array_equal((v.bitmask & BADPIX).astype(bool), ~covered)
    # independent check against np.interp on each chip (ascending)
    for c in range(3):
        inside = (lam >= wave[c].min()) & (lam <= wave[c].max())
        np.testing.assert_allclose(v.flux[inside], np.interp(lam[inside], wave[c][::-1], f32[c][::-1]),
                                   rtol=1e-12)
        # error of a constant-σ spectrum: σ·sqrt((1-t)² + t²), t the fractional pixel position
        t = np.interp(lam[inside], wave[c][::-1], np.arange(300.0)) % 1.0
        np.testing.assert_allclose(v.error[inside], 2.0 * np.sqrt((1 - t) ** 2 + t**2), rtol=1e-9)
    # the flagged green pixel reaches exactly the apStar pixels interpolated from it
    w_flag = wave[1, 150]
    neighbours = wave[1, 149], wave[1, 151]  # descending: 149 is redder
    hit = (lam > neighbours[1]) & (lam < neighbours[0])
    got = (v.bitmask & (1 << 9)).astype(bool)
    np.testing.assert_array_equal(got, hit)
    assert got.sum() >= 2 and (lam[got].min() < w_flag < lam[got].max())


def test_apvisit_rest_frame(small_visit):
    path, *_ = small_visit
    lam = 10.0 ** (4.179 + 6e-6 * np.arange(8575))
    v = read_apvisit(path, resample=True, rest_frame=True)  # header VRAD = 30 km/s
    shifted = lam * (1 + 30.0 / C_KM_S)
    ok = np.isfinite(v.flux)
    np.testing.assert_allclose(v.flux[ok], 100.0 + 0.01 * (shifted[ok] - 15000.0), rtol=1e-6)
    v2 = read_apvisit(path, resample=True, rest_frame=True, velocity=-100.0)
    ok2 = np.isfinite(v2.flux)
    np.testing.assert_allclose(v2.flux[ok2], 100.0 + 0.01 * (lam[ok2] * (1 - 100 / C_KM_S) - 15000.0),
                               rtol=1e-6)
    assert v2.meta["REST_FRAME_VELOCITY"] == -100.0


def test_apvisit_real_file(shared_data):
    path = shared_data / REAL_APVISIT
    raw = read_apvisit(path)
    with fits.open(path) as h:
        np.testing.assert_array_equal(raw.flux, h[1].data)
        np.testing.assert_array_equal(raw.wavelength, h[4].data)
    assert raw.flux.shape == (3, 4096)
    assert (np.diff(raw.wavelength, axis=1) < 0).all()  # descending in every chip
    assert raw.wavelength[0, 0] > raw.wavelength[2, 0]  # red chip first
    assert raw.meta["APOGEE_ID"] == "2M00242666+5341178" and raw.meta["FIBERID"] == 104
    assert raw.meta["MJD"] == 57729 and raw.meta["VRAD"] == pytest.approx(-67.472)
    r = read_apvisit(path, resample=True, rest_frame=False)
    lam = grids.apstar_wavelength()
    w = raw.wavelength.astype(np.float64)
    covered = np.zeros(8575, bool)
    for c in range(3):
        inside = (lam >= w[c].min()) & (lam <= w[c].max())
        covered |= inside
        np.testing.assert_allclose(
            r.flux[inside], np.interp(lam[inside], w[c][::-1], raw.flux[c][::-1].astype(np.float64)),
            rtol=1e-10,
        )
    assert 7700 < covered.sum() < 7900  # three chips cover most of the apStar range
    assert np.isnan(r.flux[~covered]).all() and (r.bitmask[~covered] & BADPIX).all()
    assert np.isfinite(r.flux[covered]).all()


def test_apvisit_bad_files(tmp_path):
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((3, 10)))]).writeto(tmp_path / "few.fits")
    with pytest.raises(InputFileError, match="not an apVisit file: 2 HDU"):
        read_apvisit(tmp_path / "few.fits")
    w = np.tile(np.linspace(15000, 15100, 10), (3, 1))
    w[0, 5] = w[0, 4]  # not strictly monotonic
    _write_apvisit(tmp_path / "bad.fits", w, np.ones((3, 10)), np.ones((3, 10)), np.zeros((3, 10)))
    assert read_apvisit(tmp_path / "bad.fits").flux.shape == (3, 10)  # raw reading is fine
    with pytest.raises(InputFileError, match=r"chip 0.*monotonic"):
        read_apvisit(tmp_path / "bad.fits", resample=True, rest_frame=False)
    w[0, 5] = 15055.0
    _write_apvisit(tmp_path / "norv.fits", w, np.ones((3, 10)), np.ones((3, 10)), np.zeros((3, 10)))
    with pytest.raises(InputFileError, match="VREL/VRAD"):
        read_apvisit(tmp_path / "norv.fits", resample=True)  # rest frame by default


# --- aspcapStar ---------------------------------------------------------------------------
@pytest.mark.parametrize(("n", "grid"), [(8575, "apstar"), (7214, "payne"), (7514, "aspcap")])
def test_aspcapstar_round_trip_and_grid(tmp_path, n, grid):
    rng = np.random.default_rng(n)
    flux = rng.uniform(0.5, 1.1, n)
    error = rng.uniform(0.005, 0.02, n)
    flux[10] = np.nan
    model = rng.uniform(0.5, 1.1, n)
    meta = {"APOGEE_ID": "2M00000003+0000003", "TEFF": 4800.5, "LOGG": 2.5, "ASPCAPFLAG": 7,
            "TELESCOPE": "apo25m"}
    path = write_aspcapstar(tmp_path / "aspcapStar-dr17-2M00000003+0000003.fits", flux, error, meta,
                            model=model)
    s = read_aspcapstar(path)
    assert s.grid == grid
    np.testing.assert_array_equal(s.flux, flux)
    np.testing.assert_array_equal(s.error, error)
    np.testing.assert_array_equal(s.model, model)
    assert s.bitmask[10] & BADPIX and s.bitmask.sum() == 1
    idx = grids.index_in(grids.get_grid(grid), "apstar")
    np.testing.assert_allclose(s.wavelength, 10.0 ** (4.179 + 6e-6 * idx), rtol=1e-13)
    assert s.meta["APOGEE_ID"] == meta["APOGEE_ID"] and s.meta["TEFF"] == 4800.5
    assert s.meta["ASPCAPFLAG"] == 7 and s.meta["TELESCOPE"] == "apo25m" and s.meta["GRID"] == grid


def test_aspcapstar_dr14_wavelengths_match_reference(tmp_path, shared_data):
    ref = np.load(shared_data / "apogee" / "aspcap_wavelength_7214.npz")["wavelength"]
    path = write_aspcapstar(tmp_path / "a.fits", np.ones(7214), np.ones(7214), {"APOGEE_ID": "x"})
    np.testing.assert_allclose(read_aspcapstar(path).wavelength, ref, rtol=1e-6)


def test_aspcapstar_bad_length(tmp_path):
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones(1000)), fits.ImageHDU(np.ones(1000))]).writeto(
        tmp_path / "a.fits")
    with pytest.raises(InputFileError, match="1000 pixels"):
        read_aspcapstar(tmp_path / "a.fits")
    with pytest.raises(InputFileError, match="does not exist"):
        read_aspcapstar(tmp_path / "missing.fits")


# --- allStar ------------------------------------------------------------------------------
@pytest.fixture
def catalogue():
    ids = np.array(["2M00000001+0000001 ", "2M00000002-0000002", "2M00000003+0000003", "2M4"])
    teff = np.array([4500.0, -9999.0, np.nan, 5100.0], np.float32)
    teff_err = np.array([50.0, -9999.0, 60.0, np.nan], np.float32)
    logg = np.array([2.5, 3.0, np.inf, -9999.99], np.float32)
    logg_err = np.array([0.05, 0.1, 0.2, 0.3], np.float32)
    fe_h = np.array([-0.5, 0.0, 0.1, np.nan], np.float32)
    aspcapflag = np.array([0, 1 << 40, 3, 0], np.uint64)
    starflag = np.array([0, 0, 1 << 3, 1], np.int32)
    telescope = np.array(["apo25m", "lco25m", "apo25m", "apo1m"])
    expected_labels = np.array([[4500, 2.5, -0.5], [MISSING, 3.0, 0.0], [MISSING, MISSING, 0.1],
                                [5100, MISSING, MISSING]])
    expected_errors = np.array([[50, 0.05, MISSING], [MISSING, 0.1, MISSING], [60, 0.2, MISSING],
                                [MISSING, 0.3, MISSING]])
    cols = {"APOGEE_ID": ids, "TEFF": teff, "TEFF_ERR": teff_err, "LOGG": logg, "LOGG_ERR": logg_err,
            "FE_H": fe_h, "ASPCAPFLAG": aspcapflag, "STARFLAG": starflag, "TELESCOPE": telescope}
    return cols, expected_labels, expected_errors


def _check_table(t, expected_labels, expected_errors):
    assert t.label_names == ("TEFF", "LOGG", "FE_H") and len(t) == 4
    np.testing.assert_allclose(t.labels, expected_labels, rtol=1e-6)
    np.testing.assert_allclose(t.label_errors, expected_errors, rtol=1e-6)
    assert t.apogee_id.tolist() == ["2M00000001+0000001", "2M00000002-0000002", "2M00000003+0000003", "2M4"]
    assert t.aspcapflag.tolist() == [0, 1 << 40, 3, 0]
    assert t.starflag.tolist() == [0, 0, 8, 1]
    assert t.columns["TELESCOPE"].tolist() == ["apo25m", "lco25m", "apo25m", "apo1m"]
    assert t.meta["MISSING_ERROR_COLUMNS"] == ["FE_H_ERR"]


def test_allstar_fits(tmp_path, catalogue):
    cols, lab, err = catalogue
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name=k, format={"U": "20A", "f": "E", "u": "K", "i": "J"}[v.dtype.kind],
                     array=v.astype(np.int64) if v.dtype.kind == "u" else v) for k, v in cols.items()]
    )
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(tmp_path / "allStar.fits")
    t = read_allstar(tmp_path / "allStar.fits", labels=("teff", "LOGG", "FE_H"), columns=("telescope",))
    _check_table(t, lab, err)
    assert t.labels.dtype == np.float64


def test_allstar_csv_and_parquet(tmp_path, catalogue):
    cols, lab, err = catalogue
    df = pd.DataFrame({k.lower(): (v.astype(np.int64) if v.dtype.kind == "u" else v)
                       for k, v in cols.items()})
    df["unused"] = 1.0
    df.to_csv(tmp_path / "stars.csv", index=False)
    df.to_parquet(tmp_path / "stars.parquet")
    for name in ("stars.csv", "stars.parquet"):
        t = read_allstar(tmp_path / name, columns=("TELESCOPE",))
        _check_table(t, lab, err)
        assert "UNUSED" not in t.columns


def test_allstar_errors(tmp_path, catalogue):
    cols, *_ = catalogue
    pd.DataFrame({k: v for k, v in cols.items() if k != "APOGEE_ID"}).to_csv(tmp_path / "noid.csv")
    with pytest.raises(InputFileError, match=r"\['APOGEE_ID'\] not in the table"):
        read_allstar(tmp_path / "noid.csv")
    pd.DataFrame(cols).to_csv(tmp_path / "s.csv", index=False)
    with pytest.raises(InputFileError, match=r"\['MG_FE'\] not in the table; it has: .*TEFF"):
        read_allstar(tmp_path / "s.csv", labels=("TEFF", "MG_FE"))
    with pytest.raises(InputFileError, match="does not exist"):
        read_allstar(tmp_path / "none.fits")
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones(3))]).writeto(tmp_path / "img.fits")
    with pytest.raises(InputFileError, match="HDU1 is not a table"):
        read_allstar(tmp_path / "img.fits")
