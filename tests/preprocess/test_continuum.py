"""Continuum normalisation: batched fit vs per-spectrum chebfit, recovery, masks, errors, real data."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import chebyshev

from starlabels.errors import InputDataError, InputFileError
from starlabels.preprocess import continuum as cn
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, PIXMASK_BITS
from starlabels.preprocess.grids import APSTAR, ASPCAP, PAYNE, index_in, pixel_ranges
from starlabels.preprocess.masking import BAD_PIXEL_ERROR

BADPIX = 1 << PIXMASK_BITS["BADPIX"]
PERSIST_LOW = 1 << PIXMASK_BITS["PERSIST_LOW"]


def _damage(s: dict, seed: int = 1) -> np.ndarray:
    """Flag/NaN a few pixels of the synthetic spectra in place; returns the apStar bitmask."""
    rng = np.random.default_rng(seed)
    f, e = s["flux"], s["error"]
    bitmask = np.zeros(f.shape, dtype=np.int32)
    bitmask[rng.random(f.shape) < 0.03] |= BADPIX
    bitmask[rng.random(f.shape) < 0.03] |= PERSIST_LOW  # not a default reject bit
    cols = index_in(ASPCAP, "apstar")
    f[rng.random(f.shape) < 0.01] = np.nan
    e[:, cols[rng.choice(cols.size, 20)]] = 0.0
    e[:, cols[rng.choice(cols.size, 5)]] = -1.0
    e[:, cols[rng.choice(cols.size, 5)]] = np.inf
    return bitmask


def _reference(flux, error, bitmask, mask, degree):
    """Per-spectrum, per-detector reference with numpy's chebfit (w = 1/σ)."""
    fa, ea = flux[:, index_in(ASPCAP, "apstar")], error[:, index_in(ASPCAP, "apstar")]
    ba = bitmask[:, index_in(ASPCAP, "apstar")]
    n = fa.shape[0]
    coef = np.empty((n, 3, degree + 1))
    out = np.empty_like(fa)
    for i in range(n):
        with np.errstate(invalid="ignore"):
            good = np.isfinite(fa[i]) & np.isfinite(ea[i]) & (ea[i] > 0) & ((ba[i] & BADPIX) == 0)
        for d, sl in enumerate(ASPCAP.segment_slices):
            x = np.linspace(-1, 1, sl.stop - sl.start)
            use = good[sl] & mask[sl]
            coef[i, d] = chebyshev.chebfit(x[use], fa[i, sl][use], degree, w=1 / ea[i, sl][use])
            out[i, sl] = fa[i, sl] / chebyshev.chebval(x, coef[i, d])
        out[i, ~good] = 1.0
    return coef, out


@pytest.mark.parametrize("degree", [1, 2, 4])
def test_batched_fit_equals_per_spectrum_chebfit(synth, degree):
    s = synth.spectra(40, seed=degree, degree=degree, snr=80)  # 40 rows: several chunks
    bitmask = _damage(s)
    fit = cn.fit_continuum(s["flux"], s["error"], bitmask, continuum_mask=s["mask"], degree=degree)
    flux, _ = cn.continuum_normalise(s["flux"], s["error"], bitmask, s["mask"], degree)
    ref_coef, ref_flux = _reference(s["flux"], s["error"], bitmask, s["mask"], degree)
    np.testing.assert_allclose(fit.coefficients, ref_coef, rtol=1e-9, atol=1e-9 * np.abs(ref_coef).max())
    assert np.abs(flux - ref_flux).max() <= 1e-6
    assert fit.continuum.shape == flux.shape == (40, ASPCAP.n_pixels)


def test_known_polynomial_continuum_times_lines_is_recovered(synth):
    s = synth.spectra(6, seed=3, snr=None)  # noiseless: the continuum pixels are exactly line-free
    fit = cn.fit_continuum(s["flux"], s["error"], continuum_mask=s["mask"])
    np.testing.assert_allclose(fit.continuum, s["continuum"], rtol=1e-10)
    flux, err = cn.continuum_normalise(s["flux"], s["error"], continuum_mask=s["mask"])
    np.testing.assert_allclose(flux, s["absorption"], rtol=1e-10, atol=1e-12)
    ea = s["error"][:, index_in(ASPCAP, "apstar")]
    np.testing.assert_allclose(err, ea / s["continuum"], rtol=1e-10)


