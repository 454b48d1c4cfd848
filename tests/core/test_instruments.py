"""Grids and instruments as data: the built-in APOGEE and BOSS definitions, any other grid, and
preprocessing on any of them."""

import json

import numpy as np
import pytest
from numpy.polynomial import chebyshev

from starlabels import instruments
from starlabels.core.grid import Grid, from_wavelength, log_linear_grid
from starlabels.errors import InputDataError
from starlabels.preprocess.continuum import continuum_normalize, select_continuum_pixels
from starlabels.preprocess.pipeline import PreprocessConfig


def test_builtin_instruments_are_the_published_grids():
    apogee, boss = instruments.get("apogee"), instruments.get("boss")
    assert apogee.wavelength.shape == (8575,) and boss.wavelength.shape == (4648,)
    np.testing.assert_allclose(np.log10(apogee.wavelength), 4.179 + 6e-6 * np.arange(8575), rtol=1e-14)
    np.testing.assert_allclose(np.log10(boss.wavelength), 3.5523 + 1e-4 * np.arange(4648), rtol=1e-14)
    assert list(apogee.segments) == ["blue", "green", "red"] and list(boss.segments) == ["blue", "red"]
    # the detectors hold exactly ASPCAP's apStar pixel ranges
    ranges = [(s.start, s.stop) for s in apogee.grid.segment_slices]
    assert ranges == [(246, 3274), (3585, 6080), (6344, 8335)]
    assert apogee.get_grid("aspcap").n_pixels == 7514 and apogee.get_grid("payne").n_pixels == 7214
    assert boss.bitmask().value(["NOPLUG", "NODATA"]) == 1 | (1 << 24)
    assert instruments.available()[:2] == ["apogee", "boss"]
    with pytest.raises(ValueError, match="unknown instrument"):
        instruments.get("lamost-not-registered")


def test_payne_subgrid_matches_the_reference_wavelengths(shared_data):
    ref = np.load(shared_data / "apogee" / "aspcap_wavelength_7214.npz")["wavelength"]
    np.testing.assert_allclose(instruments.get("apogee").get_grid("payne").wavelength, ref, rtol=1e-10)


def test_grid_round_trip_checksum_and_bad_wavelengths():
    g = from_wavelength(np.linspace(4000, 5000, 300), segments={"a": (4000, 4500), "b": (4600, 5001)})
    back = Grid.from_dict(json.loads(json.dumps(g.to_dict())))
    assert back.same_as(g) and back.segment_slices == g.segment_slices
    assert g.in_segments().sum() == 300 - np.count_nonzero((g.wavelength >= 4500) & (g.wavelength < 4600))
    bad = g.to_dict()
    bad["checksum"] = "0" * 16
    with pytest.raises(InputDataError, match="checksum"):
        Grid.from_dict(bad)
    with pytest.raises(InputDataError, match="not strictly increasing"):
        from_wavelength([4000.0, 4001.0, 4000.5])
    with pytest.raises(InputDataError, match="overlap"):
        from_wavelength(np.linspace(4000, 5000, 50), segments={"a": (4000, 4600), "b": (4500, 5001)})
    log = log_linear_grid("x", 3.6, 1e-4, 100)
    assert Grid.from_dict(log.to_dict()).same_as(log) and "wavelength" not in log.to_dict()


def _segment_spectra(grid, degree, rng, n=5):
    """Spectra whose continuum is a known Chebyshev polynomial per segment, times weak lines."""
    flux = np.zeros((n, grid.n_pixels))
    cont = np.zeros_like(flux)
    for sl in grid.segment_slices:
        x = np.linspace(-1, 1, sl.stop - sl.start)
        coef = rng.normal(0, 0.1, (n, degree + 1))
        coef[:, 0] += 100.0
        cont[:, sl] = chebyshev.chebval(x, coef.T)
    flux[:] = cont
    return flux, np.full_like(flux, 0.5), cont


def test_continuum_per_segment_on_boss_and_a_custom_grid():
    rng = np.random.default_rng(3)
    segments = {"b1": (4700, 4910), "b2": (5640, 5880), "b3": (6470, 6740)}
    custom = instruments.from_wavelength(np.linspace(4700, 6700, 900), segments=segments)
    for grid in (instruments.get("boss").grid, custom.grid):
        flux, err, cont = _segment_spectra(grid, 2, rng)
        f, e = continuum_normalize(flux, err, grid=grid, degree=2)
        out = grid.segment_grid()
        assert f.shape == (5, out.n_pixels)
        inside = grid.in_segments()
        np.testing.assert_allclose(f, 1.0, atol=1e-10)  # noiseless, line-free: continuum recovered
        np.testing.assert_allclose(e, err[:, inside] / cont[:, inside], rtol=1e-10)
    with pytest.raises(InputDataError, match="pass grid="):
        continuum_normalize(flux, err)


def test_preprocess_config_on_boss_round_trips_and_refuses_other_grids():
    boss = instruments.get("boss")
    rng = np.random.default_rng(4)
    flux, err, _ = _segment_spectra(boss.grid, 2, rng, n=40)
    flux *= 1 - 0.3 * np.exp(-0.5 * ((boss.wavelength - 6564.6) / 3) ** 2)  # a label-dependent line
    labels = rng.normal(size=(40, 2))
    flux *= 1 + 0.02 * labels[:, :1] * np.exp(-0.5 * ((boss.wavelength - 5175) / 2) ** 2)
    mask = select_continuum_pixels(flux, err, labels, grid=boss.grid, fraction=0.2)
    cfg = PreprocessConfig.from_mask(mask, instrument="boss")
    back = PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.grid.same_as(boss.grid) and back.n_pixels == boss.n_pixels
    assert cfg.to_dict()["input_grid"] == {"instrument": "boss", "name": "boss", "n_pixels": 4648,
                                           "checksum": boss.grid.checksum}
    x, _ = cfg.apply(flux, err)
    assert x.shape == (40, 4648) and np.isfinite(x).all()
    apogee = instruments.get("apogee")
    with pytest.raises(InputDataError, match=r"'boss' .*'apstar'|'apstar'.*'boss'"):
        cfg.apply(np.ones((1, apogee.n_pixels)), np.ones((1, apogee.n_pixels)), grid=apogee.grid)
    with pytest.raises(InputDataError, match="8575 pixels"):
        cfg.apply(np.ones((1, apogee.n_pixels)), np.ones((1, apogee.n_pixels)))
    old_style = {k: v for k, v in PreprocessConfig(kind="raw").to_dict().items()
                 if k not in ("instrument", "input_grid")}
    assert PreprocessConfig.from_dict(old_style).grid.same_as(apogee.grid)
    tampered = cfg.to_dict()
    tampered["input_grid"]["checksum"] = "f" * 16
    with pytest.raises(ValueError, match="checksum"):
        PreprocessConfig.from_dict(tampered)
