"""Stratified adaptation (APOGEE Net §3.4) on a tiny synthetic three-group problem."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from starlabels.training.config import OptimiserConfig, TrainingConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.errors import TrainingError
from starlabels.training.stratified import adapt
from starlabels.training.trainer import Trainer

P = 16


def _three_groups(seed=0):
    """One shared, non-linear spectrum → label relation; the large group covers the centre of
    the spectrum space densely, the two small focus groups sit 2.5σ off-centre on either side
    (where the quadratic term matters), so training on everything underfits them."""
    rng = np.random.default_rng(seed)
    sizes = {"payne": 1600, "mdwarf": 80, "yso": 80}
    centre = {"payne": 0.0, "mdwarf": 2.5, "yso": -2.5}
    u = rng.normal(size=P)
    u /= np.linalg.norm(u)
    w = rng.normal(size=P) / 4
    flux, labels, groups = [], [], []
    for g, n in sizes.items():
        x = rng.normal(size=(n, P)) + centre[g] * u
        flux.append(x + 0.01 * rng.normal(size=(n, P)))
        labels.append(x @ w + 0.5 * (x @ u) ** 2 + 0.2 * rng.normal(size=n))
        groups += [g] * n
    flux = np.vstack(flux).astype(np.float32)
    labels = np.concatenate(labels)[:, None].astype(np.float32)
    groups = np.array(groups)
    split = {"train": [], "dev": []}
    for g in sizes:
        rows = rng.permutation(np.flatnonzero(groups == g))
        split["dev"].append(rows[: len(rows) // 4])
        split["train"].append(rows[len(rows) // 4:])
    split = {k: np.sort(np.concatenate(v)) for k, v in split.items()}
    data = TrainingData.from_arrays(flux, labels, ["TEFF"], error=np.full_like(flux, 0.01), groups=groups)
    return data, split


def _trainer(tiny_net, folder=None, callbacks=(), resume=False):
    data, split = _three_groups()
    torch.manual_seed(0)
    net = tiny_net(P, 1, hidden=32, pooled=P)
    return Trainer(net, data, split, optimiser=OptimiserConfig(learning_rate=3e-3, scheduler="none"),
                   training=TrainingConfig(epochs=6, patience=2, batch_size=64, seed=2, device="cpu"),
                   folder=folder, callbacks=callbacks, resume=resume)


def test_adaptation_improves_focus_groups_without_hurting_the_large_group(tiny_net):
    tr = _trainer(tiny_net)
    tr.run_stage("main", tr.split["train"])
    before = tr.evaluate(tr.split["dev"], by_group=True)
    summary = adapt(tr, ["mdwarf", "yso"], "payne", fraction=0.05, max_rounds=5, epochs=15)
    after = tr.evaluate(tr.split["dev"], by_group=True)
    focus_before = (before["mdwarf"] + before["yso"]) / 2
    focus_after = (after["mdwarf"] + after["yso"]) / 2
    print(f"dev loss before {before}, after {after}, rounds {len(summary['rounds'])}")
    assert focus_after < 0.6 * focus_before
    # the large group stays the best-fitted one and within a small factor of where it was
    assert after["payne"] < 2.5 * before["payne"]
    assert after["payne"] < min(after["mdwarf"], after["yso"])
    assert summary["initial"] == pytest.approx(before)
    assert summary["final"] == pytest.approx(after)
    # each round: all focus training rows + a fresh 5% of the large group's 1200 training rows
    n_focus_train = int(np.isin(tr.data.groups[tr.split["train"]], ["mdwarf", "yso"]).sum())
    assert all(r["n_train"] == n_focus_train + 60 for r in summary["rounds"])
    assert 1 <= len(summary["rounds"]) <= 5
    best = summary["best_round"]
    assert best >= 1
    assert focus_after == pytest.approx(summary["rounds"][best - 1]["focus_dev_loss"], rel=1e-6)
    assert tr.extra_provenance["stratified"]["best_round"] == best
    assert any(r["stage"].startswith("adapt-") for r in tr.history)


def test_large_group_tolerance_is_never_exceeded(tiny_net):
    tr = _trainer(tiny_net)
    tr.run_stage("main", tr.split["train"])
    before = tr.evaluate(tr.split["dev"], by_group=True)
    summary = adapt(tr, ["mdwarf", "yso"], "payne", max_rounds=3, epochs=6, criterion="focus",
                    large_tolerance=0.25)
    assert summary["final"]["payne"] <= 1.25 * before["payne"]
    assert (summary["final"]["mdwarf"] + summary["final"]["yso"]) <= before["mdwarf"] + before["yso"]
    with pytest.raises(TrainingError, match="criterion"):
        adapt(_trainer(tiny_net), ["mdwarf"], "payne", criterion="median")


def test_interrupted_adaptation_resumes_exactly(tmp_path, tiny_net):
    def run(folder, callbacks=(), resume=False):
        tr = _trainer(tiny_net, folder=folder, callbacks=callbacks, resume=resume)
        tr.run_stage("main", tr.split["train"])
        adapt(tr, ["mdwarf", "yso"], "payne", max_rounds=3, epochs=3)
        return tr

    full = run(tmp_path / "a")

    class StopError(Exception):
        pass

    def stop_in_round_two(trainer, row):
        if row["stage"] == "adapt-2" and trainer.state["epoch"] == 2:
            raise StopError

    with pytest.raises(StopError):
        run(tmp_path / "b", callbacks=[stop_in_round_two])
    resumed = run(tmp_path / "b", resume=True)
    assert [(r["stage"], r["dev_loss"]) for r in resumed.history] == [
        (r["stage"], r["dev_loss"]) for r in full.history
    ]
    for a, b in zip(full.network.state_dict().values(), resumed.network.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_adaptation_needs_groups(tiny_net, arrays):
    flux, error, labels = arrays(n=100, n_pixels=P)
    data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error)
    tr = Trainer(tiny_net(P, 2), data, {"train": np.arange(80), "dev": np.arange(80, 100)},
                 training=TrainingConfig(device="cpu"))
    with pytest.raises(TrainingError, match="groups"):
        adapt(tr, ["mdwarf"], "payne")
    data, split = _three_groups()
    tr = Trainer(tiny_net(P, 1), data, split, training=TrainingConfig(device="cpu"))
    with pytest.raises(TrainingError, match=r"\['giants'\]"):
        adapt(tr, ["giants"], "payne")
