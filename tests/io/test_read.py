"""read_spectra / identify_format / scan_inputs: every format by content, on files written from the
SDSS data-model YAMLs (mwmStar/mwmVisit DR19+DR20, SDSS-V apStar, specFull DR19+DR20), the real DR17
files, files from our own writers, generic tables, specutils objects, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from script_module import load_script
from starlabels.core import apogee as apogee_core
from starlabels.core import boss as boss_core
from starlabels.errors import InputDataError, InputFileError
from starlabels.io import Spectrum, write_apstar, write_aspcapstar, write_mwm_star
from starlabels.io.read import identify_format, list_files, read_spectra, scan_inputs

C_KM_S = 299792.458
APOGEE_WAVE = 10.0 ** (4.179 + 6e-6 * np.arange(8575))
BOSS_WAVE = 10.0 ** (3.5523 + 1e-4 * np.arange(4648))


def _pixels(rng, n_rows, n_pix):
    flux = rng.normal(100, 3, (n_rows, n_pix)).astype(np.float32)
    ivar = rng.uniform(0.01, 1.0, (n_rows, n_pix)).astype(np.float32)
    ivar[:, :5] = 0.0
    ivar[:, 5] = -1.0
    flags = rng.integers(0, 1 << 16, (n_rows, n_pix)).astype(np.float32)  # data model: float32
    return flux, ivar, flags


def _sigma(ivar):
    iv = ivar.astype(np.float64)
    with np.errstate(divide="ignore"):
        return np.where(iv > 0, 1.0 / np.sqrt(np.where(iv > 0, iv, 1.0)), np.inf)


# --- mwmStar / mwmVisit from the data model ------------------------------------------------------
@pytest.mark.parametrize("release", ["DR19", "DR20"])
@pytest.mark.parametrize("name", ["mwmStar", "mwmVisit"])
def test_mwm_from_data_model(tmp_path, datamodel, name, release):
    rng = np.random.default_rng(1)
    hdus = datamodel.hdus(name, release)
    # APOGEE/APO with 2 rows (1 for mwmStar) and BOSS/LCO with 1 row; the others stay empty
    n_apo = 1 if name == "mwmStar" else 2
    path = tmp_path / f"{name}-{release}.fits"
    arrays = datamodel.write_mwm(name, release, path, n_apogee=n_apo,
                                 pixels=lambda n_rows, n_pix: _pixels(rng, n_rows, n_pix))

    assert identify_format(path) == name
    got = read_spectra(path)
    assert [s.meta["HDU"] for s in got] == ["BOSS/LCO"] + ["APOGEE/APO"] * n_apo
    sdss_id = datamodel.cards(hdus[0])["SDSS_ID"]
    for s, (i, r) in zip(got, [(2, 0)] + [(3, k) for k in range(n_apo)], strict=True):
        cards = datamodel.cards(hdus[i])
        flux, ivar, flags = arrays[i]
        lam = 10.0 ** (cards["CRVAL"] + cards["CDELT"] * np.arange(cards["NPIXELS"]))
        np.testing.assert_array_equal(s.wavelength, lam)  # from the header, not a column
        np.testing.assert_array_equal(s.flux, flux[r])
        np.testing.assert_array_equal(s.error, _sigma(ivar[r]))
        assert np.isinf(s.error[:6]).all()  # ivar 0 and −1
        np.testing.assert_array_equal(s.bitmask, flags[r].astype(np.int64))
        assert s.instrument == cards["INSTRMNT"].lower()
        assert s.meta["SDSS_ID"] == sdss_id and s.meta["FILE"] == str(path)
        assert s.meta["TELESCOPE"] == ("lco25m" if i == 2 else "apo25m")
        assert s.meta["SNR"] == r + 10.5
        if name == "mwmVisit":
            assert s.meta["MJD"] == 60000 + r
    assert got[1].meta["APOGEE_ID"] == "2M00000001+0000001"
    assert got[0].instrument == "boss" and got[0].n_pixels == 4648
    np.testing.assert_array_equal(got[0].wavelength, boss_core.COADD.wavelength)  # exactly the boss grid
    np.testing.assert_array_equal(got[1].wavelength, apogee_core.APSTAR.wavelength)


@pytest.mark.parametrize("release", ["DR19", "DR20"])
def test_mwm_all_empty_from_data_model(tmp_path, datamodel, release):
    path = tmp_path / "mwmStar-empty.fits"
    datamodel.hdulist("mwmStar", release, rows={1: 0, 2: 0, 3: 0, 4: 0}).writeto(path)
    with pytest.raises(InputFileError, match=r"mwmStar-empty\.fits: mwmStar has no spectra"):
        read_spectra(path)


@pytest.mark.parametrize("kind", ["mwmStar", "mwmVisit"])
@pytest.mark.parametrize("layout", ["dr19", "dr20"])
def test_writer_layout_matches_the_data_model(tmp_path, datamodel, kind, layout):
    """Our writer's HDUs, column names/order/types and layout cards are the data model's."""
    from starlabels.io import write_mwm_visit

    write = write_mwm_star if kind == "mwmStar" else write_mwm_visit
    s = Spectrum("boss", BOSS_WAVE, np.ones(4648), np.ones(4648), np.zeros(4648, int), {})
    path = write(tmp_path / "w.fits", [s], {"SDSS_ID": 5}, layout=layout)
    model = datamodel.hdus(kind, layout.upper())
    code = {"int16": "I", "int32": "J", "int64": "K", "float32": "E", "float64": "D", "bool": "L"}
    with fits.open(path) as h:
        assert len(h) == len(model) == 5
        primary_keys = [c["key"] for c in model[0]["header"] if c["key"] not in ("", "COMMENT")]
        assert [k for k in h[0].header if k not in ("", "COMMENT")] == primary_keys
        for ours, theirs in zip(h[1:], model[1:], strict=True):
            assert ours.header["EXTNAME"] == theirs["name"]
            cols = list(theirs["columns"].values())
            assert ours.columns.names == [c["name"] for c in cols]
            for c, yaml_col in zip(ours.columns, cols, strict=True):
                base = yaml_col["type"].split("[")[0]
                assert c.format.endswith("A") if base == "char" else c.format.endswith(code[base]), c.name
            cards = datamodel.cards(theirs)
            for key in ("OBSRVTRY", "INSTRMNT", "V_ASTRA", "CRVAL", "CDELT", "CTYPE", "CUNIT", "CRPIX",
                        "DC-FLAG", "NPIXELS"):
                assert ours.header[key] == cards[key], key


def test_mwm_layout_json_is_derived_from_the_yaml(datamodel):
    from starlabels.io.mwm_writer import mwm_layout

    for kind in ("mwmStar", "mwmVisit"):
        for release in ("DR19", "DR20"):
            lay = mwm_layout(kind, release.lower())
            model = datamodel.hdus(kind, release)
            assert [h["name"] for h in lay["hdus"]] == [h["name"] for h in model[1:]]
            for ours, theirs in zip(lay["hdus"], model[1:], strict=True):
                assert [c[0] for c in ours["columns"]] == list(theirs["columns"])


# --- SDSS-V apStar from the data model -------------------------------------------------------------
def test_sdss5_apstar_from_data_model(tmp_path, datamodel):
    rng = np.random.default_rng(2)
    hdus = datamodel.hdus("apStar", "DR19")
    shape = (int(datamodel.cards(hdus[1])["NAXIS2"]), int(datamodel.cards(hdus[1])["NAXIS1"]))
    assert shape == (4, 8575)  # two stacks, then NVISITS = 2 visits
    flux = rng.normal(1000, 10, shape)
    err = rng.uniform(1, 2, shape)
    mask = rng.integers(0, 1 << 14, shape).astype(np.int32)
    flux[0, :3] = np.nan
    path = tmp_path / "renamed.fits"  # content, not the name, tells what it is
    datamodel.hdulist("apStar", "DR19", images={1: flux, 2: err, 3: mask}).writeto(path)
    assert identify_format(path) == "apStar-sdss5"
    (combined,) = read_spectra(path)
    np.testing.assert_array_equal(combined.flux, flux[0])
    np.testing.assert_array_equal(combined.error, err[0])
    expected = mask[0].astype(np.int64)
    expected[:3] |= 1  # BADPIX where flux is not finite
    np.testing.assert_array_equal(combined.bitmask, expected)
    np.testing.assert_array_equal(combined.wavelength, APOGEE_WAVE)
    cards = datamodel.cards(hdus[0])
    assert combined.meta["APOGEE_ID"] == cards["OBJID"] and combined.meta["HEALPIX"] == cards["HEALPIX"]
    assert combined.meta["TELESCOPE"] == "apo25m"  # from the visit file names (SFILE1)
    assert combined.meta["FORMAT"] == "apStar-sdss5"
    visits = read_spectra(path, rows="visits")
    assert len(visits) == 2
    for k, v in enumerate(visits):
        np.testing.assert_array_equal(v.flux, flux[2 + k])


# --- BOSS spec from the data model -----------------------------------------------------------------
@pytest.mark.parametrize("release", ["DR19", "DR20"])
def test_specfull_from_data_model(tmp_path, datamodel, release):
    rng = np.random.default_rng(3)
    hdus = datamodel.hdus("specFull", release)
    n = int(datamodel.cards(hdus[1])["NAXIS2"])
    loglam = (3.5523 + 1e-4 * np.arange(n)).astype(np.float32)  # float32 as in the files
    flux = rng.normal(50, 2, n).astype(np.float32)
    ivar = rng.uniform(0.1, 2, n).astype(np.float32)
    ivar[10] = 0.0
    and_mask = rng.integers(0, 1 << 20, n).astype(np.int32)
    values = {1: {"FLUX": flux, "LOGLAM": loglam, "IVAR": ivar, "AND_MASK": and_mask,
                  "OR_MASK": and_mask | 4},
              2: {"SDSS_ID": np.array([123456789]), "CATALOGID": np.array([27021598150201532]),
                  "FIBER_RA": np.array([150.125]), "FIBER_DEC": np.array([2.5]),
                  "SN_MEDIAN_ALL": np.array([33.25], np.float32)}}
    for i in range(5, len(hdus)):  # exposures: valid wavelengths too
        values[i] = {"LOGLAM": loglam}
    path = tmp_path / "spec.fits"
    datamodel.hdulist("specFull", release, rows={3: 2, 4: 2}, values=values).writeto(path)
    assert identify_format(path) == "boss-spec"
    (s,) = read_spectra(path)
    assert s.instrument == "boss" and s.meta["HDU"] == "COADD"
    np.testing.assert_array_equal(s.wavelength, boss_core.COADD.wavelength)  # snapped to the exact grid
    np.testing.assert_allclose(s.wavelength, 10.0 ** loglam.astype(np.float64), rtol=1e-6)
    np.testing.assert_array_equal(s.flux, flux)
    np.testing.assert_array_equal(s.error, _sigma(ivar))
    np.testing.assert_array_equal(s.bitmask, and_mask)
    assert s.meta["SDSS_ID"] == 123456789 and s.meta["CATALOGID"] == 27021598150201532
    assert s.meta["RA"] == 150.125 and s.meta["DEC"] == 2.5 and s.meta["SNR"] == 33.25
    assert s.meta["TELESCOPE"] == "apo25m"  # OBSERVAT = APO
    # a LOGLAM that goes backwards somewhere: an error naming file and HDU
    bad = loglam.copy()
    bad[100] = bad[99]
    values[1]["LOGLAM"] = bad
    datamodel.hdulist("specFull", release, rows={3: 2, 4: 2}, values=values).writeto(tmp_path / "bad.fits")
    with pytest.raises(InputFileError, match=r"bad\.fits: HDU COADD: wavelength is not monotonic"):
        read_spectra(tmp_path / "bad.fits")


# --- DR17 real files --------------------------------------------------------------------------------
def test_real_dr17_files(shared_data):
    apstar = shared_data / "real/apStar-dr17-2M19485057+5005279.fits"
    apvisit = shared_data / "real/apVisit-r13-9518-57729-104.fits"
    assert identify_format(apstar) == "apStar" and identify_format(apvisit) == "apVisit"
    (s,) = read_spectra(apstar)
    with fits.open(apstar) as h:
        np.testing.assert_array_equal(s.flux, h[1].data[0])
    (v,) = read_spectra(apvisit)
    assert v.meta["REST_FRAME"] is True and v.meta["REST_FRAME_VELOCITY"] == pytest.approx(-67.472)
    assert v.n_pixels == 8575 and v.meta["TELESCOPE"] == "apo25m"


# --- apVisit: resampled into the rest frame by default ---------------------------------------------
def _apvisit_with_line(path, velocity, rest_line=15900.0):
    """3 chips × 1500 px (descending, red chip first) with a Gaussian line at rest_line·(1+v/c)."""
    edges = [(16480.0, 16940.0), (15870.0, 16420.0), (15160.0, 15790.0)]
    wave = np.stack([np.linspace(hi, lo, 1500) for lo, hi in edges])
    observed = rest_line * (1 + velocity / C_KM_S)
    flux = 1.0 - 0.5 * np.exp(-0.5 * ((wave - observed) / 0.4) ** 2)
    prim = fits.PrimaryHDU()
    prim.header.update({"OBJID": "2M00000009+0000009", "VREL": velocity, "TELESCOP": "apo25m"})
    hdus = [prim, fits.ImageHDU(flux.astype(np.float32)), fits.ImageHDU(np.full_like(flux, 0.01, np.float32)),
            fits.ImageHDU(np.zeros(flux.shape, np.int16)), fits.ImageHDU(wave)]
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.mark.parametrize("velocity", [-44.0, -67.0, 120.0])
def test_apvisit_lines_land_at_rest_wavelength(tmp_path, velocity):
    path = _apvisit_with_line(tmp_path / "visit.fits", velocity)
    (rest,) = read_spectra(path)
    (observed,) = read_spectra(path, rest_frame=False)

    def line_centre(s):  # flux-weighted centroid of the absorption, independent of the grid
        near = np.abs(s.wavelength - 15900.0 * (1 + velocity / C_KM_S)) < 5
        near |= np.abs(s.wavelength - 15900.0) < 5
        depth = np.clip(1.0 - s.flux[near], 0, None)
        return float(np.sum(s.wavelength[near] * depth) / np.sum(depth))

    pixel = 15900.0 * (10**6e-6 - 1)  # apStar pixel width at the line, Å
    assert abs(line_centre(rest) - 15900.0) < 0.05 * pixel
    assert abs(line_centre(observed) - 15900.0 * (1 + velocity / C_KM_S)) < 0.05 * pixel
    assert rest.meta["REST_FRAME_VELOCITY"] == velocity


# --- our own writers, generic tables ------------------------------------------------------------------
def test_writers_and_tables_by_content(tmp_path, star):
    write_apstar(tmp_path / "a.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    write_aspcapstar(tmp_path / "b.fits", np.ones(8575), np.full(8575, 0.01), star["meta"])
    rng = np.random.default_rng(5)
    wave = np.linspace(4000.0, 5000.0, 300)
    flux, err = rng.normal(1, 0.1, 300), rng.uniform(0.01, 0.02, 300)
    np.savez(tmp_path / "c.npz", wavelength=wave[::-1], flux=flux[::-1], error=err[::-1],
             instrument="lamost")
    with open(tmp_path / "d.csv", "w") as fh:
        fh.write("Wave,FLUX,ivar,mask\n")
        for w, f, e in zip(wave, flux, err, strict=True):
            fh.write(f"{float(w)!r},{float(f)!r},{float(1 / e**2)!r},3\n")
    cols = [fits.Column("wavelength", "300D", array=np.stack([wave, wave])),
            fits.Column("flux", "300D", array=np.stack([flux, 2 * flux])),
            fits.Column("error", "300D", array=np.stack([err, err])),
            fits.Column("SDSS_ID", "K", array=np.array([11, 12]))]
    fits.BinTableHDU.from_columns(cols, name="SPECTRA").writeto(tmp_path / "e.fits")
    assert [identify_format(tmp_path / f) for f in ("a.fits", "b.fits", "c.npz", "d.csv", "e.fits")] == [
        "apStar", "aspcapStar", "npz", "csv", "table-fits"]
    (c,) = read_spectra(tmp_path / "c.npz")
    assert c.instrument == "lamost"
    np.testing.assert_array_equal(c.wavelength, wave)  # descending file → ascending spectrum
    np.testing.assert_array_equal(c.flux, flux)
    (d,) = read_spectra(tmp_path / "d.csv", instrument="galah")
    assert d.instrument == "galah" and (d.bitmask == 3).all()
    np.testing.assert_allclose(d.error, err, rtol=1e-12)
    e = read_spectra(tmp_path / "e.fits")
    assert [s.meta["SDSS_ID"] for s in e] == [11, 12] and [s.meta["HDU"] for s in e] == ["SPECTRA"] * 2
    np.testing.assert_array_equal(e[1].flux, 2 * flux)


def test_table_bad_input(tmp_path):
    wave = np.linspace(4000.0, 5000.0, 50)
    wave[20] = wave[10]
    np.savez(tmp_path / "bad.npz", wavelength=wave, flux=np.ones(50), error=np.ones(50))
    with pytest.raises(InputFileError, match=r"bad\.npz: HDU -: wavelength is not monotonic"):
        read_spectra(tmp_path / "bad.npz")
    np.savez(tmp_path / "noerr.npz", wavelength=np.arange(50.0), flux=np.ones(50))
    with pytest.raises(InputFileError, match=r"noerr\.npz.*NPZ keys: wavelength, flux"):
        read_spectra(tmp_path / "noerr.npz")


# --- scan_inputs: folders by content, nothing silently ignored -----------------------------------
def test_scan_inputs_lists_every_file(tmp_path, star):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_apstar(folder / "apStar-dr17-2M1.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    shutil.copy(folder / "apStar-dr17-2M1.fits", folder / "sub" / "my_star.fits")  # renamed apStar
    _apvisit_with_line(folder / "apVisit-1-2-3.fits", 10.0)
    write_mwm_star(folder / "sub" / "x.fits", [Spectrum("boss", BOSS_WAVE, np.ones(4648), np.ones(4648),
                                                        np.zeros(4648, int), {})], {"SDSS_ID": 9})
    fits.HDUList([fits.PrimaryHDU(np.zeros((3, 3)))]).writeto(folder / "image.fits")
    (folder / "notes.txt").write_text("hello\n")
    (folder / "empty.fits").write_bytes(b"")
    readable, skipped = scan_inputs([folder])
    assert [p.relative_to(folder).as_posix() for p in readable] == [
        "apStar-dr17-2M1.fits", "apVisit-1-2-3.fits", "sub/my_star.fits", "sub/x.fits"]
    reasons = {p.name: r for p, r in skipped}
    assert set(reasons) == {"image.fits", "notes.txt", "empty.fits"}
    assert "no known spectrum format" in reasons["image.fits"] and "empty" in reasons["empty.fits"]
    assert "not a spectrum file" in reasons["notes.txt"]
    readable2, skipped2 = scan_inputs([folder / "apVisit-1-2-3.fits", folder / "missing.fits"])
    assert readable2 == [folder / "apVisit-1-2-3.fits"] and "does not exist" in skipped2[0][1]


def test_list_files_walks_without_opening(tmp_path, monkeypatch):
    import starlabels.io.read as read_module

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("b.fits", "a.txt", "sub/c.fits"):
        (folder / name).write_bytes(b"not opened")
    (folder / "link.fits").symlink_to(folder / "b.fits")  # the same file under another name

    def no(*args, **kwargs):
        raise AssertionError("list_files opened a file")

    monkeypatch.setattr(read_module, "identify_format", no)
    monkeypatch.setattr(read_module, "read_spectra", no)
    names = [p.relative_to(folder).as_posix() for p in list_files(folder)]
    assert names == ["a.txt", "b.fits", "sub/c.fits"]  # sorted; link.fits is b.fits again
    assert [p.name for p in list_files(folder, recursive=False)] == ["a.txt", "b.fits"]
    given = [folder / "sub" / "c.fits", folder, tmp_path / "missing.fits", folder / "b.fits"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_files(given)] == [
        "in/sub/c.fits", "in/a.txt", "in/b.fits", "missing.fits"]
    assert list_files(str(folder / "a.txt")) == [folder / "a.txt"]


def _rglob_listing(paths, recursive=True):
    """list_files as it was written before the os.scandir walk (sorted Path.rglob, resolve() to drop
    duplicates): bench/list_folder.py's reproduction, the reference the faster walk must equal."""
    bench = load_script(Path(__file__).resolve().parents[2] / "bench" / "list_folder.py", "bench_list_folder")
    return bench.former_list_files(paths, recursive)


