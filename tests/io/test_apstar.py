"""apStar writer ↔ reader round trips, the DR17 row layout, the real DR17 file, and bad files."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from astropy.io import fits

from starlabels.errors import InputDataError, InputFileError
from starlabels.io import read_apstar, write_apstar

BADPIX = 1
REAL_APSTAR = "real/apStar-dr17-2M19485057+5005279.fits"


def _expected_mask(flux, error, bitmask):
    out = np.asarray(bitmask).astype(np.int64).copy()
    out[~np.isfinite(flux) | ~np.isfinite(error)] |= BADPIX
    return out


def test_flag_nonfinite_copies_unless_told_not_to(star):
    """BADPIX on exactly the non-finite pixels; the input untouched by default; with copy=False an
    int64 bitmask is flagged in place and any other dtype still converted into a new array."""
    from starlabels.io import flag_nonfinite

    expected = _expected_mask(star["flux"], star["error"], star["bitmask"])
    as_int32 = star["bitmask"].copy()
    as_int64 = star["bitmask"].astype(np.int64)
    for copy in (True, False):
        got = flag_nonfinite(star["flux"], star["error"], as_int32, copy=copy)
        assert got.dtype == np.int64 and np.array_equal(got, expected)
        assert np.array_equal(as_int32, star["bitmask"])  # int32: always a new array
    got = flag_nonfinite(star["flux"], star["error"], as_int64)
    assert got is not as_int64 and np.array_equal(got, expected)
    assert np.array_equal(as_int64, star["bitmask"])
    got = flag_nonfinite(star["flux"], star["error"], as_int64, copy=False)
    assert got is as_int64 and np.array_equal(as_int64, expected)
    finite = np.ones(8575)  # nothing to flag
    assert np.array_equal(flag_nonfinite(finite, finite, star["bitmask"]), star["bitmask"])


def test_round_trip_combined_is_exact(tmp_path, star):
    path = write_apstar(tmp_path / "a.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    s = read_apstar(path)
    assert s.flux.shape == s.error.shape == s.bitmask.shape == (8575,)
    np.testing.assert_array_equal(s.flux, star["flux"])  # NaNs in the same places
    np.testing.assert_array_equal(s.error, star["error"])
    np.testing.assert_array_equal(s.bitmask, _expected_mask(star["flux"], star["error"], star["bitmask"]))
    # exactly the non-finite pixels gained BADPIX, nothing else changed
    gained = (s.bitmask & BADPIX).astype(bool) & ~(star["bitmask"] & BADPIX).astype(bool)
    assert gained.sum() == 7  # 5 edge pixels + flux NaN at 3000 + error inf at 4000
    np.testing.assert_allclose(s.wavelength, 10.0 ** (4.179 + 6e-6 * np.arange(8575)), rtol=0, atol=0)
    for key in ("APOGEE_ID", "RA", "DEC", "SNR", "VHELIO", "J", "H", "K", "FIELD"):
        assert s.meta[key] == star["meta"][key], key
    assert s.meta["NVISITS"] == 1
    assert s.meta["FILE"] == str(path)
    assert s.flux.dtype.isnative and s.bitmask.dtype == np.int64


def test_written_file_has_the_apstar_layout(tmp_path, star):
    rng = np.random.default_rng(1)
    vf = rng.normal(1000, 30, (3, 8575))
    ve = rng.uniform(5, 9, (3, 8575))
    vm = rng.integers(0, 8, (3, 8575))
    path = write_apstar(tmp_path / "v.fits", star["flux"], star["error"], star["bitmask"], star["meta"],
                        visits=(vf, ve, vm))
    with fits.open(path) as h:
        assert len(h) == 8
        h0 = h[0].header
        assert h0["OBJID"] == star["meta"]["APOGEE_ID"] and h0["NVISITS"] == 3
        assert (h0["CRVAL1"], h0["CDELT1"], h0["CRPIX1"], h0["CTYPE1"]) == (4.179, 6e-6, 1, "LOG-LINEAR")
        for i in range(1, 8):
            assert h[i].data.shape == (5, 8575)
            assert h[i].header["CRVAL1"] == 4.179 and h[i].header["CDELT1"] == 6e-6
        np.testing.assert_array_equal(h[6].data, 1.0)  # telluric
        np.testing.assert_array_equal(h[4].data, 0.0)  # sky
        np.testing.assert_array_equal(h[1].data[2:], vf)


def test_round_trip_with_visits(tmp_path, star):
    rng = np.random.default_rng(2)
    vf = rng.normal(1000, 30, (3, 8575)).astype(np.float32)
    vf[1, 50] = np.nan
    ve = rng.uniform(5, 9, (3, 8575)).astype(np.float32)
    vm = rng.integers(0, 1 << 14, (3, 8575)).astype(np.int32)
    path = write_apstar(tmp_path / "v.fits", star["flux"], star["error"], star["bitmask"], star["meta"],
                        visits={"flux": vf, "error": ve, "bitmask": vm})
    v = read_apstar(path, row="visits")
    assert v.flux.shape == (3, 8575)
    np.testing.assert_array_equal(v.flux, vf)
    np.testing.assert_array_equal(v.error, ve)
    np.testing.assert_array_equal(v.bitmask, _expected_mask(vf, ve, vm))
    assert v.meta["NVISITS"] == 3 and v.meta["N_ROWS"] == 5
    # integer rows index the file: 0 and 1 the combinations, 2… the visits, negatives from the end
    np.testing.assert_array_equal(read_apstar(path, row=2).flux, vf[0])
    np.testing.assert_array_equal(read_apstar(path, row=-1).flux, vf[2])
    np.testing.assert_array_equal(read_apstar(path, row=1).flux, star["flux"])
    np.testing.assert_array_equal(read_apstar(path).flux, star["flux"])


def test_single_visit_layout_matches_dr17(tmp_path, star):
    path = write_apstar(tmp_path / "s.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    with fits.open(path) as h:
        assert h[1].data.shape == (2, 8575)  # combined + zero placeholder, as DR17 NVISITS=1
        assert not h[1].data[1].any() and not h[3].data[1].any()
    v = read_apstar(path, row="visits")  # the combined spectrum of one visit is that visit
    assert v.flux.shape == (1, 8575)
    np.testing.assert_array_equal(v.flux[0], star["flux"])
    with pytest.raises(InputFileError, match="row 2 out of range"):
        read_apstar(path, row=2)


def test_legacy_one_dimensional_file(tmp_path, star):
    """Pre-DR17 single-visit apStar files hold one 1-D row."""
    hdus = [fits.PrimaryHDU()]
    hdus[0].header.update({"OBJID": "2M1", "NVISITS": 1, "CRVAL1": 4.179, "CDELT1": 6e-6, "CRPIX1": 1})
    for a in (star["flux"], star["error"], star["bitmask"]):
        hdus.append(fits.ImageHDU(a))
    fits.HDUList(hdus).writeto(tmp_path / "old.fits")
    s = read_apstar(tmp_path / "old.fits")
    np.testing.assert_array_equal(s.flux, star["flux"])
    assert s.meta["N_ROWS"] == 1 and s.meta["APOGEE_ID"] == "2M1"
    assert np.isnan(s.meta["VHELIO"])  # absent header value
    assert read_apstar(tmp_path / "old.fits", row="visits").flux.shape == (1, 8575)


def test_apogee_id_from_file_name_when_header_lacks_objid(tmp_path, star):
    hdus = [fits.PrimaryHDU()] + [fits.ImageHDU(a) for a in (star["flux"], star["error"], star["bitmask"])]
    fits.HDUList(hdus).writeto(tmp_path / "asStar-dr17-2M03174068-7748459.fits")
    s = read_apstar(tmp_path / "asStar-dr17-2M03174068-7748459.fits")
    assert s.meta["APOGEE_ID"] == "2M03174068-7748459"
    np.testing.assert_allclose(s.wavelength, 10.0 ** (4.179 + 6e-6 * np.arange(8575)))  # default WCS


def test_visits_requested_but_not_stored(tmp_path, star):
    meta = dict(star["meta"], NVISITS=4)
    path = write_apstar(tmp_path / "n.fits", star["flux"], star["error"], star["bitmask"], meta)
    assert read_apstar(path).meta["NVISITS"] == 4
    with pytest.raises(InputFileError, match=r"NVISITS=4.*no individual visits"):
        read_apstar(path, row="visits")


def test_snr_computed_when_absent(tmp_path, star):
    meta = {k: v for k, v in star["meta"].items() if k != "SNR"}
    path = write_apstar(tmp_path / "snr.fits", star["flux"], star["error"], star["bitmask"], meta)
    ratio = star["flux"].astype(np.float64) / star["error"]
    expected = np.median(ratio[np.isfinite(ratio)])
    assert read_apstar(path).meta["SNR"] == pytest.approx(expected, rel=1e-6)


def test_writer_rejects_bad_arrays(tmp_path, star):
    with pytest.raises(InputDataError, match="shape"):
        write_apstar(tmp_path / "x.fits", star["flux"][:100], star["error"], star["bitmask"], {})
    with pytest.raises(InputDataError, match="integer"):
        write_apstar(tmp_path / "x.fits", star["flux"], star["error"], star["flux"], {})
    v = np.ones((2, 8575))
    with pytest.raises(InputDataError, match="NVISITS=5 but 2"):
        write_apstar(tmp_path / "x.fits", star["flux"], star["error"], star["bitmask"], {"NVISITS": 5},
                     visits=(v, v, v.astype(int)))
    assert not (tmp_path / "x.fits").exists()


def test_writer_is_atomic(tmp_path, star, monkeypatch):
    path = write_apstar(tmp_path / "a.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_apstar(path, star["flux"], star["error"], star["bitmask"], star["meta"])

    def broken_writeto(self, fileobj, **kwargs):
        fileobj.write(b"SIMPLE  = partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", broken_writeto)
    with pytest.raises(OSError, match="disk full"):
        write_apstar(path, star["flux"] * 2, star["error"], star["bitmask"], star["meta"], overwrite=True)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["a.fits"]  # and no temporary file is left
    monkeypatch.undo()
    write_apstar(path, star["flux"] * 2, star["error"], star["bitmask"], star["meta"], overwrite=True)
    np.testing.assert_array_equal(read_apstar(path).flux, star["flux"] * 2)


# --- the real DR17 file ------------------------------------------------------------------
def test_real_dr17_file(shared_data):
    path = shared_data / REAL_APSTAR
    s = read_apstar(path)
    with fits.open(path) as h:
        raw_flux, raw_err, raw_mask = h[1].data[0], h[2].data[0], h[3].data[0]
        assert h[1].data.shape == (2, 8575) and h[0].header["NVISITS"] == 1
        assert not h[1].data[1].any()  # the unused second row
    assert s.flux.shape == (8575,)
    np.testing.assert_array_equal(s.flux, raw_flux)
    nan = ~np.isfinite(raw_flux) | ~np.isfinite(raw_err)
    edges = np.zeros(8575, bool)  # outside the detectors' useful range (documented in apogee.py)
    for a, b in ((0, 202), (3324, 3538), (6130, 6295), (8382, 8575)):
        edges[a:b] = True
    np.testing.assert_array_equal(nan, edges)
    assert (raw_mask[nan] == 0).all()  # the file does not flag them …
    assert (s.bitmask[nan] & BADPIX).all()  # … the reader does
    np.testing.assert_array_equal(s.bitmask[~nan], raw_mask[~nan])
    m = s.meta
    assert m["APOGEE_ID"] == "2M19485057+5005279" and m["NVISITS"] == 1 and m["FIELD"] == "K04_083+13"
    assert m["RA"] == pytest.approx(297.210723) and m["DEC"] == pytest.approx(50.091099)
    assert m["SNR"] == pytest.approx(137.4889561519403) and m["VHELIO"] == pytest.approx(13.95981502532959)
    assert (m["J"], m["H"], m["K"]) == pytest.approx((11.115, 10.584, 10.522), abs=1e-3)
    assert s.wavelength[0] == pytest.approx(15100.80, abs=0.01)
    assert s.wavelength[-1] == pytest.approx(16999.81, abs=0.01)
    v = read_apstar(path, row="visits")
    np.testing.assert_array_equal(v.flux[0], s.flux)


# --- bad files ---------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist") as e:
        read_apstar(tmp_path / "nope.fits")
    assert "nope.fits" in str(e.value) and e.value.path.endswith("nope.fits")


def test_not_fits(tmp_path):
    p = tmp_path / "x.fits"
    p.write_text("hello, not a FITS file\n" * 200)
    with pytest.raises(InputFileError, match="not a FITS file"):
        read_apstar(p)


@pytest.mark.parametrize("cut", [1000, 2880 * 3 + 17, -5000])
def test_truncated_file(tmp_path, star, cut):
    path = write_apstar(tmp_path / "t.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    data = path.read_bytes()
    path.write_bytes(data[:cut])
    with pytest.raises(InputFileError, match="truncated") as e:
        read_apstar(path)
    assert str(path) in str(e.value)


def test_truncated_at_block_boundary(tmp_path, star):
    path = write_apstar(tmp_path / "t.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    with fits.open(path) as h:
        end_of_hdu2 = h.fileinfo(2)["datLoc"] + h.fileinfo(2)["datSpan"]
    path.write_bytes(path.read_bytes()[:end_of_hdu2])  # a valid FITS file with 3 HDUs
    with pytest.raises(InputFileError, match="not an apStar file: 3 HDU"):
        read_apstar(path)


def test_wrong_length_and_mismatched_shapes(tmp_path):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.ones((2, 100))), fits.ImageHDU(np.ones((2, 100))),
            fits.ImageHDU(np.zeros((2, 100), np.int32))]
    fits.HDUList(hdus).writeto(tmp_path / "short.fits")
    with pytest.raises(InputFileError, match=r"shape \(2, 100\).*8575"):
        read_apstar(tmp_path / "short.fits")
    hdus[2] = fits.ImageHDU(np.ones((3, 100)))
    fits.HDUList(hdus).writeto(tmp_path / "mismatch.fits")
    with pytest.raises(InputFileError, match="shapes differ"):
        read_apstar(tmp_path / "mismatch.fits")
    tab = fits.BinTableHDU.from_columns([fits.Column(name="A", format="D", array=np.ones(3))])
    fits.HDUList([fits.PrimaryHDU(), tab, tab.copy(), tab.copy()]).writeto(tmp_path / "table.fits")
    with pytest.raises(InputFileError, match="expected an image"):
        read_apstar(tmp_path / "table.fits")


def test_bad_row_argument(tmp_path, star):
    path = write_apstar(tmp_path / "a.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    with pytest.raises(ValueError, match="row must be"):
        read_apstar(path, row="best")
    with pytest.raises(ValueError, match="row must be"):
        read_apstar(path, row=True)


@pytest.mark.parametrize(("reader", "kind", "expected"), [
    ("read_apstar", "apStar", "expected at least 4 (header, flux, error, bitmask)"),
    ("read_aspcapstar", "aspcapStar", "expected at least 3 (header, flux, error)"),
    ("read_apvisit", "apVisit", "expected at least 5 (header, flux, error, bitmask, wavelength)"),
])
def test_too_few_hdus_name_the_layout(tmp_path, reader, kind, expected):
    from starlabels import io as starlabels_io

    path = tmp_path / "two.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones(8575, np.float32))]).writeto(path)
    message = rf"not an {kind} file: 2 HDU\(s\), {re.escape(expected)}"
    with pytest.raises(InputFileError, match=message) as err:
        getattr(starlabels_io, reader)(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)
