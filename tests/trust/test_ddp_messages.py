"""Issue 19: under torchrun, a config error is one clear error line from rank 0 (no traceback of
ours, no duplicates), and a successful run prints its run summary once, from rank 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from starlabels.cli.main import cli

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_bcnn.toml"
BAD = '[data]\nfiles = ["train.h5"]\nlabel_names = ["TEFF"]\ncolour = 1\n'


def _torchrun(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "STARLABELS_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}
    env.pop("WORLD_SIZE", None)
    env.pop("RANK", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=240)


def _our_traceback_lines(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.strip().startswith("File ") and "starlabels" in x]


@pytest.mark.slow
@pytest.mark.parametrize("entry", [["-m", "starlabels.cli.main", "train"],
                                   ["-m", "starlabels.training.distributed"]])
def test_a_config_error_is_one_line_from_rank_zero(tmp_path, entry):
    (tmp_path / "bad.toml").write_text(BAD)
    proc = _torchrun([*entry, "bad.toml"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("unknown key(s) ['colour']") == 1, out
    assert [x for x in out.splitlines() if x.startswith("Error:")] == [
        x for x in out.splitlines() if "colour" in x]
    assert not _our_traceback_lines(out), out


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["cli", "module"])
def test_a_successful_run_prints_its_summary_once(tmp_path, entry):
    res = CliRunner().invoke(cli, ["simulate", "-n", "60", "--seed", "3", "-o", str(tmp_path / "t.h5")])
    assert res.exit_code == 0, res.output
    if entry == "cli":
        args = ["-m", "starlabels.cli.main", "train", str(EXAMPLE), "--data", "t.h5", "--epochs", "1",
                "--output", "model", "--device", "cpu"]
    else:  # the module entry reads everything from the config (beside the data: relative paths)
        text = EXAMPLE.read_text().replace('files = ["data/train.h5"]', 'files = ["t.h5"]')
        text = text.replace("epochs = 60", "epochs = 1").replace('folder = "models/bcnn"', 'folder = "model"')
        (tmp_path / "run.toml").write_text(text)
        args = ["-m", "starlabels.training.distributed", "run.toml"]
    proc = _torchrun(args, tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert proc.stdout.count("model saved to") == 1, out[-3000:]
    assert proc.stdout.count("trained 'bcnn'") == 1
    assert (tmp_path / "model" / "weights.safetensors").is_file()
    if entry == "cli":
        assert proc.stdout.count("main epoch   1:") == 1  # epoch lines from rank 0 only
