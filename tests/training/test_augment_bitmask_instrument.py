"""Noise augmentation in the trainer reads the stored bitmask with the data's own instrument's bits."""

import numpy as np

from starlabels import instruments
from starlabels.models.bcnn import BayesianCNN
from starlabels.training.config import TrainingConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.trainer import Trainer


def test_trainer_augments_boss_spectra_with_sppixmask_bits():
    boss = instruments.get("boss")
    rng = np.random.default_rng(0)
    n, P = 12, boss.n_pixels
    flux = rng.normal(100, 1, (n, P)).astype(np.float32)
    error = np.ones((n, P), np.float32)
    bitmask = np.zeros((n, P), np.int64)
    # BRIGHTSKY (bit 23) is an SPPIXMASK reject bit; bit 23 means nothing to APOGEE_PIXMASK
    bitmask[:, 100:110] = 1 << boss.bitmask().bits["BRIGHTSKY"]
    labels = rng.normal(size=(n, 2))
    data = TrainingData.from_arrays(flux, labels, ["TEFF", "LOGG"], error=error, bitmask=bitmask,
                                    grid=boss.grid)
    rows = np.arange(n)
    training = TrainingConfig(epochs=1, batch_size=4, device="cpu", augment={"snr": [5, 6], "fraction": 1.0})
    trainer = Trainer(BayesianCNN(2, P, hidden=(4, 4)), data,
                      {"train": rows[:8], "dev": rows[8:], "test": rows[:0]}, training=training)
    assert trainer.inputs.bitmask_definition() is boss.bitmask()
    f, e, _ = trainer.inputs.read(np.arange(n), np.random.default_rng(1))
    # flagged pixels are left exactly as they were; the others are degraded to SNR 5-6
    np.testing.assert_array_equal(f[:, 100:110], flux[:, 100:110])
    np.testing.assert_array_equal(e[:, 100:110], error[:, 100:110])
    assert np.all(e[:, 200:300] > 10)
