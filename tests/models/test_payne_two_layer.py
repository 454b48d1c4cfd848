"""Per-pixel Payne emulators with two hidden layers (layout ``per_pixel_2``): numpy formula, The
Payne's own H2 = 1 arrays, analytic Jacobian against finite differences, train → save → load →
evaluate, a fit with the Payne model, and clear errors for unknown layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from starlabels.data.emulator import PayneEmulator
from starlabels.errors import InputDataError, InputFileError
from starlabels.models.payne_fit import PayneModel
from starlabels.models.payne_spectrum import emulator_and_jacobian
from starlabels.models.payne_train import train_emulator

from .test_payne_train import N_PIX, grid

X_MIN, X_MAX = np.array([4000.0, 1.0, -1.0]), np.array([6000.0, 5.0, 0.5])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def random_arrays(p: int = 40, h1: int = 5, h2: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "w_array_0": rng.normal(0, 2.0, (p, h1, 3)), "b_array_0": rng.normal(0, 0.5, (p, h1)),
        "w_array_1": rng.normal(0, 1.0, (p, h2, h1)), "b_array_1": rng.normal(0, 0.5, (p, h2)),
        "w_array_2": rng.normal(0, 0.2, (p, h2)), "b_array_2": np.ones(p),
        "x_min": X_MIN, "x_max": X_MAX,
    }


def numpy_two_layer(a: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """flux (N, P) by explicit loops over pixels (independent of the torch einsums)."""
    s = (labels - a["x_min"]) / (a["x_max"] - a["x_min"]) - 0.5
    out = np.empty((labels.shape[0], a["b_array_2"].size))
    for p in range(out.shape[1]):
        a1 = sigmoid(s @ a["w_array_0"][p].T + a["b_array_0"][p])          # (N, H1)
        a2 = sigmoid(a1 @ a["w_array_1"][p].T + a["b_array_1"][p])         # (N, H2)
        out[:, p] = a2 @ a["w_array_2"][p] + a["b_array_2"][p]
    return out


def labels_in_box(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(X_MIN, X_MAX, (n, 3))


def test_forward_matches_numpy_formula(tmp_path):
    arrays = random_arrays()
    np.savez(tmp_path / "emu.npz", **arrays)
    emu = PayneEmulator.load(tmp_path / "emu.npz", dtype=torch.float64)
    assert emu.layout == "per_pixel_2" and emu.n_pixels == 40 and emu.n_labels == 3
    emu._pixel_chunk = 7  # chunk boundaries inside the grid must not change the result
    lab = labels_in_box(6, 1)
    np.testing.assert_allclose(emu(lab).numpy(), numpy_two_layer(arrays, lab), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(emu(lab[0]).numpy(), numpy_two_layer(arrays, lab[:1])[0], rtol=1e-12)
    flux, _ = emulator_and_jacobian(emu, emu.scale(torch.as_tensor(lab)), jacobian=False)
    np.testing.assert_allclose(flux.numpy(), numpy_two_layer(arrays, lab), rtol=1e-12, atol=1e-12)


def test_the_paynes_own_two_layer_arrays_are_read(tmp_path):
    """Ting et al. 2018 / The Payne's commented-out per-pixel variant: one unit in layer 2."""
    rng = np.random.default_rng(3)
    p, h = 30, 4
    a = {"w_array_0": rng.normal(0, 2, (p, h, 3)), "b_array_0": rng.normal(0, 0.5, (p, h)),
         "w_array_1": rng.normal(0, 1, (p, h)), "b_array_1": rng.normal(0, 0.5, p),
         "w_array_2": rng.normal(0, 0.2, p), "b_array_2": np.ones(p), "x_min": X_MIN, "x_max": X_MAX}
    np.savez(tmp_path / "payne.npz", **a)
    emu = PayneEmulator.load(tmp_path / "payne.npz", dtype=torch.float64)
    assert emu.layout == "per_pixel_2" and tuple(emu.weights["w_array_1"].shape) == (p, 1, h)
    lab = labels_in_box(5, 2)
    s = (lab - X_MIN) / (X_MAX - X_MIN) - 0.5
    expected = np.empty((5, p))
    for n in range(5):  # The Payne's formula, one star at a time
        inside = sigmoid(np.einsum("ijk,k->ij", a["w_array_0"], s[n]) + a["b_array_0"])
        middle = sigmoid(np.einsum("ij->i", a["w_array_1"] * inside) + a["b_array_1"])
        expected[n] = a["w_array_2"] * middle + a["b_array_2"]
    np.testing.assert_allclose(emu(lab).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_jacobian_matches_finite_differences():
    arrays = random_arrays(seed=4)
    weights = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in arrays.items()}
    emu = PayneEmulator(weights, "per_pixel_2", ("TEFF", "LOGG", "FE_H"), None, torch.float64)
    s = torch.as_tensor(np.random.default_rng(5).uniform(-0.4, 0.4, (4, 3)))
    _, jac = emulator_and_jacobian(emu, s)
    assert tuple(jac.shape) == (4, 40, 3)
    for k in range(3):
        step = torch.zeros_like(s)
        step[:, k] = 1e-6
        fd = (emulator_and_jacobian(emu, s + step, False)[0]
              - emulator_and_jacobian(emu, s - step, False)[0]) / 2e-6
        assert torch.allclose(jac[:, :, k], fd, rtol=1e-6, atol=1e-7 * float(fd.abs().max()))


