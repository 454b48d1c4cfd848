"""Statistics of the survey simulator: SNR, noise vs error arrays, missing labels, bitmask bits."""

from dataclasses import dataclass

import numpy as np
import pytest

from starlabels.constants import MISSING
from starlabels.data import survey, survey_labels, survey_observation
from starlabels.preprocess import bitmask as bm
from starlabels.preprocess import grids


@dataclass
class FlatSource:
    """A toy source: flat unit flux on the ASPCAP pixels, labels TEFF, LOGG, FE_H, ALPHA_M."""

    label_names: tuple = survey.KURUCZ_LABELS
    normalised: bool = False

    @property
    def label_box(self):
        return np.array([3500.0, 0.0, -1.0, -0.5]), np.array([7000.0, 5.5, 0.6, 0.9])

    def noiseless(self, labels):
        covered = np.zeros(grids.APSTAR_N_PIXELS, bool)
        covered[grids.index_in(grids.ASPCAP, "apstar")] = True
        flux = np.broadcast_to(covered.astype(float), (len(labels), covered.size)).copy()
        return flux, np.broadcast_to(covered, flux.shape)


def _sim(**kw):
    cfg = survey.SurveyConfig(n_stars=kw.pop("n_stars", 200), seed=kw.pop("seed", 3), **kw)
    return survey.SurveySimulator(FlatSource(), cfg)


def test_apogee_like_snr_distribution():
    rng = np.random.default_rng(0)
    snr = survey_observation.snr_distribution(20000, rng, "apogee")
    assert snr.min() >= 40 and snr.max() <= 1000
    assert 140 < np.median(snr) < 160
    # log-normal width: 16–84% spread of ln SNR ≈ 2 × 0.55 (clipping barely matters there)
    lo, hi = np.percentile(np.log(snr), [16, 84])
    assert hi - lo == pytest.approx(1.1, abs=0.05)
    v = survey_observation.snr_distribution(5000, rng, "visit")
    assert v.min() >= 20 and v.max() <= 60
    u = survey_observation.snr_distribution(5000, rng, ("loguniform", 200, 400))
    assert u.min() >= 200 and u.max() <= 400
    with pytest.raises(ValueError, match="unknown SNR"):
        survey_observation.snr_distribution(3, rng, "nope")


def test_noise_matches_error_array_and_snr():
    sim = _sim(sky_residual=0.0, bad_pixel_fraction=0.0, n_stars=40)
    rng_labels = np.random.default_rng(1)
    labels, group = survey_labels.sample_labels(40, sim.source, rng_labels, {"giants": 1.0})
    ids = np.arange(40).astype(str)
    snr = np.full(40, 80.0)
    noisy = sim.observe(labels, group, ids, snr=snr, rng=np.random.default_rng(9))
    clean = sim.observe(labels, group, ids, snr=np.full(40, 1e12), rng=np.random.default_rng(9))
    cov = grids.index_in(grids.ASPCAP, "apstar")
    z = (noisy.flux[:, cov] - clean.flux[:, cov]) / noisy.error[:, cov]
    assert z.std() == pytest.approx(1.0, abs=0.01)
    assert abs(z.mean()) < 0.01
    # flat source: flux/error at the median pixel equals the SNR asked for
    ratio = np.median(clean.flux[:, cov] / noisy.error[:, cov], axis=1)
    np.testing.assert_allclose(ratio, 80.0, rtol=1e-3)
    assert noisy.snr.tolist() == snr.tolist()


def test_missing_label_fraction_and_group_censoring():
    sim = _sim(n_stars=2000, missing_fraction=0.2,
               missing_for_groups={"LOGG": ["dwarfs", "cool_dwarfs"]})
    s = sim.simulate()
    miss = s.labels == MISSING
    np.testing.assert_array_equal(miss, s.label_errors == MISSING)
    teff_frac = miss[:, 0].mean()
    assert abs(teff_frac - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 2000)
    dwarf = np.isin(s.group, ["dwarfs", "cool_dwarfs"])
    assert dwarf.any() and miss[dwarf, 1].all()
    assert abs(miss[~dwarf, 1].mean() - 0.2) < 0.05
    assert not np.isin(MISSING, s.true_labels)


