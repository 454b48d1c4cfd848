"""Noise augmentation: SNR degradation checked against its definition, pixel by pixel."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.data.augment import NoiseAugmentation, degrade_snr, spectrum_snr
from starlabels.errors import InputDataError


def _spectra(n=400, p=3000, snr=300.0, seed=0):
    rng = np.random.default_rng(seed)
    flux = (1000.0 * (1 + 0.2 * rng.random((n, p)))).astype(np.float32)
    error = (flux / snr).astype(np.float32)
    return flux, error


def test_degraded_spectra_reach_the_target_snr_with_the_right_noise():
    flux, error = _spectra()
    target = np.linspace(20, 150, len(flux))
    f2, e2 = degrade_snr(flux, error, target, np.random.default_rng(1))
    k = 300.0 / target
    # errors scaled by k exactly (the error spectrum keeps its shape), SNR = target
    np.testing.assert_allclose(e2 / error, np.broadcast_to(k[:, None], flux.shape), rtol=1e-5)
    np.testing.assert_allclose(spectrum_snr(f2, e2), target, rtol=0.02)
    # the added noise, in units of the original error, has variance k² − 1 (3000 pixels a row)
    z = (f2 - flux) / error
    np.testing.assert_allclose(z.std(axis=1), np.sqrt(k**2 - 1), rtol=0.05)
    assert abs(float(z.mean())) < 0.01
    assert f2.dtype == flux.dtype and e2.dtype == error.dtype


def test_spectra_at_or_below_the_target_and_unusable_pixels_are_untouched():
    flux, error = _spectra(n=4, p=500)
    bitmask = np.zeros(flux.shape, np.int32)
    flux[0, 10] = np.nan
    error[1, 20] = 1e10          # APOGEE's dead-pixel placeholder error
    bitmask[2, 30] = 1 << 12     # a rejected bit
    bitmask[2, 31] = 1 << 9      # an informational bit: degraded like any pixel
    target = np.array([30.0, 30.0, 30.0, np.inf])
    f2, e2 = degrade_snr(flux, error, target, np.random.default_rng(0), bitmask=bitmask, reject_bits=[12])
    assert np.isnan(f2[0, 10]) and e2[0, 10] == error[0, 10]
    assert f2[1, 20] == flux[1, 20] and e2[1, 20] == np.float32(1e10)
    assert f2[2, 30] == flux[2, 30] and e2[2, 30] == error[2, 30]
    assert f2[2, 31] != flux[2, 31]
    np.testing.assert_array_equal(f2[3], flux[3])  # inf target: unchanged
    # asking for a higher SNR than the spectrum has changes nothing
    f3, e3 = degrade_snr(flux, error, 1000.0, np.random.default_rng(0))
    np.testing.assert_array_equal(f3[1:], flux[1:])
    np.testing.assert_array_equal(e3, error)
    # the inputs are not modified
    assert np.isnan(flux[0, 10]) and error[1, 20] == np.float32(1e10)


def test_bad_arguments_are_clear_errors():
    flux, error = _spectra(n=2, p=10)
    with pytest.raises(InputDataError, match="> 0"):
        degrade_snr(flux, error, 0.0, np.random.default_rng(0))
    with pytest.raises(InputDataError, match="one shape"):
        degrade_snr(flux, error[:, :5], 10.0, np.random.default_rng(0))
    with pytest.raises(InputDataError, match="lo <= hi"):
        NoiseAugmentation(snr=(50, 10))
    with pytest.raises(InputDataError, match="fraction"):
        NoiseAugmentation(snr=(10, 50), fraction=1.5)


def test_targets_are_log_uniform_on_the_chosen_fraction_of_rows():
    aug = NoiseAugmentation.from_value({"snr": [10, 1000], "fraction": 0.25})
    t = aug.targets(40000, np.random.default_rng(3))
    finite = t[np.isfinite(t)]
    assert abs(len(finite) / len(t) - 0.25) < 0.01
    assert finite.min() >= 10 and finite.max() <= 1000
    # log-uniform: each decade holds half of the draws
    assert abs(np.mean(finite < 100) - 0.5) < 0.02
    assert NoiseAugmentation.from_value((10, 20)) == NoiseAugmentation(snr=(10.0, 20.0))
    assert NoiseAugmentation.from_value(None) is None
    assert NoiseAugmentation.from_value(aug.to_dict()) == aug
