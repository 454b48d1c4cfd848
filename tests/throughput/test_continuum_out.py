"""continuum_normalise(out=...): caller-owned output buffers give the same numbers (issue 17)."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.errors import InputDataError
from starlabels.preprocess.continuum import continuum_normalise, output_grid


def _spectra(n: int, dtype=np.float64):
    rng = np.random.default_rng(0)
    p = 8575  # apStar grid
    flux = (1000 + 50 * rng.standard_normal((n, p))).astype(dtype)
    error = np.full((n, p), 10.0, dtype)
    flux[0, 100:140] = np.nan
    return flux, error


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_out_buffers_are_filled_and_returned_with_identical_numbers(dtype):
    flux, error = _spectra(5, dtype)
    ref_f, ref_e = continuum_normalise(flux, error)
    n_out = output_grid("apstar").n_pixels
    buf_f = np.full((5, n_out), -7.0, dtype)
    buf_e = np.full((5, n_out), -7.0, dtype)
    for _ in range(2):  # reuse: the second call overwrites the first's results
        got_f, got_e = continuum_normalise(flux, error, out=(buf_f, buf_e))
        assert got_f is buf_f and got_e is buf_e
        np.testing.assert_array_equal(got_f, ref_f)
        np.testing.assert_array_equal(got_e, ref_e)


def test_out_buffers_are_checked():
    flux, error = _spectra(2)
    n_out = output_grid("apstar").n_pixels
    good = np.empty((2, n_out))
    with pytest.raises(InputDataError, match="shaped"):
        continuum_normalise(flux, error, out=(np.empty((3, n_out)), good))
    with pytest.raises(InputDataError, match="float64"):
        continuum_normalise(flux, error, out=(np.empty((2, n_out), np.float32), good))
    with pytest.raises(InputDataError, match="overlap"):
        continuum_normalise(flux, error, out=(good, good))
    with pytest.raises(InputDataError, match="pair"):
        continuum_normalise(flux, error, out=good[0])
    with pytest.raises(InputDataError, match="2-D"):
        continuum_normalise(flux[0], error[0], out=(good, np.empty((2, n_out))))
