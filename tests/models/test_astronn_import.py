"""starlabels.models.from_astronn on hand-made astroNN folders (exact astroNN/Keras HDF5 layout,
written with h5py): predictions against an independent numpy forward pass with Keras' semantics,
round trips, and every bad-input error. No TensorFlow needed (the comparison with astroNN itself is
tests/bench/test_astronn_agreement.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import starlabels
from script_module import load_script
from starlabels.errors import InputDataError, InputFileError, ModelFormatError
from starlabels.models import from_astronn
from starlabels.models.astronn_import import astronn_label_name, load_astronn_windows

fake = load_script(Path(__file__).with_name("astronn_fake.py"), "astronn_fake", register=True)


pytestmark = pytest.mark.filterwarnings("ignore:.*only preprocessed=True input:UserWarning")


def _params(folder: Path) -> dict:
    return json.loads((folder / "astroNN_model_parameter.json").read_text())


def _spectra(n: int = 7, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.5, 1.1, (n, fake.P)).astype(np.float32)


def _expected(m, folder: Path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Physical means and σ as astroNN computes them from the numpy Keras forward pass."""
    p = _params(folder)
    mean, log_var = fake.keras_forward(m, x.astype(np.float64), p)
    mu, sd = np.asarray(p["labels_mean"]["output"]), np.asarray(p["labels_std"]["output"])
    return mean * sd + mu, np.sqrt(np.exp(log_var) * sd**2)


@pytest.fixture
def bcnn(tmp_path):
    return fake.fake_bcnn(tmp_path / "bcnn")


@pytest.fixture
def censored(tmp_path):
    folder, m = fake.fake_censored(tmp_path / "censored")
    return folder, m, fake.fake_windows(tmp_path / "windows.npz")


def test_bcnn_matches_keras_forward_pass(bcnn):
    folder, m = bcnn
    model = from_astronn(folder)
    x = _spectra()
    mean, sigma = _expected(m, folder, x)
    got_mean, got_sigma = model.predict_preprocessed(x)
    np.testing.assert_allclose(got_mean, mean, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got_sigma, sigma, rtol=2e-5)
    assert model.label_names == ["TEFF", "LOGG", "FE_H"]
    assert model.label_units == ["K", "dex", "dex"]
    assert model.network.dropout == pytest.approx(0.3)


def test_flatten_order_matters(bcnn):
    """The first dense layer's rows must be permuted (Keras flattens length-major): feeding the
    kernel unpermuted gives different outputs, so the test above really checks the permutation."""
    folder, m = bcnn
    model = from_astronn(folder)
    lin = next(x for x in model.network.trunk if isinstance(x, torch.nn.Linear))
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(m.weights["dense"]["kernel"].T))
    mean, _ = _expected(m, folder, _spectra())
    assert not np.allclose(model.predict_preprocessed(_spectra())[0], mean, rtol=1e-3)


