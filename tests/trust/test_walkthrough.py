"""Issue 19: docs/walkthrough.sh (allStar labels → download --dry-run → ingest → train →
calibrate → predict → report) runs on simulated files laid out as the real ones: an allStar-like
table and apStar files at their SAS paths in the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from starlabels.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "walkthrough.sh"
FIELD = "SIMFIELD"
N = 80


def _real_layout(tmp: Path) -> Path:
    """A folder laid out as the walk-through expects real data: allStar.csv and
    cache/<SAS path>/apStar-dr17-<ID>.fits."""
    res = CliRunner().invoke(cli, ["simulate", "-n", str(N), "--seed", "2", "-o", str(tmp / "sim.h5"),
                                   "--fits-dir", str(tmp / "fits"), "--labels-csv", str(tmp / "sim.csv")])
    assert res.exit_code == 0, res.output
    data = tmp / "data"
    stars = data / "cache" / "dr17" / "apogee" / "spectro" / "redux" / "dr17" / "stars" / "apo25m" / FIELD
    stars.mkdir(parents=True)
    sim = pd.read_csv(tmp / "sim.csv", dtype={"APOGEE_ID": str})
    for apogee_id in sim["APOGEE_ID"]:
        (tmp / "fits" / f"apStar-sim-{apogee_id}.fits").rename(stars / f"apStar-dr17-{apogee_id}.fits")
    table = sim[["APOGEE_ID", "TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", "FE_H", "FE_H_ERR"]].assign(
        TELESCOPE="apo25m", FIELD=FIELD)
    table.to_csv(data / "allStar.csv", index=False)
    return data


@pytest.mark.slow
def test_walkthrough_runs_on_simulated_files_laid_out_as_the_real_ones(tmp_path):
    data = _real_layout(tmp_path)
    work = tmp_path / "work"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "STARLABELS_WALKTHROUGH_DATA": str(data), "STARLABELS_WALKTHROUGH_WORK": str(work),
           "STARLABELS_WALKTHROUGH_N": str(N), "STARLABELS_WALKTHROUGH_EPOCHS": "1",
           "STARLABELS": str(bin_dir / "starlabels"), "PYTHON": sys.executable,
           "STARLABELS_NO_PROGRESS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    labels = pd.read_csv(work / "labels.csv", dtype={"APOGEE_ID": str})
    assert len(labels) > 0.9 * N  # the simulated survey leaves some labels missing
    plan = (work / "download_plan.txt").read_text().splitlines()
    assert len(plan) == len(labels)
    assert all("/dr17/apogee/spectro/redux/dr17/stars/apo25m/SIMFIELD/apStar-dr17-" in x for x in plan)
    config = json.loads((work / "model" / "config.json").read_text())
    assert "mc_dropout" in config["calibration"]["methods"]  # stored once, not in the provenance
    assert "uncertainty_calibration" not in config["training"]
    catalog = pd.read_csv(work / "catalog.csv")
    assert len(catalog) == N  # every apStar file, labelled or not
    assert "uncalibrated" not in proc.stdout  # step 5 calibrated the method predict uses
    assert (work / "report" / "index.html").is_file()
