"""PreprocessConfig(continuum_weights="astronn"): astroNN 1.1.0's apogee_continuum, checked against
an independent re-typing of astroNN's algorithm (numpy's Chebyshev.fit per spectrum and detector,
w = 1/(σ²+1e-8)); the comparison with astroNN itself is in tests/bench/test_astronn_agreement.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from starlabels.data.synthetic import SyntheticGenerator
from starlabels.preprocess import PreprocessConfig, astronn_continuum, continuum_normalise
from starlabels.preprocess.astronn_continuum import astronn_continuum_normalise
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE
from starlabels.preprocess.masking import BAD_PIXEL_ERROR

CHIPS = ((246, 3274), (3585, 6080), (6344, 8335))


def astronn_reference(flux, error, bitmask, mask):
    """astroNN.apogee.apogee_continuum, re-typed: per spectrum and detector
    Chebyshev.fit(x=cont pixels, y=flux, w=1/(err²+1e-8), deg=2); negatives → 0; flagged → 1."""
    out, start = [], 0
    for a, b in CHIPS:
        n = b - a
        cm = mask[start : start + n]
        start += n
        f, e = flux[:, a:b].astype(float), error[:, a:b].astype(float)
        res = np.empty_like(f)
        for i in range(len(f)):
            ivar = 1.0 / (e[i] ** 2 + 1e-8)
            fit = np.polynomial.chebyshev.Chebyshev.fit(np.arange(n)[cm], f[i][cm], w=ivar[cm], deg=2)
            res[i] = f[i] / fit(np.arange(n))
        out.append(res)
    r = np.concatenate(out, axis=1)
    r[r < 0] = 0.0
    flagged = np.concatenate([bitmask[:, a:b] for a, b in CHIPS], axis=1) & DEFAULT_REJECT_VALUE
    r[flagged != 0] = 1.0
    return r


@pytest.fixture(scope="module")
def spectra():
    gen = SyntheticGenerator(seed=3)
    s = gen.simulate(12, snr=60.0, seed=4)
    mask = gen.continuum_pixels()
    return s, mask


def test_matches_astronn_algorithm(spectra):
    s, mask = spectra
    cfg = PreprocessConfig.from_mask(mask, continuum_weights="astronn")
    flux, err = cfg.apply(s.flux, s.error, s.bitmask)
    ref = astronn_reference(s.flux, s.error, s.bitmask, mask)
    np.testing.assert_allclose(flux, ref, rtol=2e-6, atol=2e-6)
    flagged = np.concatenate([s.bitmask[:, a:b] for a, b in CHIPS], axis=1) & DEFAULT_REJECT_VALUE
    assert flagged.any() and np.all(err[flagged != 0] == np.float32(BAD_PIXEL_ERROR))
    # and it differs from starlabels' own 1/σ² fit by far more than that
    own, _ = continuum_normalise(s.flux, s.error, s.bitmask, continuum_mask=mask)
    good = flagged == 0
    assert np.median(np.abs(own - ref)[good]) > 1e-5  # ≫ the 2e-6 agreement above


def test_gap_deleted_input_and_1d(spectra):
    s, mask = spectra
    full = astronn_continuum_normalise(s.flux, s.error, s.bitmask, continuum_mask=mask)[0]
    cut = lambda a: np.concatenate([a[:, x:y] for x, y in CHIPS], axis=1)  # noqa: E731
    short = astronn_continuum_normalise(cut(s.flux), cut(s.error), cut(s.bitmask), continuum_mask=mask)[0]
    np.testing.assert_allclose(full, short, rtol=1e-12, atol=1e-12)
    one = astronn_continuum_normalise(s.flux[2], s.error[2], s.bitmask[2], continuum_mask=mask)[0]
    np.testing.assert_allclose(one, full[2], rtol=1e-12, atol=1e-12)


def test_non_finite_pixels_are_left_out_and_filled(spectra):
    s, mask = spectra
    f = s.flux[:2].astype(np.float64).copy()
    f[0, 1000] = np.nan
    out, err = astronn_continuum_normalise(f, s.error[:2], continuum_mask=mask)
    assert np.all(np.isfinite(out)) and out[0, 1000 - 246] == 1.0 and err[0, 1000 - 246] == BAD_PIXEL_ERROR


def test_config_field():
    mask = np.zeros(7514, bool)
    mask[::10] = True
    cfg = PreprocessConfig.from_mask(mask, continuum_weights="astronn")
    back = PreprocessConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.continuum_weights == "astronn"
    assert PreprocessConfig().continuum_weights == "ivar"
    with pytest.raises(ValueError, match="continuum_weights"):
        PreprocessConfig.from_mask(mask, continuum_weights="sigma")
    with pytest.raises(ValueError, match="needs kind='continuum' and continuum_pixels"):
        PreprocessConfig(continuum_weights="astronn")
    with pytest.raises(ValueError, match="needs kind='continuum'"):
        PreprocessConfig(kind="raw", continuum_weights="astronn")


def test_astronn_continuum_normalize_is_the_deprecated_spelling(spectra):
    s, mask = spectra
    new = astronn_continuum_normalise(s.flux[:2], s.error[:2], s.bitmask[:2], continuum_mask=mask)
    with pytest.warns(DeprecationWarning, match="astronn_continuum_normalise"):
        old = astronn_continuum.astronn_continuum_normalize(s.flux[:2], s.error[:2], s.bitmask[:2],
                                                            continuum_mask=mask)
    np.testing.assert_array_equal(old[0], new[0])
    np.testing.assert_array_equal(old[1], new[1])


def test_narrow_flags_tested_for_a_bit_their_dtype_cannot_hold_give_what_int64_flags_give(spectra):
    """Catalog units gather flags as int16 where they fit; astroNN's continuum tested for bit 15 (32768,
    beyond int16) or 31 then ANDs in int64 — the same output as int64 flags, no OverflowError."""
    s, mask = spectra
    flags = s.bitmask.astype(np.int64)
    flags[:, ::97] |= 1 << 15
    narrow = flags.astype(np.int16)  # bit 15 is int16's sign bit: the same 16 bits
    for bits in ([15, 0], [31, 0]):
        got = astronn_continuum_normalise(s.flux, s.error, narrow, continuum_mask=mask, bits=bits)
        want = astronn_continuum_normalise(s.flux, s.error, narrow.astype(np.int64), continuum_mask=mask,
                                           bits=bits)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    errors_15 = astronn_continuum_normalise(s.flux, s.error, narrow, continuum_mask=mask, bits=[15])[1]
    assert (errors_15 == np.float32(BAD_PIXEL_ERROR)).any()  # bit 15 was tested, not dropped
