"""The survey simulator on the BOSS grid and with emulators on any grid: grid, SPPIXMASK bits,
noise vs error arrays, emulator placement/interpolation, HDF5 and mwmStar outputs, the CLI."""

from dataclasses import dataclass, field

import numpy as np
import pytest

from starlabels import instruments
from starlabels.data import survey, survey_labels, survey_observation
from starlabels.errors import InputFileError

BOSS = instruments.get("boss")
SPPIX = BOSS.bitmask()


def _bit(name: str) -> int:
    return 1 << SPPIX.bits[name]


@dataclass
class FlatBossSource:
    """A toy source: flat unit flux on the BOSS pixels from 3,600 Å, labels TEFF, LOGG, FE_H, ALPHA_M."""

    label_names: tuple = survey.KURUCZ_LABELS
    normalised: bool = False
    instrument: object = field(default_factory=lambda: BOSS)

    @property
    def label_box(self):
        return np.array([3500.0, 0.0, -1.0, -0.5]), np.array([7000.0, 5.5, 0.6, 0.9])

    def noiseless(self, labels):
        covered = BOSS.wavelength >= 3600.0
        flux = np.broadcast_to(covered.astype(float), (len(labels), covered.size)).copy()
        return flux, np.broadcast_to(covered, flux.shape)


def _sim(**kw):
    cfg = survey.SurveyConfig(n_stars=kw.pop("n_stars", 100), seed=kw.pop("seed", 3), **kw)
    return survey.SurveySimulator(FlatBossSource(), cfg)


def test_boss_snr_distribution():
    snr = survey_observation.snr_distribution(20000, np.random.default_rng(0), "boss")
    assert snr.min() >= 8 and snr.max() <= 300 and 32 < np.median(snr) < 38
    lo, hi = np.percentile(np.log(snr), [16, 84])
    assert hi - lo == pytest.approx(1.2, abs=0.05)


def test_noise_matches_error_array_and_follows_the_throughput():
    sim = _sim(sky_residual=0.0, bad_pixel_fraction=0.0, n_stars=30)
    labels, group = survey_labels.sample_labels(30, sim.source, np.random.default_rng(1), {"giants": 1.0})
    ids = np.arange(30).astype(str)
    noisy = sim.observe(labels, group, ids, snr=np.full(30, 40.0), rng=np.random.default_rng(9))
    clean = sim.observe(labels, group, ids, snr=np.full(30, 1e12), rng=np.random.default_rng(9))
    cov = BOSS.wavelength >= 3600.0
    z = (noisy.flux[:, cov] - clean.flux[:, cov]) / noisy.error[:, cov]
    assert z.std() == pytest.approx(1.0, abs=0.01) and abs(z.mean()) < 0.01
    # the documented noise model, recomputed: counts c = f·t through the two-arm throughput t,
    # σ = sqrt(c·m + 0.3·m²)/t/SNR with m = median(f)·median(t) (photon noise + sky background)
    from starlabels.data.observing import boss_throughput

    t = boss_throughput(BOSS.wavelength)
    f = clean.flux
    m = np.median(np.where(cov, f, np.nan)[:, cov], axis=1, keepdims=True) * np.median(t)
    expected = np.sqrt(f * t * m + 0.3 * m**2) / t / 40.0
    np.testing.assert_allclose(noisy.error[:, cov], expected[:, cov], rtol=1e-5)
    # so a flat spectrum has its lowest S/N where the throughput is lowest
    sn = np.median(f / noisy.error, axis=0)
    assert np.median(sn[cov & (t < 0.4)]) < 0.75 * np.median(sn[cov & (t > 0.9)])
    # uncovered pixels: no data, error inf (ivar 0)
    assert np.all(np.isinf(noisy.error[:, ~cov])) and np.all(noisy.flux[:, ~cov] == 0)