def test_list_files_equals_the_sorted_rglob_listing_on_an_awkward_tree(tmp_path):
    """Names whose string order differs from the order of their parts ("sub", "sub.txt", "sub-2/x"),
    hidden files, a link to a file (dropped as a duplicate), a broken link (kept), a link to a folder
    (neither walked nor listed), a hard link (another path, kept), a folder given through a link and
    again directly, and files given before the folder that holds them."""
    import os

    root = tmp_path / "survey"
    for name in ("sub/c.fits", "sub/deep/d.fits", "sub.txt", "sub-2/x.fits", ".hidden.fits", "B.fits",
                 "a.fits", "a b.fits", "é.fits"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    (root / "link-to-a.fits").symlink_to(root / "a.fits")
    (root / "broken.fits").symlink_to(root / "nowhere.fits")
    (root / "linked-folder").symlink_to(root / "sub", target_is_directory=True)
    os.link(root / "B.fits", root / "hard-B.fits")
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)
    for given in ([root], [root / "sub" / "c.fits", tmp_path / "alias", root],
                  [str(root) + "/", tmp_path / "missing.fits", root / "link-to-a.fits"]):
        for recursive in (True, False):
            assert list_files(given, recursive=recursive) == _rglob_listing(given, recursive), given
    names = [p.relative_to(root).as_posix() for p in list_files(root)]
    assert "broken.fits" in names and "hard-B.fits" in names and "link-to-a.fits" not in names
    assert not any(n.startswith("linked-folder") for n in names)


