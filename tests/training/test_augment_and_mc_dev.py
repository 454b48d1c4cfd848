"""Noise augmentation of training batches and the Monte-Carlo-dropout dev loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from starlabels.data.augment import spectrum_snr
from starlabels.training.config import ConfigError, TrainingConfig, config_from_dict
from starlabels.training.data_access import TrainingData
from starlabels.training.trainer import Trainer


def _trainer(arrays, tiny_net, n=200, dropout=0.0, scaling="none", **training):
    flux, error, labels = arrays(n=n, n_pixels=64, seed=4, noise=0.002)
    data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error,
                                    label_errors=np.full_like(labels, 0.01), label_units=["K", "dex"])
    rows = np.arange(n)
    torch.manual_seed(0)
    return Trainer(tiny_net(64, 2, dropout=dropout), data,
                   {"train": rows[:150], "dev": rows[150:], "test": rows[:0]},
                   training=TrainingConfig(epochs=2, batch_size=50, seed=3, device="cpu", **training),
                   spectrum_scaling=scaling)


def _epoch_inputs(trainer, seed=0):
    """The batches' (row order, input) of one epoch, rows put back in order."""
    xs, ys = [], []
    for x, y, _, _ in trainer.iter_batches(trainer.split["train"], np.random.default_rng(seed)):
        xs.append(x[:, 0].numpy())
        ys.append(y.numpy())
    x, y = np.concatenate(xs), np.concatenate(ys)
    order = np.lexsort(y.T[::-1])
    return x[order]


def test_augmented_batches_have_the_target_noise_and_plain_ones_do_not(arrays, tiny_net):
    plain = _trainer(arrays, tiny_net)
    same = _trainer(arrays, tiny_net, augment={"snr": [10, 20], "fraction": 0.0})
    aug = _trainer(arrays, tiny_net, augment={"snr": [25, 25], "fraction": 1.0})
    x0, x_same, x_aug = _epoch_inputs(plain), _epoch_inputs(same), _epoch_inputs(aug)
    np.testing.assert_array_equal(x_same, x0)  # fraction 0: nothing changes
    # fraction 1 at SNR 25: the stored SNR is ~500, so the added noise is ~ flux / 25 per pixel
    resid = x_aug - x0
    snr_in = spectrum_snr(plain.data.read(plain.split["train"])[0], plain.data.read(plain.split["train"])[1])
    k = snr_in.mean() / 25.0
    err = float(np.median(plain.data.read(plain.split["train"])[1]))
    assert resid.std() == pytest.approx(err * np.sqrt(k**2 - 1), rel=0.05)
    # each epoch draws new noise
    assert not np.array_equal(_epoch_inputs(aug, seed=1), x_aug)


def test_augmented_dev_loss_is_fixed_noise_and_can_be_switched_off(arrays, tiny_net):
    clean = _trainer(arrays, tiny_net)
    noisy = _trainer(arrays, tiny_net, augment={"snr": [5, 5]})
    off = _trainer(arrays, tiny_net, augment={"snr": [5, 5], "dev": False})
    dev = clean.split["dev"]
    assert noisy.evaluate(dev) == noisy.evaluate(dev)  # the same degraded copy at every call
    assert noisy.evaluate(dev) != clean.evaluate(dev)   # scored on SNR 5 copies, not SNR ~500
    assert off.evaluate(dev) == clean.evaluate(dev)


def test_mc_dev_loss_uses_dropout_without_touching_the_training_random_stream(arrays, tiny_net):
    eval_mode = _trainer(arrays, tiny_net, dropout=0.5)
    mc = _trainer(arrays, tiny_net, dropout=0.5, dev_mc_samples=3)
    dev = mc.split["dev"]
    torch.manual_seed(1)
    a = mc.evaluate(dev)
    after_mc = torch.rand(3)
    torch.manual_seed(1)
    b = mc.evaluate(dev)
    assert a == b  # fixed dropout masks
    torch.manual_seed(1)
    np.testing.assert_array_equal(torch.rand(3), after_mc)  # the global stream was forked, not used
    assert a != eval_mode.evaluate(dev)
    assert mc.network.training is False  # evaluation leaves the network in eval mode
    # by hand: the mean over 3 dropout passes (fixed seed) of the per-sample MSE
    net = mc.network
    x = mc.inputs.to_input(mc.data.read(dev)[0])
    y = torch.from_numpy(mc.inputs.targets(dev)[0])
    with torch.random.fork_rng():
        torch.manual_seed(mc.seed + 7)
        net.train()
        with torch.no_grad():
            per = torch.stack([((net(x)[0] - y) ** 2).mean(dim=1) for _ in range(3)]).mean(0)
    assert a == pytest.approx(float(per.double().mean()), rel=1e-5)
    # a network without dropout: the MC option changes nothing
    no_drop = _trainer(arrays, tiny_net, dev_mc_samples=3)
    assert no_drop.evaluate(dev) == _trainer(arrays, tiny_net).evaluate(dev)


def test_config_reads_and_checks_the_augmentation_table():
    training = {"dev_mc_samples": 4, "augment": {"snr": [15, 400], "fraction": 0.8}}
    cfg = config_from_dict({"data": {"files": ["a.h5"], "label_names": ["TEFF"]}, "training": training})
    assert cfg.training.dev_mc_samples == 4
    assert cfg.training.noise_augmentation().snr == (15.0, 400.0)
    assert cfg.training.augment["fraction"] == 0.8 and cfg.training.augment["dev"] is True
    with pytest.raises(ConfigError, match="augment"):
        TrainingConfig(augment={"snr": [400, 15]})
    with pytest.raises(ConfigError, match="augment"):
        TrainingConfig(augment={"snr": [15, 400], "typo": 1})
    with pytest.raises(ConfigError, match="dev_mc_samples"):
        TrainingConfig(dev_mc_samples=-1)