def test_bitmask_bits_are_sppixmask():
    s = _sim(bad_pixel_fraction=0.01).simulate()
    assert s.flux.shape == (100, 4648) and s.grid is BOSS.grid
    cov = BOSS.wavelength >= 3600.0
    sky = survey_observation.sky_line_pixels(instrument="boss") & cov
    has = lambda name: (s.bitmask & _bit(name)) != 0  # noqa: E731
    assert has("BRIGHTSKY")[:, sky].all() and not has("BRIGHTSKY")[:, ~sky].any()
    assert has("NODATA")[:, ~cov].all() and not has("NODATA")[:, cov].any()
    assert has("COMBINEREJ")[:, cov].mean() == pytest.approx(0.005, rel=0.15)
    assert has("FULLREJECT")[:, cov].mean() == pytest.approx(0.005, rel=0.15)
    used = np.bitwise_or.reduce(s.bitmask.ravel())
    assert used == _bit("BRIGHTSKY") | _bit("NODATA") | _bit("COMBINEREJ") | _bit("FULLREJECT")
    assert np.all(SPPIX.rejected(s.bitmask) == (s.bitmask != 0))
    # the sky pixels sit on real sky lines: [O I] 5577 Å (air) is one of them
    assert sky[np.argmin(np.abs(BOSS.wavelength - 5578.9))]


def test_generator_source_on_boss_and_hdf5_keeps_the_grid(tmp_path):
    from starlabels.data.hdf5 import SpectraDataset

    sim = survey.SurveySimulator(
        survey.GeneratorSource.default(instrument="boss"),
        survey.SurveyConfig(n_stars=16, seed=5, population=survey_labels.default_population("boss")),
    )
    s = sim.simulate()
    assert s.flux.shape == (16, 4648) and s.instrument is BOSS
    lo, hi = sim.source.label_box
    assert hi[0] == 10000.0 and ((s.true_labels >= lo) & (s.true_labels <= hi)).all()
    assert set(s.group) <= {"giants", "dwarfs", "cool_dwarfs", "hot_dwarfs"}
    hot = s.true_labels[s.group == "hot_dwarfs", 0]
    assert np.all((hot >= 6900) & (hot <= 9800))
    ds = SpectraDataset(s.write_hdf5(tmp_path / "boss.h5"))
    assert ds.grid.same_as(BOSS.grid)
    batch = ds.read(np.arange(16))
    np.testing.assert_array_equal(batch.flux, s.flux)
    np.testing.assert_array_equal(batch.bitmask, s.bitmask)


def test_hot_dwarfs_only_when_asked_for_and_apogee_draws_unchanged():
    # adding no hot dwarfs leaves the three APOGEE populations' draws as they were
    src = survey.GeneratorSource.default()
    a = survey_labels.sample_labels(50, src, np.random.default_rng(4), {"giants": 0.7, "dwarfs": 0.3})
    b = survey_labels.sample_labels(50, src, np.random.default_rng(4),
                             {"giants": 0.7, "dwarfs": 0.3, "hot_dwarfs": 0.0})
    np.testing.assert_array_equal(a[0], b[0])
    # in the APOGEE generator's box (to 7,000 K) only the coolest hot dwarfs fit
    hot, group = survey_labels.sample_labels(20, src, np.random.default_rng(4), {"hot_dwarfs": 1.0})
    assert set(group) == {"hot_dwarfs"} and np.all((hot[:, 0] >= 6900) & (hot[:, 0] <= 7000))


def _write_dense_emulator(path, n_pixels, wavelength=None, n_labels=4):
    """A small dense Payne-format emulator whose flux is 1 − 0.1·sigmoid-ish features (known weights)."""
    rng = np.random.default_rng(0)
    arrays = {
        "w_array_0": rng.normal(0, 0.5, (8, n_labels)), "b_array_0": rng.normal(0, 0.1, 8),
        "w_array_1": rng.normal(0, 0.5, (8, 8)), "b_array_1": rng.normal(0, 0.1, 8),
        "w_array_2": rng.normal(0, 0.01, (n_pixels, 8)), "b_array_2": np.full(n_pixels, 1.0),
        "x_min": np.array([3500.0, 0.0, -1.0, -0.2]), "x_max": np.array([7000.0, 5.0, 0.5, 0.4]),
    }
    if wavelength is not None:
        arrays["wavelength"] = wavelength
    np.savez(path, **arrays)
    return path


