"""The training engine: learning, early stopping, LR schedule, checkpoints and exact resume."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.training.checkpoint import CHECKPOINT_NAME
from starlabels.training.config import OptimiserConfig, SplitConfig, TrainingConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.errors import TrainingError
from starlabels.training.from_config import make_split
from starlabels.training.loop import make_optimiser
from starlabels.training.trainer import Trainer


def _split(n, n_dev=60, n_test=20):
    rows = np.arange(n)
    return {"train": rows[: n - n_dev - n_test], "dev": rows[n - n_dev - n_test: n - n_test],
            "test": rows[n - n_test:]}


def _data(arrays, n=300, p=64, seed=0, **kw):
    flux, error, labels = arrays(n=n, n_pixels=p, seed=seed)
    return TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error,
                                    label_errors=np.full_like(labels, 0.01),
                                    label_units=["K", "dex"], **kw)


def test_training_learns_calls_constraints_and_writes_the_model_folder(tmp_path, arrays, tiny_net):
    data = _data(arrays)
    torch.manual_seed(0)
    net = tiny_net(64, 2)
    tr = Trainer(net, data, _split(300), optimiser=OptimiserConfig(learning_rate=1e-2),
                 training=TrainingConfig(epochs=8, patience=8, batch_size=32, seed=3, device="cpu"),
                 spectrum_scaling="centered", folder=tmp_path / "m")
    model = tr.fit()
    dev = [h["dev_loss"] for h in tr.history]
    assert len(dev) == 8
    assert min(dev) < 0.2 * dev[0], dev  # standardised MSE falls well below its start (~1)
    # apply_constraints after every optimiser step: ceil(220/32) = 7 steps per epoch
    assert net.constraint_calls == 8 * 7
    # the best epoch's weights are the ones kept
    assert tr.evaluate(tr.split["dev"]) == pytest.approx(min(dev), rel=1e-5)
    folder = tmp_path / "m"
    assert (folder / CHECKPOINT_NAME).is_file() and (folder / "config.json").is_file()
    with open(folder / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "train_loss", "dev_loss", "lr", "seconds", "stage"]
    assert {r["stage"] for r in rows} == {"main"}
    assert [int(r["epoch"]) for r in rows] == list(range(1, 9))
    np.testing.assert_allclose([float(r["dev_loss"]) for r in rows], dev, rtol=1e-6)
    splits = np.load(folder / "splits.npz")
    np.testing.assert_array_equal(splits["dev"], np.arange(220, 280))
    prov = model.training
    assert prov["sizes"] == {"train": 220, "dev": 60, "test": 20}
    assert prov["seed"] == 3 and prov["optimiser"]["name"] == "adam"
    assert prov["epochs"]["run"] == 8 and "started" in prov["dates"]
    json.dumps(prov)  # JSON-serialisable
    # the label scaler was fitted on the training rows only
    np.testing.assert_allclose(tr.label_scaler.mean, data.labels[:220].mean(0), rtol=1e-5)
    # the training label range (for the inference out-of-range flag) covers the training rows only
    np.testing.assert_allclose(prov["label_range"]["min"], data.labels[:220].min(0), rtol=1e-6)
    np.testing.assert_allclose(prov["label_range"]["max"], data.labels[:220].max(0), rtol=1e-6)
    # a second run into the same folder must not clobber it silently
    with pytest.raises(TrainingError, match="resume"):
        Trainer(tiny_net(64, 2), data, _split(300), training=TrainingConfig(device="cpu"),
                folder=folder)


def test_early_stopping_and_plateau_schedule(arrays, tiny_net):
    """Dev labels anti-correlated with the training relation: dev loss rises as training learns,
    so the run stops after `patience` bad epochs, the LR halves on each plateau, and the best
    (first) epoch's weights are restored."""
    flux, error, labels = arrays(n=300, n_pixels=64, seed=1)
    dev = np.arange(220, 280)
    mean = labels[:220].mean(0)
    labels[dev] = 2 * mean - labels[dev]
    data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error)
    torch.manual_seed(1)
    tr = Trainer(tiny_net(64, 2), data, _split(300),
                 optimiser=OptimiserConfig(learning_rate=1e-2, lr_patience=0, lr_factor=0.5),
                 training=TrainingConfig(epochs=50, patience=3, batch_size=32, device="cpu"))
    tr.fit()
    h = tr.history
    best = int(np.argmin([r["dev_loss"] for r in h]))
    assert len(h) == best + 1 + 3 < 50
    lrs = [r["lr"] for r in h]
    assert lrs[best + 1:] == [1e-2 * 0.5 ** k for k in range(1, 4)]
    assert tr.evaluate(dev) == pytest.approx(h[best]["dev_loss"], rel=1e-5)
    res = tr.state["stages"]["main"]
    assert res["stopped_early"] and res["best_epoch"] == best + 1


