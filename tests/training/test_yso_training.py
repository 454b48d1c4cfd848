"""The YSO photometry network trains through the shared Trainer (one training loop), with the
one-cycle schedule it uses; its labeler saves atomically and loads back (old folders too)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from script_module import load_script
from starlabels.labels import yso
from starlabels.models.yso import YSOLabeler, YSOPhotometryCNN, input_transform
from starlabels.training.config import OptimiserConfig, TrainingConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.errors import TrainingError
from starlabels.training.trainer import Trainer
from starlabels.training.yso import train_yso_network

# the CMD-format test grid (bilinear quantities) and extinction coefficients of the YSO tests
_yso_tests = load_script(Path(__file__).parents[1] / "labels" / "test_yso.py", "_yso_tests")


@pytest.fixture(scope="module")
def populations(tmp_path_factory):
    grid = tmp_path_factory.mktemp("grid") / "parsec_cmd.dat"
    grid.write_text(_yso_tests._cmd_text())
    kw = dict(grid=grid, extinction=_yso_tests.COEFFS, mass_range=(0.1, 3.0), av_range=(0.0, 3.0),
              distance_range=(50.0, 300.0))
    return yso.synthetic_population(300, seed=1, **kw), yso.synthetic_population(80, seed=2, **kw)


def test_yso_network_trains_through_the_trainer(populations, monkeypatch):
    train, dev = populations
    runs = []
    original = Trainer.run_stage

    def spy(self, *args, **kwargs):
        runs.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "run_stage", spy)
    labeler, history = train_yso_network(train, dev=dev, epochs=4, batch_size=32, lr=5e-3,
                                         channels=(4, 8, 8), hidden=16, seed=3)
    (trainer,) = runs  # one Trainer run: the shared loop, not a loop of its own
    assert trainer.optimiser_cfg.scheduler == "one_cycle" and trainer.training_cfg.loss == "mse"
    assert [h["epoch"] for h in history] == [0, 1, 2, 3]
    assert [h["dev_loss"] for h in history] == [r["dev_loss"] for r in trainer.history]
    # the epoch with the lowest dev loss is the one kept
    assert labeler.training["best_dev_loss"] == pytest.approx(min(h["dev_loss"] for h in history))
    # scalers by hand: per-feature mean / population std of the transformed training inputs
    x = input_transform(yso.observed_inputs(train, labeler.features, labeler.limits), labeler.features)
    np.testing.assert_allclose(labeler.x_mean, x.astype(np.float32).mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(labeler.x_std, x.astype(np.float32).std(axis=0), rtol=1e-4)
    y = np.stack([np.asarray(train[t], np.float32) for t in labeler.targets], axis=1)
    np.testing.assert_allclose(labeler.y_std, y.std(axis=0), rtol=1e-5)
    # the labeler reproduces the trainer's dev loss: standardised MSE of its predictions
    pred = labeler.predict_array(yso.observed_inputs(dev, labeler.features, labeler.limits))
    truth = np.stack([np.asarray(dev[t], float) for t in labeler.targets], axis=1)
    mse = np.mean(((pred - truth) / labeler.y_std) ** 2)
    assert mse == pytest.approx(labeler.training["best_dev_loss"], rel=1e-4)
    # without a dev population the last epoch is kept and dev losses are NaN
    last, hist = train_yso_network(train, epochs=2, batch_size=64, channels=(4, 8, 8), hidden=16, seed=3)
    assert all(math.isnan(h["dev_loss"]) for h in hist) and last.training["best_dev_loss"] is None


def test_one_cycle_schedule_matches_torch_and_spans_one_stage(arrays, tiny_net):
    flux, error, labels = arrays(n=100, n_pixels=16)
    data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error)
    split = {"train": np.arange(80), "dev": np.arange(80, 100)}
    torch.manual_seed(0)
    tr = Trainer(tiny_net(16, 2), data, split, shuffle="full", spectrum_scaling="centred",
                 optimiser=OptimiserConfig(learning_rate=0.01, scheduler="one_cycle"),
                 training=TrainingConfig(epochs=3, patience=3, batch_size=16, seed=1, device="cpu"))
    tr.run_stage("main", split["train"])
    # an independent OneCycleLR over the same 3 epochs × 5 batches, read after each epoch
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=15, pct_start=0.15)
    expected = []
    for _ in range(3):
        for _ in range(5):
            opt.step()
            ref.step()
        expected.append(opt.param_groups[0]["lr"])
    np.testing.assert_allclose([r["lr"] for r in tr.history], expected, rtol=1e-12)
    with pytest.raises(TrainingError, match="one training stage"):
        tr.reset_optimiser()


def _labeler(seed: int = 0) -> YSOLabeler:
    torch.manual_seed(seed)
    arch = {"n_inputs": 5, "n_outputs": 2, "channels": [4, 4, 4], "kernel_size": 3, "hidden": 8}
    return YSOLabeler(model=YSOPhotometryCNN(**arch), features=["G", "BP", "radius", "log_l", "distance"],
                      targets=["log_teff", "logg"], x_mean=np.array([15.0, 16.0, 0.0, 0.0, 2.5]),
                      x_std=np.array([2.0, 2.0, 0.3, 1.0, 0.3]), y_mean=np.array([3.6, 4.2]),
                      y_std=np.array([0.1, 0.4]), limits={"G": 19.0, "BP": 20.5}, arch=arch)


X = np.array([[15.0, 16.0, 1.2, 0.3, 400.0], [17.0, 20.5, 0.5, -1.54, 150.0]])


def test_labeler_saves_atomically_and_loads_back(tmp_path, monkeypatch):
    first, second = _labeler(0), _labeler(1)
    folder = tmp_path / "yso"
    first.save(folder)
    (folder / "history.json").write_text("[]")  # written beside it by `labels yso-train`
    np.testing.assert_array_equal(YSOLabeler.load(folder).predict_array(X), first.predict_array(X))
    # a save that dies while writing the weights leaves the previous labeler as it was
    from starlabels.models import folder_io

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        second.save(folder)
    monkeypatch.undo()
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.json", "weights.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".yso.")]  # no temporary left
    np.testing.assert_array_equal(YSOLabeler.load(folder).predict_array(X), first.predict_array(X))
    # a complete save replaces it and keeps the extra file
    second.save(folder)
    np.testing.assert_array_equal(YSOLabeler.load(folder).predict_array(X), second.predict_array(X))
    assert (folder / "history.json").read_text() == "[]"
    assert folder_io.CONFIG_FILE == "config.json"


def test_a_folder_written_by_the_old_save_still_loads(tmp_path):
    """The format is unchanged: config.json as the old ``save`` wrote it (json.dumps of these keys),
    weights under the same state-dict keys."""
    from safetensors.torch import save_file

    lab = _labeler(2)
    folder = tmp_path / "old"
    folder.mkdir()
    old_config = {
        "format": "starlabels-yso-labeler", "format_version": 1, "features": lab.features,
        "targets": lab.targets, "target_units": {"log_teff": "dex(K)", "logg": "dex(cgs)"},
        "x_mean": lab.x_mean.tolist(), "x_std": lab.x_std.tolist(), "y_mean": lab.y_mean.tolist(),
        "y_std": lab.y_std.tolist(), "limits": lab.limits, "arch": lab.arch, "training": {},
    }
    (folder / "config.json").write_text(json.dumps(old_config, indent=2))
    weights = {k: v.contiguous() for k, v in lab.model.state_dict().items()}
    save_file(weights, str(folder / "weights.safetensors"))
    assert set(weights) >= {"features.0.weight", "dense.1.weight", "dense.3.bias"}
    np.testing.assert_array_equal(YSOLabeler.load(folder).predict_array(X), lab.predict_array(X))
    assert lab.config_dict() == old_config  # and a new save writes the same config


def test_yso_training_leaves_the_process_threads_and_random_states_alone(populations, monkeypatch):
    """Threads and random states are process-wide: the caller's (the CLI sets one thread itself)."""
    from starlabels.utils import global_random_state, set_global_random_state

    train, _ = populations
    seen = []
    original = Trainer.train_epoch

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", spy)
    saved = global_random_state()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(1)
        np.random.seed(1)
        before = global_random_state()
        first, _ = train_yso_network(train, epochs=1, batch_size=64, channels=(4, 8, 8), hidden=16, seed=3)
        after = global_random_state()
        torch.manual_seed(2)  # another caller state: the same network
        second, _ = train_yso_network(train, epochs=1, batch_size=64, channels=(4, 8, 8), hidden=16, seed=3)
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(1)
        set_global_random_state(saved)
    assert seen == [2, 2] and threads_after == 2
    assert torch.equal(after["torch"], before["torch"])
    assert np.array_equal(after["numpy"][1], before["numpy"][1]) and after["numpy"][2] == before["numpy"][2]
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_yso_train_cli_sets_its_own_processs_threads(populations, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from starlabels.cli.main import cli
    from starlabels.training import yso as yso_training

    train, _ = populations
    table = tmp_path / "pop.csv"
    train.write(table, format="ascii.csv")
    seen = []

    def fake(*args, **kwargs):
        seen.append(torch.get_num_threads())
        raise SystemExit(0)

    monkeypatch.setattr(yso_training, "train_yso_network", fake)
    for threads, expected in (("1", 1), ("2", 2)):
        torch.set_num_threads(3)
        res = CliRunner().invoke(cli, ["labels", "yso-train", str(table), "-o", str(tmp_path / "m"),
                                       "--threads", threads, "--device", "cpu"])
        assert res.exit_code == 0, res.output
        assert seen[-1] == expected
    torch.set_num_threads(1)
