"""Training Payne-format emulators (models.payne_train): round trip train → save → load → evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from starlabels.data.emulator import PayneEmulator
from starlabels.errors import InputDataError
from starlabels.models.payne_train import train_emulator

N_PIX = 60


def grid(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth absorption-line-like spectra of three labels (a Gaussian line per pixel group)."""
    rng = np.random.default_rng(seed)
    labels = rng.uniform([4000.0, 1.0, -1.0], [6000.0, 5.0, 0.5], (n, 3))
    x = (labels - [5000.0, 3.0, -0.25]) / [1000.0, 2.0, 0.75]
    centre = np.linspace(-1, 1, N_PIX)
    depth = 0.3 * (1 + 0.5 * x[:, 2:3]) * np.exp(-((centre - 0.5 * x[:, 0:1]) ** 2) / 0.2)
    return labels, 1.0 - depth * (1 + 0.2 * x[:, 1:2])


def numpy_payne(arrays: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """The evaluation formula of ../shared/data/README.md (per-pixel) / The Payne's public code (dense)."""
    a = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()}
    s = (labels - a["x_min"]) / (a["x_max"] - a["x_min"]) - 0.5
    if a["w_array_0"].ndim == 3:
        inner = np.einsum("phl,nl->nph", a["w_array_0"], s) + a["b_array_0"]
        return np.einsum("ph,nph->np", a["w_array_1"], 1 / (1 + np.exp(-inner))) + a["b_array_1"]
    h1 = s @ a["w_array_0"].T + a["b_array_0"]
    h1 = np.where(h1 > 0, h1, 0.01 * h1)
    h2 = h1 @ a["w_array_1"].T + a["b_array_1"]
    h2 = np.where(h2 > 0, h2, 0.01 * h2)
    return h2 @ a["w_array_2"].T + a["b_array_2"]


@pytest.mark.parametrize(("layout", "hidden", "lr", "epochs", "batch"),
                         [("per_pixel", 6, 2e-2, 100, 32), ("dense", (32, 32), 1e-2, 60, 64)])
def test_train_save_load_evaluate(tmp_path, layout, hidden, lr, epochs, batch):
    x, y = grid(600, 0)
    tx, ty = grid(200, 1)
    res = train_emulator(x, y, layout=layout, hidden=hidden, epochs=epochs, learning_rate=lr,
                         batch_size=batch, seed=0)
    path = res.save(tmp_path / "emu.npz")
    with np.load(path) as npz:
        keys = set(npz.files)
    expected = {"w_array_0", "b_array_0", "w_array_1", "b_array_1", "x_min", "x_max"}
    if layout == "dense":
        expected |= {"w_array_2", "b_array_2"}
    assert keys == expected
    emu = PayneEmulator.load(path, label_names=("TEFF", "LOGG", "FE_H"), dtype=torch.float64)
    assert emu.layout == layout and emu.n_pixels == N_PIX
    pred = emu(tx).numpy()
    np.testing.assert_allclose(pred, numpy_payne(res.arrays, tx), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.arrays["x_min"], x[res_rows(x, res)].min(0))
    # learned: held-out error far below the spectra's own spread, and the loss fell
    rms = np.sqrt(np.mean((pred - ty) ** 2))
    assert rms < 0.1 * ty.std()
    assert res.history[-1]["valid_mse"] < 0.1 * res.history[0]["valid_mse"]
    assert 1 <= res.best_epoch <= epochs and res.seconds > 0


def res_rows(x: np.ndarray, res) -> np.ndarray:
    """Rows of x inside the stored label box: the training rows define x_min/x_max."""
    inside = np.all((x >= res.arrays["x_min"] - 1e-9) & (x <= res.arrays["x_max"] + 1e-9), axis=1)
    return np.flatnonzero(inside)


def test_bad_training_inputs():
    x, y = grid(50, 0)
    with pytest.raises(InputDataError, match="share N"):
        train_emulator(x[:10], y, epochs=1)
    y_nan = y.copy()
    y_nan[0, 0] = np.nan
    with pytest.raises(InputDataError, match="finite"):
        train_emulator(x, y_nan, epochs=1)
    with pytest.raises(InputDataError, match="layout"):
        train_emulator(x, y, layout="resnet", epochs=1)
    with pytest.raises(InputDataError, match="two hidden layers"):
        train_emulator(x, y, layout="dense", hidden=8, epochs=1)
    with pytest.raises(InputDataError, match="vary"):
        train_emulator(np.c_[x[:, :2], np.ones(50)], y, epochs=1)
