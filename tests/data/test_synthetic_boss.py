"""The built-in generator on the BOSS grid (and any grid): line responses measured on the spectra,
noise against the error arrays, SPPIXMASK defect bits, seeds, mwmStar round trip."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels import instruments
from starlabels.data.line_lists import air_to_vacuum, balmer_wavelength, paschen_wavelength
from starlabels.data.synthetic import SyntheticGenerator, write_mwm_star_files
from starlabels.errors import InputDataError

BOSS = instruments.get("boss")
SPPIX = BOSS.bitmask()
BIT = {k: 1 << v for k, v in SPPIX.bits.items()}


@pytest.fixture(scope="module")
def gen() -> SyntheticGenerator:
    return SyntheticGenerator(seed=0, instrument="boss")


def _labels(gen, **values):
    """(N, L) labels at Teff 5000 K, log g 4, solar abundances, with ``values`` (arrays) replaced."""
    n = max(np.size(v) for v in values.values())
    lab = np.zeros((n, len(gen.label_names)))
    lab[:, 0], lab[:, 1] = 5000.0, 4.0
    for name, v in values.items():
        lab[:, gen.label_names.index(name)] = v
    return lab


def _ew(gen, spectra, lo, hi):
    """Equivalent width (Å) of 1 − normalised flux over [lo, hi] Å, trapezoid rule on the pixels."""
    w = gen.wavelength
    m = (w >= lo) & (w <= hi)
    return np.trapezoid(1.0 - spectra[:, m], w[m], axis=1)


def _pixel(gen, wavelength):
    return int(np.argmin(np.abs(gen.wavelength - wavelength)))


def test_spectra_are_on_the_boss_grid(gen):
    np.testing.assert_array_equal(gen.wavelength, BOSS.wavelength)
    assert gen.resolution == 2000.0
    s = gen.simulate(3, snr=30.0, seed=1)
    assert s.flux.shape == (3, 4648) and s.error.shape == (3, 4648) and s.bitmask.shape == (3, 4648)
    assert s.instrument is BOSS
    np.testing.assert_array_equal(s.wavelength, BOSS.wavelength)
    # data from 3,600 Å on (the grid starts at 3,567 Å); the gap pixels are exactly those below
    assert np.array_equal(gen.covered, BOSS.wavelength >= 3600.0)
    # every line of the list falls within 50 Å of the grid
    assert gen.lines["wavelength"].min() > BOSS.wavelength[0] - 50
    assert gen.lines["wavelength"].max() < BOSS.wavelength[-1] + 50
    # the APOGEE generator is untouched: apStar grid
    assert SyntheticGenerator(seed=0).wavelength.shape == (8575,)


def test_instrumental_resolution_is_r_2000():
    # a generator with Fe and H lines only: an isolated weak Fe line's FWHM after convolution is
    # λ/R (its intrinsic σ of 15 km/s adds ~1 % at R = 2,000)
    g = SyntheticGenerator(elements=(), seed=0, instrument="boss", lines_per_element=1)
    wl = g.lines["wavelength"]
    others = np.abs(wl[:, None] - wl[None, :]) + np.eye(len(wl)) * 1e9
    isolated = np.flatnonzero((others.min(axis=1) > 25.0) & (wl > 6200) & (wl < 9000)
                              & (g.lines["kind"] == 0))
    assert isolated.size
    i = isolated[0]
    spec = g.line_spectrum(np.array([[5000.0, 4.0, -1.5]]))[0]  # metal-poor: weak, unsaturated
    w = g.wavelength
    near = np.abs(w - wl[i]) < 12
    depth = 1 - spec[near]
    assert 0.001 < depth.max() < 0.3
    x = w[near] - wl[i]
    sigma = np.sqrt(np.sum(depth * x**2) / np.sum(depth))  # second moment → Gaussian σ → FWHM
    assert abs(2.3548 * sigma / (wl[i] / 2000.0) - 1.0) < 0.1


def test_balmer_lines_peak_near_9500_k_and_weaken_in_cooler_stars(gen):
    teff = np.array([4000.0, 5000.0, 6000.0, 7000.0, 8000.0, 9000.0, 9500.0, 10000.0])
    spectra = gen.line_spectrum(_labels(gen, TEFF=teff, LOGG=np.full(teff.size, 4.2)))
    for n_upper in (3, 4):  # Hα, Hβ (Hγ shares its window with the G band of cool stars)
        centre = float(balmer_wavelength(n_upper))
        ew = _ew(gen, spectra, centre - 30.0, centre + 30.0)
        assert np.all(np.diff(ew[:6]) > 0), (n_upper, ew)  # strengthen from 4,000 to 9,000 K
        assert teff[np.argmax(ew)] in (9000.0, 9500.0, 10000.0), (n_upper, ew)
        assert ew[teff == 9500.0][0] > 4 * ew[0]
    # Hβ equivalent widths of A and G dwarfs in the range real stars have (~13 and ~3-7 Å)
    hb = float(balmer_wavelength(4))
    ew_hb = _ew(gen, spectra, hb - 30.0, hb + 30.0)
    assert 8.0 < ew_hb[teff == 9500.0][0] < 20.0 and 2.0 < ew_hb[teff == 6000.0][0] < 9.0
    # Paschen lines (near the Ca triplet) only in hot stars
    p12 = float(paschen_wavelength(12))
    ew_p = _ew(gen, spectra, p12 - 8.0, p12 + 8.0)
    assert ew_p[teff == 9500.0][0] > 3 * ew_p[teff == 5000.0][0]


def test_balmer_wings_grow_with_log_g_in_a_stars(gen):
    hb = float(balmer_wavelength(4))
    spectra = gen.line_spectrum(_labels(gen, TEFF=np.full(3, 9000.0), LOGG=np.array([3.0, 3.8, 4.6])))
    wing = _ew(gen, spectra, hb + 8.0, hb + 25.0)
    assert np.all(np.diff(wing) > 0.05), wing


def test_ca_triplet_follows_log_g_and_metallicity(gen):
    logg = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    by_logg = gen.line_spectrum(_labels(gen, LOGG=logg))
    feh = np.array([-1.5, -1.0, -0.5, 0.0, 0.5])
    by_feh = gen.line_spectrum(_labels(gen, FE_H=feh, LOGG=np.full(5, 2.5)))
    for air in (8498.02, 8542.09, 8662.14):
        c = float(air_to_vacuum(air))
        core = 1 - by_logg[:, _pixel(gen, c)]
        assert np.all(np.diff(core) < -0.01), core  # stronger in giants (a luminosity indicator)
        ew_logg = _ew(gen, by_logg, c - 12.0, c + 12.0)
        assert ew_logg[0] > 1.3 * ew_logg[-1], ew_logg
        ew_feh = _ew(gen, by_feh, c - 12.0, c + 12.0)
        assert np.all(np.diff(ew_feh) > 0.1) and ew_feh[-1] > 4 * ew_feh[0], ew_feh
    # [Ca/Fe] moves the triplet and H&K, [Mg/Fe] does not
    ca = gen.line_spectrum(_labels(gen, CA_FE=np.array([-0.3, 0.3])))
    mg = gen.line_spectrum(_labels(gen, MG_FE=np.array([-0.3, 0.3])))
    for air in (8542.09, 3933.66):
        c = float(air_to_vacuum(air))
        assert np.diff(_ew(gen, ca, c - 12, c + 12))[0] > 0.3
        assert abs(np.diff(_ew(gen, mg, c - 12, c + 12))[0]) < 0.02


def test_mg_b_and_na_d_wings_are_gravity_sensitive(gen):
    logg = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    spectra = gen.line_spectrum(_labels(gen, LOGG=logg))
    for air in (5183.60, 5889.95):  # Mg b 5184 (red member), Na D2: the red wing, beyond the core
        c = float(air_to_vacuum(air))
        wing = _ew(gen, spectra, c + 2.5, c + 8.0)
        assert np.all(np.diff(wing) > 0), wing
        assert wing[-1] > 2.5 * wing[0], wing
    # and they scale with their own abundance
    mg = gen.line_spectrum(_labels(gen, MG_FE=np.array([-0.4, 0.0, 0.4])))
    c = float(air_to_vacuum(5183.60))
    assert np.all(np.diff(_ew(gen, mg, c - 4, c + 4)) > 0.3)
    na = gen.line_spectrum(_labels(gen, NA_FE=np.array([-0.4, 0.0, 0.4])))
    c = float(air_to_vacuum(5889.95))
    assert np.all(np.diff(_ew(gen, na, c - 4, c + 4)) > 0.2)


def test_cool_stars_show_tio_bands_and_warm_stars_do_not(gen):
    spectra = gen.line_spectrum(_labels(gen, TEFF=np.array([3600.0, 4500.0, 6000.0])))
    head = float(air_to_vacuum(7054.0))
    band = _ew(gen, spectra, head, head + 70.0)
    assert band[0] > 5 * band[1] and band[1] > band[2]
    ti = gen.line_spectrum(_labels(gen, TEFF=np.full(2, 3600.0), TI_FE=np.array([-0.3, 0.3])))
    assert np.diff(_ew(gen, ti, head, head + 70.0))[0] > 0


def test_noise_matches_error_array_and_requested_snr(gen):
    snr = np.array([15.0, 30.0, 60.0, 120.0] * 4)
    s = gen.generate(gen.sample_labels(len(snr), 1, "mixed"), snr, rng=2, defects=False)
    good = s.bitmask == 0
    z = (s.flux - s.clean_flux) / s.error
    assert abs(z[good].std() - 1.0) < 0.01 and abs(z[good].mean()) < 0.01
    ratio = np.where(good, s.clean_flux / s.error, np.nan)
    np.testing.assert_allclose(np.nanmedian(ratio, axis=1), snr, rtol=0.01)
    # the noise follows the throughput: S/N per pixel lower at the blue end and at the dichroic
    # than at the arms' peaks, for the same star
    w = gen.wavelength
    blue_end, peak = (w > 3650) & (w < 3800), (w > 4700) & (w < 5000)
    dichroic = (w > 5950) & (w < 6050)
    sn = s.clean_flux / s.error
    warm = s.labels[:, 0] > 5500  # their blue flux is not low for another reason
    assert np.all(np.median(sn[warm][:, blue_end], 1) < 0.8 * np.median(sn[warm][:, peak], 1))
    assert np.all(np.median(sn[:, dichroic], 1) < np.median(sn[:, peak], 1))


def test_defects_carry_sppixmask_bits(gen):
    s = gen.generate(gen.sample_labels(30, 3, "mixed"), 40.0, rng=4)
    d, m = s.defects, s.bitmask
    gap = BOSS.wavelength < 3600.0
    assert np.all(d["gap"][:, gap]) and not d["gap"][:, ~gap].any()
    assert np.all(m[:, gap] & BIT["NODATA"]) and np.all(np.isinf(s.error[:, gap]))
    for kind, bit in (("badpix", "FULLREJECT"), ("cosmic", "COMBINEREJ"), ("sky", "BRIGHTSKY")):
        assert d[kind].any(), kind
        assert np.all(m[d[kind]] & BIT[bit]), kind
    assert not d["persistence"].any()
    assert np.all(np.isinf(s.error[d["badpix"]]))
    # only SPPIXMASK pixel bits, all of them rejected by default, and none without a defect
    used = np.bitwise_or.reduce(m.ravel())
    assert used & ~(BIT["NODATA"] | BIT["FULLREJECT"] | BIT["COMBINEREJ"] | BIT["BRIGHTSKY"]) == 0
    assert np.all(SPPIX.rejected(m) == (m != 0))
    any_defect = np.logical_or.reduce([d[k] for k in d])
    assert np.all(m[~any_defect] == 0)
    # cosmic rays are spikes; every pixel more than 6σ off the truth is flagged
    cr = d["cosmic"] & ~d["badpix"] & ~d["sky"]
    assert np.all((s.flux - s.clean_flux)[cr] > 5 * s.error[cr])
    with np.errstate(invalid="ignore"):
        off = np.abs(s.flux - s.clean_flux) > 6 * s.error
    assert np.all(m[off] != 0)
    # the values fit the float32 pixel_flags of mwmStar files exactly
    assert np.array_equal(m.astype(np.float32).astype(np.int64), m)


def test_reproducible_and_line_list_fixed_by_seed(gen):
    a = gen.simulate(3, snr=30, seed=11, population="mixed")
    b = gen.simulate(3, snr=30, seed=11, population="mixed")
    for name in ("flux", "error", "bitmask", "labels", "continuum"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.meta["SDSS_ID"], b.meta["SDSS_ID"])
    assert not np.array_equal(gen.simulate(3, snr=30, seed=12).flux, a.flux)
    np.testing.assert_array_equal(SyntheticGenerator(seed=0, instrument="boss").lines, gen.lines)
    other = SyntheticGenerator(seed=1, instrument="boss")
    assert other.lines.shape != gen.lines.shape or not np.array_equal(other.lines, gen.lines)


def test_continuum_is_a_reddened_blackbody(gen):
    lab = _labels(gen, TEFF=np.array([4000.0, 7000.0]))
    s = gen.generate(lab, 50.0, rng=5)
    w = gen.wavelength
    blue, red = (w > 4000) & (w < 4400), (w > 8000) & (w < 8400)
    colour = np.median(s.continuum[:, blue], 1) / np.median(s.continuum[:, red], 1)
    # Planck ratio B(4200)/B(8200) times the reddening 10^(-0.4 (A_4200 - A_8200)), A_λ ∝ λ^-1.6
    hc_k = 1.438777e8
    planck = [(8200 / 4200) ** 5 * np.expm1(hc_k / (8200 * t)) / np.expm1(hc_k / (4200 * t))
              for t in (4000, 7000)]
    a_v = s.meta["A_V"]
    a_h = a_v / (5500 / 16500) ** -1.6
    redden = 10 ** (-0.4 * a_h * ((4200 / 16500) ** -1.6 - (8200 / 16500) ** -1.6))
    np.testing.assert_allclose(colour, np.array(planck) * redden, rtol=0.06)  # ~2 % calibration ripple


def test_any_instrument_from_a_wavelength_array():
    wave = np.geomspace(3700.0, 9000.0, 3000) * (1 + 1e-5 * np.sin(np.arange(3000)))  # not log-linear
    inst = instruments.from_wavelength(wave, segments={"b": (3700.0, 5900.0), "r": (5900.0, 9001.0)},
                                       name="lamost-like", resolving_power=1800.0)
    g = SyntheticGenerator(seed=2, instrument=inst)
    s = g.simulate(4, snr=40.0, seed=3)
    assert s.flux.shape == (4, 3000) and g.resolution == 1800.0
    assert np.all(np.isfinite(s.flux))
    bits = np.bitwise_or.reduce(s.bitmask.ravel())
    assert bits & ~inst.bitmask().value() == 0  # only its generic BAD bit
    hb = float(balmer_wavelength(4))
    lab = np.zeros((2, len(g.label_names)))
    lab[:, 0], lab[:, 1] = [5000.0, 9000.0], 4.2
    near = np.abs(wave - hb) < 30
    ew = np.trapezoid(1 - g.line_spectrum(lab)[:, near], wave[near], axis=1)
    assert ew[1] > 2 * ew[0]
    with pytest.raises(InputDataError, match="unknown instrument"):
        SyntheticGenerator(instrument="nope")


def test_mwm_star_files_round_trip(gen, tmp_path):
    from starlabels.io import read_spectra

    s = gen.simulate(3, snr=30.0, seed=6)
    paths = write_mwm_star_files(tmp_path, s, layout="dr19")
    assert [p.name for p in paths] == [f"mwmStar-synth-{i}.fits" for i in s.meta["SDSS_ID"]]
    for k, p in enumerate(paths):
        (spec,) = read_spectra(p)
        assert spec.instrument == "boss"
        np.testing.assert_array_equal(spec.wavelength, BOSS.wavelength)
        np.testing.assert_array_equal(spec.flux, s.flux[k].astype(np.float64))
        np.testing.assert_array_equal(spec.bitmask, s.bitmask[k])
        finite = np.isfinite(s.error[k])
        np.testing.assert_array_equal(np.isinf(spec.error), ~finite)
        np.testing.assert_allclose(spec.error[finite], s.error[k][finite], rtol=1e-6)
        assert int(spec.meta["SDSS_ID"]) == int(s.meta["SDSS_ID"][k])
