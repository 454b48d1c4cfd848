"""TrainedModel save/load: round trips for all networks, atomic writes, format errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import starlabels
from starlabels.data.normalization import LabelScaler, SpectrumScaler
from starlabels.errors import InputDataError, ModelFormatError
from starlabels.models import ApogeeNet, BayesianCNN, CensoredBayesianCNN, folder_io
from starlabels.models.folder import TrainedModel, load_model

P = 256
NAMES = ["TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE"]
UNITS = ["K", "dex", "dex", "dex", "dex"]
PHYS_MEAN = np.array([4800.0, 2.5, -0.2, 0.1, 0.05])
PHYS_STD = np.array([400.0, 0.8, 0.3, 0.1, 0.15])


def make_network(kind: str):
    torch.manual_seed(0)
    if kind == "apogee_net":
        return ApogeeNet(5, n_pixels=P, dropout=0.1)
    if kind == "bcnn":
        return BayesianCNN(5, P, hidden=[32, 16])
    w = np.zeros((2, P), dtype=bool)
    w[0, 10:30] = w[1, 100:140] = True
    return CensoredBayesianCNN(w, ["MG", "AL"], hidden=[32, 16], element_hidden=[8, 4])


def make_model(kind: str, rng: np.random.Generator) -> TrainedModel:
    flux = rng.normal(1.0, 0.05, size=(20, P)).astype(np.float32)
    labels = PHYS_MEAN + PHYS_STD * rng.normal(size=(20, 5))
    return TrainedModel(
        network=make_network(kind),
        label_names=NAMES,
        label_units=UNITS,
        label_scaler=LabelScaler(names=NAMES).fit(labels),
        spectrum_scaler=SpectrumScaler("none" if kind == "apogee_net" else "centered").fit(flux),
        preprocessing={"kind": "continuum", "degree": 2, "reject_bits": [0, 1, 2]},
        calibration={"TEFF": 1.3, "MG_FE": 0.9},
        training={"files": ["train.h5"], "seed": 0, "epochs": 3, "best_dev_loss": 0.9},
        history=[
            {"epoch": 1, "train_loss": 1.5, "dev_loss": 1.6, "lr": 1e-3, "seconds": 2.5},
            {"epoch": 2, "train_loss": 0.7, "dev_loss": 0.9, "lr": 5e-4, "seconds": 2.4},
        ],
    )


@pytest.mark.parametrize("kind", ["apogee_net", "bcnn", "bcnn_censored"])
def test_round_trip_gives_identical_predictions(kind, tmp_path):
    rng = np.random.default_rng(0)
    model = make_model(kind, rng)
    flux = rng.normal(1.0, 0.05, size=(7, P)).astype(np.float32)
    mean, std = model.predict_preprocessed(flux, batch_size=3)
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "history.csv",
        "weights.safetensors",
    ]
    loaded = load_model(tmp_path / "m", device="cpu")
    assert not loaded.network.training
    mean2, std2 = loaded.predict_preprocessed(flux, batch_size=3)
    np.testing.assert_array_equal(mean2, mean)
    if kind == "apogee_net":
        assert std is None and std2 is None
    else:
        np.testing.assert_array_equal(std2, std)
    x = model.network_input(flux)
    model.network.eval()
    assert torch.equal(loaded.network(x)[0], model.network(x)[0])
    assert loaded.label_names == NAMES and loaded.label_units == UNITS
    # a bare {label: scale} is stored as the calibration of every uncertainty method ("*")
    assert loaded.calibration["methods"]["*"]["scales"] == {"TEFF": 1.3, "MG_FE": 0.9}
    assert loaded.preprocessing == model.preprocessing and loaded.training == model.training
    assert loaded.history == model.history
    assert loaded.config_dict() == model.config_dict()
    assert loaded.spectrum_scaler.mode == model.spectrum_scaler.mode


def test_config_json_layout_and_physical_units(tmp_path):
    rng = np.random.default_rng(1)
    model = make_model("bcnn", rng)
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["format_version"] == 2 and cfg["starlabels_version"] == starlabels.__version__
    assert cfg["architecture"] == {"name": "bcnn", "kwargs": model.network.config()}
    assert cfg["labels"] == {"names": NAMES, "units": UNITS}
    assert cfg["normalisation"]["spectra"] == {"mode": "centred", "n_pixels": P}
    assert set(cfg["normalisation"]["labels"]) >= {"mean", "std"}
    for key in ("created", "preprocessing", "calibration", "training"):
        assert key in cfg
    # provenance with numpy values, NaN and non-JSON objects still saves (NaN → null, str())
    model.training = {"sizes": np.array([3, 4]), "loss": float("nan"), "when": np.datetime64("2024-01-02")}
    model.save(tmp_path / "m")
    training = json.loads((tmp_path / "m" / "config.json").read_text())["training"]
    assert training == {"sizes": [3, 4], "loss": None, "when": "2024-01-02"}
    header = (tmp_path / "m" / "history.csv").read_text().splitlines()[0]
    assert header == "epoch,train_loss,dev_loss,lr,seconds"
    # physical units: mean = z·std + mean, std = exp(½ log_var)·std
    z = torch.tensor([[0.0, 1.0, -1.0, 0.5, 2.0]], dtype=torch.float64)
    lv = torch.full((1, 5), 2 * np.log(0.5), dtype=torch.float64)
    m, s = model.unstandardise(z, lv)
    sc = model.label_scaler
    np.testing.assert_allclose(m.numpy()[0], sc.mean + z.numpy()[0] * sc.std, rtol=1e-14)
    np.testing.assert_allclose(s.numpy()[0], 0.5 * sc.std, rtol=1e-14)


def test_save_replaces_model_folder_but_keeps_foreign_files(tmp_path):
    rng = np.random.default_rng(2)
    target = tmp_path / "m"
    make_model("bcnn", rng).save(target)
    (target / "checkpoint.pt").write_bytes(b"trainer state")
    model = make_model("apogee_net", rng)
    model.history = None
    model.save(target)
    assert (target / "checkpoint.pt").read_bytes() == b"trainer state"
    assert not (target / "history.csv").exists()  # belonged to the old model
    assert load_model(target, device="cpu").architecture == "apogee_net"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary folders left
    with pytest.raises(FileExistsError, match="overwrite"):
        model.save(target, overwrite=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a starlabels model folder"):
        model.save(other)
    assert (other / "notes.txt").read_text() == "mine"


def test_failed_save_leaves_existing_folder_untouched(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    target = tmp_path / "m"
    make_model("bcnn", rng).save(target)
    (target / "checkpoint.pt").write_bytes(b"x")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    real_rename = folder_io.os.rename

    def failing_rename(src, dst):
        # the final step, temporary folder → destination, fails (after the old one was moved away)
        if str(dst) == str(target) and ".m.tmp-" in str(src):
            raise OSError("disk full")
        return real_rename(src, dst)

    monkeypatch.setattr(folder_io.os, "rename", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        make_model("apogee_net", rng).save(target)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert load_model(target, device="cpu").architecture == "bcnn"


def test_load_errors(tmp_path):
    with pytest.raises(ModelFormatError, match="does not exist"):
        load_model(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFormatError, match=r"config\.json"):
        load_model(tmp_path / "empty")
    rng = np.random.default_rng(4)
    good = tmp_path / "good"
    make_model("bcnn", rng).save(good)
    cfg = json.loads((good / "config.json").read_text())

    future = tmp_path / "future"
    make_model("bcnn", rng).save(future)
    (future / "config.json").write_text(json.dumps({**cfg, "format_version": 3}))
    with pytest.raises(ModelFormatError, match="format_version 3"):
        load_model(future)

    broken = tmp_path / "broken"
    make_model("bcnn", rng).save(broken)
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        load_model(broken)

    no_weights = tmp_path / "noweights"
    make_model("bcnn", rng).save(no_weights)
    (no_weights / "weights.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"weights\.safetensors is missing"):
        load_model(no_weights)

    garbage = tmp_path / "garbage"
    make_model("bcnn", rng).save(garbage)
    (garbage / "weights.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ModelFormatError, match="unreadable weights"):
        load_model(garbage)

    mismatch = tmp_path / "mismatch"
    make_model("bcnn", rng).save(mismatch)
    kwargs = {**cfg["architecture"]["kwargs"], "hidden": [8, 8]}
    cfg_bad = {**cfg, "architecture": {"name": "bcnn", "kwargs": kwargs}}
    (mismatch / "config.json").write_text(json.dumps(cfg_bad))
    with pytest.raises(ModelFormatError, match="do not fit"):
        load_model(mismatch)


def test_lazy_public_entry_point_and_validation():
    assert starlabels.load_model is load_model
    rng = np.random.default_rng(5)
    model = make_model("bcnn", rng)
    with pytest.raises(InputDataError, match="label names"):
        TrainedModel(model.network, NAMES[:3], model.label_scaler)
    with pytest.raises(InputDataError, match="calibration"):
        TrainedModel(model.network, NAMES, model.label_scaler, calibration={"VSINI": 1.0})
    with pytest.raises(InputDataError, match="256 pixels"):
        model.network_input(np.ones((2, P + 1)))


FIXTURES = __import__("pathlib").Path(__file__).parents[1] / "fixtures" / "apogee_reference"


def test_grid_is_stored_and_round_trips(tmp_path):
    """A model on a user's grid (not a built-in one, not log-linear) stores the grid itself; the
    loaded model has the same wavelengths, segments and checksum, and input_grid is that grid
    (no preprocessing)."""
    from starlabels.core.grid import from_wavelength

    wave = np.cumsum(np.linspace(1.0, 2.0, P)) + 4000.0
    grid = from_wavelength(wave, segments={"b": (4000.0, 4200.0), "r": (4200.0, 5000.0)}, name="mine")
    torch.manual_seed(0)
    model = TrainedModel(BayesianCNN(2, P, hidden=[8, 4]), ["TEFF", "LOGG"],
                         LabelScaler().fit(np.array([[4000.0, 1.0], [5000.0, 3.0]])), grid=grid)
    model.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["grid"]["checksum"] == grid.checksum and len(cfg["grid"]["wavelength"]) == P
    back = load_model(tmp_path / "m", device="cpu")
    assert back.grid.same_as(grid) and back.input_grid.same_as(grid)
    np.testing.assert_array_equal(back.grid.wavelength, wave)
    assert dict(back.grid.segments) == dict(grid.segments)
    # a grid of another length than the network's input is refused when given
    with pytest.raises(InputDataError, match="the network takes"):
        TrainedModel(BayesianCNN(2, P + 1, hidden=[8, 4]), ["TEFF", "LOGG"],
                     LabelScaler().fit(np.array([[4000.0, 1.0], [5000.0, 3.0]])), grid=grid)
    # a tampered grid (checksum no longer matching the wavelengths) is a format error
    cfg["grid"]["wavelength"][3] += 0.5
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelFormatError, match="checksum"):
        load_model(tmp_path / "m", device="cpu")


def test_old_model_folders_load_with_their_apogee_grids():
    """The committed fixture folders were written before grids were stored (no "grid" entry):
    the continuum model's network grid is ASPCAP, the raw model's apStar; both take apStar input."""
    from starlabels.instruments import get

    apogee = get("apogee")
    for kind, network_grid in (("continuum", apogee.get_grid("aspcap")), ("raw", apogee.grid)):
        folder = FIXTURES / f"model_{kind}"
        assert "grid" not in json.loads((folder / "config.json").read_text())
        model = load_model(folder, device="cpu")
        assert model.grid.same_as(network_grid), kind
        assert model.input_grid.same_as(apogee.grid), kind
        assert model.config_dict()["grid"]["checksum"] == network_grid.checksum
