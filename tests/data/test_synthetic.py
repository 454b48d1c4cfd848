"""Synthetic generator: label responses, noise model, defect flags, reproducibility, FITS round trip."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.data.synthetic import (
    BAD_ERROR,
    SyntheticGenerator,
    air_to_vacuum,
    brackett_wavelength,
    write_apstar_files,
    write_label_catalog,
)
from starlabels.errors import InputDataError
from starlabels.preprocess import grids
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, PIXMASK_BITS, bad_pixels

BIT = {k: 1 << v for k, v in PIXMASK_BITS.items()}


@pytest.fixture(scope="module")
def gen() -> SyntheticGenerator:
    return SyntheticGenerator(seed=0)


def _ref_labels(gen, n=1, teff=4750.0, logg=2.5, feh=0.0):
    lab = np.zeros((n, len(gen.label_names)))
    lab[:, 0], lab[:, 1], lab[:, 2] = teff, logg, feh
    return lab


def _isolated_line(gen, element, gap=1.0):
    """Strongest line of ``element`` with no line of another species within ``gap`` Å."""
    wl, sp = gen.lines["wavelength"], gen.line_element()
    other = np.sort(wl[sp != element])
    own = np.flatnonzero(sp == element)
    pos = np.searchsorted(other, wl[own])
    dist = np.minimum(np.abs(wl[own] - other[np.clip(pos - 1, 0, len(other) - 1)]),
                      np.abs(other[np.clip(pos, 0, len(other) - 1)] - wl[own]))
    ok = own[dist > gap]
    # must fall on a detector pixel
    pix = np.rint((np.log10(wl[ok]) - grids.APSTAR_CRVAL1) / grids.APSTAR_CDELT1).astype(int)
    on = np.zeros(len(ok), bool)
    for a, b in grids.APSTAR_DETECTOR_SEGMENTS:
        on |= (pix >= a + 5) & (pix < b - 5)
    ok, pix = ok[on], pix[on]
    best = np.argmax(gen.lines["log_strength"][ok])
    return ok[best], pix[best]


def test_wavelength_helpers():
    # Brackett 11-4 and 13-4 vacuum wavelengths (Å) as used by APOGEE
    np.testing.assert_allclose(brackett_wavelength([11, 13]), [16811.1, 16113.7], atol=0.5)
    # air -> vacuum adds n-1 ~ 2.7e-4 in the H band (Mg I 15740.7 air -> 15745.0 vac)
    np.testing.assert_allclose(air_to_vacuum(15740.72), 15745.02, atol=0.05)


@pytest.mark.parametrize("element", ["FE", "MG", "AL", "K", "CA", "SI", "C", "N", "O", "TI", "NI", "MN"])
def test_line_depth_follows_own_abundance_only(gen, element):
    _, pix = _isolated_line(gen, element)
    col = 2 if element == "FE" else gen.label_names.index(f"{element}_FE")
    steps = np.linspace(-0.5, 0.8, 6)
    lab = _ref_labels(gen, len(steps))
    lab[:, col] = steps
    depth = 1.0 - gen.line_spectrum(lab)[:, pix]
    assert np.all(np.diff(depth) > 0), depth
    own_change = depth[-1] - depth[0]
    assert own_change > 0.01
    # all *other* X_FE labels +0.5 dex: this line's depth barely moves
    base = _ref_labels(gen, 2)
    others = [j for j in range(3, len(gen.label_names)) if j != col]
    base[1, others] += 0.5
    d_other = np.abs(np.diff(1.0 - gen.line_spectrum(base)[:, pix]))[0]
    assert d_other < 0.02 * own_change, (element, d_other, own_change)


def test_temperature_and_gravity_responses(gen):
    wl = gen.wavelength
    br11 = int(np.argmin(np.abs(wl - brackett_wavelength(11))))
    co_head = int(np.argmin(np.abs(wl - 15582.0 - 0.045 * 4)))  # a CO 3-0 line near the head
    teff = np.array([4000.0, 4800.0, 5600.0, 6400.0])
    lab = _ref_labels(gen, 4, logg=4.4)
    lab[:, 0] = teff
    spec = gen.line_spectrum(lab)
    assert np.all(np.diff(1 - spec[:, br11]) > 0)  # hydrogen grows with Teff
    assert np.all(np.diff(1 - spec[:, co_head]) < 0)  # CO fades with Teff
    # hydrogen wings broaden with log g: equivalent width within ±30 Å of Br11
    lab = _ref_labels(gen, 2, teff=6000.0)
    lab[:, 1] = [2.5, 4.5]
    spec = gen.line_spectrum(lab)
    win = np.abs(wl - brackett_wavelength(11)) < 30
    ew = (1 - spec[:, win]).sum(axis=1)
    assert ew[1] > 1.3 * ew[0]


def test_noise_matches_error_array(gen):
    snr = np.array([30.0, 60.0, 100.0, 200.0] * 5)
    s = gen.generate(gen.sample_labels(len(snr), 1, "mixed"), snr, rng=2)
    good = s.bitmask == 0
    z = (s.flux - s.clean_flux) / s.error
    assert abs(z[good].std() - 1.0) < 0.01 and abs(z[good].mean()) < 0.01
    det = np.zeros(s.flux.shape[1], bool)
    for a, b in grids.APSTAR_DETECTOR_SEGMENTS:
        det[a:b] = True
    # the error is what the requested SNR implies: median S/N over detector pixels == snr
    ratio = np.where(~bad_pixels(s.bitmask), s.clean_flux / s.error, np.nan)[:, det]
    np.testing.assert_allclose(np.nanmedian(ratio, axis=1), snr, rtol=0.02)
    # each star's empirical noise on good pixels also scales with 1/snr
    per_star = np.array([z[k][good[k]].std() for k in range(len(snr))])
    assert np.all(np.abs(per_star - 1) < 0.05)
    np.testing.assert_array_equal(s.meta["SNR"], snr)
    assert 50 < np.median(s.flux[:, det]) < 3000


def test_defects_are_flagged(gen):
    s = gen.generate(gen.sample_labels(25, 3), 100.0, rng=4)
    d, m = s.defects, s.bitmask
    gap = ~np.isin(np.arange(m.shape[1]), grids.index_in(grids.ASPCAP, "apstar"))
    assert np.all(d["gap"][:, gap]) and not d["gap"][:, ~gap].any()
    assert np.all(s.flux[:, gap] == 0) and np.all(m[:, gap] & BIT["BADPIX"])
    assert np.all(s.error[:, gap] == BAD_ERROR)
    for kind, bit in (("badpix", "BADPIX"), ("cosmic", "CRPIX"), ("sky", "SIG_SKYLINE")):
        assert d[kind].any(), kind
        assert np.all(m[d[kind]] & BIT[bit]), kind
    pers = m & (BIT["PERSIST_LOW"] | BIT["PERSIST_MED"] | BIT["PERSIST_HIGH"])
    assert np.array_equal(pers != 0, d["persistence"])
    # no flag without a defect
    any_defect = np.logical_or.reduce([d[k] for k in d])
    assert np.all(m[~any_defect] == 0)
    # the corruption is real: cosmic rays are spikes, bad pixels carry huge errors
    cr = d["cosmic"] & ~d["badpix"] & ~d["gap"] & ~d["sky"]
    assert np.all((s.flux - s.clean_flux)[cr] > 5 * s.error[cr])
    assert np.all(s.error[d["badpix"]] == BAD_ERROR)
    # and every pixel more than 6σ off the truth is flagged (rejected, or persistence)
    off = np.abs(s.flux - s.clean_flux) > 6 * s.error
    assert np.all(bad_pixels(m)[off] | (pers[off] != 0))
    # sky lines land where the sky is, shifted by -VHELIO into the star's frame
    k = int(np.argmax(np.abs(s.meta["VHELIO"])))
    v = -s.meta["VHELIO"][k]
    centre = np.log10(gen.sky_wavelength * (1 + v / 299792.458))
    centre_pix = np.rint((centre - grids.APSTAR_CRVAL1) / grids.APSTAR_CDELT1).astype(int)
    on_det = ~gap[np.clip(centre_pix, 0, len(gap) - 1)]
    assert np.all(d["sky"][k, centre_pix[on_det]])


def test_reproducible_with_seed(gen):
    a = gen.simulate(4, snr=80, seed=11)
    b = gen.simulate(4, snr=80, seed=11)
    for name in ("flux", "error", "bitmask", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert list(a.meta["APOGEE_ID"]) == list(b.meta["APOGEE_ID"])
    c = gen.simulate(4, snr=80, seed=12)
    assert not np.array_equal(a.flux, c.flux)
    other = SyntheticGenerator(seed=1)
    assert other.lines.shape != gen.lines.shape or not np.array_equal(other.lines, gen.lines)
    np.testing.assert_array_equal(SyntheticGenerator(seed=0).lines, gen.lines)


def test_masks_for_networks(gen):
    cont = gen.continuum_pixels("aspcap")
    assert cont.shape == (7514,) and 0.03 < cont.mean() < 0.3
    # independent check: random labels anywhere in the box never absorb > 0.1 % there
    rng = np.random.default_rng(5)
    n = 24
    lab = np.column_stack([rng.uniform(3500, 7000, n), rng.uniform(0, 5.2, n), rng.uniform(-2, 0.5, n),
                           rng.uniform(-0.5, 0.8, (n, len(gen.elements)))])
    lab[:4, 0], lab[:4, 3:] = 3500.0, 0.8  # the strongest-line corner
    depth = 1 - grids.convert(gen.line_spectrum(lab), "apstar", "aspcap")
    assert depth[:, cont].max() < 1e-3
    assert depth[:, ~cont].max() > 0.5
    names, win = gen.element_windows("aspcap")
    assert names[0] == "FE" and names[1:] == gen.elements and win.shape == (len(names), 7514)
    aspcap_pos = {int(p): k for k, p in enumerate(grids.index_in(grids.ASPCAP, "apstar"))}
    for el in ("MG", "AL", "K"):
        _, pix = _isolated_line(gen, el)
        e = names.index(el)
        assert win[e, aspcap_pos[pix]]
        assert not cont[aspcap_pos[pix]]
    # windows are specific: any two share few pixels (blends only); none touches the continuum
    inter = (win[:, None, :] & win[None, :, :]).sum(-1)
    union = (win[:, None, :] | win[None, :, :]).sum(-1)
    jaccard = inter / union
    np.fill_diagonal(jaccard, 0.0)
    assert jaccard.max() < 0.15
    assert not (win & cont[None, :]).any()
    assert gen.element_windows("payne")[1].shape == (len(names), 7214)


def test_visits_combination(gen):
    s = gen.generate(_ref_labels(gen, 3), 120.0, rng=6, n_visits=3)
    v = s.visits
    assert v["flux"].shape == (3, 3, 8575)
    good_all = (v["bitmask"] & DEFAULT_REJECT_VALUE) == 0
    w = 1.0 / v["error"].astype(float) ** 2
    k, p = np.nonzero(good_all.all(axis=1))
    expect = (w[k, :, p] * v["flux"][k, :, p]).sum(1) / w[k, :, p].sum(1)
    np.testing.assert_allclose(s.flux[k, p], expect, rtol=1e-5)
    np.testing.assert_allclose(s.error[k, p], 1 / np.sqrt(w[k, :, p].sum(1)), rtol=1e-5)
    none_good = ~good_all.any(axis=1)
    expect_mask = np.bitwise_or.reduce(v["bitmask"], axis=1) | np.where(none_good, BIT["BADPIX"], 0)
    np.testing.assert_array_equal(s.bitmask, expect_mask)
    assert np.all(s.error[none_good] == BAD_ERROR)
    z = ((s.flux - s.clean_flux) / s.error)[s.bitmask == 0]
    assert abs(z.std() - 1) < 0.02
    np.testing.assert_allclose(s.snr, 120.0, rtol=0.05)
    # sky lines move between visits (each visit has its own barycentric velocity)
    sky = v["bitmask"] & BIT["SIG_SKYLINE"] != 0
    assert not np.array_equal(sky[0, 0], sky[0, 1])


def test_fits_round_trip(gen, tmp_path):
    from starlabels.io import read_allstar, read_apstar

    s = gen.simulate(3, snr=70, seed=7)
    paths = write_apstar_files(tmp_path, s)
    assert [p.name for p in paths] == [f"apStar-synth-{i}.fits" for i in s.meta["APOGEE_ID"]]
    for k, p in enumerate(paths):
        r = read_apstar(p)
        np.testing.assert_array_equal(r.flux, s.flux[k])
        np.testing.assert_array_equal(r.error, s.error[k])
        np.testing.assert_array_equal(r.bitmask, s.bitmask[k])
        np.testing.assert_allclose(r.wavelength, gen.wavelength, rtol=1e-12)
        assert r.meta["APOGEE_ID"] == s.meta["APOGEE_ID"][k]
        assert r.meta["SNR"] == pytest.approx(70.0)
        assert r.meta["VHELIO"] == pytest.approx(s.meta["VHELIO"][k])
    sv = gen.simulate(2, snr=90, seed=8, n_visits=2)
    (p,) = write_apstar_files(tmp_path / "v", sv.subset([1]))
    r = read_apstar(p, row="visits")
    np.testing.assert_array_equal(r.flux, sv.visits["flux"][1])
    np.testing.assert_array_equal(r.bitmask, sv.visits["bitmask"][1])
    assert r.meta["NVISITS"] == 2
    cat = write_label_catalog(tmp_path / "labels.fits", s)
    t = read_allstar(cat, labels=["TEFF", "MG_FE"])
    assert list(t.apogee_id) == list(s.meta["APOGEE_ID"])
    np.testing.assert_allclose(t.labels[:, 1], s.labels[:, gen.label_names.index("MG_FE")])
    assert np.all(t.label_errors[:, 0] == 30.0)


def test_label_sampling_and_validation(gen):
    for pop, (lo, hi) in {"giants": (0.0, 3.9), "dwarfs": (3.8, 5.2)}.items():
        lab = gen.sample_labels(300, 9, pop)
        assert lab.shape == (300, len(gen.label_names))
        assert lo <= lab[:, 1].min() and lab[:, 1].max() <= hi
        assert lab[:, 0].min() >= 3500 and lab[:, 0].max() <= 7000
    mixed = gen.sample_labels(400, 9, "mixed")
    assert 0.35 < np.mean(mixed[:, 1] > 3.8) < 0.65
    # α elements are enhanced in metal-poor stars
    mg = mixed[:, gen.label_names.index("MG_FE")]
    assert mg[mixed[:, 2] < -0.8].mean() > mg[mixed[:, 2] > 0].mean() + 0.15
    with pytest.raises(InputDataError):
        gen.generate(np.zeros((2, 3)), 50.0)
    bad = _ref_labels(gen)
    bad[0, 2] = np.nan
    with pytest.raises(InputDataError):
        gen.generate(bad, 50.0)
    with pytest.raises(InputDataError):
        gen.generate(_ref_labels(gen), 0.0)
    with pytest.raises(InputDataError):
        gen.sample_labels(3, 0, "giants and dwarfs")


def test_normalised_clean_is_the_line_spectrum(gen):
    """clean flux / continuum is the generator's continuum-normalised line spectrum; the old
    American spelling still answers, with a DeprecationWarning."""
    s = gen.simulate(3, snr=50.0, seed=8)
    np.testing.assert_allclose(s.normalised_clean, gen.line_spectrum(s.labels), rtol=1e-12, atol=1e-12)
    with pytest.warns(DeprecationWarning, match="normalised_clean"):
        old = s.normalized_clean
    np.testing.assert_array_equal(old, s.normalised_clean)
