"""Crash-consistent resume, small: bench/fault_injection.py's trials with 3 SIGKILLs of
``starlabels predict`` and of ``starlabels ingest`` at random moments (the full ≥ 20 per command,
train and the Dask worker kill are in the bench: bench/results/fault_injection.md)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench():
    """The bench script as a module (it is not part of the package)."""
    path = ROOT / "bench" / "fault_injection.py"
    yield load_script(path, "bench_fault_injection", register=True)
    sys.modules.pop("bench_fault_injection", None)


@pytest.mark.parametrize("command", ["predict", "ingest"])
def test_three_random_sigkills_then_resume_give_the_uninterrupted_output(bench, tmp_path, command):
    inp = bench.make_inputs(tmp_path)
    make, compare = {"predict": (bench.predict_cmd, bench.compare_predict),
                     "ingest": (bench.ingest_cmd, bench.compare_ingest)}[command]
    stats = bench.trials_for(command, make, compare, inp, tmp_path, 3, random.Random(3))
    assert stats["trials"] == 3 and stats["killed"] >= 1  # killed mid-run at least once
    assert stats["identical"] == 3 and stats["lost"] == 0 and stats["duplicated"] == 0
    assert stats["rows"] == 3 * (16 if command == "predict" else 15)  # 16 stars; ingest drops the NaN one
