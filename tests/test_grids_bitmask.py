"""Wavelength grids and APOGEE_PIXMASK helpers."""

import numpy as np
import pytest

from starlabels.preprocess import bitmask, grids


def test_grid_sizes_match_the_published_ones():
    assert grids.APSTAR.n_pixels == 8575
    assert grids.ASPCAP.n_pixels == 7514
    assert grids.PAYNE.n_pixels == 7214
    assert [s.stop - s.start for s in grids.PAYNE.segment_slices] == [2920, 2400, 1894]


def test_apstar_wavelength_is_log_linear():
    w = grids.apstar_wavelength()
    assert w.shape == (8575,)
    np.testing.assert_allclose(np.diff(np.log10(w)), 6e-6, rtol=1e-6)
    assert w[0] == pytest.approx(10**4.179)


def test_wavelength_from_header_honours_crpix():
    header = {"CRVAL1": 4.179, "CDELT1": 6e-6, "NAXIS1": 10, "CRPIX1": 3}
    w = grids.wavelength_from_header(header)
    assert w[2] == pytest.approx(10**4.179)
    with pytest.raises(ValueError, match="CDELT1"):
        grids.wavelength_from_header({"CRVAL1": 4.179, "NAXIS1": 10})


def test_payne_grid_matches_the_reference_wavelengths(shared_data):
    ref = np.load(shared_data / "apogee" / "aspcap_wavelength_7214.npz")["wavelength"]
    np.testing.assert_allclose(grids.PAYNE.wavelength, ref, rtol=1e-10)


@pytest.mark.parametrize("small,large", [("aspcap", "apstar"), ("payne", "apstar"), ("payne", "aspcap")])
def test_round_trip_small_large_small_is_exact(small, large):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, grids.get_grid(small).n_pixels))
    big = grids.convert(x, small, large)
    assert big.shape == (4, grids.get_grid(large).n_pixels)
    n_fill = grids.get_grid(large).n_pixels - grids.get_grid(small).n_pixels
    assert (np.isnan(big).sum(axis=1) == n_fill).all()
    np.testing.assert_array_equal(grids.convert(big, large, small), x)


def test_convert_places_pixels_at_their_wavelengths():
    w_aspcap = grids.convert(grids.apstar_wavelength(), "apstar", "aspcap")
    np.testing.assert_allclose(w_aspcap, grids.ASPCAP.wavelength)
    back = grids.convert(w_aspcap, "aspcap", "apstar")
    ok = ~np.isnan(back)
    np.testing.assert_allclose(back[ok], grids.apstar_wavelength()[ok])
    assert ok[246] and not ok[245] and ok[3273] and not ok[3274]


def test_convert_rejects_wrong_length_and_keeps_int_dtype():
    with pytest.raises(ValueError, match="7514"):
        grids.convert(np.zeros(7000), "aspcap", "apstar")
    m = grids.convert(np.ones(7514, dtype=np.int32), "aspcap", "apstar", fill=1)
    assert m.dtype == np.int32 and (m == 1).all()
    with pytest.raises(ValueError, match="finite"):
        grids.convert(np.ones(7514, dtype=np.int32), "aspcap", "apstar")


def test_get_grid_by_size_and_name():
    assert grids.get_grid(7514) is grids.ASPCAP
    assert grids.get_grid("PAYNE") is grids.PAYNE
    with pytest.raises(ValueError, match="no built-in grid"):
        grids.get_grid(123)


def test_bitmask_default_reject_is_bits_0_to_7_and_12():
    assert sum(1 << b for b in [0, 1, 2, 3, 4, 5, 6, 7, 12]) == bitmask.DEFAULT_REJECT_VALUE
    m = np.array([0, 1 << 12, 1 << 13, 1 << 7, (1 << 9) | (1 << 3)])
    np.testing.assert_array_equal(bitmask.bad_pixels(m), [False, True, False, True, True])
    np.testing.assert_array_equal(bitmask.bad_pixels(m, bits=["SIG_TELLURIC"]), [0, 0, 1, 0, 0])
    assert bitmask.decode((1 << 9) | 1) == ["BADPIX", "PERSIST_HIGH"]
    with pytest.raises(ValueError, match="unknown"):
        bitmask.bits_to_value(["NOPE"])