def test_label_noise_has_the_stated_sigma():
    s = _sim(n_stars=3000).simulate()
    for j, name in enumerate(s.label_names):
        z = (s.labels[:, j] - s.true_labels[:, j]) / s.label_errors[:, j]
        assert z.std() == pytest.approx(1.0, abs=0.05), name
        assert s.label_errors[0, j] == pytest.approx(survey.DEFAULT_LABEL_NOISE[name])


def test_bitmask_bits_mark_the_defects():
    s = _sim(n_stars=100, bad_pixel_fraction=0.01).simulate()
    covered = np.zeros(grids.APSTAR_N_PIXELS, bool)
    covered[grids.index_in(grids.ASPCAP, "apstar")] = True
    sky = survey_observation.sky_line_pixels() & covered
    has = lambda name: (s.bitmask & (1 << bm.PIXMASK_BITS[name])) != 0  # noqa: E731
    assert has("SIG_SKYLINE")[:, sky].all() and not has("SIG_SKYLINE")[:, ~sky].any()
    assert has("BADPIX")[:, ~covered].all()
    assert (s.flux[:, ~covered] == 0).all()
    cr = has("CRPIX")[:, covered].mean()
    dead = (has("BADPIX")[:, covered]).mean()
    assert cr == pytest.approx(0.005, rel=0.15) and dead == pytest.approx(0.005, rel=0.15)
    # dead pixels read zero, cosmic rays read high
    assert (s.flux[has("BADPIX") & covered[None]] == 0).all()
    crm = has("CRPIX") & ~has("SIG_SKYLINE")
    assert np.median(s.flux[crm] / s.error[crm]) > np.median(s.snr) + 10
    # the default rejection set catches all the defects the simulator makes
    assert bm.bad_pixels(s.bitmask)[:, sky | ~covered].all()


def test_seeded_and_reproducible():
    a, b = _sim(seed=11).simulate(), _sim(seed=11).simulate()
    c = _sim(seed=12).simulate()
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.flux, c.flux)


def test_labels_stay_in_the_box_and_reddening_tilts_the_continuum():
    s = _sim(n_stars=300, max_extinction_h=2.0, sky_residual=0, bad_pixel_fraction=0).simulate()
    lo, hi = FlatSource().label_box
    assert ((s.true_labels >= lo) & (s.true_labels <= hi)).all()
    # more extinction → bluer end suppressed relative to the red end: ratio falls with A_H
    blue = s.flux[:, 300:400].mean(axis=1)
    red = s.flux[:, 8200:8300].mean(axis=1)
    r = np.corrcoef(s.extinction_h, np.log(blue / red))[0, 1]
    assert r < -0.5


def test_giants_follow_the_dr17_sample(shared_data):
    path = shared_data / "labels" / "apogee_dr17_giant_labels.npz"
    rng = np.random.default_rng(0)
    lab, group = survey_labels.sample_labels(4000, FlatSource(), rng, {"giants": 1.0}, path)
    with np.load(path) as d:
        ref_teff = np.median(d["a_teff"])
        ref_feh = np.nanmedian(d["b_fe_h"])
    assert np.median(lab[:, 0]) == pytest.approx(ref_teff, abs=60)
    assert np.median(lab[:, 2]) == pytest.approx(ref_feh, abs=0.06)
    # the high-α sequence is metal-poor: [α/M] and [Fe/H] anti-correlated, as in DR17
    assert np.corrcoef(lab[:, 2], lab[:, 3])[0, 1] < -0.3
    assert set(group) == {"giants"}


