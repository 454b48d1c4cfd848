"""``starlabels demo --instrument boss --quick``: the whole pipeline on BOSS-like optical spectra
(the 4648-pixel coadd grid) end to end, its table recomputed from the written files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from starlabels import instruments
from starlabels.cli.main import cli
from starlabels.demo import BOSS_GENERATOR_LABELS, QUICK, DemoConfig
from starlabels.errors import InputDataError
from starlabels.inference.catalog import read_catalog

BOSS = instruments.get("boss")


@pytest.fixture(scope="module")
def boss_quick(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo_boss") / "out"
    args = ["demo", "--quick", "--instrument", "boss", "-o", str(out), "--seed", "2"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


@pytest.mark.slow
def test_boss_quick_demo_runs_end_to_end(boss_quick):
    out, text = boss_quick
    for name in ("catalog.fits", "truth.csv", "kiel.png", "pred_vs_true.png", "accuracy.md", "summary.json",
                 "model/config.json"):
        assert (out / name).is_file(), name
    assert "BOSS grid" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["instrument"] == "boss"
    assert summary["labels"] == list(BOSS_GENERATOR_LABELS)
    cat = read_catalog(out / "catalog.fits")
    truth = pd.read_csv(out / "truth.csv", dtype={"APOGEE_ID": str})
    assert len(cat) == len(truth) == QUICK["n_test"]
    # SDSS-V style rows: an SDSS_ID per star and the telescope
    assert cat["SDSS_ID"].to_numpy().min() > 0 and cat["SDSS_ID"].is_unique
    assert set(cat["TELESCOPE"]) == {"apo25m"}
    accuracy = {row["label"]: row for row in summary["accuracy"]}
    for x in BOSS_GENERATOR_LABELS:
        assert np.all(np.isfinite(cat[x])) and np.all(cat[f"{x}_ERR"] > 0)
        # the reported accuracy, recomputed from the written files with numpy alone
        r = cat[x].to_numpy(float) - truth[x].to_numpy(float)
        m = np.median(r)
        assert accuracy[x]["median"] == pytest.approx(m, rel=1e-6, abs=1e-9)
        assert accuracy[x]["sigma_mad"] == pytest.approx(1.4826 * np.median(np.abs(r - m)), rel=1e-6)


@pytest.mark.slow
def test_boss_model_takes_boss_spectra(boss_quick):
    import starlabels

    out, _ = boss_quick
    model = starlabels.load_model(out / "model")
    pre = model.preprocess_config()
    assert pre.kind == "continuum" and pre.instrument == "boss"
    assert pre.grid.same_as(BOSS.grid) and pre.accepts(BOSS.grid)
    assert pre.output_grid.same_as(BOSS.grid.segment_grid())
    # a BOSS spectrum from the generator predicts; an APOGEE one is refused, naming both grids
    from starlabels.data.synthetic import SyntheticGenerator

    s = SyntheticGenerator(seed=0, instrument="boss").simulate(2, snr=50.0, seed=9)
    pred = starlabels.predict(model, s.flux, s.error, bitmask=s.bitmask, uncertainty="mc_dropout",
                              n_samples=4, seed=0)
    assert np.all(np.isfinite(pred.mean))
    apogee = SyntheticGenerator(seed=0).simulate(1, snr=50.0, seed=9)
    with pytest.raises(Exception, match=r"4648|boss"):
        starlabels.predict(model, apogee.flux, apogee.error, bitmask=apogee.bitmask,
                           uncertainty="mc_dropout", n_samples=2)


def test_unknown_instrument_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--instrument", "lamost", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--instrument" in result.output
    with pytest.raises(InputDataError, match="instrument"):
        DemoConfig(instrument="lamost")


@pytest.mark.slow
def test_boss_quick_demo_with_an_emulator_on_the_boss_grid(tmp_path):
    # a small dense Payne-format emulator on the whole BOSS grid (matched by its 4648 pixels):
    # the continuum pixels are then selected from the training spectra on the BOSS grid
    rng = np.random.default_rng(0)
    n = BOSS.n_pixels
    path = tmp_path / "boss_emulator.npz"
    np.savez(path, w_array_0=rng.normal(0, 0.5, (8, 4)), b_array_0=rng.normal(0, 0.1, 8),
             w_array_1=rng.normal(0, 0.5, (8, 8)), b_array_1=rng.normal(0, 0.1, 8),
             w_array_2=rng.normal(0, 0.05, (n, 8)), b_array_2=np.full(n, 1.0),
             x_min=np.array([3500.0, 0.0, -1.0, -0.2]), x_max=np.array([7000.0, 5.0, 0.5, 0.4]))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["demo", "--quick", "--instrument", "boss", "--emulator", str(path),
                                      "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "selected from" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["labels"] == ["TEFF", "LOGG", "FE_H", "ALPHA_M"]
    import starlabels

    pre = starlabels.load_model(out / "model").preprocess_config()
    assert pre.instrument == "boss" and pre.grid.same_as(BOSS.grid)
    assert len(read_catalog(out / "catalog.fits")) == QUICK["n_test"]