# --- specutils objects ------------------------------------------------------------------------------
def test_specutils_round_trip():
    rng = np.random.default_rng(6)
    s = Spectrum("boss", BOSS_WAVE, rng.normal(1, 0.1, 4648), rng.uniform(0.1, 1, 4648),
                 rng.integers(0, 1 << 10, 4648), {"SDSS_ID": 3, "TELESCOPE": "lco25m"})
    s.error[:4] = np.inf
    su = s.to_specutils()
    assert su.mask.sum() == int((s.bitmask != 0).sum())
    (back,) = read_spectra(su)
    for attr in ("wavelength", "flux", "error", "bitmask"):
        np.testing.assert_array_equal(getattr(back, attr), getattr(s, attr))
    assert back.instrument == "boss" and back.meta["SDSS_ID"] == 3 and back.meta["TELESCOPE"] == "lco25m"


def test_specutils_foreign_objects():
    from astropy import units
    from astropy.nddata import InverseVariance
    from specutils import Spectrum as SpecutilsSpectrum

    wave_nm = np.linspace(500.0, 400.0, 100) * units.nm  # descending, in nm
    ivar = np.full(100, 4.0)
    ivar[7] = 0.0
    su = SpecutilsSpectrum(spectral_axis=wave_nm, flux=np.arange(100.0) * units.Jy,
                           uncertainty=InverseVariance(ivar), mask=np.arange(100) == 3)
    (s,) = read_spectra(su)
    np.testing.assert_allclose(s.wavelength, np.linspace(4000.0, 5000.0, 100), rtol=1e-12)
    np.testing.assert_array_equal(s.flux, np.arange(100.0)[::-1])
    assert s.error[99 - 7] == np.inf and s.error[0] == 0.5 and s.bitmask[99 - 3] == 1
    assert s.instrument == "custom" and s.meta["FLUX_UNIT"] == "Jy"
    with pytest.raises(InputDataError):
        read_spectra(42)


