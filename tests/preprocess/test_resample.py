"""Resampling between grids: numpy.interp, flux conservation, error and mask propagation."""

import numpy as np
import pytest

from starlabels import instruments
from starlabels.core.grid import from_wavelength, log_linear_grid
from starlabels.errors import InputDataError
from starlabels.preprocess.resample import resample, resampling_matrix


@pytest.fixture
def grids():
    src = log_linear_grid("src", 3.7, 1e-4, 400)
    dst = from_wavelength(np.linspace(src.wavelength[5] - 30, src.wavelength[-5] + 30, 250), name="dst")
    return src, dst


def test_linear_equals_numpy_interp_and_propagates_errors(grids):
    src, dst = grids
    rng = np.random.default_rng(0)
    flux = rng.normal(10, 1, (3, src.n_pixels))
    err = rng.uniform(0.1, 0.3, (3, src.n_pixels))
    f, e, b = resample(flux, err, source=src, target=dst, method="linear")
    inside = (dst.wavelength >= src.wavelength[0]) & (dst.wavelength <= src.wavelength[-1])
    for k in range(3):
        np.testing.assert_allclose(f[k, inside], np.interp(dst.wavelength[inside], src.wavelength, flux[k]),
                                   rtol=1e-12)
    # hand arithmetic for one pixel: σ² = w0² σ_i² + w1² σ_{i+1}²
    j = int(np.flatnonzero(inside)[10])
    i = int(np.searchsorted(src.wavelength, dst.wavelength[j]) - 1)
    w1 = (dst.wavelength[j] - src.wavelength[i]) / (src.wavelength[i + 1] - src.wavelength[i])
    expect = np.sqrt(((1 - w1) * err[1, i]) ** 2 + (w1 * err[1, i + 1]) ** 2)
    assert e[1, j] == pytest.approx(expect, rel=1e-12)
    # outside the source: flux 0, σ inf, the no-coverage bit (BADPIX = bit 0 by default)
    assert (f[:, ~inside] == 0).all() and np.isinf(e[:, ~inside]).all() and (b[:, ~inside] & 1).all()
    assert np.isfinite(f).all()


def test_flux_conserving_keeps_the_integral_and_a_constant(grids):
    src, _ = grids
    coarse = from_wavelength(src.wavelength[20:380:3], name="coarse")
    rng = np.random.default_rng(1)
    flux = 5 + rng.normal(0, 1, src.n_pixels)
    f, e, _ = resample(flux, np.full(src.n_pixels, 0.2), source=src, target=coarse, method="flux-conserving")
    f_const, _, _ = resample(np.full(src.n_pixels, 7.0), np.ones(src.n_pixels), source=src, target=coarse,
                             method="flux-conserving")
    np.testing.assert_allclose(f_const, 7.0, rtol=1e-12)
    _W, covered = resampling_matrix(src, coarse, "flux-conserving")
    assert covered.all()
    # ∫ over the target bins = ∫ of the source over the same wavelength range (bins split exactly)
    def edges(w):
        mid = 0.5 * (w[1:] + w[:-1])
        return np.concatenate([[w[0] - (mid[0] - w[0])], mid, [w[-1] + (w[-1] - mid[-1])]])
    et, es = edges(coarse.wavelength), edges(src.wavelength)
    total_target = np.sum(f * np.diff(et))
    lo, hi = et[0], et[-1]
    overlap = np.clip(np.minimum(es[1:], hi) - np.maximum(es[:-1], lo), 0, None)
    assert total_target == pytest.approx(np.sum(flux * overlap), rel=1e-12)
    # averaging ~3 pixels lowers σ by about sqrt(3)
    assert np.median(e) == pytest.approx(0.2 / np.sqrt(3), rel=0.15)


def test_masks_and_bad_pixels_propagate(grids):
    src, dst = grids
    flux = np.ones(src.n_pixels)
    err = np.full(src.n_pixels, 0.1)
    bitmask = np.zeros(src.n_pixels, np.int64)
    bitmask[100] = 1 << 12
    err[200] = 0.0  # unusable source pixel
    _f, e, b = resample(flux, err, bitmask, source=src, target=dst, method="linear")
    W, _ = resampling_matrix(src, dst, "linear")
    uses = lambda i: np.asarray(W[:, i].todense()).ravel() > 0  # noqa: E731
    assert (b[uses(100)] & (1 << 12)).all() and not (b[~uses(100)] & (1 << 12)).any()
    assert np.isinf(e[uses(200)]).all()


def test_boss_onto_apogee_is_all_uncovered_and_bad_grid_lengths_raise():
    boss, apogee = instruments.get("boss"), instruments.get("apogee")
    _f, e, _b = resample(np.ones(boss.n_pixels), np.ones(boss.n_pixels), source=boss.grid, target=apogee.grid)
    assert np.isinf(e).all()  # BOSS ends at 10,400 Å, APOGEE starts at 15,100 Å
    with pytest.raises(InputDataError, match="source grid"):
        resample(np.ones(10), np.ones(10), source=boss.grid, target=apogee.grid)
    with pytest.raises(InputDataError, match="method"):
        resample(np.ones(boss.n_pixels), np.ones(boss.n_pixels), source=boss.grid, target=apogee.grid,
                 method="cubic")