def test_censored_matches_keras_forward_pass(censored):
    folder, m, windows = censored
    model = from_astronn(folder, element_windows=windows)
    x = _spectra()
    mean, sigma = _expected(m, folder, x)
    got_mean, got_sigma = model.predict_preprocessed(x)
    np.testing.assert_allclose(got_mean, mean, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(got_sigma, sigma, rtol=2e-5)
    assert model.label_names == ["TEFF", "LOGG", "C_H", "MG_H", "FE_H", "TIII_H"]
    net = model.network
    assert net.element_names == ["C", "Mg", "Ti2"] and net.element_hidden == [8, 4]
    assert net.output_order == [0, 1, 3, 4, 2, 5]  # Fe (main label 2) sits among the elements
    assert not net.latent_stop_grad and net.max_norm == 0.5
    # the narrower elements' extra units are exactly zero
    rows_mg = slice(14, 20)  # C has 14 window pixels, Mg the next 6 rows
    assert torch.all(net.element_w1[rows_mg, 4:] == 0) and torch.all(net.element_w2[1, 4:, :] == 0)


def test_mc_dropout_runs_and_varies(censored):
    folder, _m, windows = censored
    model = from_astronn(folder, element_windows=windows)
    x = _spectra(3)
    pred = starlabels.predict(model, x, preprocessed=True, uncertainty="mc_dropout", n_samples=30, seed=0)
    assert np.all(pred.variance_parts["epistemic"] > 0) and np.all(np.isfinite(pred.std))
    off = model.predict_preprocessed(x)[0]
    # 30 passes: the MC mean is near the dropout-off prediction, not equal to it
    assert not np.allclose(pred.mean, off)


def test_save_and_load_round_trip(censored, tmp_path):
    folder, _m, windows = censored
    model = from_astronn(folder, element_windows=windows)
    out = model.save(tmp_path / "imported")
    back = starlabels.load_model(out, device="cpu")
    x = _spectra()
    np.testing.assert_array_equal(back.predict_preprocessed(x)[0], model.predict_preprocessed(x)[0])
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["architecture"]["kwargs"]["output_order"] == [0, 1, 3, 4, 2, 5]
    assert cfg["preprocessing"] is None  # a 64-pixel network: no APOGEE continuum preprocessing
    assert cfg["training"]["imported_from"]["astronn_class"] == "ApogeeBCNNCensored"


def test_predict_public_api_equals_keras(bcnn):
    folder, m = bcnn
    with pytest.warns(UserWarning, match="only preprocessed=True input"):
        model = from_astronn(folder)
    x = _spectra()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pred = starlabels.predict(model, x, None, preprocessed=True, uncertainty=None)
    mean, sigma = _expected(m, folder, x)
    np.testing.assert_allclose(pred.mean, mean, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(pred.variance_parts["aleatoric"], sigma**2, rtol=5e-5)
    with pytest.raises(InputDataError, match=r"no preprocessing"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        starlabels.predict(model, np.ones((1, 8575)), np.ones((1, 8575)))


def test_label_names():
    assert astronn_label_name("teff") == ("TEFF", "K")
    assert astronn_label_name("M") == ("M_H", "dex")
    assert astronn_label_name("C1") == ("CI_H", "dex")
    assert astronn_label_name("Ti2") == ("TIII_H", "dex")
    assert astronn_label_name("fakemag") == ("FAKEMAG", "")


def test_label_override_and_targetname_mismatch(tmp_path):
    folder, _ = fake.fake_bcnn(tmp_path / "b", extra={"targetname": ["teff", "logg", "M", "alpha", "C"]})
    with pytest.warns(UserWarning, match="targetname has 5 names for 3 outputs"):
        model = from_astronn(folder)
    with pytest.raises(ModelFormatError, match="continuum_mask was given but the network takes 64"):
        from_astronn(folder, continuum_mask=np.ones(7514, bool), label_names=["A", "B", "C"])
    assert model.label_names == ["LABEL_1", "LABEL_2", "LABEL_3"]
    model = from_astronn(folder, label_names=["A", "B", "C"], label_units=["K", "dex", "dex"])
    assert model.label_names == ["A", "B", "C"]


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.int16, np.uint16])  # narrow: no OverflowError
def test_astronn_bitmask_windows(tmp_path, dtype):
    bits = np.zeros(7514, dtype)
    bits[10:20] |= 1 << 0  # C
    bits[15:25] |= 1 << 13  # TiII
    path = tmp_path / "aspcap_l31c_masks.npy"
    np.save(path, bits)
    table = load_astronn_windows(path)
    assert table["c"].sum() == 10 and table["tiii"][15:25].all() and table["tiii"].sum() == 10
    assert table["mg"].sum() == 0


# ------------------------------------------------------------------------------------------
# bad input


def test_other_model_class_is_named(tmp_path):
    folder, _ = fake.fake_bcnn(tmp_path / "g", extra={"id": "Galaxy10CNN"})
    with pytest.raises(ModelFormatError, match="'Galaxy10CNN' is not supported"):
        from_astronn(folder)


def test_missing_files(tmp_path, bcnn):
    with pytest.raises(InputFileError, match="does not exist"):
        from_astronn(tmp_path / "nowhere")
    folder, _ = bcnn
    (folder / "model_weights.h5").unlink()
    with pytest.raises(InputFileError, match=r"model_weights\.h5"):
        from_astronn(folder)


def test_missing_layer_weights_named(bcnn):
    folder, _ = bcnn
    with h5py.File(folder / "model_weights.h5", "a") as f:
        g = f["model_weights/dense_1"]
        del g["dense_1/kernel:0"]
        del g["dense_1/bias:0"]
        g.attrs["weight_names"] = np.array([], dtype="S1")
    with pytest.raises(ModelFormatError, match="'dense_1'"):
        from_astronn(folder)


def test_wrong_kernel_shape_named(bcnn):
    folder, _ = bcnn
    with h5py.File(folder / "model_weights.h5", "a") as f:
        g = f["model_weights/dense"]
        del g["dense/kernel:0"]
        g.create_dataset("dense/kernel:0", data=np.zeros((10, fake.HIDDEN[0]), np.float32))
    with pytest.raises(ModelFormatError, match=r"'dense'.*shape"):
        from_astronn(folder)


def test_json_hdf5_dropout_mismatch(tmp_path):
    folder, _ = fake.fake_bcnn(tmp_path / "d", extra={"dropout_rate": 0.2})
    with pytest.raises(ModelFormatError, match=r"dropout_rate 0\.2"):
        from_astronn(folder)


def test_unsupported_layer_setting_named(bcnn):
    folder, _ = bcnn
    with h5py.File(folder / "model_weights.h5", "a") as f:
        cfg = json.loads(f.attrs["model_config"])
        for layer in cfg["config"]["layers"]:
            if layer["name"] == "conv1d_1":
                layer["config"]["padding"] = "valid"
        f.attrs["model_config"] = json.dumps(cfg)
    with pytest.raises(ModelFormatError, match=r"'conv1d_1'.*padding='valid'"):
        from_astronn(folder)


def test_censored_window_mismatch_named(censored, tmp_path):
    folder, _m, _ = censored
    w = np.zeros((3, fake.P), bool)
    w[0, 3:17] = True
    w[1, 30:35] = True  # Mg: 5 pixels, the layer reads 6
    w[2, 50:59] = True
    path = tmp_path / "bad.npz"
    np.savez(path, windows=w, elements=np.array(["C", "Mg", "TiII"]))
    with pytest.raises(ModelFormatError, match="'mg_dense' reads 6 pixels"):
        from_astronn(folder, element_windows=path)


def test_censored_needs_windows(censored, monkeypatch):
    folder, _m, _ = censored
    monkeypatch.setattr("starlabels.models.astronn_import._astronn_data_file", lambda name: None)
    with pytest.raises(ModelFormatError, match="element_windows=PATH"):
        from_astronn(folder)


def test_labels_std_must_be_positive(tmp_path):
    folder, _ = fake.fake_bcnn(tmp_path / "s")
    p = _params(folder)
    p["labels_std"]["output"][1] = 0.0
    (folder / "astroNN_model_parameter.json").write_text(json.dumps(p))
    with pytest.raises(ModelFormatError, match="labels_mean/labels_std"):
        from_astronn(folder)


# ------------------------------------------------------------------------------------------
# command line


def test_cli_help_and_convert(censored, tmp_path):
    from click.testing import CliRunner

    from starlabels.cli.main import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["import-astronn", "--help"])
    assert result.exit_code == 0 and "--element-windows" in result.output
    folder, _m, windows = censored
    out = tmp_path / "out" / "model"
    result = runner.invoke(cli, ["import-astronn", str(folder), "-o", str(out), "--element-windows",
                                 str(windows)])
    assert result.exit_code == 0, result.output
    assert "ApogeeBCNNCensored" in result.output and "preprocessed input only" in result.output
    x = _spectra()
    np.testing.assert_array_equal(
        starlabels.load_model(out, device="cpu").predict_preprocessed(x)[0],
        from_astronn(folder, element_windows=windows).predict_preprocessed(x)[0],
    )
    result = runner.invoke(cli, ["import-astronn", str(folder), "-o", str(out), "--element-windows",
                                 str(windows)])
    assert result.exit_code != 0 and "exists" in result.output  # no silent replacement


