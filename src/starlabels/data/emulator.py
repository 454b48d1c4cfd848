"""Spectral emulators in The Payne's format (Ting et al. 2019; El-Badry et al. 2018), in torch.

Two layouts are read from an ``.npz`` file; both map labels to flux on the emulator's own pixel
grid (P pixels; The Payne's APOGEE emulators use the 7214-pixel Payne grid) after scaling the
labels to ``s = (labels − x_min)/(x_max − x_min) − 0.5``. An optional ``wavelength`` (P,) array
(vacuum Å) in the file names the grid (:attr:`PayneEmulator.wavelength`); without it the survey
simulator matches the pixel count to one of the instrument's grids
(:class:`starlabels.data.survey.EmulatorSource`).

``per_pixel`` (one hidden layer per pixel, sigmoid): keys ``w_array_0`` (P, H, L), ``b_array_0``
    (P, H), ``w_array_1`` (P, H), ``b_array_1`` (P,)::

        flux[p] = Σ_h w1[p,h] · sigmoid(Σ_l w0[p,h,l] s[l] + b0[p,h]) + b1[p]

``dense`` (one network for all pixels, two hidden layers, leaky ReLU with slope 0.01 as in The
    Payne's public code): ``w_array_0`` (H1, L), ``b_array_0`` (H1,), ``w_array_1`` (H2, H1),
    ``b_array_1`` (H2,), ``w_array_2`` (P, H2), ``b_array_2`` (P,).

Evaluation is batched over stars (and chunked over pixels for the per-pixel layout so a large
batch stays within memory); no Python loop over stars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from starlabels.errors import InputDataError, InputFileError

PER_PIXEL_KEYS = ("w_array_0", "b_array_0", "w_array_1", "b_array_1", "x_min", "x_max")
DENSE_KEYS = (*PER_PIXEL_KEYS, "w_array_2", "b_array_2")


@dataclass
class PayneEmulator:
    """A Payne-format emulator: ``emulator(labels (N, L)) -> flux (N, P)`` as a torch tensor.

    ``label_names`` default to the generic ``L0, L1, …`` unless given (the ``.npz`` files carry
    no names; the two in ../shared/data/emulators are TEFF, LOGG, FE_H, ALPHA_M[, VMACRO]).
    """

    weights: dict[str, torch.Tensor]
    layout: str
    label_names: tuple[str, ...]
    path: str | None = None
    dtype: torch.dtype = torch.float32
    #: (P,) vacuum Å of the emulator's pixels when the file has a ``wavelength`` array, else None
    wavelength: np.ndarray | None = None
    _pixel_chunk: int = field(default=2048, repr=False)

    @classmethod
    def load(
        cls,
        path: str | Path,
        label_names: tuple[str, ...] | list[str] | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> PayneEmulator:
        """Read an emulator ``.npz``; the layout is detected from the keys and shapes."""
        path = Path(path)
        if not path.is_file():
            raise InputFileError(path, "emulator file does not exist")
        try:
            with np.load(path) as npz:
                arrays = {k: np.asarray(npz[k]) for k in npz.files}
        except Exception as exc:  # zipfile/pickle errors from a damaged file
            raise InputFileError(path, f"cannot read emulator .npz ({exc})") from exc
        missing = [k for k in PER_PIXEL_KEYS if k not in arrays]
        if missing:
            raise InputFileError(path, f"not a Payne emulator: missing keys {missing}")
        w0 = arrays["w_array_0"]
        if w0.ndim == 3:
            layout = "per_pixel"
            n_labels = w0.shape[2]
        elif w0.ndim == 2 and "w_array_2" in arrays:
            layout = "dense"
            n_labels = w0.shape[1]
        else:
            raise InputFileError(
                path, f"w_array_0 has shape {w0.shape}: expected (P, H, L) or (H, L) with w_array_2"
            )
        if arrays["x_min"].shape != (n_labels,) or arrays["x_max"].shape != (n_labels,):
            raise InputFileError(path, f"x_min/x_max do not have {n_labels} entries")
        if label_names is None:
            label_names = tuple(f"L{i}" for i in range(n_labels))
        if len(label_names) != n_labels:
            raise InputDataError(f"{path}: emulator has {n_labels} labels, got names {label_names}")
        keys = DENSE_KEYS if layout == "dense" else PER_PIXEL_KEYS
        weights = {k: torch.as_tensor(arrays[k], dtype=dtype, device=device) for k in keys}
        n_pixels = weights["b_array_1" if layout == "per_pixel" else "b_array_2"].shape[0]
        wavelength = None
        if "wavelength" in arrays:
            wavelength = np.asarray(arrays["wavelength"], dtype=np.float64)
            if wavelength.shape != (n_pixels,):
                raise InputFileError(
                    path, f"wavelength has shape {wavelength.shape}, the emulator has {n_pixels} pixels"
                )
            if not (np.all(np.isfinite(wavelength)) and np.all(np.diff(wavelength) > 0)):
                raise InputFileError(path, "wavelength is not finite and strictly increasing")
        return cls(weights, layout, tuple(label_names), str(path), dtype, wavelength)

    @property
    def n_labels(self) -> int:
        return int(self.weights["x_min"].shape[0])

    @property
    def n_pixels(self) -> int:
        key = "b_array_1" if self.layout == "per_pixel" else "b_array_2"
        return int(self.weights[key].shape[0])

    @property
    def label_range(self) -> tuple[np.ndarray, np.ndarray]:
        """(x_min, x_max): the label box the emulator was trained on."""
        return self.weights["x_min"].cpu().numpy(), self.weights["x_max"].cpu().numpy()

    def scale(self, labels: torch.Tensor) -> torch.Tensor:
        """Labels (N, L) in physical units → The Payne's scaled labels in [−0.5, 0.5]."""
        lo, hi = self.weights["x_min"], self.weights["x_max"]
        return (labels - lo) / (hi - lo) - 0.5

    def __call__(self, labels) -> torch.Tensor:
        """Flux (N, P) for labels (N, L) (or (L,) → (P,)) in physical units."""
        lab = torch.as_tensor(labels, dtype=self.dtype, device=self.weights["x_min"].device)
        single = lab.ndim == 1
        if single:
            lab = lab[None]
        if lab.ndim != 2 or lab.shape[1] != self.n_labels:
            raise InputDataError(
                f"emulator takes labels shaped (N, {self.n_labels}), got {tuple(lab.shape)}"
            )
        s = self.scale(lab)
        flux = self._dense(s) if self.layout == "dense" else self._per_pixel(s)
        return flux[0] if single else flux

    def _per_pixel(self, s: torch.Tensor) -> torch.Tensor:
        w = self.weights
        out = []
        for a in range(0, self.n_pixels, self._pixel_chunk):  # pixel chunks bound memory
            b = a + self._pixel_chunk
            hidden = torch.einsum("phl,nl->nph", w["w_array_0"][a:b], s) + w["b_array_0"][a:b]
            out.append(torch.einsum("ph,nph->np", w["w_array_1"][a:b], torch.sigmoid(hidden))
                       + w["b_array_1"][a:b])
        return torch.cat(out, dim=1)

    def _dense(self, s: torch.Tensor) -> torch.Tensor:
        w = self.weights
        act = torch.nn.functional.leaky_relu
        h1 = act(s @ w["w_array_0"].T + w["b_array_0"], 0.01)
        h2 = act(h1 @ w["w_array_1"].T + w["b_array_1"], 0.01)
        return h2 @ w["w_array_2"].T + w["b_array_2"]


def load_emulator(path: str | Path, label_names=None, **kwargs) -> PayneEmulator:
    """Shorthand for :meth:`PayneEmulator.load`."""
    return PayneEmulator.load(path, label_names=label_names, **kwargs)
