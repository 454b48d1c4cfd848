"""PARSEC isochrone reading and selection (starlabels.evaluation.isochrones)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from starlabels.errors import InputDataError, InputFileError
from starlabels.evaluation import isochrones as iso


@pytest.fixture
def user_grid(tmp_path):
    """A tiny isochrone file with lower-case column names, as a user might convert from CMD."""
    rows = []
    for mh in (-0.5, 0.0):
        for age in (9.0, 9.6):
            mini = np.linspace(0.8, 1.6, 9)[::-1]  # stored in decreasing mass to test sorting
            phase = np.array([1, 1, 1, 2, 3, 3, 4, 8, 9])
            logte = np.log10(5800 - 300 * np.arange(9) - 100 * mh)
            logg = 4.5 - 0.4 * np.arange(9) + age / 100
            rows.append(np.c_[np.full(9, mh), np.full(9, age), mini, logte, logg, phase])
    data = np.vstack(rows)
    t = Table(data, names=["mh", "logAge", "Mini", "logTe", "logg", "label"])
    path = tmp_path / "my_isochrones.fits"
    t.write(path)
    return path, data


def test_select_from_user_file(user_grid):
    path, data = user_grid
    grid = iso.load_isochrones(path)
    np.testing.assert_array_equal(grid.metallicities, [-0.5, 0.0])
    np.testing.assert_array_equal(grid.ages, [9.0, 9.6])
    out = iso.select_isochrones([9.55], [-0.45, 0.02], grid=grid)
    assert [(i.log_age, i.mh) for i in out] == [(9.6, -0.5), (9.6, 0.0)]
    one = out[1]
    rows = data[(data[:, 0] == 0.0) & (data[:, 1] == 9.6) & (data[:, 5] <= 7)]
    rows = rows[np.argsort(rows[:, 2])]
    np.testing.assert_allclose(one.teff, 10 ** rows[:, 3])  # Teff = 10**LOGTE, by initial mass
    np.testing.assert_allclose(one.logg, rows[:, 4])
    assert set(one.phase) == {1, 2, 3, 4}  # TP-AGB (8) and post-AGB (9) left out by default
    assert len(iso.select_isochrones(9.6, 0.0, grid=grid, phases=None)[0].teff) == 9
    assert one.label == "4.0 Gyr, [M/H] = +0.00"
    # the same through a path
    assert len(iso.select_isochrones(9.0, -0.5, grid=path)) == 1


def test_out_of_grid_requests_are_refused(user_grid):
    path, _ = user_grid
    with pytest.raises(InputDataError, match=r"\[M/H\]"):
        iso.select_isochrones(9.6, -2.0, grid=path)
    with pytest.raises(InputDataError, match="log age"):
        iso.select_isochrones(8.0, 0.0, grid=path)


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        iso.load_isochrones(tmp_path / "nope.fits")
    t = Table({"MH": [0.0], "LOGAGE": [9.0]})
    p = tmp_path / "short.fits"
    t.write(p)
    with pytest.raises(InputFileError, match="LOGTE"):
        iso.load_isochrones(p)
    junk = tmp_path / "junk.fits"
    junk.write_bytes(b"not a fits file at all")
    with pytest.raises(InputFileError, match=r"junk\.fits"):
        iso.load_isochrones(junk)


def test_default_path_from_environment(monkeypatch, tmp_path, user_grid):
    path, _ = user_grid
    monkeypatch.setenv("STARLABELS_ISOCHRONES", str(path))
    assert iso.default_isochrone_path() == path
    monkeypatch.delenv("STARLABELS_ISOCHRONES")
    # no development path: only the reference folders and the download cache are searched
    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("STARLABELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputFileError, match="STARLABELS_REFERENCE_DIR"):
        iso.default_isochrone_path()
    # found by name one folder down in a reference folder (the shared data's isochrones/<file>)
    (tmp_path / "ref" / "isochrones").mkdir(parents=True)
    grid = tmp_path / "ref" / "isochrones" / "parsec_photometry_grid.fits.gz"
    grid.write_bytes(path.read_bytes())
    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(tmp_path / "ref"))
    assert iso.default_isochrone_path() == grid


@pytest.mark.shared_data
def test_parsec_grid(shared_data):
    path = shared_data / "isochrones" / "parsec_photometry_grid.fits.gz"
    grid = iso.load_isochrones(path)
    assert grid.ages.min() == pytest.approx(6.0) and grid.ages.max() == pytest.approx(10.2)
    out = iso.select_isochrones(9.6, [-1.5, -1.0, -0.5, 0.0], grid=grid)
    assert [round(i.mh, 2) for i in out] == [-1.45, -0.95, -0.45, 0.05]
    for i in out:
        # a 4 Gyr isochrone: main sequence to the tip of the red giant branch
        assert 2000 < i.teff.min() < 3200 and 5500 < i.teff.max() < 8500
        assert i.logg.min() < 1.0 and i.logg.max() > 4.8
        assert np.all(i.phase <= 7)
    # metal-poor giant branches are hotter at fixed log g (log g = 2)
    t_at_2 = [np.interp(2.0, i.logg[i.phase == 3][::-1], i.teff[i.phase == 3][::-1]) for i in out]
    assert np.all(np.diff(t_at_2) < 0)
