"""mwmStar / mwmVisit: writer → reader round trips (DR19 and DR20 layouts), empty HDUs, ivar → σ,
and bad files. These tests build their files with starlabels.io.mwm_writer and need no shared data."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
from astropy.io import fits

from starlabels.errors import InputDataError, InputFileError
from starlabels.io.mwm_writer import write_mwm_star, write_mwm_visit
from starlabels.io.sdss_v import read_mwm
from starlabels.io.spectrum import Spectrum

APOGEE_WAVE = 10.0 ** (4.179 + 6e-6 * np.arange(8575))
BOSS_WAVE = 10.0 ** (3.5523 + 1e-4 * np.arange(4648))


def _spectrum(instrument: str, seed: int, telescope: str = "apo25m", **meta) -> Spectrum:
    rng = np.random.default_rng(seed)
    wave = APOGEE_WAVE if instrument == "apogee" else BOSS_WAVE
    n = wave.size
    flux = rng.normal(100.0, 5.0, n).astype(np.float32).astype(np.float64)  # float32-exact values
    # powers of two: 1/σ² is exactly representable in float32, so σ survives ivar exactly
    error = 2.0 ** rng.integers(-3, 4, n).astype(np.float64)
    error[:7] = np.inf  # ivar = 0 on the file
    bitmask = rng.integers(0, 1 << 20, n)
    return Spectrum(instrument, wave, flux, error, bitmask, {"TELESCOPE": telescope, **meta})


@pytest.mark.parametrize("layout", ["dr19", "dr20"])
def test_mwm_star_round_trip_is_exact(tmp_path, layout):
    apo = _spectrum("apogee", 1, "lco25m", SNR=87.5)
    boss = _spectrum("boss", 2, "apo25m", SNR=21.25)
    path = write_mwm_star(tmp_path / "mwmStar.fits", [apo, boss],
                          {"SDSS_ID": 103020000, "APOGEE_ID": "2M12283021-6635525", "RA": 187.125,
                           "DEC": -66.5}, layout=layout)
    got = read_mwm(path)
    assert [s.meta["HDU"] for s in got] == ["BOSS/APO", "APOGEE/LCO"]  # file order, empty HDUs skipped
    for want, s in zip([boss, apo], got, strict=True):
        assert s.instrument == want.instrument
        np.testing.assert_array_equal(s.wavelength, want.wavelength)
        np.testing.assert_array_equal(s.flux, want.flux)
        np.testing.assert_array_equal(s.error, want.error)
        np.testing.assert_array_equal(s.bitmask, want.bitmask)
        assert np.isinf(s.error[:7]).all()
        assert s.meta["SDSS_ID"] == 103020000 and s.meta["TELESCOPE"] == want.meta["TELESCOPE"]
        assert s.meta["SNR"] == want.meta["SNR"] and s.meta["FORMAT"] == "mwmStar"
        assert s.meta["RA"] == 187.125 and s.meta["DEC"] == -66.5
        assert s.meta["V_ASTRA"] == {"dr19": "0.6.0", "dr20": "0.8.1"}[layout]
    assert got[1].meta["APOGEE_ID"] == "2M12283021-6635525" and "APOGEE_ID" not in got[0].meta


@pytest.mark.parametrize("layout", ["dr19", "dr20"])
def test_mwm_visit_round_trip_many_rows(tmp_path, layout):
    visits = [_spectrum("apogee", 10 + i, "apo25m", MJD=60000 + i) for i in range(3)]
    visits.append(_spectrum("boss", 20, "lco25m", MJD=60100))
    path = write_mwm_visit(tmp_path / "mwmVisit.fits", visits, {"SDSS_ID": 42}, layout=layout)
    got = read_mwm(path)
    assert [(s.meta["HDU"], s.meta["MJD"]) for s in got] == [
        ("BOSS/LCO", 60100), ("APOGEE/APO", 60000), ("APOGEE/APO", 60001), ("APOGEE/APO", 60002)]
    for want, s in zip([visits[3], *visits[:3]], got, strict=True):
        np.testing.assert_array_equal(s.flux, want.flux)
        np.testing.assert_array_equal(s.error, want.error)
        np.testing.assert_array_equal(s.bitmask, want.bitmask)
        assert s.meta["FORMAT"] == "mwmVisit" and s.meta["SDSS_ID"] == 42
    gz = tmp_path / "mwmVisit.fits.gz"  # the compressed file reads the same (through astropy)
    gz.write_bytes(gzip.compress(path.read_bytes()))
    for a, b in zip(read_mwm(gz), got, strict=True):
        np.testing.assert_array_equal(a.flux, b.flux)
        np.testing.assert_array_equal(a.bitmask, b.bitmask)
        assert a.meta["MJD"] == b.meta["MJD"] and a.meta["HDU"] == b.meta["HDU"]
    with fits.open(path) as h:  # empty extensions have no rows, like SDSS files
        assert [h[i].header["NAXIS2"] for i in range(1, 5)] == [0, 1, 3, 0]
        assert all("DATASUM" in h[i].header for i in range(5))
    with warnings.catch_warnings():  # astropy verifies CHECKSUM/DATASUM and the FITS structure
        warnings.simplefilter("error")
        with fits.open(path, checksum=True) as h:
            h.verify("exception")
            assert all(h[i].data is None or len(h[i].data) >= 0 for i in range(5))


def test_error_from_arbitrary_sigma_to_float32_precision(tmp_path):
    s = _spectrum("apogee", 3)
    s.error = np.random.default_rng(4).uniform(0.1, 9.0, s.n_pixels)
    s.error[10] = -1.0  # ivar ≤ 0 on the file → inf
    got = read_mwm(write_mwm_star(tmp_path / "m.fits", [s], {"SDSS_ID": 1}))[0]
    ok = np.arange(s.n_pixels) != 10
    ivar32 = (1.0 / s.error[ok] ** 2).astype(np.float32).astype(np.float64)
    np.testing.assert_array_equal(got.error[ok], 1.0 / np.sqrt(ivar32))  # σ = 1/√ivar of what is stored
    np.testing.assert_allclose(got.error[ok], s.error[ok], rtol=1e-7)
    assert got.error[10] == np.inf


def test_all_empty_and_bad_files(tmp_path):
    path = write_mwm_star(tmp_path / "one.fits", [_spectrum("boss", 5)], {"SDSS_ID": 7})
    with fits.open(path) as h:  # drop the only row: every extension empty
        hdus = [h[0].copy()] + [fits.BinTableHDU(data=h[i].data[:0], header=h[i].header) for i in range(1, 5)]
        fits.HDUList(hdus).writeto(tmp_path / "empty.fits")
    with pytest.raises(InputFileError, match=r"empty\.fits.*no spectra: all of its extensions"):
        read_mwm(tmp_path / "empty.fits")
    with fits.open(path) as h:
        h[1].header.remove("NPIXELS")
        h.writeto(tmp_path / "nogrid.fits")
    with pytest.raises(InputFileError, match=r"HDU BOSS/APO: no wavelength solution"):
        read_mwm(tmp_path / "nogrid.fits")
    with pytest.raises(InputFileError, match="not an mwmStar/mwmVisit file"):
        fits.HDUList([fits.PrimaryHDU()]).writeto(tmp_path / "plain.fits")
        read_mwm(tmp_path / "plain.fits")


def test_writer_refuses_what_the_layout_cannot_hold(tmp_path):
    apo = _spectrum("apogee", 6)
    with pytest.raises(InputDataError, match="one combined spectrum per instrument"):
        write_mwm_star(tmp_path / "two.fits", [apo, _spectrum("apogee", 7)], {"SDSS_ID": 1})
    off_grid = Spectrum("apogee", APOGEE_WAVE * 1.0001, apo.flux, apo.error, apo.bitmask, {})
    with pytest.raises(InputDataError, match="not on the APOGEE grid"):
        write_mwm_star(tmp_path / "off.fits", [off_grid], {"SDSS_ID": 1})
    other = Spectrum("lamost", APOGEE_WAVE, apo.flux, apo.error, apo.bitmask, {})
    with pytest.raises(InputDataError, match="not instrument 'lamost'"):
        write_mwm_star(tmp_path / "lamost.fits", [other], {"SDSS_ID": 1})
    big = Spectrum("apogee", APOGEE_WAVE, apo.flux, apo.error, np.full(8575, (1 << 30) + 1), {})
    with pytest.raises(InputDataError, match="float32"):
        write_mwm_star(tmp_path / "bits.fits", [big], {"SDSS_ID": 1})
    with pytest.raises(ValueError, match="unknown layout"):
        write_mwm_star(tmp_path / "x.fits", [apo], {"SDSS_ID": 1}, layout="dr18")


def test_read_bintable_equals_astropy(tmp_path):
    """The fast table reader (numpy at the data offset) gives astropy's columns: every type the mwm
    layouts use (int16/32/64, float32/64, bool, strings, per-pixel and length-1 vector columns)."""
    from starlabels.io.fits_file import read_bintable

    visits = [_spectrum("boss", 30 + i, MJD=60000 + i, IN_STACK=bool(i % 2)) for i in range(3)]
    path = write_mwm_visit(tmp_path / "v.fits", visits, {"SDSS_ID": 3}, layout="dr19")
    with fits.open(path) as h:
        for index in range(1, 5):
            ours = read_bintable(h, index, path)
            data = h[index].data
            assert list(ours) == list(data.names)
            for name in data.names:
                theirs = np.asarray(data.field(name))
                if theirs.dtype.kind in "SU":
                    theirs = np.char.strip(theirs.astype(str))
                assert ours[name].shape == theirs.shape, name
                np.testing.assert_array_equal(ours[name], theirs, err_msg=name)
        np.testing.assert_array_equal(read_bintable(h, 1, path)["in_stack"], [False, True, False])


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_truncated_and_degenerate_files(tmp_path):
    from starlabels.io import read_spectra

    path = write_mwm_star(tmp_path / "m.fits", [_spectrum("apogee", 8)], {"SDSS_ID": 1})
    data = path.read_bytes()
    (tmp_path / "cut.fits").write_bytes(data[: len(data) - 1000])
    with pytest.raises(InputFileError, match=r"cut\.fits: truncated FITS file"):
        read_spectra(tmp_path / "cut.fits")
    (tmp_path / "cut2.fits").write_bytes(data[: len(data) - 2880 * 40])  # whole blocks: inside the data
    with pytest.raises(InputFileError, match=r"cut2\.fits: (truncated|cannot open)"):
        read_spectra(tmp_path / "cut2.fits")
    (tmp_path / "text.fits").write_text("not a FITS file at all\n")
    with pytest.raises(InputFileError, match=r"text\.fits: not a spectrum file"):
        read_spectra(tmp_path / "text.fits")
    with fits.open(path) as h:
        h[3].header["CDELT"] = 0.0  # every pixel at one wavelength
        h.writeto(tmp_path / "flat.fits")
    with pytest.raises(InputFileError, match=r"flat\.fits: HDU APOGEE/APO: wavelength is not monotonic"):
        read_spectra(tmp_path / "flat.fits")
