"""``starlabels labels ...`` commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from click.testing import CliRunner

from script_module import load_script
from starlabels.cli.main import cli

# the CMD-format test grid of test_yso.py
_yso_tests = load_script(Path(__file__).with_name("test_yso.py"), "_yso_tests")


@pytest.mark.parametrize("sub", [[], ["mdwarf"], ["yso-population"], ["yso-train"], ["yso-predict"]])
def test_help(sub):
    res = CliRunner().invoke(cli, ["labels", *sub, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output
    if sub == ["mdwarf"]:
        assert "--exclude-field" in res.output and "CATALOG" in res.output
    if sub == ["yso-population"]:
        assert "--grid" in res.output and "--n-stars" in res.output


def test_mdwarf_command(tmp_path):
    cat = Table({
        "APOGEE_ID": ["2M1", "2M2", "2M3"], "g": [15.0, 15.0, 15.0], "r": [13.6, 13.6, 13.6],
        "J": [11.0, 11.0, 11.0], "H": [10.4, 10.4, 10.4], "ks": [10.15, 10.15, np.nan],
        "parallax": [20.0, 20.0, 20.0], "parallax_error": [0.1, 0.1, 0.1],
        "FIELD": ["120+18", "ORIONA", "120+18"],
    })
    cat.write(tmp_path / "cat.csv")
    res = CliRunner().invoke(cli, ["labels", "mdwarf", str(tmp_path / "cat.csv"), "-o",
                                   str(tmp_path / "out.fits"), "--column", "K=ks"])
    assert res.exit_code == 0, res.output
    assert "1 of 3 stars labelled" in res.output
    assert "STAR_FORMING_FIELD" in res.output and "BAD_PHOTOMETRY" in res.output
    out = Table.read(tmp_path / "out.fits", mask_invalid=False)
    assert list(out["APOGEE_ID"]) == ["2M1", "2M2", "2M3"]
    # Mann Teff of the reference star (see test_mdwarf.py): 3500 * 1.0235544
    assert out["teff"][0] == pytest.approx(3582.44, abs=0.01)
    assert np.isnan(out["teff"][1]) and np.isnan(out["teff"][2])
    # no exclusion: ORIONA is labelled too
    res = CliRunner().invoke(cli, ["labels", "mdwarf", str(tmp_path / "cat.csv"), "-o",
                                   str(tmp_path / "out.csv"), "--column", "K=ks", "--no-field-exclusion"])
    assert res.exit_code == 0 and "2 of 3 stars labelled" in res.output


def test_mdwarf_command_bad_file(tmp_path):
    (tmp_path / "bad.fits").write_text("not a fits file")
    res = CliRunner().invoke(cli, ["labels", "mdwarf", str(tmp_path / "bad.fits"), "-o",
                                   str(tmp_path / "o.csv")])
    assert res.exit_code != 0
    assert "bad.fits" in res.output and "cannot read" in res.output


def test_yso_population_train_predict(tmp_path):
    grid = tmp_path / "grid.dat"
    grid.write_text(_yso_tests._cmd_text())
    ext = tmp_path / "ext.txt"
    ext.write_text("\n".join(f"{k} {v}" for k, v in {
        "GAIAEDR3_GMAG": 0.8, "GAIAEDR3_GBPMAG": 1.1, "GAIAEDR3_GRPMAG": 0.6, "TMASS_JMAG": 0.3,
        "TMASS_HMAG": 0.2, "TMASS_KSMAG": 0.1}.items()))
    runner = CliRunner()
    pop_path = tmp_path / "pop.fits"
    res = runner.invoke(cli, ["labels", "yso-population", "-n", "300", "-o", str(pop_path), "--grid",
                              str(grid), "--extinction", str(ext), "--av-range", "0", "2",
                              "--distance-range", "50", "200", "--seed", "3"])
    assert res.exit_code == 0, res.output
    pop = Table.read(pop_path)
    assert len(pop) == 300 and pop["av"].max() <= 2.0 and pop["G"].max() < 19.0
    res = runner.invoke(cli, ["labels", "yso-train", str(pop_path), "-o", str(tmp_path / "model"),
                              "--epochs", "2", "--batch-size", "64"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "model" / "weights.safetensors").is_file()
    res = runner.invoke(cli, ["labels", "yso-predict", str(tmp_path / "model"), str(pop_path), "-o",
                              str(tmp_path / "pred.csv")])
    assert res.exit_code == 0, res.output
    pred = Table.read(tmp_path / "pred.csv")
    assert len(pred) == 300 and np.isfinite(pred["logg"]).all()
    assert {"log_age", "mass", "av", "teff", "logg"} <= set(pred.colnames)
