"""Spectral emulators in The Payne's format (Ting et al. 2019; El-Badry et al. 2018), in torch.

Three layouts are read from an ``.npz`` file; all map labels to flux on the emulator's own pixel
grid (P pixels; The Payne's APOGEE emulators use the 7214-pixel Payne grid) after scaling the
labels to ``s = (labels − x_min)/(x_max − x_min) − 0.5``. An optional ``wavelength`` (P,) array
(vacuum Å) in the file names the grid (:attr:`PayneEmulator.wavelength`); without it the survey
simulator matches the pixel count to one of the instrument's grids
(:class:`starlabels.data.survey.EmulatorSource`).

``per_pixel`` (one hidden layer per pixel, sigmoid): keys ``w_array_0`` (P, H, L), ``b_array_0``
    (P, H), ``w_array_1`` (P, H), ``b_array_1`` (P,)::

        flux[p] = Σ_h w1[p,h] · sigmoid(Σ_l w0[p,h,l] s[l] + b0[p,h]) + b1[p]

``per_pixel_2`` (two hidden layers per pixel, sigmoid): ``w_array_0`` (P, H1, L), ``b_array_0``
    (P, H1), ``w_array_1`` (P, H2, H1), ``b_array_1`` (P, H2), ``w_array_2`` (P, H2),
    ``b_array_2`` (P,)::

        a1[p,i] = sigmoid(Σ_l w0[p,i,l] s[l] + b0[p,i])
        a2[p,j] = sigmoid(Σ_i w1[p,j,i] a1[p,i] + b1[p,j])
        flux[p] = Σ_j w2[p,j] · a2[p,j] + b2[p]

    The Payne's own two-layer per-pixel networks (Ting et al. 2018; the commented-out variant in
    The Payne's ``spectral_model.py``) are the case H2 = 1 stored without that axis —
    ``w_array_1`` (P, H1), ``b_array_1`` (P,), ``w_array_2`` (P,), ``b_array_2`` (P,),
    ``flux = w2 · sigmoid(Σ_i w1 a1 + b1) + b2`` — and are read as ``per_pixel_2`` with H2 = 1.

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
#: the layouts :class:`PayneEmulator` evaluates (see the module docstring)
EMULATOR_LAYOUTS = ("per_pixel", "per_pixel_2", "dense")
_OUTPUT_BIAS = {"per_pixel": "b_array_1", "per_pixel_2": "b_array_2", "dense": "b_array_2"}


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
        layout, n_labels = detect_layout(arrays, path)
        if arrays["x_min"].shape != (n_labels,) or arrays["x_max"].shape != (n_labels,):
            raise InputFileError(path, f"x_min/x_max do not have {n_labels} entries")
        if label_names is None:
            label_names = tuple(f"L{i}" for i in range(n_labels))
        if len(label_names) != n_labels:
            raise InputDataError(f"{path}: emulator has {n_labels} labels, got names {label_names}")
        keys = PER_PIXEL_KEYS if layout == "per_pixel" else DENSE_KEYS
        weights = {k: torch.as_tensor(arrays[k], dtype=dtype, device=device) for k in keys}
        n_pixels = weights[_OUTPUT_BIAS[layout]].shape[0]
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
        return int(self.weights[_OUTPUT_BIAS[self.layout]].shape[0])

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
        if self.layout == "dense":
            flux = self._dense(s)
        elif self.layout == "per_pixel_2":
            flux = self._per_pixel_2(s)
        else:
            flux = self._per_pixel(s)
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

    def _per_pixel_2(self, s: torch.Tensor) -> torch.Tensor:
        w = self.weights
        out = []
        for a in range(0, self.n_pixels, self._pixel_chunk):  # pixel chunks bound memory
            b = a + self._pixel_chunk
            a1 = torch.sigmoid(torch.einsum("pil,nl->npi", w["w_array_0"][a:b], s) + w["b_array_0"][a:b])
            a2 = torch.sigmoid(torch.einsum("pji,npi->npj", w["w_array_1"][a:b], a1)
                               + w["b_array_1"][a:b])
            out.append(torch.einsum("pj,npj->np", w["w_array_2"][a:b], a2) + w["b_array_2"][a:b])
        return torch.cat(out, dim=1)

    def _dense(self, s: torch.Tensor) -> torch.Tensor:
        w = self.weights
        act = torch.nn.functional.leaky_relu
        h1 = act(s @ w["w_array_0"].T + w["b_array_0"], 0.01)
        h2 = act(h1 @ w["w_array_1"].T + w["b_array_1"], 0.01)
        return h2 @ w["w_array_2"].T + w["b_array_2"]


def detect_layout(arrays: dict[str, np.ndarray], path: str | Path) -> tuple[str, int]:
    """``(layout, n_labels)`` of Payne-format ``arrays`` from their key shapes (see the module
    docstring). The Payne's H2 = 1 two-layer per-pixel arrays are reshaped in place to the
    ``per_pixel_2`` shapes. :class:`InputFileError` naming ``path`` for any other layout."""
    shapes = {k: np.shape(v) for k, v in arrays.items() if k.startswith(("w_array_", "b_array_"))}
    w0 = arrays["w_array_0"]
    if w0.ndim == 3:
        p, h1, n_labels = w0.shape
        if "w_array_2" not in arrays:
            expected = {"b_array_0": (p, h1), "w_array_1": (p, h1), "b_array_1": (p,)}
            layout = "per_pixel"
        else:
            if "b_array_2" not in arrays:
                raise InputFileError(path, "has w_array_2 but no b_array_2")
            if arrays["w_array_1"].ndim == 2 and arrays["w_array_2"].ndim == 1:  # The Payne, H2 = 1
                arrays["w_array_1"] = arrays["w_array_1"][:, None, :]
                arrays["b_array_1"] = np.reshape(arrays["b_array_1"], (-1, 1))
                arrays["w_array_2"] = arrays["w_array_2"][:, None]
            h2 = arrays["w_array_1"].shape[1] if arrays["w_array_1"].ndim == 3 else -1
            expected = {"b_array_0": (p, h1), "w_array_1": (p, h2, h1), "b_array_1": (p, h2),
                        "w_array_2": (p, h2), "b_array_2": (p,)}
            layout = "per_pixel_2"
    elif w0.ndim == 2 and "w_array_2" in arrays and "b_array_2" in arrays:
        h1, n_labels = w0.shape
        h2 = arrays["w_array_1"].shape[0]
        p = arrays["w_array_2"].shape[0]
        expected = {"b_array_0": (h1,), "w_array_1": (h2, h1), "b_array_1": (h2,),
                    "w_array_2": (p, h2), "b_array_2": (p,)}
        layout = "dense"
    else:
        raise InputFileError(
            path, f"unknown emulator layout (array shapes {shapes}): expected per-pixel w_array_0 "
                  "(P, H, L) or a dense w_array_0 (H, L) with w_array_2 and b_array_2"
        )
    wrong = {k: np.shape(arrays[k]) for k, v in expected.items() if np.shape(arrays[k]) != v}
    if wrong:
        raise InputFileError(
            path, f"{layout} emulator with w_array_0 {tuple(w0.shape)}: arrays {wrong} do not have "
                  f"the expected shapes {({k: expected[k] for k in wrong})}"
        )
    return layout, int(n_labels)


def load_emulator(path: str | Path, label_names=None, **kwargs) -> PayneEmulator:
    """Shorthand for :meth:`PayneEmulator.load`."""
    return PayneEmulator.load(path, label_names=label_names, **kwargs)
