"""Fixtures for the inference tests: tiny networks with known, analytic behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: on the shared 2-core machine two threads wait on each other (measured
    30x slower for these tiny networks under load). Runs after the root conftest's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LinearNet(nn.Module):
    """y = W x + b, log_var = constant ``log_var`` (per label). Input (N, 1, P)."""

    has_variance = True

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, log_var: float | None = None):
        super().__init__()
        self.n_labels, self.n_pixels = weight.shape
        self.lin = nn.Linear(self.n_pixels, self.n_labels)
        with torch.no_grad():
            self.lin.weight.copy_(weight)
            self.lin.bias.copy_(torch.zeros(self.n_labels) if bias is None else bias)
        self.log_var = log_var
        self.has_variance = log_var is not None

    def forward(self, x):
        y = self.lin(x[:, 0])
        lv = None if self.log_var is None else torch.full_like(y, self.log_var)
        return y, lv


class SmoothNet(nn.Module):
    """A small smooth (tanh) CNN with a variance head: the delta method's home ground."""

    has_variance = True

    def __init__(self, n_pixels: int = 128, n_labels: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.n_pixels, self.n_labels = n_pixels, n_labels
        self.conv = nn.Conv1d(1, 4, 5, padding=2)
        self.fc1 = nn.Linear(4 * n_pixels, 32)
        self.mean = nn.Linear(32, n_labels)
        self.lv = nn.Linear(32, n_labels)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / max(1, p.shape[-1]) ** 0.5))

    def forward(self, x):
        h = torch.tanh(self.conv(x)).flatten(1)
        h = torch.tanh(self.fc1(h))
        return self.mean(h), self.lv(h)


class DropoutLinear(nn.Module):
    """y = w · dropout(h(x)) with h(x) = x (identity features): Var over masks is analytic,
    Σ_i w_i² x_i² p/(1-p). log_var = const."""

    has_variance = True

    def __init__(self, w: torch.Tensor, p: float, log_var: float = 0.0):
        super().__init__()
        self.n_labels, self.n_pixels = w.shape
        self.w = nn.Parameter(w.clone())
        self.drop = nn.Dropout(p)
        self.log_var = log_var

    def forward(self, x):
        y = self.drop(x[:, 0]) @ self.w.T
        return y, torch.full_like(y, self.log_var)


class CountingNet(nn.Module):
    """Wraps a network and records the batch size of every forward call."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.n_labels, self.n_pixels = net.n_labels, net.n_pixels
        self.has_variance = getattr(net, "has_variance", False)
        self.calls: list[int] = []

    def forward(self, x):
        self.calls.append(int(x.shape[0]))
        return self.net(x)


@pytest.fixture
def nets():
    """Namespace of the test network classes."""

    class N:
        Linear = LinearNet
        Smooth = SmoothNet
        DropoutLinear = DropoutLinear
        Counting = CountingNet

    return N


def build_model(arch: str = "bcnn", n_pixels: int = 256, *, preprocessing=None, dropout: float = 0.2,
                seed: int = 0, training=None):
    """A real TrainedModel with random weights: ``arch`` "bcnn" or "apogee_net", labels
    TEFF/LOGG/FE_H, label scaler (5000 ± 500 K, 3 ± 1, 0 ± 0.3), spectrum scaler "none"."""
    from starlabels.data.normalization import LabelScaler, SpectrumScaler
    from starlabels.models import build_network
    from starlabels.models.folder import TrainedModel

    torch.manual_seed(seed)
    net = build_network(arch, n_labels=3, n_pixels=n_pixels, dropout=dropout)
    net.eval()
    return TrainedModel(
        net, ["TEFF", "LOGG", "FE_H"], LabelScaler([5000.0, 3.0, 0.0], [500.0, 1.0, 0.3]),
        SpectrumScaler("none"), ["K", "dex", "dex"], preprocessing=preprocessing, training=training,
    )


@pytest.fixture
def make_model():
    """Factory of small real TrainedModels (see :func:`build_model`)."""
    return build_model


@pytest.fixture(scope="session")
def raw_model_folder(tmp_path_factory):
    """A saved BayesianCNN model on the raw apStar grid (raw-flux preprocessing)."""
    from starlabels.preprocess.pipeline import PreprocessConfig

    tm = build_model("bcnn", 8575, preprocessing=PreprocessConfig(kind="raw").to_dict(), seed=1)
    folder = tmp_path_factory.mktemp("models") / "bcnn_raw"
    tm.save(folder)
    return folder


def raw_spectra(n: int, *, snr: float = 100.0, seed: int = 0):
    """(flux, error, bitmask) of n apStar-grid spectra: a smooth continuum ~100 with absorption
    lines whose depths vary per star, Gaussian noise at the given SNR."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.linspace(0, 1, 8575)
    depth = rng.uniform(0.05, 0.5, (n, 1))
    lines = np.exp(-0.5 * ((x[None, :] % 0.01 - 0.005) / 0.0008) ** 2)
    flux = 100.0 * (1 + 0.1 * x[None, :]) * (1 - depth * lines)
    error = flux / snr
    flux = flux + rng.normal(size=flux.shape) * error
    bitmask = np.zeros(flux.shape, np.int64)
    return flux, error, bitmask


@pytest.fixture
def spectra():
    """Factory of synthetic raw apStar-grid spectra (see :func:`raw_spectra`)."""
    return raw_spectra


@pytest.fixture
def inputs(tmp_path, spectra):
    """Catalog inputs: a folder of 4 apStar files (one NaN-only) and a 3-row HDF5 dataset — 2 + 2 units
    with ``files_per_unit=2, rows_per_unit=2`` (test_catalog.py has inputs of its own)."""
    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.io import write_apstar

    flux, error, bitmask = spectra(7, seed=5)
    flux[1] = np.nan
    d = tmp_path / "in"
    d.mkdir()
    for i in range(4):
        write_apstar(d / f"apStar-dr17-2M1000000{i}.fits", flux[i], error[i], bitmask[i],
                     {"APOGEE_ID": f"2M1000000{i}"})
    with DatasetWriter(tmp_path / "rows.h5", 8575, "apstar") as w:
        w.append(flux[4:], error[4:], bitmask[4:], meta={"apogee_id": ["h0", "h1", "h2"]})
    return [d, tmp_path / "rows.h5"]
