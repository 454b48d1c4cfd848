"""bench/cannon_agreement.py --quick: the native Cannon against annieslasso in its own venv on the
same simulated spectra (skips with the pip error when that venv cannot be installed here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "cannon_agreement.py"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_native_cannon_agrees_with_annieslasso(tmp_path, shared_data):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--work", str(tmp_path / "work"),
                           "--output", str(tmp_path / "agreement.md")],
                          capture_output=True, text=True, env=env, timeout=540, cwd=ROOT)
    output = proc.stdout[-3000:] + proc.stderr[-3000:]
    if proc.returncode != 0 and "could not set up The Cannon's environment" in output:
        pytest.skip(f"The Cannon's virtual environment could not be installed here: {output[-600:]}")
    assert proc.returncode == 0, output
    res = np.load(tmp_path / "work" / "agreement.npz")
    assert res["coef"].size > 1000 and res["coef"].max() <= 1e-3  # θ per pixel, relative
    assert res["s2_polished_rel"].size > 100 and res["s2_polished_rel"].max() <= 1e-3
    assert res["dz"].size == 30 * 4 and res["dz"].max() <= 0.1  # test labels, in our σ
    text = (tmp_path / "agreement.md").read_text()
    assert "| training (300 spectra" in text and "speed-up" in text
