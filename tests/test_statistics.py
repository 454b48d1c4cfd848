"""σ_MAD against scipy's independent implementation and hand arithmetic."""

import numpy as np
import pytest
from scipy import stats

from starlabels.statistics import MAD_TO_SIGMA, sigma_mad


def test_sigma_mad_matches_scipy_and_hand_arithmetic():
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 0.7, size=(40, 9))
    expected = stats.median_abs_deviation(x, axis=0, scale="normal")
    # scipy's "normal" scale is 1/Φ⁻¹(3/4) = 1.482602…; ours rounds it to 1.4826
    np.testing.assert_allclose(sigma_mad(x, axis=0), expected, rtol=2e-6)
    # hand arithmetic: median of [1, 2, 3, 4, 100] is 3, |x − 3| = [2, 1, 0, 1, 97] → median 1
    assert sigma_mad(np.array([1.0, 2, 3, 4, 100])) == pytest.approx(MAD_TO_SIGMA)


def test_sigma_mad_ignores_non_finite_values_and_gives_nan_for_empty_slices():
    x = np.array([[1.0, np.nan, 3.0, np.inf, 2.0], [np.nan] * 5])
    out = sigma_mad(x, axis=1)
    assert out[0] == pytest.approx(MAD_TO_SIGMA * 1.0)  # finite values 1, 3, 2: median 2, MAD 1
    assert np.isnan(out[1])
    assert np.isnan(sigma_mad(np.array([1.0, np.nan]), ignore_nan=False))


def test_empty_slices_give_nan_without_warnings_or_touching_the_filters():
    """No warning to silence, so no warnings.catch_warnings (process-wide, not thread-safe)."""
    import warnings

    x = np.array([[np.nan, np.inf], [1.0, 2.0]])
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        by_row = sigma_mad(x, axis=1)
        whole = sigma_mad(np.full((3, 2), np.nan))
    assert caught == []
    assert np.isnan(by_row[0]) and by_row[1] == pytest.approx(MAD_TO_SIGMA * 0.5) and np.isnan(whole)
    assert list(warnings.filters) == filters_before
