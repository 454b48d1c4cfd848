"""Fixtures for the reliability tests (issue 14): a tiny continuum-normalising model folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from conftest import build_model, raw_spectra

__all__ = ["build_model", "raw_spectra"]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread for these tiny networks on a shared machine; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def continuum_model_folder(tmp_path_factory):
    """A saved small BayesianCNN on the ASPCAP grid with continuum normalisation of apStar input;
    its stored ``on_failure`` is ``"raise"`` (the default every trained model stores)."""
    from starlabels.preprocess.pipeline import PreprocessConfig

    cfg = PreprocessConfig(kind="continuum")
    assert cfg.on_failure == "raise"
    tm = build_model("bcnn", 7514, preprocessing=cfg.to_dict(), seed=3, dropout=0.0)
    folder = tmp_path_factory.mktemp("models") / "bcnn_continuum"
    tm.save(folder)
    return folder
