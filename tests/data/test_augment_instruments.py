"""Noise augmentation on another instrument's bitmask: BOSS SPPIXMASK bits decide the usable pixels."""

from __future__ import annotations

import numpy as np

from starlabels import instruments
from starlabels.data.augment import NoiseAugmentation, degrade_snr, spectrum_snr


def test_boss_bits_select_the_pixels_left_alone():
    sppix = instruments.get("boss").bitmask()
    rng = np.random.default_rng(0)
    flux = (100.0 * (1 + 0.1 * rng.random((20, 500)))).astype(np.float32)
    error = (flux / 200.0).astype(np.float32)
    bitmask = np.zeros(flux.shape, np.int64)
    bitmask[:, :50] = sppix.value(["BRIGHTSKY"])  # rejected by default
    bitmask[:, 50:100] = sppix.value(["PARTIALREJECT"])  # not rejected by default
    # BRIGHTSKY (bit 23) is no APOGEE_PIXMASK bit at all: with the APOGEE default nothing is held back
    f_apogee, _ = degrade_snr(flux, error, 50.0, np.random.default_rng(1), bitmask=bitmask)
    assert np.all(f_apogee[:, :50] != flux[:, :50])
    f, e = degrade_snr(flux, error, 50.0, np.random.default_rng(1), bitmask=bitmask, bitmask_def=sppix)
    np.testing.assert_array_equal(f[:, :50], flux[:, :50])  # rejected: passed through
    np.testing.assert_array_equal(e[:, :50], error[:, :50])
    np.testing.assert_allclose(e[:, 50:] / error[:, 50:], 4.0, rtol=1e-5)  # 200 → 50: errors × 4
    np.testing.assert_allclose(spectrum_snr(f, e, bitmask, bitmask_def=sppix), 50.0, rtol=0.03)
    # explicit reject bits by name, and the callable used by the trainer
    f2, _ = degrade_snr(flux, error, 50.0, np.random.default_rng(1), bitmask=bitmask,
                        reject_bits=["PARTIALREJECT"], bitmask_def=sppix)
    np.testing.assert_array_equal(f2[:, 50:100], flux[:, 50:100])
    assert np.all(f2[:, :50] != flux[:, :50])
    aug = NoiseAugmentation(snr=(40.0, 60.0))
    f3, _ = aug(flux, error, np.random.default_rng(2), bitmask, bitmask_def=sppix)
    np.testing.assert_array_equal(f3[:, :50], flux[:, :50])
    # σ = inf (BOSS ivar = 0) pixels are never usable and stay as they are
    error_inf = error.copy()
    error_inf[:, 200:210] = np.inf
    f4, e4 = degrade_snr(flux, error_inf, 50.0, np.random.default_rng(3), bitmask_def=sppix)
    np.testing.assert_array_equal(f4[:, 200:210], flux[:, 200:210])
    assert np.all(np.isinf(e4[:, 200:210]))