def test_analytic_giants_fill_their_log_g_range_without_a_pile_at_its_edges():
    """Without the DR17 sample the giants come from an analytic branch; stars drawn past its log g
    range are redrawn, not clipped, so no value repeats at the edges (the demo's Kiel diagram
    once showed ~5% of its giants on a line at log g = 3.5)."""
    rng = np.random.default_rng(1)
    lab, group = survey_labels.sample_labels(6000, FlatSource(), rng, {"giants": 1.0}, None)
    lo, hi = survey_labels.GIANT_LOGG_RANGE
    logg = lab[:, 1]
    assert len(lab) == 6000 and set(group) == {"giants"}
    assert np.all((logg >= lo) & (logg <= hi)) and np.isfinite(lab).all()
    assert np.sum(logg == hi) == 0 and np.sum(logg == lo) == 0
    # a truncated, not clipped, distribution: the top 0.1 dex holds about what its neighbour does
    top = np.sum(logg > hi - 0.1)
    below = np.sum((logg > hi - 0.2) & (logg <= hi - 0.1))
    assert 0.5 * below < top < 1.2 * below


def test_emulator_survey_masks_pixels_outside_the_payne_grid(shared_data):
    sim = survey.SurveySimulator.from_emulator(
        shared_data / "emulators" / "payne_kurucz_4label.npz",
        survey.SurveyConfig(n_stars=20, population={"giants": 0.5, "dwarfs": 0.5}),
    )
    s = sim.simulate()
    outside = np.ones(grids.APSTAR_N_PIXELS, bool)
    outside[grids.index_in(grids.PAYNE, "apstar")] = False
    assert bm.bad_pixels(s.bitmask)[:, outside].all()
    assert (s.flux[:, ~outside] > 0).mean() > 0.99
    lo, hi = sim.source.label_box
    assert ((s.true_labels >= lo) & (s.true_labels <= hi)).all()


def test_generator_source_and_hdf5_round_trip(tmp_path):
    from starlabels.data.hdf5 import SpectraDataset

    sim = survey.SurveySimulator(
        survey.GeneratorSource.default(), survey.SurveyConfig(n_stars=12, seed=5, missing_fraction=0.1)
    )
    s = sim.simulate()
    assert s.label_names[:3] == ("TEFF", "LOGG", "FE_H") and len(s.label_names) > 3
    lo, hi = sim.source.label_box
    assert ((s.true_labels >= lo) & (s.true_labels <= hi)).all()
    path = s.write_hdf5(tmp_path / "survey.h5")
    ds = SpectraDataset(path)
    assert len(ds) == 12 and list(ds.label_names) == list(s.label_names)
    batch = ds.read(np.arange(12))
    np.testing.assert_array_equal(batch.flux, s.flux)
    np.testing.assert_array_equal(batch.bitmask, s.bitmask)
    np.testing.assert_array_equal(batch.labels, s.labels)
    np.testing.assert_allclose(ds.meta("true_TEFF"), s.true_labels[:, 0])
    assert list(ds.meta("group")) == list(s.group)


def test_simulate_cli_writes_a_dataset_and_fits(tmp_path):
    from click.testing import CliRunner

    from starlabels.cli.main import cli
    from starlabels.data.hdf5 import SpectraDataset
    from starlabels.io import read_apstar

    out = tmp_path / "s.h5"
    res = CliRunner().invoke(cli, ["simulate", "-n", "3", "-o", str(out), "--snr", "uniform:50-60",
                                   "--fits-dir", str(tmp_path / "fits"), "--seed", "4"])
    assert res.exit_code == 0, res.output
    ds = SpectraDataset(out)
    snr = ds.meta("snr")
    assert len(ds) == 3 and ((snr >= 50) & (snr <= 60)).all()
    files = sorted((tmp_path / "fits").glob("*.fits"))
    assert len(files) == 3
    spec = read_apstar(files[0])
    row = list(ds.meta("apogee_id")).index(spec.meta["APOGEE_ID"])
    np.testing.assert_array_equal(spec.flux, ds.read(np.array([row])).flux[0])
    bad = CliRunner().invoke(cli, ["simulate", "-o", str(out), "--snr", "gauss:1-2"])
    assert bad.exit_code == 2 and "loguniform" in bad.output
