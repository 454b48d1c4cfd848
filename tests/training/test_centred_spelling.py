"""The spectrum-scaling mode is spelled ``"centred"``; configs and model folders written with the
older ``"centered"`` still load (read as ``"centred"``, written back with the new spelling)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from starlabels.data.normalization import LabelScaler, SpectrumScaler
from starlabels.models import BayesianCNN
from starlabels.models.folder import TrainedModel, load_model
from starlabels.training.config import ConfigError, ModelConfig, config_from_dict

P = 64


def test_old_config_spelling_is_read_as_centred():
    assert ModelConfig(architecture="bcnn", spectrum_scaling="centered").spectrum_scaling == "centred"
    assert ModelConfig(architecture="bcnn", spectrum_scaling="centred").spectrum_scaling == "centred"
    data = {"files": ["a.h5"], "label_names": ["TEFF"]}
    cfg = config_from_dict({"data": data, "model": {"architecture": "bcnn", "spectrum_scaling": "centered"}})
    assert cfg.model.spectrum_scaling == "centred"
    with pytest.raises(ConfigError, match="'none', 'centred' or 'standardised'"):
        ModelConfig(spectrum_scaling="centreed")


def test_old_model_folder_spelling_loads_and_saves_as_centred(tmp_path):
    rng = np.random.default_rng(4)
    flux = rng.normal(1.0, 0.05, size=(30, P)).astype(np.float32)
    labels = np.column_stack([rng.normal(5000, 300, 30), rng.normal(3, 0.5, 30)])
    torch.manual_seed(0)
    model = TrainedModel(
        network=BayesianCNN(2, P, hidden=[16, 8]), label_names=["TEFF", "LOGG"],
        label_units=["K", "dex"], label_scaler=LabelScaler(names=["TEFF", "LOGG"]).fit(labels),
        spectrum_scaler=SpectrumScaler("centred").fit(flux), preprocessing={"kind": "raw"},
    )
    model.save(tmp_path / "new")
    config_path = tmp_path / "new" / "config.json"
    cfg = json.loads(config_path.read_text())
    assert cfg["normalisation"]["spectra"]["mode"] == "centred"
    # rewrite the folder as a model saved before the rename
    cfg["normalisation"]["spectra"]["mode"] = "centered"
    config_path.write_text(json.dumps(cfg))
    old = load_model(tmp_path / "new", device="cpu")
    assert old.spectrum_scaler.mode == "centred"
    # the per-pixel training mean is still subtracted: the network input is flux − mean
    np.testing.assert_allclose(old.network_input(flux[:3])[:, 0].numpy(),
                               flux[:3] - flux.mean(axis=0), atol=1e-6)
    mean_old, std_old = old.predict_preprocessed(flux[:5])
    mean_new, std_new = model.predict_preprocessed(flux[:5])
    np.testing.assert_array_equal(mean_old, mean_new)
    np.testing.assert_array_equal(std_old, std_new)
    old.save(tmp_path / "resaved")
    resaved = json.loads((tmp_path / "resaved" / "config.json").read_text())
    assert resaved["normalisation"]["spectra"]["mode"] == "centred"
