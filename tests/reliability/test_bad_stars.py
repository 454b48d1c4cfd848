"""A star's failure is a flag, never an exception (issue 14): dead detectors, NaN-only flux, zero
errors and truncated files in one catalog run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import starlabels
from starlabels.errors import InputDataError
from starlabels.inference import catalog as catalogs
from starlabels.inference import flags as flag_bits
from starlabels.inference.catalog_parts import parts_dir, skipped_path
from starlabels.output_lock import OutputLock, lock_path

from .conftest import raw_spectra

#: apStar pixels of the blue detector (the APOGEE apStar grid's blue segment is pixels 246–3273)
BLUE = slice(246, 3274)


def _dead_blue(flux, error, bitmask):
    """A dead blue detector: no signal (flux 0) and the pixels flagged unusable (error 0)."""
    flux[BLUE] = 0.0
    error[BLUE] = 0.0


def test_dead_detector_is_a_flag_not_an_exception(continuum_model_folder):
    flux, error, bitmask = raw_spectra(4, seed=1)
    _dead_blue(flux[1], error[1], bitmask[1])
    flux[2] = np.nan
    error[3] = -1.0  # negative errors everywhere: nothing usable
    model = starlabels.load_model(continuum_model_folder)
    cfg = model.preprocess_config()
    # the model's own preprocessing raises for that star (independent check of the fixture) ...
    with pytest.raises(InputDataError, match="continuum fit impossible"):
        cfg.apply(flux[1:2], error[1:2], bitmask[1:2])
    pred = starlabels.predict(continuum_model_folder, flux, error, bitmask=bitmask, seed=7)
    # ... inference flags it: labels kept, masked-pixels flag; the others invalid
    assert np.isfinite(pred.mean[[0, 1]]).all()
    assert pred.flags[1] & flag_bits.bit("MANY_MASKED_PIXELS") and not pred.flags[1] & flag_bits.bit(
        "INVALID_SPECTRUM"
    )
    assert pred.masked_fraction[1] > 0.3
    for i in (2, 3):
        assert np.isnan(pred.mean[i]).all() and pred.flags[i] & flag_bits.bit("INVALID_SPECTRUM")
    # the healthy star's labels do not depend on its neighbours
    # (the same seed: the default noise realisations draw fresh OS entropy per call, ~1e-5 in [Fe/H])
    alone = starlabels.predict(continuum_model_folder, flux[:1], error[:1], bitmask=bitmask[:1], seed=7)
    np.testing.assert_allclose(alone.mean[0], pred.mean[0], rtol=1e-5, atol=1e-5)  # float32 rounding
    assert model.preprocess_config().on_failure == "raise"  # the model is left as it was


@pytest.mark.slow
def test_folder_of_200_files_with_bad_stars(continuum_model_folder, tmp_path):
    """200 files: 10 with a dead detector, 5 truncated, 5 all-NaN → 195 rows: 180 clean, 10 labels +
    MANY_MASKED_PIXELS, 5 NaN + INVALID_SPECTRUM; the 5 truncated files listed as unreadable."""
    from starlabels.io import write_apstar

    flux, error, bitmask = raw_spectra(200, seed=5, snr=200.0)
    rng = np.random.default_rng(0)
    order = rng.permutation(200)
    dead, truncated, nan = set(order[:10]), set(order[10:15]), set(order[15:20])
    d = tmp_path / "in"
    d.mkdir()
    for i in range(200):
        if i in dead:
            _dead_blue(flux[i], error[i], bitmask[i])
        if i in nan:
            flux[i] = np.nan
        path = d / f"apStar-dr17-2M{i:08d}.fits"
        write_apstar(
            path,
            flux[i],
            error[i],
            bitmask[i],
            {"APOGEE_ID": f"2M{i:08d}", "RA": float(i), "DEC": -1.0, "SNR": 200.0},
        )
        if i in truncated:
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
    out = tmp_path / "cat.fits"
    res = catalogs.run_catalog(continuum_model_folder, [d], out, files_per_unit=64)
    assert res.n_rows == 195 and not res.failed_units
    df = catalogs.read_catalog(out)
    assert len(df) == 195
    ids = df["APOGEE_ID"].str.slice(2).astype(int).to_numpy()
    flag = df["FLAG"].to_numpy()
    problem = flag_bits.bit("INVALID_SPECTRUM") | flag_bits.bit("MANY_MASKED_PIXELS")
    is_dead, is_nan = np.isin(ids, list(dead)), np.isin(ids, list(nan))
    clean = ~is_dead & ~is_nan
    assert clean.sum() == 180 and ((flag[clean] & problem) == 0).all()
    assert np.isfinite(df.loc[clean, ["TEFF", "LOGG", "FE_H"]].to_numpy()).all()
    assert is_dead.sum() == 10
    assert ((flag[is_dead] & flag_bits.bit("MANY_MASKED_PIXELS")) != 0).all()
    assert ((flag[is_dead] & flag_bits.bit("INVALID_SPECTRUM")) == 0).all()
    assert np.isfinite(df.loc[is_dead, ["TEFF", "LOGG", "FE_H"]].to_numpy()).all()
    assert is_nan.sum() == 5 and ((flag[is_nan] & flag_bits.bit("INVALID_SPECTRUM")) != 0).all()
    assert np.isnan(df.loc[is_nan, ["TEFF", "LOGG", "FE_H", "TEFF_ERR"]].to_numpy(float)).all()
    # the summary counts them; the truncated files are listed as unreadable
    assert res.flag_counts["MANY_MASKED_PIXELS"] == 15 and res.flag_counts["INVALID_SPECTRUM"] == 5
    assert res.n_flagged == 15
    skipped = pd.read_csv(res.skipped_path, sep="\t")
    names = sorted(p.split("/")[-1] for p in skipped["path"])
    assert names == sorted(f"apStar-dr17-2M{i:08d}.fits" for i in truncated)
    assert skipped["reason"].str.contains("unreadable|truncated|cannot read|not a", case=False).all()
    print(res.summary())


def test_a_unit_failing_as_a_whole_is_retried_recorded_and_the_run_goes_on(
    continuum_model_folder, tmp_path, monkeypatch
):
    """An I/O error in one unit: retried UNIT_TRIES times, then its inputs are listed and the other
    units are written; the same command later retries only that unit and completes the catalog."""
    from click.testing import CliRunner

    from starlabels.cli.main import cli
    from starlabels.io import write_apstar

    flux, error, bitmask = raw_spectra(6, seed=2)
    d = tmp_path / "in"
    d.mkdir()
    for i in range(6):
        write_apstar(
            d / f"apStar-dr17-2M{i:08d}.fits", flux[i], error[i], bitmask[i], {"APOGEE_ID": f"2M{i:08d}"}
        )

    def cli_run(out):
        return CliRunner().invoke(
            cli, ["predict", str(continuum_model_folder), str(d), "-o", str(out), "--files-per-unit", "2"]
        )

    assert cli_run(tmp_path / "full.csv").exit_code == 0
    real, tries = catalogs.run_unit, []

    def flaky(im, unit, pdir, settings, **kwargs):
        if unit.index == 1:
            tries.append(unit.name)
            raise OSError(5, "Input/output error")
        return real(im, unit, pdir, settings, **kwargs)

    out = tmp_path / "cat.csv"
    monkeypatch.setattr(catalogs, "run_unit", flaky)
    r = cli_run(out)
    assert r.exit_code == 3, r.output
    assert (
        len(tries) == catalogs.UNIT_TRIES
        and "1 unit(s) failed" in r.output
        and "Input/output error" in r.output
    )
    assert len(catalogs.read_catalog(out)) == 4  # the two other units are there
    skipped = pd.read_csv(skipped_path(out), sep="\t")
    assert len(skipped) == 2 and skipped["reason"].str.contains("failed after retries").all()
    monkeypatch.setattr(catalogs, "run_unit", real)
    r = cli_run(out)  # the same command again: only the failed unit is computed
    assert r.exit_code == 0, r.output
    assert "(1 of 3 units computed now)" in r.output and "0 input(s) skipped" in r.output
    pd.testing.assert_frame_equal(catalogs.read_catalog(out), catalogs.read_catalog(tmp_path / "full.csv"))


def test_a_second_run_on_the_same_output_gets_a_clear_error(continuum_model_folder, tmp_path):
    flux, error, bitmask = raw_spectra(1, seed=2)
    from starlabels.errors import StarlabelsError
    from starlabels.io import write_apstar

    d = tmp_path / "in"
    d.mkdir()
    write_apstar(
        d / "apStar-dr17-2M00000001.fits", flux[0], error[0], bitmask[0], {"APOGEE_ID": "2M00000001"}
    )
    out = tmp_path / "cat.csv"
    with OutputLock(out):  # another run holds the output
        with pytest.raises(StarlabelsError, match=r"another catalog run \(pid \d+\) is writing this output"):
            catalogs.run_catalog(continuum_model_folder, [d], out)
        assert not out.exists() and not parts_dir(out).exists()
    assert catalogs.run_catalog(continuum_model_folder, [d], out).n_rows == 1  # released: runs
    assert not lock_path(out).exists()
