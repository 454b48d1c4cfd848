"""Shared fixtures. Tests needing ../shared/data use the ``shared_data`` fixture and skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("STARLABELS_NO_PROGRESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("STARLABELS_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test with the reason when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is absent (needs ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _torch_threads_for_fixtures():
    """One torch thread from the start: module- and session-scoped fixtures are made before any
    function-scoped one, and a reference computed on torch's default thread count sums in another
    order than the tests' one thread (float32 rounding, which exact comparisons see)."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _torch_threads():
    """One torch thread: the tests use small tensors, where threads cost more than they give."""
    import torch  # imported at session start by the fixture above

    torch.set_num_threads(1)
    yield