def test_emulators_on_any_grid(tmp_path):
    from starlabels.data.emulator import PayneEmulator

    labels = np.array([[5000.0, 2.5, 0.0, 0.1], [6000.0, 4.3, -0.3, 0.0]])
    # 1. the whole BOSS grid, matched by pixel count
    full = survey.EmulatorSource.from_path(_write_dense_emulator(tmp_path / "a.npz", 4648),
                                           instrument="boss")
    assert full.grid.same_as(BOSS.grid)
    flux, covered = full.noiseless(labels)
    np.testing.assert_allclose(flux, PayneEmulator.load(tmp_path / "a.npz")(labels).numpy(), rtol=1e-6)
    assert covered.all()
    # 2. a sub-grid named by its wavelength array: placed at its own pixels, the rest masked
    sub = BOSS.wavelength[1000:2500]
    src = survey.EmulatorSource.from_path(_write_dense_emulator(tmp_path / "b.npz", sub.size, sub),
                                          instrument="boss")
    flux, covered = src.noiseless(labels)
    own = PayneEmulator.load(tmp_path / "b.npz")(labels).numpy()
    np.testing.assert_allclose(flux[:, 1000:2500], own, rtol=1e-6)
    assert covered[0, 1000:2500].all() and covered[0].sum() == 1500 and (flux[:, :1000] == 0).all()
    # 3. a grid that is not a sub-grid (half-pixel shifted): linear interpolation onto BOSS pixels
    shifted = 10 ** (3.5523 + 1e-4 * (np.arange(2000, 2600) + 0.5))
    src = survey.EmulatorSource.from_path(_write_dense_emulator(tmp_path / "c.npz", 600, shifted),
                                          instrument="boss")
    flux, covered = src.noiseless(labels)
    own = PayneEmulator.load(tmp_path / "c.npz")(labels).numpy()
    inside = covered[0]
    assert inside.sum() == 599  # BOSS pixels 2001…2599 lie between the first and last shifted pixel
    for k in range(2):
        np.testing.assert_allclose(flux[k, inside], np.interp(BOSS.wavelength[inside], shifted, own[k]),
                                   rtol=1e-6)
    # 4. the APOGEE ASPCAP grid by pixel count (7514), and a pixel count no grid has
    aspcap = survey.EmulatorSource.from_path(_write_dense_emulator(tmp_path / "d.npz", 7514))
    assert aspcap.grid.n_pixels == 7514 and aspcap.noiseless(labels)[1][0].sum() == 7514
    with pytest.raises(InputFileError, match=r"e\.npz.*123 pixels.*matches no grid"):
        survey.EmulatorSource.from_path(_write_dense_emulator(tmp_path / "e.npz", 123), instrument="boss")
    # a whole survey from the sub-grid emulator
    sim = survey.SurveySimulator.from_emulator(
        tmp_path / "b.npz", survey.SurveyConfig(n_stars=10, population={"giants": 1.0}), instrument="boss"
    )
    s = sim.simulate()
    assert s.flux.shape == (10, 4648)
    assert ((s.bitmask[:, :1000] & _bit("NODATA")) != 0).all()


def test_simulate_cli_boss_writes_mwm_star_files(tmp_path):
    from click.testing import CliRunner

    from starlabels.cli.main import cli
    from starlabels.data.hdf5 import SpectraDataset
    from starlabels.io import read_spectra

    out = tmp_path / "b.h5"
    res = CliRunner().invoke(cli, ["simulate", "--instrument", "boss", "-n", "3", "-o", str(out),
                                   "--fits-dir", str(tmp_path / "fits"), "--layout", "dr19", "--seed", "2"])
    assert res.exit_code == 0, res.output
    assert "boss" in res.output and "mwmStar (dr19)" in res.output
    ds = SpectraDataset(out)
    assert ds.grid.same_as(BOSS.grid)
    files = sorted((tmp_path / "fits").glob("mwmStar-*.fits"))
    assert len(files) == 3
    (spec,) = read_spectra(files[0])
    assert spec.instrument == "boss"
    row = int(spec.meta["SDSS_ID"]) - 1
    np.testing.assert_array_equal(spec.flux, ds.read(np.array([row])).flux[0])
    bad = CliRunner().invoke(cli, ["simulate", "--instrument", "lamost", "-o", str(out)])
    assert bad.exit_code == 2 and "unknown instrument" in bad.output
