"""Issue 19: uncalibrated σ never leave ``starlabels predict`` without a visible warning in its
run summary that counts the rows and names the function that calibrates the model."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pandas as pd
from click.testing import CliRunner

import starlabels
from starlabels.cli.main import cli
from starlabels.cli.predict import uncalibrated_note
from starlabels.inference import flags as flag_bits
from starlabels.inference.calibration import calibrate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_bcnn.toml"


def _run(args: list[str]) -> str:
    res = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_note_counts_rows_and_names_the_calibration_function():
    assert uncalibrated_note(0, "m", "noise") == ""
    note = uncalibrated_note(7, "runs/m", "noise")
    assert note.startswith("WARNING: 7 rows have uncalibrated σ (flag UNCALIBRATED)")
    assert "starlabels.inference.calibration.calibrate('runs/m'" in note and "uncertainty='noise'" in note


def test_predict_summary_warns_until_the_model_is_calibrated_as_it_says(tmp_path):
    _run(["simulate", "-n", "120", "--seed", "3", "-o", str(tmp_path / "train.h5")])
    _run(["train", str(EXAMPLE), "--data", str(tmp_path / "train.h5"), "--epochs", "1",
          "--output", str(tmp_path / "model")])
    _run(["simulate", "-n", "10", "--seed", "5", "-o", str(tmp_path / "test.h5")])
    args = ["predict", str(tmp_path / "model"), str(tmp_path / "test.h5"), "--n-samples", "4"]
    # σ without a calibration for the method used: the summary says how many rows and what to run
    out = _run([*args, "--no-calibration", "-o", str(tmp_path / "a.csv")])
    flags = pd.read_csv(tmp_path / "a.csv")["FLAG"].to_numpy()
    n = int(((flags & flag_bits.bit("UNCALIBRATED")) != 0).sum())
    assert n == len(flags) > 0
    assert f"WARNING: {n} rows have uncalibrated σ (flag UNCALIBRATED)" in out
    assert "starlabels.inference.calibration.calibrate(" in out
    # do what it says (dev set: a fresh simulated sample), then the default run is calibrated and quiet
    _run(["simulate", "-n", "40", "--seed", "4", "-o", str(tmp_path / "dev.h5")])
    with h5py.File(tmp_path / "dev.h5") as fh:
        flux, error, labels = fh["flux"][:], fh["error"][:], fh["labels"][:]
        names = json.loads(fh.attrs["label_names"])
    model = starlabels.load_model(tmp_path / "model")
    labels = labels[:, [names.index(n) for n in model.label_names]]
    calibrate(str(tmp_path / "model"), flux, error, labels, uncertainty="mc_dropout", n_samples=4, save=True)
    out = _run([*args, "-o", str(tmp_path / "b.csv")])
    flags = pd.read_csv(tmp_path / "b.csv")["FLAG"].to_numpy()
    assert not (flags & flag_bits.bit("UNCALIBRATED")).any()
    assert "uncalibrated" not in out
