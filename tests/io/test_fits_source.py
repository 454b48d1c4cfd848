"""The direct FITS backend (io/fits_source.py) against astropy: the same header values and
bit-identical arrays on fixtures and on the real DR17 files, the same apStar spectra from the one
reader on either backend, and the hand-over to astropy for what the direct backend does not read."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
from astropy.io import fits

from starlabels.errors import InputFileError
from starlabels.io import identify_format, read_apstar, read_spectra, write_apstar, write_aspcapstar
from starlabels.io.apogee import apstar_from_source
from starlabels.io.fits_file import native, open_fits
from starlabels.io.fits_source import AstropySource, DirectSource, NeedsAstropyError
from starlabels.io.read import _identify
from starlabels.io.sdss_v import apstar_spectra_from_source, mwm_from_source

REAL_APSTAR = "real/apStar-dr17-2M19485057+5005279.fits"
REAL_APVISIT = "real/apVisit-r13-9518-57729-104.fits"


def _same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _compare_backends(path) -> set[str]:
    """Assert equal HDU counts, image infos, header values and image bytes; return the keywords the
    direct backend left to astropy."""
    left: set[str] = set()
    with fits.open(path) as hdul, DirectSource.open(path, "test") as direct:
        theirs = AstropySource(hdul, path)
        assert len(direct) == len(theirs)
        for i in range(len(direct)):
            assert direct.image_info(i) == theirs.image_info(i), i
            header, reference = direct.header(i), hdul[i].header
            keys = {k for k in reference if k not in ("", "COMMENT", "HISTORY")}
            assert keys <= set(header), keys - set(header)
            for key in header:
                try:
                    value = header[key]
                except NeedsAstropyError:
                    left.add(key)
                    continue
                assert _same_value(value, reference[key]), (i, key, value, reference[key])
                assert key in header and _same_value(header.get(key), value)
            assert direct.is_bintable(i) == theirs.is_bintable(i)
            if direct.is_bintable(i):
                ours_table, their_table = direct.table(i), theirs.table(i)
                assert ours_table.keys() == their_table.keys()
                for k, col in their_table.items():
                    same = np.array_equal(ours_table[k], col) if col.dtype.kind in "US" else \
                        ours_table[k].tobytes() == col.tobytes()
                    assert ours_table[k].dtype == col.dtype and same, (i, k)
            info = direct.image_info(i)
            if info is not None and info[1] and hdul[i].data is not None:
                ours, data = direct.image(i, "x"), native(hdul[i].data)
                assert ours.dtype == data.dtype and ours.shape == data.shape and ours.flags.writeable
                assert ours.tobytes() == data.tobytes(), i  # bit-identical, NaN payloads included
                assert theirs.image(i, "x").tobytes() == data.tobytes()
                if data.ndim == 2 and data.shape[0] > 2:
                    assert direct.image(i, "x", 1).tobytes() == data[1].tobytes()
                    assert direct.image(i, "x", slice(1, 3)).tobytes() == data[1:3].tobytes()
                    assert direct.image(i, "x", slice(None, None, 2)).tobytes() == data[::2].tobytes()
                # cast as read (dtype=): the same values as numpy's cast of the file's array
                wide = np.dtype(np.float64 if data.dtype.kind == "f" else np.int64)
                many = data.ndim == 2 and data.shape[0] > 2
                for rows in (None, 1, slice(1, 3), slice(None, None, 2)) if many else (None,):
                    expected = np.ascontiguousarray(data if rows is None else data[rows]).astype(wide)
                    for source in (direct, theirs):
                        got = source.image(i, "x", rows, wide)
                        assert got.dtype == wide and got.flags.c_contiguous and got.flags.writeable
                        assert got.shape == expected.shape and got.tobytes() == expected.tobytes(), (i, rows)
    return left


def test_apstar_cast_as_read_same_as_cast_after(tmp_path, star, visits_file):
    """``apstar_from_source(dtype=float64)`` (what read_spectra asks for) gives exactly the float32
    file's values cast to float64, on both backends; without ``dtype`` read_apstar keeps float32."""
    single = write_apstar(tmp_path / "one.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    one_d = tmp_path / "one_d.fits"  # the 1-D layout of releases before DR17
    images = [fits.ImageHDU(star[k]) for k in ("flux", "error", "bitmask")]
    fits.HDUList([fits.PrimaryHDU(), *images]).writeto(one_d)
    for path, row in ((single, "combined"), (one_d, "combined"), (visits_file, "combined"),
                      (visits_file, "visits"), (visits_file, -1)):
        with DirectSource.open(path, "apStar") as direct, open_fits(path, "apStar") as hdul:
            for source in (direct, AstropySource(hdul, path)):
                kept = apstar_from_source(source, row)
                cast = apstar_from_source(source, row, dtype=np.float64)
                assert kept.flux.dtype == kept.error.dtype == np.float32
                assert cast.flux.dtype == cast.error.dtype == np.float64
                assert cast.flux.tobytes() == kept.flux.astype(np.float64).tobytes()
                assert cast.error.tobytes() == kept.error.astype(np.float64).tobytes()
                assert cast.bitmask.dtype == np.int64 and np.array_equal(cast.bitmask, kept.bitmask)
                assert cast.meta.keys() == kept.meta.keys()
                assert all(_same_value(cast.meta[k], kept.meta[k]) for k in kept.meta)
        assert read_apstar(path, row).flux.dtype == np.float32


def _both(path, row="combined"):
    with DirectSource.open(path, "apStar") as direct:
        ours = apstar_from_source(direct, row)
    with open_fits(path, "apStar") as hdul:
        theirs = apstar_from_source(AstropySource(hdul, path), row)
    return ours, theirs


def _assert_same_apstar(a, b):
    for name in ("flux", "error", "bitmask", "wavelength"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert a.meta.keys() == b.meta.keys()
    for k in a.meta:
        assert _same_value(a.meta[k], b.meta[k]), k


@pytest.fixture
def visits_file(tmp_path, star):
    rng = np.random.default_rng(5)
    visits = ((1000 + rng.standard_normal((3, 8575))).astype(np.float32),
              (10 + rng.random((3, 8575))).astype(np.float32),
              rng.integers(0, 1 << 14, (3, 8575)).astype(np.int32))
    return write_apstar(tmp_path / "apStar-dr17-2M00000001+0000001.fits", star["flux"], star["error"],
                        star["bitmask"], {**star["meta"], "NRES": " 5.00 4.25", "NOTE": "it's"},
                        visits=visits)


def test_written_apstar_same_on_both_backends(visits_file):
    assert _compare_backends(visits_file) == set()
    for row in ("combined", "visits", 1, -1):
        _assert_same_apstar(*_both(visits_file, row))
    (ours,) = read_spectra(visits_file)  # the direct path
    with open_fits(visits_file, "apStar") as hdul:
        (theirs,) = apstar_spectra_from_source(AstropySource(hdul, visits_file))
    for name in ("flux", "error", "bitmask", "wavelength"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))
    assert ours.meta.keys() == theirs.meta.keys()
    assert all(_same_value(ours.meta[k], theirs.meta[k]) for k in ours.meta)


def test_real_dr17_files_same_on_both_backends(shared_data):
    apstar = shared_data / REAL_APSTAR
    assert _compare_backends(apstar) == set()  # every card of the real file read directly
    for row in ("combined", "visits"):
        _assert_same_apstar(*_both(apstar, row))
    with DirectSource.open(apstar, "x") as direct:
        assert _identify(direct) == "apStar"
    apvisit = shared_data / REAL_APVISIT
    # the one long string (SYNTHFIL … CONTINUE) is left to astropy, every other card is read directly
    assert _compare_backends(apvisit) == {"SYNTHFIL", "CONTINUE"}
    with DirectSource.open(apvisit, "x") as direct:
        assert _identify(direct) == "apVisit"


@pytest.mark.parametrize("release", ["DR17", "DR19"])
def test_data_model_apstar_same_on_both_backends(tmp_path, datamodel, release):
    hdus = datamodel.hdus("apStar", release)
    cards = datamodel.cards(hdus[1])
    shape = (int(cards["NAXIS2"]), int(cards["NAXIS1"]))
    rng = np.random.default_rng(11)
    flux = rng.normal(1000, 10, shape)
    flux[0, :4] = np.nan
    images = {1: flux, 2: rng.uniform(1, 2, shape), 3: rng.integers(0, 1 << 14, shape).astype(np.int32)}
    path = tmp_path / "x.fits"
    datamodel.hdulist("apStar", release, images=images).writeto(path)
    _compare_backends(path)
    _assert_same_apstar(*_both(path))
    with DirectSource.open(path, "x") as direct, open_fits(path, "x") as hdul:
        assert _identify(direct) == _identify(AstropySource(hdul, path))


@pytest.mark.filterwarnings("ignore:The following header keyword is invalid")
def test_header_values_parsed_as_astropy(tmp_path):
    raw = [
        "SIMPLE  =                    T / conforms",
        "BITPIX  =                    8",
        "NAXIS   =                    0",
        "QUOTE   = 'it''s ''quoted'''  / a quote",
        "SLASH   = 'a/b = c'           / slash and equals in a string",
        "SPACES  = '  lead and trail   '",
        "EMPTY   = ''",
        "DEXP    =             1.5D+03",
        "LOWER   =            -2.25e-01",
        "ZEROS   =                 0012",
        "NEG     =                  -17",
        "BIGINT  = 123456789012345678901",
        "POINT   =                  12.",
        "FALSE   =                    F",
        "UNDEF   =                      / no value",
        "DUP     =                    1",
        "DUP     =                    2",
        "CPLX    = (1.0, 2.0)",
        "LONG    = 'first part &'",
        "CONTINUE  'second part'",
        "BLANKVAL",
        "COMMENT a comment",
        "HISTORY a history",
        "END",
    ]
    text = "".join(card.ljust(80) for card in raw)
    path = tmp_path / "cards.fits"  # cards as written by hand (astropy would reformat some)
    path.write_bytes(text.encode().ljust(-(-len(text) // 2880) * 2880))
    left = _compare_backends(path)
    assert left == {"CPLX", "LONG", "CONTINUE", "BLANKVAL"}
    with DirectSource.open(path, "x") as direct:
        h = direct.header(0)
        assert h["DUP"] == 1 and h["QUOTE"] == "it's 'quoted'" and h["SPACES"] == "  lead and trail"
        assert h["UNDEF"] is None and "UNDEF" in h and h.get("ABSENT", 3) == 3 and h["dexp"] == 1500.0
        with pytest.raises(KeyError):
            h["ABSENT"]


# --- what the direct backend leaves to astropy ---------------------------------------------------
def test_scaled_bitmask_goes_to_astropy(tmp_path, star):
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(np.stack([star["flux"], star["flux"]])),
            fits.ImageHDU(np.stack([star["error"], star["error"]])),
            fits.ImageHDU(np.stack([star["bitmask"], star["bitmask"]]).astype(np.uint16))]  # BZERO = 32768
    path = tmp_path / "u16.fits"
    fits.HDUList(hdus).writeto(path)
    with DirectSource.open(path, "x") as direct, pytest.raises(NeedsAstropyError):
        apstar_from_source(direct)
    # astropy's answer, as before the direct backend existed (memory-mapped files cannot be scaled)
    with pytest.raises(InputFileError, match=r"u16\.fits: cannot read HDU3 \(bitmask\).*BZERO"):
        read_apstar(path)


def test_complex_header_value_goes_to_astropy(tmp_path, star):
    path = write_apstar(tmp_path / "a.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    with fits.open(path) as h:
        h[0].header.append(fits.Card.fromstring("VHELIO  = (1.0, 2.0)".ljust(80)))
        hdus = fits.HDUList([hdu.copy() for hdu in h])
    del hdus[0].header["VHELIO"]  # the original, so that the complex card is the one read
    hdus[0].header.append(fits.Card.fromstring("VHELIO  = (1.0, 2.0)".ljust(80)))
    hdus.writeto(tmp_path / "c.fits")
    with DirectSource.open(tmp_path / "c.fits", "x") as direct, pytest.raises(NeedsAstropyError):
        apstar_from_source(direct)
    s = read_apstar(tmp_path / "c.fits")
    assert math.isnan(s.meta["VHELIO"]) and s.meta["RA"] == 12.5  # as header_float reads a complex value


def test_gzipped_apstar_goes_to_astropy(tmp_path, star):
    path = write_apstar(tmp_path / "a.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    gz = tmp_path / "apStar-dr17-2M00000001+0000001.fits.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(NeedsAstropyError):
        DirectSource.open(gz, "x")
    zipped, plain = read_apstar(gz), _both(path)[1]
    assert zipped.meta.pop("FILE") == str(gz) and plain.meta.pop("FILE") == str(path)
    _assert_same_apstar(zipped, plain)


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_block_truncated_data_goes_to_astropy(tmp_path, star):
    path = write_apstar(tmp_path / "t.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 2 * 2880])  # inside HDU7's data, on a block boundary
    with pytest.raises(NeedsAstropyError), DirectSource.open(path, "x"):
        pass
    with pytest.raises(InputFileError, match="truncated") as e:
        read_apstar(path)
    assert str(path) in str(e.value)
    with pytest.raises(InputFileError, match="truncated"):
        read_spectra(path)


def test_identification_same_on_both_backends(tmp_path, star):
    aspcap = write_aspcapstar(tmp_path / "aspcap.fits", np.ones(8575), np.ones(8575), {"APOGEE_ID": "x"})
    apstar = write_apstar(tmp_path / "s.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    for path, fmt in ((aspcap, "aspcapStar"), (apstar, "apStar")):
        with DirectSource.open(path, "x") as direct, open_fits(path, "x") as hdul:
            assert _identify(direct) == _identify(AstropySource(hdul, path)) == fmt
        assert identify_format(path) == fmt
    (a,) = read_spectra(aspcap)
    assert a.meta["FORMAT"] == "aspcapStar" and a.meta["NORMALISED"] is True


def test_without_pread_astropy_reads(tmp_path, star, monkeypatch):
    from starlabels.io import fits_source

    path = write_apstar(tmp_path / "a.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    direct = read_apstar(path)
    monkeypatch.setattr(fits_source, "_HAVE_PREAD", False)  # as on Windows
    with pytest.raises(NeedsAstropyError):
        DirectSource.open(path, "x")
    _assert_same_apstar(read_apstar(path), direct)


def test_file_errors_worded_as_before(tmp_path):
    with pytest.raises(InputFileError, match="is a directory"):
        read_apstar(tmp_path)
    (tmp_path / "empty.fits").write_bytes(b"")
    with pytest.raises(InputFileError, match="file is empty"):
        read_apstar(tmp_path / "empty.fits")
    with pytest.raises(InputFileError, match="apStar file does not exist"):
        read_apstar(tmp_path / "missing.fits")


# --- mwmStar / mwmVisit ----------------------------------------------------------------------------
def _mwm_both(path):
    with DirectSource.open(path, "mwm") as direct:
        ours = mwm_from_source(direct)
    with open_fits(path, "mwm") as hdul:
        theirs = mwm_from_source(AstropySource(hdul, path))
    return ours, theirs


def _assert_same_spectra(a, b):
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.instrument == y.instrument
        for name in ("flux", "error", "bitmask", "wavelength"):
            u, v = getattr(x, name), getattr(y, name)
            assert u.dtype == v.dtype and u.tobytes() == v.tobytes(), name
        assert x.meta.keys() == y.meta.keys()
        assert all(_same_value(x.meta[k], y.meta[k]) for k in x.meta), x.meta


@pytest.mark.parametrize("release", ["DR19", "DR20"])
@pytest.mark.parametrize("name", ["mwmStar", "mwmVisit"])
def test_data_model_mwm_same_on_both_backends(tmp_path, datamodel, name, release):
    rng = np.random.default_rng(4)

    def pixels(n_rows, n_pix):  # flags up to 2^20, given as int64
        return (rng.normal(100, 5, (n_rows, n_pix)).astype(np.float32),
                rng.uniform(0, 2, (n_rows, n_pix)).astype(np.float32),
                rng.integers(0, 1 << 20, (n_rows, n_pix)))

    path = tmp_path / f"{name}.fits"
    datamodel.write_mwm(name, release, path, n_apogee=1 if name == "mwmStar" else 3, pixels=pixels)
    _compare_backends(path)  # header cards, table columns
    ours, theirs = _mwm_both(path)
    _assert_same_spectra(ours, theirs)
    with DirectSource.open(path, "x") as direct:
        assert _identify(direct) == name  # identified and read without astropy
    _assert_same_spectra(read_spectra(path), theirs)


def test_written_mwm_same_on_both_backends(tmp_path):
    from starlabels.io import Spectrum, write_mwm_star, write_mwm_visit

    rng = np.random.default_rng(8)
    wave = 10.0 ** (4.179 + 6e-6 * np.arange(8575))

    def spectrum(seed_meta):
        return Spectrum("apogee", wave, rng.normal(100, 5, 8575), rng.uniform(0.5, 2, 8575),
                        rng.integers(0, 1 << 12, 8575), seed_meta)

    for layout in ("dr19", "dr20"):
        star = write_mwm_star(tmp_path / f"s-{layout}.fits", [spectrum({"TELESCOPE": "apo25m"})],
                              {"SDSS_ID": 5}, layout=layout)
        visits = write_mwm_visit(tmp_path / f"v-{layout}.fits",
                                 [spectrum({"MJD": 60000 + k}) for k in range(3)], {"SDSS_ID": 5},
                                 layout=layout)
        for path in (star, visits):
            _compare_backends(path)
            _assert_same_spectra(*_mwm_both(path))


def test_apstar_spectra_share_one_checked_grid(tmp_path, star, visits_file):
    from starlabels.errors import InputDataError
    from starlabels.io import Spectrum
    from starlabels.io.spectrum import validated_grid

    other = write_apstar(tmp_path / "b.fits", star["flux"], star["error"], star["bitmask"], star["meta"])
    spectra = read_spectra(visits_file, rows="visits") + read_spectra(other)
    grid = spectra[0].wavelength
    assert all(s.wavelength is grid for s in spectra) and not grid.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        grid[0] = 1.0
    np.testing.assert_array_equal(grid, 10.0 ** (4.179 + 6e-6 * np.arange(8575)))
    assert read_apstar(other).wavelength.flags.writeable  # read_apstar still gives its own array
    # only read-only arrays that own their data are trusted, and only when increasing
    with pytest.raises(ValueError):
        validated_grid(np.arange(3.0))
    backwards = np.arange(3.0)[::-1].copy()
    backwards.flags.writeable = False
    with pytest.raises(InputDataError):
        validated_grid(backwards)
    with pytest.raises(InputDataError, match="strictly increasing"):  # not registered: still checked
        Spectrum("x", backwards, np.ones(3), np.ones(3), np.zeros(3, int))


@pytest.mark.parametrize("n", [8575, 7214])
def test_aspcapstar_same_on_both_backends(tmp_path, n):
    from starlabels.io.apogee import aspcapstar_from_source

    rng = np.random.default_rng(9)
    flux, error = rng.normal(1, 0.01, n).astype(np.float32), rng.uniform(0.005, 0.02, n).astype(np.float32)
    flux[:3] = np.nan
    path = write_aspcapstar(tmp_path / "aspcapStar-dr17-2M00000003+0000003.fits", flux, error,
                            {"APOGEE_ID": "2M00000003+0000003", "TEFF": 4800.5, "LOGG": 2.5, "NVISITS": 3,
                             "ASPCAPFLAGS": "STAR_WARN"}, model=np.ones(n, np.float32))
    # an ASPCAP-like table as DR17 has it: array, logical and string columns next to scalars
    with fits.open(path) as h:
        cols = [*h[4].columns, fits.Column("PARAM", "7D", array=np.arange(7.0)[None]),
                fits.Column("OK", "L", array=np.array([True])),
                fits.Column("FIELD", "10A", array=np.array([" K04  "]))]
        hdus = fits.HDUList([hdu.copy() for hdu in h[:4]] + [fits.BinTableHDU.from_columns(cols)])
    hdus.writeto(tmp_path / "full.fits")
    for p in (path, tmp_path / "full.fits"):
        _compare_backends(p)
        with DirectSource.open(p, "aspcapStar") as direct:
            ours = aspcapstar_from_source(direct)
        with open_fits(p, "aspcapStar") as hdul:
            theirs = aspcapstar_from_source(AstropySource(hdul, p))
        for name in ("flux", "error", "model", "bitmask", "wavelength"):
            x, y = getattr(ours, name), getattr(theirs, name)
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
        assert ours.meta == theirs.meta and ours.grid == theirs.grid
    assert theirs.meta["OK"] is True and theirs.meta["FIELD"] == "K04" and "PARAM" not in theirs.meta
    assert theirs.meta["TEFF"] == 4800.5 and theirs.meta["NVISITS"] == 3