class _InterruptError(Exception):
    pass


def _resume_setup(tmp_path, arrays, tiny_net, name, callbacks=(), resume=False, **training):
    data = _data(arrays, n=260, seed=2)
    torch.manual_seed(7)
    net = tiny_net(64, 2, dropout=0.3)
    return Trainer(net, data, _split(260, 40, 20),
                   optimiser=OptimiserConfig(learning_rate=5e-3, lr_patience=1),
                   training=TrainingConfig(epochs=5, patience=10, batch_size=16, seed=11, device="cpu",
                                           **training),
                   spectrum_scaling="centered", folder=tmp_path / name, callbacks=callbacks, resume=resume)


@pytest.mark.parametrize("training", [{}, {"augment": {"snr": [5, 50]}, "dev_mc_samples": 2}],
                         ids=["plain", "augmented-mc-dev"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, arrays, tiny_net, training):
    full = _resume_setup(tmp_path, arrays, tiny_net, "full", **training)
    full.fit()

    def stop_after_two(trainer, row):
        if row["epoch"] == 2:
            raise _InterruptError

    part = _resume_setup(tmp_path, arrays, tiny_net, "part", callbacks=[stop_after_two], **training)
    with pytest.raises(_InterruptError):
        part.fit()
    torch.manual_seed(12345)  # a resumed process starts with unrelated RNG state
    np.random.seed(99)
    resumed = _resume_setup(tmp_path, arrays, tiny_net, "part", resume=True, **training)
    assert resumed.state["epoch"] == 2 and len(resumed.history) == 2
    resumed.fit()
    keys = ("epoch", "train_loss", "dev_loss", "lr")
    assert [[r[k] for k in keys] for r in resumed.history] == [[r[k] for k in keys] for r in full.history]
    for (k, a), b in zip(full.network.state_dict().items(), resumed.network.state_dict().values(),
                         strict=True):
        assert torch.equal(a, b), k
    # the optimiser moments continue too (not only the weights)
    sa = full.optimiser.state_dict()["state"]
    sb = resumed.optimiser.state_dict()["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)


def test_resume_needs_a_checkpoint(tmp_path, arrays, tiny_net):
    with pytest.raises(TrainingError, match="no checkpoint"):
        _resume_setup(tmp_path, arrays, tiny_net, "empty", resume=True)


def test_loss_names_and_missing_labels(arrays, tiny_net):
    flux, error, labels = arrays(n=200, n_pixels=64, seed=4)
    labels[::3, 1] = MISSING
    data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error,
                                    label_errors=np.where(labels == MISSING, MISSING, 0.05))
    split = _split(200, 40, 0)
    with pytest.raises(TrainingError, match="variance head"):
        Trainer(tiny_net(64, 2), data, split, training=TrainingConfig(loss="robust", epochs=1,
                                                                      device="cpu")).fit()
    for loss, variance in (("mae", False), ("robust", True)):
        torch.manual_seed(0)
        tr = Trainer(tiny_net(64, 2, variance=variance), data, split,
                     optimiser=OptimiserConfig(learning_rate=1e-2),
                     training=TrainingConfig(loss=loss, epochs=4, batch_size=32, device="cpu"))
        tr.fit()
        dev = [r["dev_loss"] for r in tr.history]
        assert all(np.isfinite(dev)) and min(dev) < dev[0], (loss, dev)
    # missing labels stay MISSING after scaling (so the losses can skip them)
    y, e = tr.inputs.targets(np.arange(0, 9))
    assert np.all(y[::3, 1] == MISSING) and np.all(e[::3, 1] == 0)
    # the recorded training range ignores MISSING entries
    train_logg = labels[tr.split["train"], 1]
    present = train_logg[train_logg != MISSING]
    assert tr.provenance()["label_range"]["min"][1] == pytest.approx(present.min(), rel=1e-6)


def test_sgd_weight_decay_and_nonfinite_loss(arrays, tiny_net):
    data = _data(arrays, n=120)
    cfg = OptimiserConfig(name="sgd", learning_rate=0.1, momentum=0.9, weight_decay=1e-4)
    opt = make_optimiser(tiny_net(64, 2).parameters(), cfg)
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["weight_decay"] == 1e-4
    net = tiny_net(64, 2)
    with torch.no_grad():
        net.out.bias.fill_(float("nan"))
    tr = Trainer(net, data, _split(120, 20, 0), optimiser=cfg,
                 training=TrainingConfig(epochs=2, device="cpu"))
    with pytest.raises(TrainingError, match="non-finite"):
        tr.fit()


def test_group_split_fractions(arrays):
    flux, error, labels = arrays(n=500, n_pixels=16)
    groups = np.array(["payne"] * 400 + ["mdwarf"] * 50 + ["yso"] * 50)
    data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error, groups=groups)
    cfg = SplitConfig(method="group", groups={"payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2),
                                              "yso": (0.6, 0.2, 0.2)})
    split, info = make_split(data, cfg, seed=5)
    assert info["group_sizes"]["train"] == {"mdwarf": 30, "payne": 320, "yso": 30}
    assert info["group_sizes"]["dev"] == {"mdwarf": 10, "payne": 40, "yso": 10}
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(500))
    rsplit, rinfo = make_split(data, SplitConfig(fractions=(0.5, 0.25, 0.25)), seed=5)
    assert [len(rsplit[k]) for k in ("train", "dev", "test")] == [250, 125, 125]
    assert rinfo["method"] == "random"


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimiser_kernels_agree_and_fused_is_the_default(name, tiny_net):
    cfg = OptimiserConfig(name=name, learning_rate=0.01, momentum=0.9, weight_decay=1e-3)
    nets = {}
    for impl in ("forloop", "fused", "default"):
        torch.manual_seed(0)
        net = tiny_net(64, 2)
        opt = make_optimiser(net.parameters(), cfg, impl=impl)
        for step in range(3):
            torch.manual_seed(100 + step)
            for p in net.parameters():
                p.grad = torch.randn_like(p)
            opt.step()
        nets[impl] = net
        if impl == "default":
            assert opt.defaults["fused"] is True
    for a, b in zip(nets["forloop"].parameters(), nets["fused"].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(TrainingError, match="implementation"):
        make_optimiser(nets["fused"].parameters(), cfg, impl="turbo")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_asking_for_cuda_without_it_is_a_clear_error(arrays, tiny_net):
    with pytest.raises(TrainingError, match="CUDA is not available"):
        Trainer(tiny_net(64, 2), _data(arrays, n=60), _split(60, 10, 0),
                training=TrainingConfig(device="cuda"))


def test_the_trained_model_records_the_grid_of_its_input(tmp_path, arrays, tiny_net):
    """Data on a user's 64-pixel grid (no preprocessing): the saved model's network grid is that
    grid, by checksum, and survives the folder round trip."""
    from starlabels.core import Grid
    from starlabels.core.grid import from_wavelength

    grid = from_wavelength(np.geomspace(4000.0, 4100.0, 64), name="tiny")
    data = _data(arrays, grid=grid)
    assert data.grid is grid
    tr = Trainer(tiny_net(64, 2), data, _split(300),
                 training=TrainingConfig(epochs=1, batch_size=64, seed=0, device="cpu"),
                 folder=tmp_path / "m")
    assert tr.fit().grid.same_as(grid)
    stored = json.loads((tmp_path / "m" / "config.json").read_text())["grid"]
    assert Grid.from_dict(stored).same_as(grid) and stored["name"] == "tiny"
    with pytest.raises(InputDataError, match="65 pixels"):
        _data(arrays, p=65, grid=grid)


def test_training_on_the_boss_grid_and_a_grid_mismatch(arrays, tiny_net):
    """Raw BOSS-grid spectra with the BOSS raw-flux preprocessing train and the model records the
    BOSS grid; the APOGEE preprocessing on the same data is refused naming both grids."""
    from starlabels.instruments import get
    from starlabels.preprocess.pipeline import PreprocessConfig

    boss = get("boss").grid
    flux, error, labels = arrays(n=80, n_pixels=boss.n_pixels, seed=1)
    data = TrainingData.from_arrays(100.0 * flux, labels, ["TEFF", "LOGG"], error=100.0 * error, grid=boss)
    cfg = TrainingConfig(epochs=1, batch_size=40, seed=0, device="cpu")
    split = _split(80, 20, 10)
    with pytest.raises(TrainingError, match=r"'boss' \(4648 px.*'apstar' \(8575 px"):
        Trainer(tiny_net(boss.n_pixels, 2), data, split, training=cfg,
                preprocess=PreprocessConfig(kind="raw"))
    pre = PreprocessConfig(kind="raw", instrument="boss", scale="median")
    model = Trainer(tiny_net(boss.n_pixels, 2), data, split, training=cfg, preprocess=pre).fit()
    assert model.grid.same_as(boss) and model.input_grid.same_as(boss)
    assert model.preprocess_config().instrument == "boss"