def test_spectrum_validation():
    with pytest.raises(InputDataError, match="strictly increasing"):
        Spectrum("x", np.array([1.0, 3.0, 2.0]), np.ones(3), np.ones(3), np.zeros(3, int))
    with pytest.raises(InputDataError, match="one length"):
        Spectrum("x", np.array([1.0, 2.0]), np.ones(3), np.ones(3), np.zeros(3, int))
    with pytest.raises(InputDataError, match="non-integer"):
        Spectrum("x", np.array([1.0, 2.0]), np.ones(2), np.ones(2), np.array([0.5, 1.0]))


def test_committed_mwm_layouts_are_what_the_script_derives(datamodel):
    """resources/mwm_layouts.json == scripts/mwm_layouts.py run on the data-model YAMLs."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = load_script(root / "scripts" / "mwm_layouts.py", "mwm_layouts_script")
    committed = json.loads((root / "src/starlabels/resources/mwm_layouts.json").read_text())
    for kind in ("mwmStar", "mwmVisit"):
        assert committed[kind] == json.loads(json.dumps(script.layout(datamodel.folder / f"{kind}.yaml")))


def test_specutils_loaded_mwm_converts_to_the_same_spectra(tmp_path):
    """An mwmVisit read by specutils' own SDSS-V loader and handed to read_spectra gives our arrays
    (flux, σ, instrument; the loader keeps only a boolean mask, which becomes bit 0)."""
    import warnings

    from specutils import SpectrumList

    from starlabels.io import write_mwm_visit

    rng = np.random.default_rng(8)
    spectra = [Spectrum("apogee", APOGEE_WAVE, rng.normal(1, 0.1, 8575), rng.uniform(0.5, 1, 8575),
                        rng.integers(0, 4, 8575), {"MJD": 60000 + i}) for i in range(2)]
    path = write_mwm_visit(tmp_path / "v.fits", spectra, {"SDSS_ID": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = SpectrumList.read(path, format="SDSS-V mwm")
    ours = read_spectra(path)
    theirs = read_spectra(list(loaded))
    assert len(theirs) == len(ours) == 2
    for a, b in zip(theirs, ours, strict=True):
        assert a.instrument == b.instrument == "apogee"
        np.testing.assert_array_equal(a.wavelength, b.wavelength)
        np.testing.assert_array_equal(a.flux, b.flux)
        np.testing.assert_allclose(a.error, b.error, rtol=1e-7)
        np.testing.assert_array_equal(a.bitmask, (b.bitmask != 0).astype(int))


@pytest.mark.parametrize("release", ["DR17", "DR19"])
def test_apvisit_from_data_model_velocity(tmp_path, datamodel, release):
    """DR17 apVisit files keep VREL in the HDU11 visit table (not the header); DR19 ones have no
    velocity, so the rest frame needs one given — never a silent observed-frame spectrum."""
    edges = [(16480.0, 16940.0), (15870.0, 16420.0), (15160.0, 15790.0)]
    wave = np.stack([np.linspace(hi, lo, 4096) for lo, hi in edges])
    flux = (1.0 + 0.01 * (wave - 15000.0)).astype(np.float32)
    images = {1: flux, 2: np.full(flux.shape, 0.1, np.float32), 3: np.zeros(flux.shape, np.int16), 4: wave}
    values = {11: {"VREL": np.array([-44.0], np.float32), "BC": np.array([3.0], np.float32)}} \
        if release == "DR17" else {}
    path = tmp_path / f"apVisit-{release}.fits"
    datamodel.hdulist("apVisit", release, rows={11: 1}, images=images, values=values).writeto(path)
    assert identify_format(path) == "apVisit"
    lam = 10.0 ** (4.179 + 6e-6 * np.arange(8575))
    if release == "DR17":
        (s,) = read_spectra(path)
        assert s.meta["REST_FRAME_VELOCITY"] == -44.0 and s.meta["BC"] == 3.0
    else:
        with pytest.raises(InputFileError, match=r"needs a velocity.*pass velocity="):
            read_spectra(path)
        (s,) = read_spectra(path, velocity=-44.0)
    ok = np.isfinite(s.flux)
    assert ok.sum() > 7000
    np.testing.assert_allclose(s.flux[ok], 1.0 + 0.01 * (lam[ok] * (1 - 44.0 / C_KM_S) - 15000.0), rtol=1e-6)