def test_noisy_continuum_is_recovered_to_the_noise_level(synth):
    s = synth.spectra(30, seed=4, snr=100)
    fit = cn.fit_continuum(s["flux"], s["error"], continuum_mask=s["mask"])
    rel = fit.continuum / s["continuum"] - 1
    # ~160 continuum pixels per detector at S/N 100: the fit is good to a few 1e-3
    assert np.abs(rel).max() < 0.01
    assert abs(np.median(rel)) < 1e-3


def test_without_a_mask_the_lines_pull_the_continuum_low(synth):
    s = synth.spectra(3, seed=5, snr=None)
    fit_all = cn.fit_continuum(s["flux"], s["error"])
    assert np.median(fit_all.continuum / s["continuum"]) < 0.999


def test_rejected_pixels_get_flux_one_and_the_bad_pixel_error(synth):
    s = synth.spectra(5, seed=6)
    bitmask = _damage(s)
    flux, err = cn.continuum_normalise(s["flux"], s["error"], bitmask, s["mask"])
    fa, ea = s["flux"][:, index_in(ASPCAP, "apstar")], s["error"][:, index_in(ASPCAP, "apstar")]
    ba = bitmask[:, index_in(ASPCAP, "apstar")]
    with np.errstate(invalid="ignore"):
        rejected = ~np.isfinite(fa) | ~np.isfinite(ea) | (ea <= 0) | ((ba & BADPIX) != 0)
    assert rejected.any() and (ba & PERSIST_LOW).any()
    assert np.all(flux[rejected] == 1.0)
    assert np.all(err[rejected] == BAD_PIXEL_ERROR)
    assert np.all(err[~rejected] < 1)  # S/N ≥ ~100: normalised errors are small
    assert np.isfinite(flux).all() and np.isfinite(err).all()
    # reject bits are configurable: PERSIST_LOW rejects when asked for (by name)
    flux2, err2 = cn.continuum_normalise(
        s["flux"], s["error"], bitmask, s["mask"], bits=["PERSIST_LOW", "BADPIX"]
    )
    persist = (ba & PERSIST_LOW) != 0
    assert np.all(flux2[persist] == 1.0) and np.all(err2[persist] == BAD_PIXEL_ERROR)
    assert np.any(flux[persist & ~rejected] != 1.0)


def test_aspcap_and_1d_input_give_the_same_result(synth):
    s = synth.spectra(4, seed=7)
    bitmask = _damage(s)
    idx = index_in(ASPCAP, "apstar")
    full = cn.continuum_normalise(s["flux"], s["error"], bitmask, s["mask"])
    small = cn.continuum_normalise(s["flux"][:, idx], s["error"][:, idx], bitmask[:, idx], s["mask"])
    one = cn.continuum_normalise(s["flux"][2], s["error"][2], bitmask[2], s["mask"])
    for a, b in zip(full, small, strict=True):
        np.testing.assert_array_equal(a, b)
    assert one[0].shape == (ASPCAP.n_pixels,)
    # a batch of one may round differently in BLAS: equal to rounding
    np.testing.assert_allclose(one[0], full[0][2], rtol=1e-12)
    np.testing.assert_allclose(one[1], full[1][2], rtol=1e-12)


def test_float32_input_gives_float32_output_close_to_float64(synth):
    s = synth.spectra(4, seed=8)
    f64, e64 = cn.continuum_normalise(s["flux"], s["error"], continuum_mask=s["mask"])
    f32, e32 = cn.continuum_normalise(
        s["flux"].astype(np.float32), s["error"].astype(np.float32), continuum_mask=s["mask"]
    )
    assert f64.dtype == np.float64 and f32.dtype == np.float32 and e32.dtype == np.float32
    np.testing.assert_allclose(f32, f64, rtol=1e-5)
    np.testing.assert_allclose(e32, e64, rtol=1e-5)


