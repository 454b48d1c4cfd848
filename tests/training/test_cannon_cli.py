"""``starlabels train`` with ``[model] name = "cannon"``: raw apStar HDF5 → continuum-normalised
Cannon model folder, loaded and used by ``starlabels.predict`` on raw spectra."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import starlabels
from starlabels.cli.main import cli
from starlabels.models.cannon import CannonModel
from starlabels.training.config import ConfigError, load_config

N, P = 200, 8575


@pytest.fixture(scope="module")
def raw_h5(tmp_path_factory):
    """Raw apStar-grid spectra: a sloped continuum times lines whose depths are linear in two labels."""
    from starlabels.data.hdf5 import DatasetWriter

    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("data") / "raw.h5"
    z = rng.uniform(-1, 1, (N, 2))
    lines = np.abs(rng.normal(size=(2, P))) * (rng.random((1, P)) < 0.05)
    continuum = 100 * (1 + 0.1 * np.linspace(-1, 1, P))
    flux = continuum * (1 - 0.05 * (1 + z) @ lines) + rng.normal(0, 0.2, (N, P))
    labels = np.stack([5000 + 400 * z[:, 0], 3 + 0.5 * z[:, 1]], 1)
    labels[0, 1] = -9999.0  # MISSING: that row cannot train The Cannon
    with DatasetWriter(path, P, "apstar", ["TEFF", "LOGG"], compression=None, chunk_rows=64) as w:
        w.append(flux.astype(np.float32), np.full((N, P), 0.2, np.float32), np.zeros((N, P), np.int32),
                 labels=labels.astype(np.float32), label_errors=np.zeros((N, 2), np.float32))
    return path, flux, labels


def _config(tmp_path, h5, model_extra="", preprocess='kind = "continuum"\ndegree = 2'):
    path = tmp_path / "cannon.toml"
    path.write_text(f"""
[data]
files = ["{h5}"]
label_names = ["TEFF", "LOGG"]
[data.split]
fractions = [0.7, 0.15, 0.15]

[model]
name = "cannon"
[model.kwargs]
order = 2
n_starts = 3
{model_extra}

[preprocess]
{preprocess}

[training]
seed = 1
device = "cpu"

[output]
folder = "cannon_model"
""")
    return path


def test_train_cannon_from_toml_and_predict_raw_spectra(tmp_path, raw_h5):
    h5, flux, labels = raw_h5
    res = CliRunner().invoke(cli, ["train", str(_config(tmp_path, h5))])
    assert res.exit_code == 0, res.output
    assert "trained The Cannon" in res.output and "calibration (fisher" in res.output
    folder = tmp_path / "cannon_model"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["method"] == "cannon" and cfg["preprocessing"]["kind"] == "continuum"
    splits = np.load(folder / "splits.npz")
    model = starlabels.load_model(folder)
    assert isinstance(model, CannonModel) and model.n_pixels == 7514
    assert model.n_train_ == len(splits["train"]) - int(0 in splits["train"])  # the MISSING row dropped
    test = np.sort(splits["test"])
    pred = starlabels.predict(folder, flux[test], np.full((len(test), P), 0.2))
    assert pred.calibrated and pred.uncertainty == "fisher"
    resid = pred.mean - labels[test]
    assert np.all(np.abs(np.median(resid, axis=0)) < [40, 0.05])
    assert np.all(np.std(resid, axis=0) < [60, 0.08])  # label spreads: 230 K, 0.29 dex


def test_cannon_config_errors(tmp_path, raw_h5):
    h5, _, _ = raw_h5
    with pytest.raises(ConfigError, match="continuum"):
        load_config(_config(tmp_path, h5, preprocess='kind = "raw"'))
    with pytest.raises(ConfigError, match="unknown Cannon key"):
        load_config(_config(tmp_path, h5, model_extra="dropout = 0.1"))
    res = CliRunner().invoke(cli, ["train", str(_config(tmp_path, h5)), "--epochs", "3"])
    assert res.exit_code != 0 and "do not apply to The Cannon" in res.output


def test_censor_masks_load_as_bool_and_a_bad_file_names_itself_and_its_label(tmp_path):
    from starlabels.errors import InputFileError
    from starlabels.training.cannon import load_censor_masks

    np.save(tmp_path / "fe.npy", np.array([0, 1, 2, 0]))
    np.save(tmp_path / "square.npy", np.ones((2, 2)))
    (tmp_path / "text.npy").write_text("not an array\n")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    masks = load_censor_masks({"FE_H": str(tmp_path / "fe.npy")})
    np.testing.assert_array_equal(masks["FE_H"], [False, True, True, False])
    assert masks["FE_H"].dtype == bool
    for name, problem in (("square.npy", "1-D array; it holds shape (2, 2)"),
                          ("text.npy", "not a readable .npy/.npz file"),
                          ("objects.npy", "not a readable .npy/.npz file")):
        with pytest.raises(InputFileError) as err:
            load_censor_masks({"MG_FE": str(tmp_path / name)})
        assert str(err.value).startswith(f"{tmp_path / name}: censor mask of MG_FE: ")
        assert problem in str(err.value)
