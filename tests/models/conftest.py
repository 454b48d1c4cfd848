"""Fixtures for the network/loss/normalisation/folder tests: small synthetic spectra with known lines."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

N_PIXELS = 512
N_MAIN = 3
ELEMENT_LINES = {"MG": (0.3, 0.7), "AL": (0.5, 0.9)}  # line centres (fractions of the length)
HALF_WINDOW = 10


@dataclass
class Synthetic:
    flux: np.ndarray  # (N, P) float32, continuum 1 with absorption lines
    labels: np.ndarray  # (N, 3 + E) standardised-scale labels in [-1, 1]
    windows: np.ndarray  # (E, P) bool, ±HALF_WINDOW around each element's lines
    element_names: list[str]


def make_synthetic(n: int = 64, n_pixels: int = N_PIXELS, seed: int = 0) -> Synthetic:
    """Gaussian absorption lines whose depths depend on the labels.

    Twelve "main" lines at fixed positions have depths set by mixes of the 3 main labels; each
    element has two lines (inside its window) whose depth depends on its own label and [Fe/H].
    """
    rng = np.random.default_rng(seed)
    names = list(ELEMENT_LINES)
    n_labels = N_MAIN + len(names)
    labels = rng.uniform(-1, 1, size=(n, n_labels))
    x = np.arange(n_pixels, dtype=np.float64)
    flux = np.ones((n, n_pixels))
    centres = np.linspace(40, n_pixels - 40, 12)
    mix = rng.normal(size=(12, N_MAIN))
    for c, a in zip(centres, mix, strict=True):
        depth = 0.4 / (1 + np.exp(-(labels[:, :N_MAIN] @ a)))  # (N,) in (0, 0.4)
        width = 2.0 + 0.5 * labels[:, 0:1]  # "temperature" broadens the lines
        flux -= depth[:, None] * np.exp(-0.5 * ((x - c) / width) ** 2)
    windows = np.zeros((len(names), n_pixels), dtype=bool)
    for e, name in enumerate(names):
        for frac in ELEMENT_LINES[name]:
            c = round(frac * n_pixels) + 0.5
            depth = 0.25 + 0.15 * labels[:, N_MAIN + e] + 0.05 * labels[:, 2]
            flux -= depth[:, None] * np.exp(-0.5 * ((x - c) / 2.5) ** 2)
            windows[e, int(c) - HALF_WINDOW : int(c) + HALF_WINDOW + 1] = True
    flux += rng.normal(scale=0.002, size=flux.shape)
    return Synthetic(flux.astype(np.float32), labels.astype(np.float32), windows, names)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests use tiny tensors: one thread avoids OpenMP spin-waits on the shared 2 cores
    (with other processes running, 2 threads made each small op ~50× slower)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic() -> Synthetic:
    return make_synthetic()