@pytest.mark.parametrize(
    "shape, match",
    [((2, 8000), "8000 pixels"), ((2, 3, APSTAR.n_pixels), "1-D .* or 2-D"), ((7214,), "7214 pixels")],
)
def test_wrong_shapes_raise_input_data_error(shape, match):
    with pytest.raises(InputDataError, match=match):
        cn.continuum_normalise(np.ones(shape), np.ones(shape))


def test_mismatched_arrays_raise_input_data_error():
    f = np.ones((2, APSTAR.n_pixels))
    with pytest.raises(InputDataError, match="error shape"):
        cn.continuum_normalise(f, np.ones((3, APSTAR.n_pixels)))
    with pytest.raises(InputDataError, match="bitmask shape"):
        cn.continuum_normalise(f, f, np.zeros((2, 10), dtype=int))
    with pytest.raises(InputDataError, match="dtype"):
        cn.continuum_normalise(f.astype(str), f)


def test_nan_only_spectrum_raises_naming_the_spectrum(synth):
    s = synth.spectra(3, seed=9)
    s["flux"][1] = np.nan
    with pytest.raises(InputDataError, match=r"spectrum 1, blue segment \(0 usable"):
        cn.continuum_normalise(s["flux"], s["error"], continuum_mask=s["mask"])


def test_all_masked_detector_raises_or_is_rejected(synth):
    s = synth.spectra(40, seed=10)
    bitmask = np.zeros(s["flux"].shape, dtype=np.int32)
    a0, a1 = pixel_ranges(APSTAR)[1]
    bitmask[33, a0:a1] = BADPIX  # row 33: in the second chunk, green detector
    with pytest.raises(InputDataError, match="spectrum 33, green segment") as info:
        cn.continuum_normalise(s["flux"], s["error"], bitmask, s["mask"])
    assert "blue" not in str(info.value) and "on_failure" in str(info.value)
    flux, err = cn.continuum_normalise(s["flux"], s["error"], bitmask, s["mask"], on_failure="reject")
    good, _ = cn.continuum_normalise(s["flux"], s["error"], None, s["mask"])
    green = ASPCAP.segment_slices[1]
    assert np.all(flux[33, green] == 1.0) and np.all(err[33, green] == BAD_PIXEL_ERROR)
    others = np.ones(ASPCAP.n_pixels, dtype=bool)
    others[green] = False
    np.testing.assert_array_equal(flux[33, others], good[33, others])
    np.testing.assert_array_equal(np.delete(flux, 33, 0), np.delete(good, 33, 0))
    fit = cn.fit_continuum(s["flux"], s["error"], bitmask, s["mask"], on_failure="reject")
    assert np.isnan(fit.coefficients[33, 1]).all() and np.isnan(fit.continuum[33, green]).all()
    assert fit.rejected[33, green].all()


def test_too_few_continuum_pixels_in_the_mask_raise(synth):
    s = synth.spectra(2, seed=11)
    mask = s["mask"].copy()
    mask[ASPCAP.segment_slices[2]] = False
    mask[ASPCAP.segment_slices[2].start + 5] = True  # one pixel cannot fix a quadratic
    with pytest.raises(InputDataError, match="red segment"):
        cn.continuum_normalise(s["flux"], s["error"], continuum_mask=mask)
    # a line (degree 1) through 2 pixels is possible
    mask[ASPCAP.segment_slices[2].start + 500] = True
    flux, _ = cn.continuum_normalise(s["flux"], s["error"], continuum_mask=mask, degree=1)
    assert np.isfinite(flux).all()


