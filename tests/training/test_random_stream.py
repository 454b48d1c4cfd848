"""Training draws from a seeded random stream of its own: the caller's global torch/numpy/python
random states are as they were after every Trainer call, and what the caller draws between calls
does not change the trained weights (the library never changes process-wide state)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from starlabels.utils import (
    RandomStream,
    global_random_state,
    seed_everything,
    seeded,
    seeded_random_state,
    set_global_random_state,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_trainer import _InterruptError, _resume_setup


def same_state(a: dict, b: dict) -> bool:
    """Two :func:`global_random_state` snapshots are equal (torch, numpy legacy, python)."""
    na, nb = a["numpy"], b["numpy"]
    return (torch.equal(a["torch"], b["torch"]) and na[0] == nb[0] and np.array_equal(na[1], nb[1])
            and tuple(na[2:]) == tuple(nb[2:]) and a["python"] == b["python"])


@pytest.fixture
def host_state():
    """The test process's random states, seeded as a host application might, and put back after."""
    saved = global_random_state()
    torch.manual_seed(123)
    np.random.seed(456)
    random.seed(789)
    yield
    set_global_random_state(saved)


def _draws() -> tuple:
    return torch.rand(5), np.random.rand(3), random.random()


def _same_draws(a: tuple, b: tuple) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.mark.parametrize("seed", [0, 11, 7919 * 3 + 5, 2**33 + 1])
def test_seeded_state_is_the_state_seed_everything_leaves(seed, host_state):
    before = global_random_state()
    built = seeded_random_state(seed)
    assert same_state(global_random_state(), before)  # built without touching the process
    seed_everything(seed)
    assert same_state(built, global_random_state())


def test_a_stream_continues_across_blocks_and_gives_the_caller_its_states_back(host_state):
    reference_caller = [_draws(), _draws()]  # what the caller draws with no stream in between
    torch.manual_seed(123)
    np.random.seed(456)
    random.seed(789)
    seed_everything(5)
    reference_stream = [_draws(), _draws()]
    torch.manual_seed(123)
    np.random.seed(456)
    random.seed(789)

    stream = RandomStream(5)
    with stream.active():
        first = _draws()
        with stream.active():  # nested: the same stream, nothing swapped
            pass
    caller_first = _draws()
    with stream.active():
        second = _draws()
    caller_second = _draws()
    assert _same_draws(first, reference_stream[0]) and _same_draws(second, reference_stream[1])
    assert _same_draws(caller_first, reference_caller[0]) and _same_draws(caller_second, reference_caller[1])
    # an exception inside the block still gives the caller its states back
    before = global_random_state()
    with pytest.raises(KeyError), stream.active():
        torch.rand(3)
        raise KeyError("x")
    assert same_state(global_random_state(), before)
    with pytest.raises(ValueError, match="exactly one"):
        RandomStream()


def test_seeded_block_draws_as_after_seed_everything(host_state):
    before = global_random_state()
    with seeded(42):
        inside = _draws()
    assert same_state(global_random_state(), before)
    seed_everything(42)
    assert _same_draws(inside, _draws())


def _two_stage_weights(arrays, tiny_net, tmp_path, name, between=lambda: None):
    trainer = _resume_setup(tmp_path, arrays, tiny_net, name)
    between()
    trainer.run_stage("main", trainer.split["train"], epochs=2)
    between()
    trainer.run_stage("second", trainer.split["train"][:100], epochs=2, stage_index=1)
    between()
    trainer.finish()
    return trainer.network.state_dict()


def test_training_leaves_the_callers_random_states_alone(arrays, tiny_net, tmp_path, host_state):
    # _resume_setup seeds torch for the network's initial weights itself: snapshot after it
    trainer = _resume_setup(tmp_path, arrays, tiny_net, "one")
    before = global_random_state()
    trainer.run_stage("main", trainer.split["train"], epochs=2)
    assert same_state(global_random_state(), before)
    trainer.evaluate(trainer.split["dev"])
    trainer.finish()
    assert same_state(global_random_state(), before)


def test_what_the_caller_draws_between_calls_does_not_change_the_weights(arrays, tiny_net, tmp_path):
    """Dropout (p = 0.3) draws from the global generator while training; the trainer's stream keeps
    those draws apart from the caller's, so the weights are those of an undisturbed run."""
    quiet = _two_stage_weights(arrays, tiny_net, tmp_path, "quiet")
    busy = _two_stage_weights(arrays, tiny_net, tmp_path, "busy",
                              between=lambda: (torch.randn(1000), np.random.rand(50), random.random()))
    for (key, a), b in zip(quiet.items(), busy.values(), strict=True):
        assert torch.equal(a, b), key
    # and the stream matters: another seed gives other weights
    other = _resume_setup(tmp_path, arrays, tiny_net, "other")
    other.random_stream = RandomStream(999)
    other.run_stage("main", other.split["train"], epochs=2)
    assert not torch.equal(other.network.state_dict()["fc.weight"], quiet["fc.weight"])


def test_resume_continues_the_checkpointed_stream_without_touching_the_callers(
        arrays, tiny_net, tmp_path, host_state):
    full = _resume_setup(tmp_path, arrays, tiny_net, "full")
    full.fit()

    def stop_after_two(trainer, row):
        if row["epoch"] == 2:
            raise _InterruptError

    part = _resume_setup(tmp_path, arrays, tiny_net, "part", callbacks=[stop_after_two])
    with pytest.raises(_InterruptError):
        part.fit()
    torch.manual_seed(2024)  # the resuming process has random states of its own
    np.random.seed(2024)
    resumed = _resume_setup(tmp_path, arrays, tiny_net, "part", resume=True)
    before = global_random_state()
    resumed.fit()
    assert same_state(global_random_state(), before)
    for (key, a), b in zip(full.network.state_dict().items(), resumed.network.state_dict().values(),
                           strict=True):
        assert torch.equal(a, b), key