def test_cli_failure_writes_nothing(tmp_path):
    from click.testing import CliRunner

    from starlabels.cli.main import cli

    folder, _ = fake.fake_bcnn(tmp_path / "g", extra={"id": "Galaxy10CNN"})
    parent = tmp_path / "models"
    parent.mkdir()
    result = CliRunner().invoke(cli, ["import-astronn", str(folder), "-o", str(parent / "m")])
    assert result.exit_code != 0 and "Galaxy10CNN" in result.output
    assert list(parent.iterdir()) == []


def test_astronn_predict_rule(censored):
    from starlabels.models.astronn_import import astronn_predict

    folder, m, windows = censored
    model = from_astronn(folder, element_windows=windows)
    x = _spectra(4)
    state = torch.get_rng_state()
    mean, sig = astronn_predict(model, x, 50, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is left as it was
    again = astronn_predict(model, x, 50, seed=3)
    np.testing.assert_array_equal(again[0], mean)
    assert not np.array_equal(astronn_predict(model, x, 50)[0], astronn_predict(model, x, 50)[0])
    np.testing.assert_allclose(sig["total"] ** 2, sig["model"] ** 2 + sig["predictive"] ** 2, rtol=1e-12)
    assert np.all(sig["model"] > 0)
    for layer in model.network.modules():  # dropout off: one deterministic network
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    mean0, sig0 = astronn_predict(model, x, 5, seed=3)
    ref_mean, ref_sigma = _expected(m, folder, x)
    np.testing.assert_allclose(mean0, ref_mean, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(sig0["predictive"], ref_sigma, rtol=2e-5)
    assert np.all(sig0["model"] < 1e-6 * np.abs(ref_mean).max())


def test_keras_graph_chain_walks_consumers_and_names_a_missing_layer(tmp_path):
    from starlabels.models.astronn_keras import KerasGraph

    def layer(name, class_name, reads):
        return {"name": name, "class_name": class_name, "config": {},
                "inbound_nodes": [[[r, 0, 0, {}] for r in reads]] if reads else []}

    config = {"config": {"layers": [
        layer("input", "InputLayer", []), layer("c", "Conv1D", ["input"]), layer("a", "Activation", ["c"]),
        layer("d", "MCDropout", ["a"]), layer("side", "Dense", ["a"]),
    ]}}
    graph = KerasGraph(tmp_path / "m.h5", config, {})
    assert [x.name for x in graph.chain("input", ["Conv1D", "Activation", "MCDropout"])] == ["c", "a", "d"]
    assert graph.chain("input", []) == []
    with pytest.raises(ModelFormatError, match=r"expected one Flatten layer after 'd', found none"):
        graph.chain("input", ["Conv1D", "Activation", "MCDropout", "Flatten"])