def test_bad_arguments_raise():
    f = np.ones((1, ASPCAP.n_pixels))
    with pytest.raises(InputDataError, match="degree"):
        cn.continuum_normalise(f, f, degree=-1)
    with pytest.raises(ValueError, match="on_failure"):
        cn.continuum_normalise(f, f, on_failure="ignore")
    with pytest.raises(InputDataError, match="mask_from_indices"):
        cn.continuum_normalise(f, f, continuum_mask=np.arange(10))
    with pytest.raises(InputDataError, match="unknown APOGEE_PIXMASK bit"):
        cn.continuum_normalise(f, f, np.zeros(f.shape, dtype=int), bits=["NOPE"])


# ------------------------------------------------------------------ properties


@settings(max_examples=25, deadline=None)
@given(
    scale=st.floats(1e-3, 1e4),
    coef=st.lists(st.floats(-0.3, 0.3), min_size=6, max_size=6),
)
def test_an_exact_polynomial_normalises_to_one_and_scale_drops_out(scale, coef):
    c = np.zeros((1, 3, 3))
    c[0, :, 0] = 1.0
    c[0, :, 1:] = np.reshape(coef, (3, 2))  # |c1| + |c2| ≤ 0.6 < 1: positive continuum
    cont = np.empty((1, ASPCAP.n_pixels))
    for d, sl in enumerate(ASPCAP.segment_slices):
        cont[0, sl] = chebyshev.chebval(np.linspace(-1, 1, sl.stop - sl.start), c[0, d])
    err = 0.01 * cont
    mask = np.zeros(ASPCAP.n_pixels, dtype=bool)
    mask[::37] = True
    flux, e = cn.continuum_normalise(scale * cont, scale * err, continuum_mask=mask)
    np.testing.assert_allclose(flux, 1.0, atol=1e-9)
    np.testing.assert_allclose(e, 0.01, rtol=1e-8)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), frac_bad=st.floats(0, 0.9))
def test_output_is_never_nan_for_any_damage(seed, frac_bad):
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.5, 2, (2, ASPCAP.n_pixels))
    e = rng.uniform(0.01, 0.1, f.shape)
    bad = rng.random(f.shape) < frac_bad
    f[bad] = rng.choice([np.nan, np.inf, -np.inf], bad.sum())
    e[rng.random(f.shape) < frac_bad / 2] = np.nan
    flux, err = cn.continuum_normalise(f, e, continuum_mask=rng.random(ASPCAP.n_pixels) < 0.1,
                                       on_failure="reject")
    assert np.isfinite(flux).all() and np.isfinite(err).all()
    assert (err > 0).all()


# ------------------------------------------------------------------ continuum masks


def test_load_continuum_mask_from_npy_npz_and_other_grids(tmp_path):
    rng = np.random.default_rng(0)
    mask = rng.random(ASPCAP.n_pixels) < 0.1
    np.save(tmp_path / "m.npy", mask)
    np.testing.assert_array_equal(cn.load_continuum_mask(tmp_path / "m.npy"), mask)
    np.savez(tmp_path / "one.npz", anything=mask.astype(np.uint8))
    np.testing.assert_array_equal(cn.load_continuum_mask(tmp_path / "one.npz"), mask)
    np.savez(tmp_path / "two.npz", a=mask, b=~mask)
    with pytest.raises(InputFileError, match="several arrays"):
        cn.load_continuum_mask(tmp_path / "two.npz")
    np.testing.assert_array_equal(cn.load_continuum_mask(tmp_path / "two.npz", key="b"), ~mask)
    # a Payne-grid (7214) mask lands on the same apStar pixels of the ASPCAP grid
    payne = rng.random(PAYNE.n_pixels) < 0.1
    np.save(tmp_path / "p.npy", payne)
    got = cn.load_continuum_mask(tmp_path / "p.npy")
    assert set(index_in(ASPCAP, "apstar")[got]) == set(index_in(PAYNE, "apstar")[payne])


@pytest.mark.parametrize(
    "content, match",
    [(np.ones(100, dtype=bool), "100 pixels"), (np.full(ASPCAP.n_pixels, 0.5), "boolean"),
     (np.ones((2, ASPCAP.n_pixels), dtype=bool), "1-D")],
)
def test_bad_mask_files_raise_input_file_error(tmp_path, content, match):
    np.save(tmp_path / "bad.npy", content)
    with pytest.raises(InputFileError, match=match) as info:
        cn.load_continuum_mask(tmp_path / "bad.npy")
    assert info.value.path.endswith("bad.npy")


