"""``train --resume --epochs N`` trains to N epochs in total, or errors clearly (issue 14)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from starlabels.training.errors import TrainingError

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import _resume_setup

KEYS = ("epoch", "train_loss", "dev_loss", "lr")


class _StopError(Exception):
    pass


def _interrupted_after(tmp_path, arrays, tiny_net, name, n):
    def stop(trainer, row):
        if row["epoch"] == n:
            raise _StopError

    part = _resume_setup(tmp_path, arrays, tiny_net, name, callbacks=[stop])
    with pytest.raises(_StopError):
        part.fit()


def test_resume_with_epochs_trains_to_that_many_in_total(tmp_path, arrays, tiny_net):
    full = _resume_setup(tmp_path, arrays, tiny_net, "full")  # 5 epochs, patience 10
    full.fit()
    _interrupted_after(tmp_path, arrays, tiny_net, "part", 2)
    resumed = _resume_setup(tmp_path, arrays, tiny_net, "part", resume=True)
    resumed.training_cfg.epochs = 3  # what `train --resume --epochs 3` sets
    resumed.fit()
    # 3 epochs in total (2 before the interruption + 1), identical to the first 3 of the full run
    assert [[r[k] for k in KEYS] for r in resumed.history] == [[r[k] for k in KEYS] for r in full.history[:3]]
    assert resumed.state["stages"]["main"]["epochs"] == 3


def test_resume_with_fewer_epochs_than_done_is_a_clear_error(tmp_path, arrays, tiny_net):
    _interrupted_after(tmp_path, arrays, tiny_net, "part", 3)
    resumed = _resume_setup(tmp_path, arrays, tiny_net, "part", resume=True)
    resumed.training_cfg.epochs = 2
    with pytest.raises(TrainingError, match="checkpointed at epoch 3, beyond the 2 epochs"):
        resumed.fit()


def test_resume_of_a_finished_run_never_silently_does_nothing(tmp_path, arrays, tiny_net):
    full = _resume_setup(tmp_path, arrays, tiny_net, "full")
    full.fit()
    weights = {k: v.clone() for k, v in full.network.state_dict().items()}
    more = _resume_setup(tmp_path, arrays, tiny_net, "full", resume=True)
    more.training_cfg.epochs = 8
    with pytest.raises(TrainingError, match=r"already finished after 5 .* cannot extend"):
        more.fit()
    fewer = _resume_setup(tmp_path, arrays, tiny_net, "full", resume=True)
    fewer.training_cfg.epochs = 3
    with pytest.raises(TrainingError, match="already finished after 5 epochs, more than the 3"):
        fewer.fit()
    same = _resume_setup(tmp_path, arrays, tiny_net, "full", resume=True)  # the same 5: complete, as before
    same.fit()
    for k, v in same.network.state_dict().items():
        assert torch.equal(v, weights[k]), k
