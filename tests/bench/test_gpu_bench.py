"""bench/gpu.py runs before a GPU is at hand (issue 17, must-have 7): the whole script on the CPU with small
settings, its JSON complete and finite, and its no-CUDA answer where CUDA is asked for and absent."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from script_module import load_script

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gpu.py"


def _bench_module():
    return load_script(BENCH, "gpu_bench")


def test_rate_counts_calls_and_spectra():
    gpu = _bench_module()
    calls = []
    rate = gpu._rate(lambda: calls.append(1), 10, 0.0, torch.device("cpu"))
    assert len(calls) == 2  # the warm-up and the one timed call that an empty budget still makes
    assert rate > 0
    calls.clear()
    rate = gpu._rate(lambda: calls.append(1), 10, 0.05, torch.device("cpu"))
    assert len(calls) >= 2 and rate > 0


def test_whole_script_on_cpu(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run(
        [sys.executable, str(BENCH), "--device", "cpu", "--seconds", "0.01", "--batches", "2,3",
         "--stars", "2", "--shift-passes", "16", "--json", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(out.read_text())
    assert result["device"] == "cpu (not a GPU)"
    labels = ("float32", "bf16 autocast", "fp16 autocast")
    expected = {f"{net}|{batch}|{label}" for net in ("apogee_net", "bcnn") for batch in (2, 3)
                for label in labels}
    assert set(result["forward"]) == expected
    assert all(math.isfinite(v) and v > 0 for v in result["forward"].values())
    mc = result["mc_dropout"]
    assert set(mc) == {*labels, "shift_in_sigma|bf16 autocast", "shift_in_sigma|fp16 autocast"}
    assert all(math.isfinite(v) and v >= 0 for v in mc.values())
    assert all(mc[label] > 0 for label in labels)
    assert "apogee_net batch    3:" in run.stdout and "x astroNN" in run.stdout
    assert "MC noise of ~0.35 σ" in run.stdout  # sqrt(2 / 16)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script measures it")
def test_without_cuda_it_says_so_and_reports_nothing(tmp_path):
    out = tmp_path / "gpu.json"
    run = subprocess.run([sys.executable, str(BENCH), "--json", str(out)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0
    assert "No CUDA device available" in run.stdout
    assert not out.exists()