def test_missing_or_garbage_mask_file_raises(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        cn.load_continuum_mask(tmp_path / "nope.npy")
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(InputFileError, match=r"continuum mask: not a readable \.npy/\.npz file"):
        cn.load_continuum_mask(tmp_path / "text.npy")


def test_mask_from_indices():
    m = cn.mask_from_indices([0, 5, 7513])
    assert m.shape == (ASPCAP.n_pixels,) and np.flatnonzero(m).tolist() == [0, 5, 7513]
    with pytest.raises(InputDataError):
        cn.mask_from_indices([7514])


# ------------------------------------------------------------------ pseudo-continuum and selection


def test_pseudo_normalise_reaches_the_upper_envelope(synth):
    s = synth.spectra(8, seed=12, snr=300, n_lines=600)
    flux, _ = cn.pseudo_normalise(s["flux"], s["error"])
    line_free = s["absorption"] > 0.9999
    assert abs(np.median(flux[line_free]) - 1) < 3e-3
    plain = cn.fit_continuum(s["flux"], s["error"]).continuum  # unclipped: biased low
    assert np.median(plain / s["continuum"]) < np.median(
        s["flux"][:, index_in(ASPCAP, "apstar")] / flux / s["continuum"]
    )


def _labelled_set(synth, n, seed):
    """Spectra whose line depths follow two labels, plus label-independent lines."""
    rng = np.random.default_rng(seed)
    none = np.zeros(ASPCAP.n_pixels, dtype=bool)
    tau = np.stack([synth.line_profile(250, rng, none) for _ in range(3)])
    labels = np.column_stack([rng.normal(4800, 300, n), rng.normal(-0.2, 0.3, n)])
    z = (labels - labels.mean(0)) / labels.std(0)
    depth = np.column_stack([1 + 0.3 * z[:, 0], 1 + 0.3 * z[:, 1], np.ones(n)])
    absorption = np.exp(-depth @ tau)
    s = synth.spectra(n, seed=seed, snr=150, continuum_mask=none, n_lines=0)
    f = s["continuum"] * absorption + s["error"][:, index_in(ASPCAP, "apstar")] * rng.standard_normal(
        absorption.shape
    )
    line_free = tau.max(0) < 1e-3
    return f, s["error"][:, index_in(ASPCAP, "apstar")], labels, line_free


def test_select_continuum_pixels_finds_line_free_pixels(synth):
    f, e, labels, line_free = _labelled_set(synth, 120, seed=13)
    assert 0.2 < line_free.mean() < 0.6  # a random choice would be mostly wrong
    mask = cn.select_continuum_pixels(f, e, labels, fraction=0.05)
    per_det = [mask[sl].sum() for sl in ASPCAP.segment_slices]
    expected = [round(0.05 * (sl.stop - sl.start)) for sl in ASPCAP.segment_slices]
    assert per_det == expected
    assert line_free[mask].mean() > 0.95
    # the selected pixels normalise the spectra well
    flux, err = cn.continuum_normalise(f, e, continuum_mask=mask)
    assert abs(np.median(flux[:, line_free]) - 1) < 5e-3
    # already-normalised input skips the pseudo-continuum step and agrees
    again = cn.select_continuum_pixels(flux, err, labels, fraction=0.05, normalised=True)
    assert line_free[again].mean() > 0.95
    assert (again & mask).sum() > 0.5 * mask.sum()


def test_select_continuum_pixels_ignores_missing_labels_and_validates(synth):
    f, e, labels, _ = _labelled_set(synth, 60, seed=14)
    base = cn.select_continuum_pixels(f, e, labels, n_per_detector=40)
    assert base.sum() == 120
    junk = np.random.default_rng(0).uniform(0, 5, (5, f.shape[1]))
    lab = np.vstack([labels, np.full((5, 2), -9999.0)])
    lab[-1, 0] = np.nan
    again = cn.select_continuum_pixels(
        np.vstack([f, junk]), np.vstack([e, e[:5]]), lab, n_per_detector=40
    )
    np.testing.assert_array_equal(again, base)
    with pytest.raises(InputDataError, match="labels must be"):
        cn.select_continuum_pixels(f, e, labels[:10])
    with pytest.raises(InputDataError, match="constant"):
        cn.select_continuum_pixels(f, e, np.column_stack([labels[:, 0], np.ones(len(f))]))
    with pytest.warns(UserWarning, match="requested pixels"):
        cn.select_continuum_pixels(f, e, labels, n_per_detector=2000, max_offset=0.01)


# ------------------------------------------------------------------ real data


def test_real_apstar_with_the_dr17_mask(shared_data):
    from starlabels import io
    spec = io.read_apstar(shared_data / "real" / "apStar-dr17-2M19485057+5005279.fits")
    mask = cn.load_continuum_mask(shared_data / "apogee" / "continuum_mask_dr17_7514.npy")
    assert mask.sum() == 532
    flux, err = cn.continuum_normalise(spec.flux, spec.error, spec.bitmask, mask)
    assert flux.shape == (ASPCAP.n_pixels,)
    assert np.isfinite(flux).all() and np.isfinite(err).all()
    # its NaN pixels (edges and gaps) are outside the ASPCAP grid; flagged pixels are inside
    assert (~np.isfinite(spec.flux)).sum() > 0
    flagged = (spec.bitmask[index_in(ASPCAP, "apstar")] & DEFAULT_REJECT_VALUE) != 0
    assert flagged.sum() > 100
    assert np.all(flux[flagged] == 1.0) and np.all(err[flagged] == BAD_PIXEL_ERROR)
    usable = mask & (err < BAD_PIXEL_ERROR)
    for sl in ASPCAP.segment_slices:
        m = usable[sl]
        assert abs(np.median(flux[sl][m]) - 1) < 0.01
    assert abs(np.median(flux[usable]) - 1) < 0.01
    # the absorption lines are below the continuum
    assert np.median(flux[~mask & (err < BAD_PIXEL_ERROR)]) < 1


def test_tiny_errors_do_not_overflow_the_weights(synth):
    s = synth.spectra(3, seed=15)
    ref, _ = cn.continuum_normalise(s["flux"], s["error"], continuum_mask=s["mask"])
    # 1/σ² would overflow float64 (errors ≥ BAD_PIXEL_ERROR are rejected, so no huge scale)
    flux, err = cn.continuum_normalise(s["flux"], s["error"] * 1e-170, continuum_mask=s["mask"])
    np.testing.assert_allclose(flux, ref, rtol=1e-9)
    assert np.isfinite(err).all() and (err > 0).all()


def test_float32_overflow_is_rejected_not_inf():
    f = np.full((1, ASPCAP.n_pixels), 0.5, dtype=np.float32)
    e = np.full_like(f, 0.01)
    mask = np.zeros(ASPCAP.n_pixels, dtype=bool)
    mask[::10] = True
    f[0, 5] = 3e38  # not a continuum pixel; 3e38 / 0.5 overflows float32
    flux, err = cn.continuum_normalise(f, e, continuum_mask=mask)
    assert flux.dtype == np.float32
    assert np.isfinite(flux).all() and np.isfinite(err).all()
    assert flux[0, 5] == 1.0 and err[0, 5] == BAD_PIXEL_ERROR
    np.testing.assert_allclose(np.delete(flux[0], 5), 1.0, rtol=1e-6)


def test_the_american_spellings_still_work_with_a_deprecation_warning(synth):
    s = synth.spectra(24, seed=8)
    flux, err = cn.continuum_normalise(s["flux"], s["error"], continuum_mask=s["mask"])
    with pytest.warns(DeprecationWarning, match="continuum_normalise"):
        old = cn.continuum_normalize(s["flux"], s["error"], continuum_mask=s["mask"])
    np.testing.assert_array_equal(old[0], flux)
    np.testing.assert_array_equal(old[1], err)
    new = cn.pseudo_normalise(s["flux"], s["error"])
    with pytest.warns(DeprecationWarning, match="pseudo_normalise"):
        old = cn.pseudo_normalize(s["flux"], s["error"])
    np.testing.assert_array_equal(old[0], new[0])
    labels = np.random.default_rng(0).normal(size=(24, 2))
    picked = cn.select_continuum_pixels(flux, err, labels, normalised=True, max_offset=None, fraction=0.05)
    with pytest.warns(DeprecationWarning, match="normalised="):
        old = cn.select_continuum_pixels(flux, err, labels, normalized=True, max_offset=None, fraction=0.05)
    np.testing.assert_array_equal(old, picked)
    with pytest.raises(TypeError, match="normalisd"):
        cn.select_continuum_pixels(flux, err, labels, normalisd=True)


def test_results_do_not_depend_on_how_many_rows_are_fitted_at_once(synth, monkeypatch):
    """The fits run on blocks of chunks (fewer NumPy calls) but their matrix products per chunk, so
    the numbers are the same bit for bit whatever the block size (and as the per-chunk original)."""
    from starlabels.preprocess import continuum_segments

    s = synth.spectra(70, seed=9, snr=60)  # several chunks and a ragged last one
    bitmask = _damage(s)
    runs = []
    for chunks in (1, 3, 16):
        monkeypatch.setattr(continuum_segments, "FIT_BLOCK_CHUNKS", chunks)
        fit = cn.fit_continuum(s["flux"], s["error"], bitmask, continuum_mask=s["mask"], on_failure="reject")
        flux, err = cn.continuum_normalise(s["flux"], s["error"], bitmask, s["mask"], on_failure="reject")
        pseudo = cn.pseudo_normalise(s["flux"], s["error"], bitmask, on_failure="reject")
        runs.append((*fit, flux, err, *pseudo))
    for other in runs[1:]:
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_reject_bit_31_on_narrow_flags_gives_what_int64_flags_give(synth):
    """A bitmask definition may use bit 31, which an int32 (or int16) flag array cannot hold as a
    positive NumPy scalar: the AND is then done in int64 (``core.bitmask.testable``) — the same pixels
    rejected as with int64 flags, no OverflowError — and narrow flags are not copied otherwise."""
    from starlabels.core.bitmask import PixelBitmask

    s = synth.spectra(3, seed=9)
    rng = np.random.default_rng(9)
    flags64 = np.zeros(s["flux"].shape, np.int64)
    flags64[rng.random(flags64.shape) < 0.05] = 2**31 + 1  # as unsigned 32-bit flags read into int64
    flags32 = flags64.astype(np.uint32).view(np.int32)  # the same 32 bits as int32 (bit 31 = sign)
    flags32[rng.random(flags32.shape) < 0.05] |= 2  # bit 1, set on both
    flags64 |= flags32.astype(np.int64) & 2
    bm = PixelBitmask("flags31", {"LOW": 0, "ONE": 1, "TOP": 31}, default_reject=("TOP",))
    for flags in (flags32, flags32.astype(np.int16)):  # int16: bit 31 is beyond it
        wide_flags = flags.astype(np.int64)
        np.testing.assert_array_equal(bm.rejected(flags), bm.rejected(wide_flags))
        normalised = cn.continuum_normalise(s["flux"], s["error"], flags, s["mask"], bitmask_def=bm)
        wide = cn.continuum_normalise(s["flux"], s["error"], wide_flags, s["mask"], bitmask_def=bm)
        np.testing.assert_array_equal(normalised[0], wide[0])
        np.testing.assert_array_equal(normalised[1], wide[1])
    np.testing.assert_array_equal(bm.rejected(flags32), bm.rejected(flags64))
    assert bm.rejected(flags32).sum() == (flags64 >= 2**31).sum() > 0
    from starlabels.core.bitmask import testable

    assert testable(flags32, 2) is flags32 and testable(flags32, 2**31).dtype == np.int64