def test_train_save_load_evaluate_and_fit(tmp_path):
    x, y = grid(600, 0)
    tx, ty = grid(200, 1)
    res = train_emulator(x, y, layout="per_pixel", hidden_layers=2, hidden=(6, 4), epochs=100,
                         learning_rate=2e-2, batch_size=32, seed=0)
    assert res.layout == "per_pixel_2"
    path = res.save(tmp_path / "emu2.npz")
    with np.load(path) as npz:
        shapes = {k: npz[k].shape for k in npz.files}
    assert shapes == {"w_array_0": (N_PIX, 6, 3), "b_array_0": (N_PIX, 6), "w_array_1": (N_PIX, 4, 6),
                      "b_array_1": (N_PIX, 4), "w_array_2": (N_PIX, 4), "b_array_2": (N_PIX,),
                      "x_min": (3,), "x_max": (3,)}
    emu = PayneEmulator.load(path, label_names=("TEFF", "LOGG", "FE_H"), dtype=torch.float64)
    assert emu.layout == "per_pixel_2"
    pred = emu(tx).numpy()
    np.testing.assert_allclose(pred, numpy_two_layer(res.arrays, tx), rtol=1e-5, atol=1e-6)
    rms = np.sqrt(np.mean((pred - ty) ** 2))
    assert rms < 0.1 * ty.std()
    assert res.history[-1]["valid_mse"] < 0.1 * res.history[0]["valid_mse"]
    # the Payne model fits a spectrum of this emulator back to its labels and keeps the layout
    lam = 10.0 ** (4.18 + 6e-6 * np.arange(N_PIX))
    model = PayneModel(emu, ["TEFF", "LOGG", "FE_H"], wavelength=lam, pixel_index=np.arange(N_PIX),
                       n_input_pixels=N_PIX, segments=[(0, N_PIX)], continuum_degree=1, n_starts=3,
                       rv_grid=None, clip_sigma=None)
    truth = np.array([[5200.0, 3.5, -0.4]])
    flux = emu(truth).numpy()
    fit = model.fit(flux, np.full_like(flux, 1e-3))
    span = X_MAX - X_MIN
    assert np.all(np.abs(fit.labels - truth) < 0.02 * span)
    again = PayneModel.load(model.save(tmp_path / "folder"))
    assert again.emulator.layout == "per_pixel_2"
    np.testing.assert_allclose(again.emulator(truth).numpy(), flux, rtol=1e-6)


def test_unknown_or_inconsistent_layouts_name_the_file(tmp_path):
    bad = random_arrays()
    bad["w_array_1"] = bad["w_array_1"][:, :, :2]  # H1 of layer 2 does not match layer 1
    np.savez(tmp_path / "inconsistent.npz", **bad)
    with pytest.raises(InputFileError, match=r"inconsistent\.npz.*w_array_1"):
        PayneEmulator.load(tmp_path / "inconsistent.npz")
    odd = random_arrays()
    odd["w_array_0"] = odd["w_array_0"][None]  # 4-D: no known layout
    np.savez(tmp_path / "odd.npz", **odd)
    with pytest.raises(InputFileError, match=r"odd\.npz.*unknown emulator layout"):
        PayneEmulator.load(tmp_path / "odd.npz")
    x, y = grid(50, 0)
    with pytest.raises(InputDataError, match="hidden layers"):
        train_emulator(x, y, layout="per_pixel", hidden_layers=3, epochs=1)
    with pytest.raises(InputDataError, match="hidden layers"):
        train_emulator(x, y, layout="dense", hidden=(8, 8), hidden_layers=1, epochs=1)
