"""``run_demo`` leaves its host process as it found it (torch threads, global random states), and
its catalog does not depend on them; ``starlabels demo --threads`` sets its own process's threads."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.demo import DemoConfig, run_demo
from starlabels.inference.catalog import read_catalog
from starlabels.training.trainer import Trainer
from starlabels.utils import global_random_state, set_global_random_state

TINY = dict(n_train=60, n_test=8, epochs=1, n_samples=4, catalog_format="csv")


def _thread_spy(monkeypatch) -> list[int]:
    seen: list[int] = []
    original = Trainer.train_epoch

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "train_epoch", spy)
    return seen


def test_run_demo_leaves_threads_and_random_states_alone(tmp_path, monkeypatch):
    seen = _thread_spy(monkeypatch)
    saved = global_random_state()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(5)
        np.random.seed(5)
        random.seed(5)
        before = global_random_state()
        run_demo(DemoConfig(output=tmp_path / "a", threads=1, **TINY), echo=lambda s: None)
        after = global_random_state()
        threads_after = torch.get_num_threads()
        torch.manual_seed(6)  # another host state: the same catalog
        np.random.seed(6)
        run_demo(DemoConfig(output=tmp_path / "b", threads=1, **TINY), echo=lambda s: None)
    finally:
        torch.set_num_threads(1)
        set_global_random_state(saved)
    assert seen == [2, 2] and threads_after == 2  # the library ran on the host's setting ...
    assert torch.equal(after["torch"], before["torch"])  # ... and drew nothing from its generators
    assert np.array_equal(after["numpy"][1], before["numpy"][1]) and after["numpy"][2] == before["numpy"][2]
    assert after["python"] == before["python"]
    pd.testing.assert_frame_equal(read_catalog(tmp_path / "a" / "catalog.csv"),
                                  read_catalog(tmp_path / "b" / "catalog.csv"), check_exact=True)


def test_the_demo_command_sets_the_threads_of_its_own_process(tmp_path, monkeypatch):
    seen = _thread_spy(monkeypatch)
    base = ["demo", "--quick", "--n-train", "60", "--n-test", "8", "--epochs", "1", "--n-samples", "4",
            "--format", "csv"]
    try:
        for threads, expected in (("2", 2), ("1", 1)):
            torch.set_num_threads(3)
            res = CliRunner().invoke(cli, [*base, "-o", str(tmp_path / threads), "--threads", threads])
            assert res.exit_code == 0, res.output
            assert seen[-1] == expected
    finally:
        torch.set_num_threads(1)
