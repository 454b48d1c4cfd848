"""Train spectral emulators in The Payne's format from a grid of (labels, spectra), in torch.

Three layouts, each written exactly as The Payne's ``.npz`` and read back by
:class:`starlabels.data.emulator.PayneEmulator`:

``per_pixel`` (Ting et al. 2019): one small network per pixel, one hidden layer of H sigmoid
    units; keys ``w_array_0`` (P, H, L), ``b_array_0`` (P, H), ``w_array_1`` (P, H),
    ``b_array_1`` (P,). All P networks are trained at once as batched tensors; the loss is a sum
    over pixels, so each pixel's network gets exactly its own gradient (Adam is per parameter).
``per_pixel_2`` (``train_emulator(layout="per_pixel", hidden_layers=2)``): one network per pixel
    with two hidden layers of H1 and H2 sigmoid units; keys ``w_array_0`` (P, H1, L),
    ``b_array_0`` (P, H1), ``w_array_1`` (P, H2, H1), ``b_array_1`` (P, H2), ``w_array_2``
    (P, H2), ``b_array_2`` (P,) (see :mod:`starlabels.data.emulator`).
``dense`` (the shared trunk of The Payne's public code): one network for all pixels, two hidden
    layers of leaky-ReLU units (slope 0.01); keys ``w_array_0`` (H1, L) … ``b_array_2`` (P,).

Labels are scaled as The Payne does, ``s = (labels − x_min)/(x_max − x_min) − 0.5`` with x_min,
x_max the training set's range. Spectra are standardised per pixel for training (mean, std) and
the scaling is folded into the output layer on export, so the file needs no extra keys.
The validation loss is checked every epoch and the best weights kept (as The Payne's training).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from starlabels.errors import InputDataError

LAYOUTS = ("per_pixel", "per_pixel_2", "dense")


@dataclass
class EmulatorTraining:
    """Result of :func:`train_emulator`: ``arrays`` (the ``.npz`` keys → numpy arrays),
    ``history`` (per epoch: train and validation mean squared error of standardised flux),
    ``seconds`` wall time, ``best_epoch``."""

    arrays: dict[str, np.ndarray]
    layout: str
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int = 0

    def save(self, path: str | Path) -> Path:
        """Write the emulator ``.npz`` atomically."""
        return save_emulator(path, self.arrays)


def save_emulator(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write Payne-format arrays to ``path`` (``.npz``) atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


class _PerPixel(torch.nn.Module):
    def __init__(self, n_pixels: int, n_hidden: int, n_labels: int, gen: torch.Generator):
        super().__init__()
        p, h, n_lab = n_pixels, n_hidden, n_labels
        # scaled labels span 1, so the first layer needs O(1–10) weights to bend within the box
        # w0 stored as (L, P·H): the first layer of all pixels is then one matrix product
        self.shape = (p, h, n_lab)
        self.w0 = torch.nn.Parameter(torch.randn(n_lab, p * h, generator=gen) * 4.0 / math.sqrt(n_lab))
        self.b0 = torch.nn.Parameter(torch.randn(p, h, generator=gen) * 0.5)
        self.w1 = torch.nn.Parameter(torch.randn(p, h, generator=gen) / math.sqrt(h))
        self.b1 = torch.nn.Parameter(torch.zeros(p))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        p, h, _ = self.shape
        hidden = torch.sigmoid((s @ self.w0).view(-1, p, h) + self.b0)
        return (hidden * self.w1).sum(2) + self.b1

    def export(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        w = {k: v.detach().cpu().double().numpy() for k, v in self.state_dict().items()}
        p, h, n_lab = self.shape
        w0 = w["w0"].reshape(n_lab, p, h).transpose(1, 2, 0)
        return {"w_array_0": w0, "b_array_0": w["b0"], "w_array_1": w["w1"] * std[:, None],
                "b_array_1": w["b1"] * std + mean}


class _PerPixel2(torch.nn.Module):
    """P per-pixel networks with two sigmoid hidden layers (H1, H2), trained as batched tensors."""

    def __init__(self, n_pixels: int, hidden: tuple[int, int], n_labels: int, gen: torch.Generator):
        super().__init__()
        p, n_lab = n_pixels, n_labels
        h1, h2 = hidden
        self.shape = (p, h1, h2, n_lab)
        self.w0 = torch.nn.Parameter(torch.randn(n_lab, p * h1, generator=gen) * 4.0 / math.sqrt(n_lab))
        self.b0 = torch.nn.Parameter(torch.randn(p, h1, generator=gen) * 0.5)
        # sigmoid outputs lie in (0, 1): a larger start than 1/√H1 lets the second layer bend too
        self.w1 = torch.nn.Parameter(torch.randn(p, h2, h1, generator=gen) * 2.0 / math.sqrt(h1))
        self.b1 = torch.nn.Parameter(torch.randn(p, h2, generator=gen) * 0.5)
        self.w2 = torch.nn.Parameter(torch.randn(p, h2, generator=gen) / math.sqrt(h2))
        self.b2 = torch.nn.Parameter(torch.zeros(p))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        p, h1, _, _ = self.shape
        a1 = torch.sigmoid((s @ self.w0).view(-1, p, h1) + self.b0)
        a2 = torch.sigmoid(torch.einsum("pji,npi->npj", self.w1, a1) + self.b1)
        return (a2 * self.w2).sum(2) + self.b2

    def export(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        w = {k: v.detach().cpu().double().numpy() for k, v in self.state_dict().items()}
        p, h1, _, n_lab = self.shape
        w0 = w["w0"].reshape(n_lab, p, h1).transpose(1, 2, 0)
        return {"w_array_0": w0, "b_array_0": w["b0"], "w_array_1": w["w1"], "b_array_1": w["b1"],
                "w_array_2": w["w2"] * std[:, None], "b_array_2": w["b2"] * std + mean}


class _Dense(torch.nn.Module):
    def __init__(self, n_pixels: int, hidden: tuple[int, int], n_labels: int, gen: torch.Generator):
        super().__init__()
        h1, h2 = hidden
        self.layers = torch.nn.ModuleList(
            [torch.nn.Linear(n_labels, h1), torch.nn.Linear(h1, h2), torch.nn.Linear(h2, n_pixels)]
        )
        with torch.no_grad():
            for layer in self.layers:
                bound = math.sqrt(6.0 / layer.in_features)
                layer.weight.copy_((torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound)
                layer.bias.zero_()
            self.layers[0].weight.mul_(4.0)  # scaled labels span 1

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        act = torch.nn.functional.leaky_relu
        x = act(self.layers[0](s), 0.01)
        x = act(self.layers[1](x), 0.01)
        return self.layers[2](x)

    def export(self, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for i, layer in enumerate(self.layers):
            out[f"w_array_{i}"] = layer.weight.detach().cpu().double().numpy()
            out[f"b_array_{i}"] = layer.bias.detach().cpu().double().numpy()
        out["w_array_2"] = out["w_array_2"] * std[:, None]
        out["b_array_2"] = out["b_array_2"] * std + mean
        return out


def train_emulator(
    labels: np.ndarray,
    spectra: np.ndarray,
    *,
    layout: str = "per_pixel",
    hidden: int | tuple[int, int] = 10,
    hidden_layers: int | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    valid_fraction: float = 0.1,
    epochs: int = 200,
    learning_rate: float = 1e-2,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> EmulatorTraining:
    """Train a Payne-format emulator on ``labels`` (N, L) physical units → ``spectra`` (N, P).

    ``hidden``: H for ``per_pixel``; (H1, H2) for ``dense``. ``hidden_layers``: 1 or 2 for
    ``per_pixel`` (default 1; 2 writes the ``per_pixel_2`` layout, ``hidden`` then (H1, H2) or one
    H for both); ``dense`` has 2. ``validation``: held-out
    ``(labels, spectra)``; default the last ``valid_fraction`` of a seeded shuffle. Adam with the
    learning rate halved after 10 epochs without a better validation loss; the best-validation
    weights are returned. Deterministic for a given seed, device and thread count.
    """
    from starlabels.utils import progress

    if layout not in LAYOUTS:
        raise InputDataError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "per_pixel_2":  # the same as per_pixel with two hidden layers
        if hidden_layers not in (None, 2):
            raise InputDataError(f"per_pixel_2 has two hidden layers, got hidden_layers={hidden_layers}")
        layout, hidden_layers = "per_pixel", 2
    x = np.asarray(labels, dtype=np.float64)
    y = np.asarray(spectra, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise InputDataError(f"labels (N, L) and spectra (N, P) must share N; got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputDataError("labels and spectra must be finite (a training grid has no gaps)")
    gen = torch.Generator().manual_seed(seed)
    if validation is None:
        order = torch.randperm(x.shape[0], generator=gen).numpy()
        n_valid = max(1, round(valid_fraction * x.shape[0]))
        vx, vy = x[order[-n_valid:]], y[order[-n_valid:]]
        x, y = x[order[:-n_valid]], y[order[:-n_valid]]
    else:
        vx, vy = (np.asarray(a, dtype=np.float64) for a in validation)
    x_min, x_max = x.min(0), x.max(0)
    if np.any(x_max <= x_min):
        raise InputDataError("every label must vary over the training grid")
    mean, std = y.mean(0), y.std(0)
    std = np.where(std > 1e-12 * max(np.abs(mean).max(), 1.0), std, 1.0)

    dev = torch.device(device) if device is not None else torch.device("cpu")

    def tensors(lab, spec):
        s = (lab - x_min) / (x_max - x_min) - 0.5
        return (torch.as_tensor(s, dtype=dtype, device=dev),
                torch.as_tensor((spec - mean) / std, dtype=dtype, device=dev))

    xs, ys = tensors(x, y)
    vxs, vys = tensors(vx, vy)
    n_lab, n_pix = x.shape[1], y.shape[1]
    n_hidden_layers = hidden_layers if hidden_layers is not None else (1 if layout == "per_pixel" else 2)
    if n_hidden_layers not in ((1, 2) if layout == "per_pixel" else (2,)):
        raise InputDataError(
            f"{layout} emulators have {'1 or 2' if layout == 'per_pixel' else '2'} hidden layers, "
            f"got hidden_layers={hidden_layers}"
        )
    if layout == "per_pixel" and n_hidden_layers == 2:
        sizes = (hidden, hidden) if isinstance(hidden, int) else tuple(hidden)
        if len(sizes) != 2 or min(sizes) < 1:
            raise InputDataError(f"two hidden layers per pixel: hidden=(H1, H2) or one int, got {hidden}")
        net: torch.nn.Module = _PerPixel2(n_pix, (int(sizes[0]), int(sizes[1])), n_lab, gen)
        layout = "per_pixel_2"
    elif layout == "per_pixel":
        if not isinstance(hidden, int):
            raise InputDataError("per_pixel emulators have one hidden layer: hidden must be an int")
        net = _PerPixel(n_pix, hidden, n_lab, gen)
    else:
        if isinstance(hidden, int) or len(hidden) != 2:
            raise InputDataError("dense emulators have two hidden layers: hidden=(H1, H2)")
        net = _Dense(n_pix, (int(hidden[0]), int(hidden[1])), n_lab, gen)
    net = net.to(device=dev, dtype=dtype)
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)

    best, best_state, best_epoch, stale = math.inf, None, 0, 0
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    for epoch in progress(range(epochs), desc=f"emulator ({layout})", total=epochs, unit="epoch"):
        net.train()
        order = torch.randperm(xs.shape[0], generator=gen).to(dev)
        total = 0.0
        for a in range(0, xs.shape[0], batch_size):
            idx = order[a:a + batch_size]
            loss = torch.mean((net(xs[idx]) - ys[idx]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
        with torch.no_grad():
            valid = float(sum(torch.sum((net(vxs[a:a + batch_size]) - vys[a:a + batch_size]) ** 2)
                              for a in range(0, vxs.shape[0], batch_size))) / vys.numel()
        history.append({"epoch": epoch + 1, "train_mse": total / xs.shape[0], "valid_mse": valid,
                        "lr": opt.param_groups[0]["lr"], "seconds": time.perf_counter() - t0})
        if valid < best:
            best, best_epoch, stale = valid, epoch + 1, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= 10:
                for group in opt.param_groups:
                    group["lr"] *= 0.5
                stale = 0
    seconds = time.perf_counter() - t0
    if best_state is not None:
        net.load_state_dict(best_state)
    arrays = net.export(mean, std)
    arrays["x_min"], arrays["x_max"] = x_min, x_max
    arrays = {k: np.asarray(v, dtype=np.float32 if k.startswith(("w_", "b_")) else np.float64)
              for k, v in arrays.items()}
    return EmulatorTraining(arrays, layout, history, seconds, best_epoch)
