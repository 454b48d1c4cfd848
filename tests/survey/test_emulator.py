"""Payne-format emulators: torch evaluation against a direct numpy evaluation of the formula."""

import numpy as np
import pytest
import torch

from starlabels.data.emulator import PayneEmulator
from starlabels.errors import InputDataError, InputFileError


def _numpy_per_pixel(d, labels):
    s = (labels - d["x_min"]) / (d["x_max"] - d["x_min"]) - 0.5
    out = np.empty((len(labels), d["b_array_1"].shape[0]))
    for n, sn in enumerate(s):  # the literal formula, star by star, as an independent reference
        hidden = d["w_array_0"] @ sn + d["b_array_0"]
        out[n] = (d["w_array_1"] / (1 + np.exp(-hidden))).sum(axis=1) + d["b_array_1"]
    return out


@pytest.mark.parametrize("name", ["payne_kurucz_4label", "payne_apogee_dwarfs_5label"])
def test_shared_emulators_match_the_formula(shared_data, name):
    path = shared_data / "emulators" / f"{name}.npz"
    d = dict(np.load(path))
    emu = PayneEmulator.load(path, dtype=torch.float64)
    assert emu.layout == "per_pixel" and emu.n_pixels == 7214
    rng = np.random.default_rng(1)
    labels = d["x_min"] + rng.uniform(0.1, 0.9, size=(5, len(d["x_min"]))) * (d["x_max"] - d["x_min"])
    np.testing.assert_allclose(emu(labels).numpy(), _numpy_per_pixel(d, labels), rtol=1e-10, atol=1e-8)
    # a single star gives a 1-D spectrum
    assert emu(labels[0]).shape == (7214,)


def test_dense_layout_with_two_hidden_layers(tmp_path):
    rng = np.random.default_rng(0)
    L, H1, H2, P = 3, 6, 5, 40
    d = {
        "w_array_0": rng.normal(size=(H1, L)), "b_array_0": rng.normal(size=H1),
        "w_array_1": rng.normal(size=(H2, H1)), "b_array_1": rng.normal(size=H2),
        "w_array_2": rng.normal(size=(P, H2)), "b_array_2": rng.normal(size=P),
        "x_min": np.array([4000.0, 1.0, -1.0]), "x_max": np.array([5000.0, 3.0, 0.5]),
    }
    path = tmp_path / "dense.npz"
    np.savez(path, **d)
    emu = PayneEmulator.load(path, label_names=["TEFF", "LOGG", "FE_H"], dtype=torch.float64)
    labels = np.array([[4500.0, 2.0, -0.2], [4100.0, 2.9, 0.4]])
    s = (labels - d["x_min"]) / (d["x_max"] - d["x_min"]) - 0.5

    def lrelu(z):
        return np.where(z > 0, z, 0.01 * z)

    ref = lrelu(lrelu(s @ d["w_array_0"].T + d["b_array_0"]) @ d["w_array_1"].T + d["b_array_1"])
    ref = ref @ d["w_array_2"].T + d["b_array_2"]
    assert emu.layout == "dense" and emu.n_pixels == P
    np.testing.assert_allclose(emu(labels).numpy(), ref, rtol=1e-12)


def test_bad_emulator_files_and_inputs(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        PayneEmulator.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "x.npz", w_array_0=np.zeros((2, 2, 2)))
    with pytest.raises(InputFileError, match="missing keys"):
        PayneEmulator.load(tmp_path / "x.npz")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputFileError, match="cannot read"):
        PayneEmulator.load(tmp_path / "broken.npz")
    P, H, L = 4, 2, 2
    np.savez(tmp_path / "ok.npz", w_array_0=np.zeros((P, H, L)), b_array_0=np.zeros((P, H)),
             w_array_1=np.zeros((P, H)), b_array_1=np.ones(P), x_min=np.zeros(L), x_max=np.ones(L))
    emu = PayneEmulator.load(tmp_path / "ok.npz")
    with pytest.raises(InputDataError, match=r"\(N, 2\)"):
        emu(np.zeros((3, 5)))
    np.testing.assert_allclose(emu(np.zeros((3, 2))).numpy(), 1.0)
