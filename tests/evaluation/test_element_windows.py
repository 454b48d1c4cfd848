"""Brackett lines and element windows (starlabels.evaluation.element_windows)."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.errors import InputDataError
from starlabels.evaluation import element_windows
from starlabels.preprocess.grids import APSTAR, ASPCAP, index_in

# ---------------------------------------------------------------------- lines and windows


def test_brackett_lines_match_vacuum_wavelengths():
    # vacuum wavelengths (Å) of H I Brackett lines (NIST / APOGEE line lists)
    ref = {"Br11": 16811.11, "Br12": 16411.67, "Br13": 16113.71, "Br14": 15884.88,
           "Br15": 15704.95, "Br16": 15560.70, "Br17": 15443.14, "Br18": 15345.99,
           "Br19": 15264.71, "Br20": 15196.00}
    for name, lam in ref.items():
        assert element_windows.BRACKETT_LINES[name] == pytest.approx(lam, abs=0.15), name
    assert all(15100 <= v <= 17000 for v in element_windows.BRACKETT_LINES.values())
    # the series converges to the Brackett limit from above
    lam = element_windows.brackett_wavelength(np.arange(11, 200))
    assert np.all(np.diff(lam) < 0)
    assert lam[-1] > 16e8 / element_windows.RYDBERG_H == pytest.approx(14588.2, abs=0.1)
    with pytest.raises(InputDataError):
        element_windows.brackett_wavelength(4)


def test_element_windows_from_a_user_file(tmp_path):
    w = np.zeros((2, ASPCAP.n_pixels), dtype=bool)
    w[0, 10:20] = True
    w[1, 3000:3040] = True  # crosses the blue/green gap on the apStar grid
    path = tmp_path / "win.npz"
    np.savez(path, windows=w, elements=np.array(["Mg", "TiII"]))
    wins = element_windows.load_element_windows(path)
    assert element_windows.element_of("MG_FE") == "Mg" and element_windows.element_of("TIII_FE") == "TiII"
    np.testing.assert_array_equal(element_windows.element_window_mask("MG_FE", wins), w[0])
    apstar = element_windows.element_window_mask("TIII_FE", wins, grid="apstar")
    assert apstar.shape == (8575,) and apstar.sum() == 40
    np.testing.assert_array_equal(np.flatnonzero(apstar), index_in(ASPCAP, "apstar")[3000:3040])
    with pytest.raises(InputDataError, match="no element windows"):
        element_windows.element_window_mask("NA_FE", wins)
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    from starlabels.errors import InputFileError

    with pytest.raises(InputFileError, match=r"bad\.npz"):
        element_windows.load_element_windows(bad)
    # onto a grid given by its wavelengths (a plot's): the same as onto the named grid
    from starlabels.core.grid import from_wavelength

    on_wave = element_windows.element_window_mask("TIII_FE", wins, grid=from_wavelength(APSTAR.wavelength))
    np.testing.assert_array_equal(on_wave, apstar)
    # windows of a length no grid of the instrument has, and an instrument without windows
    with pytest.raises(InputDataError, match="fit no grid"):
        element_windows.element_window_mask("MG", {"Mg": np.ones(100, bool)})
    with pytest.raises(InputDataError, match="defines no element windows"):
        element_windows.load_element_windows(instrument="boss")


@pytest.mark.shared_data
def test_aspcap_windows_from_shared_data(shared_data):
    path = shared_data / "apogee" / "aspcap_element_windows_dr14_7514.npz"
    wins = element_windows.load_element_windows(path)
    mg = element_windows.element_window_mask("MG_FE", wins)
    assert mg.shape == (7514,) and 50 < mg.sum() < 500
    wl = ASPCAP.wavelength[mg]
    # the strong Mg I lines at 15745–15770 Å (vacuum) are in the Mg windows
    assert np.any((wl > 15740) & (wl < 15775))


@pytest.mark.shared_data
def test_default_windows_file_is_found_as_a_reference_file(shared_data, monkeypatch, tmp_path):
    """No development paths: the instrument's windows come from $STARLABELS_REFERENCE_DIR (and its
    sub-folders one level down) or the download cache, else a clear error naming the file."""
    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(shared_data))
    path = element_windows.element_windows_file()
    assert path == shared_data / "apogee" / "aspcap_element_windows_dr14_7514.npz"
    wins = element_windows.load_element_windows()
    np.testing.assert_array_equal(wins["Mg"], element_windows.load_element_windows(path)["Mg"])
    from starlabels.errors import InputFileError

    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(tmp_path))
    monkeypatch.setenv("STARLABELS_CACHE", str(tmp_path / "cache"))
    with pytest.raises(InputFileError, match="aspcap_element_windows_dr14_7514"):
        element_windows.element_windows_file()
