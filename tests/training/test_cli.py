"""``starlabels train``: end to end from a TOML file on raw apStar-grid HDF5 spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.training.config import load_config
from starlabels.training.from_config import trainer_from_config

N, P = 120, 8575


@pytest.fixture(scope="module")
def raw_h5(tmp_path_factory):
    """120 raw apStar-grid spectra (flux ~100 in file units, a few flagged pixels), two groups."""
    from starlabels.data.hdf5 import DatasetWriter

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "raw.h5"
    z = rng.normal(size=(N, 2))
    basis = rng.normal(size=(2, P))
    flux = (100 * (1 + 0.05 * z @ basis) + rng.normal(size=(N, P))).astype(np.float32)
    error = np.ones_like(flux)
    bitmask = np.zeros((N, P), np.int32)
    bitmask[rng.integers(0, N, 300), rng.integers(0, P, 300)] = 1  # BADPIX
    flux[bitmask > 0] = 1e4  # garbage the preprocessing must repair
    labels = np.stack([5000 + 400 * z[:, 0], 3 + 0.5 * z[:, 1]], 1).astype(np.float32)
    with DatasetWriter(path, P, "apstar", ["TEFF", "LOGG"], compression=None, chunk_rows=16) as w:
        w.append(flux, error, bitmask, labels=labels, label_errors=np.full_like(labels, 0.05) * [100, 0.1],
                 meta={"group": np.where(np.arange(N) % 4 == 0, "mdwarf", "payne"),
                       "apogee_id": [f"2M{i:08d}" for i in range(N)]})
    return path


def _config(tmp_path, h5, extra=""):
    text = f"""
[data]
files = ["{h5}"]
label_names = ["TEFF", "LOGG"]
group_column = "group"
chunk_rows = 16
buffer_chunks = 2
[data.split]
method = "group"
fractions = [0.8, 0.1, 0.1]
[data.split.groups]
mdwarf = [0.6, 0.2, 0.2]

[model]
architecture = "bcnn"
spectrum_scaling = "centered"
[model.kwargs]
dropout = 0.1
hidden = [32, 16]

[preprocess]
kind = "raw"

[optimiser]
learning_rate = 0.002

[training]
loss = "robust"
epochs = 2
batch_size = 32
seed = 3
device = "cpu"

[output]
folder = "model"
{extra}
"""
    path = tmp_path / "train.toml"
    path.write_text(text)
    return path


def test_train_help_lists_the_options():
    res = CliRunner().invoke(cli, ["train", "--help"])
    assert res.exit_code == 0, res.output
    for word in ("CONFIG", "--resume", "--device", "--epochs", "[stratified]"):
        assert word in res.output


def test_train_command_end_to_end(tmp_path, raw_h5):
    from starlabels import load_model

    cfg_path = _config(tmp_path, raw_h5, extra="""
[stratified]
focus_groups = ["mdwarf"]
large_group = "payne"
max_rounds = 1
epochs = 1
""")
    runner = CliRunner()
    res = runner.invoke(cli, ["train", str(cfg_path)])
    assert res.exit_code == 0, res.output
    assert "model saved to" in res.output and "stratified adaptation: 1 rounds" in res.output
    folder = tmp_path / "model"
    model = load_model(folder)
    assert model.architecture == "bcnn" and model.n_pixels == P
    assert model.preprocessing["kind"] == "raw"
    assert model.spectrum_scaler.mode == "centred"  # the config says "centered" (old spelling)
    t = model.training
    assert t["data_files"] == [str(raw_h5.resolve())]
    # group split: mdwarf 30 rows at 60/20/20, payne 90 rows at 80/10/10
    assert t["sizes"] == {"train": 18 + 72, "dev": 6 + 9, "test": 6 + 9}
    assert t["splits"]["method"] == "group"
    assert t["stratified"]["focus_groups"] == ["mdwarf"]
    assert [r["stage"] for r in model.history] == ["main", "main", "adapt-1"]
    mean, std = model.predict_preprocessed(np.ones((2, P), np.float32))
    assert mean.shape == (2, 2) and np.all(np.isfinite(std))
    # a second run does not silently replace the model ...
    res = runner.invoke(cli, ["train", str(cfg_path)])
    assert res.exit_code != 0 and "--resume" in res.output
    # ... but --resume picks the finished run up from its checkpoint and rewrites the same model
    res = runner.invoke(cli, ["train", str(cfg_path), "--resume"])
    assert res.exit_code == 0, res.output
    again = load_model(folder)
    for a, b in zip(model.network.state_dict().values(), again.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_bad_config_is_a_clean_error(tmp_path, raw_h5):
    cfg_path = _config(tmp_path, raw_h5).read_text().replace('loss = "robust"', 'loss = "l2"')
    (tmp_path / "bad.toml").write_text(cfg_path)
    res = CliRunner().invoke(cli, ["train", str(tmp_path / "bad.toml")])
    assert res.exit_code != 0
    assert "[training] loss" in res.output and "Traceback" not in res.output


def test_raw_spectra_are_preprocessed_block_by_block(tmp_path, raw_h5):
    """The network input of each streamed batch equals PreprocessConfig.apply on those rows,
    followed by the fitted spectrum scaler."""
    from starlabels.data.hdf5 import SpectraDataset
    from starlabels.preprocess.pipeline import PreprocessConfig

    cfg = load_config(_config(tmp_path, raw_h5))
    tr = trainer_from_config(cfg)
    assert tr.shuffle == "chunks" and tr.preprocess.kind == "raw"
    ds = SpectraDataset(raw_h5)
    pre = PreprocessConfig(kind="raw")
    x, y, _, _ = next(tr.iter_batches(tr.split["train"], np.random.default_rng(0)))
    teff = y[:, 0].numpy() * tr.label_scaler.std[0] + tr.label_scaler.mean[0]
    all_teff = tr.data.labels[:, 0]
    rows = np.array([int(np.argmin(np.abs(all_teff - t))) for t in teff])
    batch = ds.read(np.sort(rows))
    order = np.argsort(np.argsort(rows))
    f, _ = pre.apply(batch.flux, batch.error, batch.bitmask)
    expected = tr.spectrum_scaler.transform(f)[order]
    np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-4)
    assert np.abs(x.numpy()).max() < 500  # the 1e4 garbage pixels were repaired
    # the spectrum mean was fitted on the preprocessed training rows only
    tb = ds.read(tr.split["train"])
    tf, te = pre.apply(tb.flux, tb.error, tb.bitmask)
    ok = te < 1e9
    mean = np.where(ok, tf, 0).sum(0) / np.maximum(ok.sum(0), 1)
    np.testing.assert_allclose(tr.spectrum_scaler.mean.numpy(), mean, rtol=1e-4)


def test_trainer_from_config_seeds_the_weights_without_touching_the_callers_random_states(tmp_path, raw_h5):
    from starlabels.utils import global_random_state, set_global_random_state

    cfg = load_config(_config(tmp_path, raw_h5))
    saved = global_random_state()
    try:
        torch.manual_seed(1)
        before = global_random_state()
        first = trainer_from_config(cfg)
        assert torch.equal(global_random_state()["torch"], before["torch"])
        first.release_output()
        torch.manual_seed(2)  # another caller state: the same initial weights
        second = trainer_from_config(cfg)
        second.release_output()
    finally:
        set_global_random_state(saved)
    for a, b in zip(first.network.state_dict().values(), second.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)
