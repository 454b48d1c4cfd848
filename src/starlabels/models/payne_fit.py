"""``PayneModel``: labels of observed spectra by fitting a Payne-format emulator (Ting et al. 2019).

A :class:`~starlabels.models.method.LabelMethod`, so ``starlabels.predict``, ``calibrate``,
``run_catalog`` and ``report`` use it like a network. For each spectrum it fits the emulator's
labels, a radial velocity and a Chebyshev continuum per segment (see
:mod:`starlabels.models.payne_spectrum`), from several starting points (best χ² kept), with
pixels rejected by the bitmask or by The Payne's fit mask given infinite σ. The label σ is
``sqrt(diag((JᵀΣ⁻¹J)⁻¹))`` at the optimum (variance part ``"jacobian"``), calibratable like the
networks' σ.

The input is the spectrum as given (``preprocessing = None``): flux and σ (N, n_input_pixels) on
the grid named by ``pixel_index`` (default: the apStar grid, which holds The Payne's 7214 pixels).
Raw flux or continuum-normalised flux both work: the fitted continuum polynomial absorbs the
difference between the data's and the emulator's normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from starlabels.data.emulator import PayneEmulator
from starlabels.errors import InputDataError, InputFileError, ModelFormatError
from starlabels.models.method import LabelMethod, read_folder, write_folder
from starlabels.models.payne_solver import FitOptions, FitResult, fit_spectra
from starlabels.models.payne_spectrum import SpectrumModel, segments_from

__all__ = ["PayneFit", "PayneModel", "columns_of", "default_grid", "label_units_for", "payne_model"]

#: trial velocities (km/s) of the scan before the descent
DEFAULT_RV_GRID: tuple[float, ...] = tuple(float(v) for v in np.arange(-60.0, 60.5, 2.0))
_UNITS = {"TEFF": "K", "VMACRO": "km/s", "VMIC": "km/s", "VMICRO": "km/s", "VSINI": "km/s",
          "VTURB": "km/s"}


def label_units_for(names: Sequence[str]) -> list[str]:
    """Units of allStar-style label names: K for TEFF, km/s for velocities, dex otherwise."""
    return [_UNITS.get(str(n).upper(), "dex") for n in names]


def default_grid() -> tuple[np.ndarray, np.ndarray, int]:
    """The Payne grid inside the apStar grid: ``(wavelength (7214,) Å, apStar column of each
    pixel (7214,), apStar pixel count)``, matched by wavelength."""
    from starlabels.preprocess import grids

    lam_payne = _grid_wavelength(grids.get_grid("payne"))
    lam_apstar = _grid_wavelength(grids.get_grid("apstar"))
    return lam_payne, columns_of(lam_payne, lam_apstar), lam_apstar.size


def columns_of(wavelength: np.ndarray, input_wavelength: np.ndarray) -> np.ndarray:
    """Index of each of ``wavelength`` (Å) in the sorted ``input_wavelength`` (Å); every
    wavelength must be an input pixel (relative match 1e-9), else :class:`InputDataError`."""
    lam = np.asarray(wavelength, dtype=np.float64)
    grid = np.asarray(input_wavelength, dtype=np.float64)
    pos = np.clip(np.searchsorted(grid, lam), 1, grid.size - 1)
    pos = np.where(np.abs(grid[pos - 1] - lam) < np.abs(grid[pos] - lam), pos - 1, pos)
    if np.any(np.abs(grid[pos] - lam) > 1e-9 * lam):
        raise InputDataError("the emulator's wavelengths are not pixels of the input grid")
    return pos


def _grid_wavelength(grid: Any) -> np.ndarray:
    wave = grid.wavelength
    return np.asarray(wave() if callable(wave) else wave, dtype=np.float64)


@dataclass
class PayneFit:
    """Fit of N spectra in physical units: ``labels``, ``std`` (N, L) (σ uncalibrated);
    ``covariance`` (N, L, L); ``rv``, ``rv_err`` (N,) km/s; ``reduced_chi2``, ``converged``,
    ``n_pixels`` (N,); ``model``, ``continuum`` (N, P) best-fit spectrum and its continuum on the
    emulator grid; ``flux``, ``error`` (N, P) the data on that grid with rejected pixels at σ = inf;
    ``raw`` the :class:`~starlabels.models.payne_solver.FitResult`."""

    labels: np.ndarray
    std: np.ndarray
    covariance: np.ndarray
    rv: np.ndarray
    rv_err: np.ndarray
    reduced_chi2: np.ndarray
    converged: np.ndarray
    n_pixels: np.ndarray
    model: np.ndarray
    continuum: np.ndarray
    flux: np.ndarray
    error: np.ndarray
    raw: FitResult


class PayneModel(LabelMethod):
    """Fit a Payne-format emulator to spectra.

    Parameters
    ----------
    emulator:
        a :class:`~starlabels.data.emulator.PayneEmulator` or the path of its ``.npz``.
    label_names:
        one allStar-style name per emulator label, in the emulator's order.
    wavelength, pixel_index, n_input_pixels:
        Å of each emulator pixel (P,), the input column holding it (P,), and the input's pixel
        count. Default: The Payne grid inside the 8575-pixel apStar grid.
    segments:
        continuum segments: pixel ranges (slices/int pairs) or wavelength ranges (Å pairs) of the
        emulator grid; default the detectors (split at the wavelength gaps).
    continuum_degree:
        Chebyshev degree of the continuum per segment: 4 (as The Payne's continuum fits) follows
        the instrument response of raw apStar flux; 2 is enough for continuum-normalised data.
    fit_mask:
        (P,) bool, True = pixel left out of every fit (The Payne's ``apogee_mask``); array or
        ``.npz`` path (first bool array of length P).
    n_starts, seed:
        starting points: the centre of the label box and ``n_starts − 1`` uniform draws in the
        inner 60 % of it (fixed by ``seed``).
    rv_grid:
        trial velocities (km/s) scanned before the descent.
    clip_sigma:
        after the first fit, pixels further than this many σ from the model (sky lines, cosmic
        rays the bitmask missed) are left out and the spectrum refitted; None: no clipping.
    reject_bits:
        APOGEE_PIXMASK bits that reject a pixel (default ``DEFAULT_REJECT_BITS``).
    batch_size:
        spectra fitted together (memory ≈ batch · n_starts · P · (L + 1 + continuum terms) · 8 B).
    """

    method: ClassVar[str] = "payne"
    default_uncertainty: ClassVar[str] = "jacobian"

    def __init__(
        self,
        emulator: PayneEmulator | str | Path,
        label_names: Sequence[str],
        *,
        label_units: Sequence[str] | None = None,
        wavelength: np.ndarray | None = None,
        pixel_index: np.ndarray | None = None,
        n_input_pixels: int | None = None,
        segments: Sequence[Any] | None = None,
        continuum_degree: int = 4,
        fit_mask: np.ndarray | str | Path | None = None,
        n_starts: int = 4,
        seed: int = 0,
        rv_grid: np.ndarray | Sequence[float] | None = DEFAULT_RV_GRID,
        reject_bits: Sequence[str | int] | None = None,
        max_iter: int = 100,
        clip_sigma: float | None = 5.0,
        batch_size: int = 16,
    ) -> None:
        label_names = [str(n) for n in label_names]
        if not isinstance(emulator, PayneEmulator):
            emulator = PayneEmulator.load(emulator, label_names=tuple(label_names),
                                          dtype=torch.float64)
        if len(label_names) != emulator.n_labels:
            raise InputDataError(
                f"{emulator.path or 'emulator'}: has {emulator.n_labels} labels, got "
                f"{len(label_names)} names {label_names}"
            )
        self.emulator = emulator
        self.label_names = label_names
        self.label_units = list(label_units) if label_units else label_units_for(label_names)
        if wavelength is None or pixel_index is None:
            lam, idx, n_in = default_grid()
            wavelength = lam if wavelength is None else wavelength
            pixel_index = idx if pixel_index is None else pixel_index
            n_input_pixels = n_in if n_input_pixels is None else n_input_pixels
        self.wavelength = np.array(wavelength, dtype=np.float64)  # own, writable copy
        self.pixel_index = np.array(pixel_index, dtype=np.int64)
        self.n_input_pixels = int(n_input_pixels if n_input_pixels is not None
                                  else self.pixel_index.max() + 1)
        p = emulator.n_pixels
        if self.wavelength.shape != (p,) or self.pixel_index.shape != (p,):
            raise InputDataError(
                f"wavelength {self.wavelength.shape} and pixel_index {self.pixel_index.shape} "
                f"must both be ({p},), the emulator's pixels"
            )
        if self.pixel_index.min() < 0 or self.pixel_index.max() >= self.n_input_pixels:
            raise InputDataError(f"pixel_index must lie in 0…{self.n_input_pixels - 1}")
        self.segments = segments_from(segments, self.wavelength)
        self.continuum_degree = int(continuum_degree)
        self.fit_mask = _read_mask(fit_mask, p)
        self.n_starts = int(n_starts)
        self.seed = int(seed)
        self.rv_grid = None if rv_grid is None else np.asarray(rv_grid, dtype=np.float64)
        self.reject_bits = None if reject_bits is None else list(reject_bits)
        self.max_iter = int(max_iter)
        self.clip_sigma = None if clip_sigma is None else float(clip_sigma)
        self.batch_size = int(batch_size)
        self.preprocessing = None
        self.calibration = None
        self.training = {"emulator": emulator.path}

    # ------------------------------------------------------------------ settings
    @property
    def n_pixels(self) -> int:
        return self.n_input_pixels

    def starts(self) -> np.ndarray:
        """(n_starts, L) scaled starting labels: the box centre, then fixed uniform draws."""
        rng = np.random.default_rng(self.seed)
        extra = rng.uniform(-0.3, 0.3, size=(max(self.n_starts - 1, 0), self.emulator.n_labels))
        return np.vstack([np.zeros((1, self.emulator.n_labels)), extra])

    def spectrum_model(self, device: str | torch.device | None = None) -> SpectrumModel:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return SpectrumModel(self.emulator, self.wavelength, self.segments, self.continuum_degree,
                             torch.float64, dev)

    # ------------------------------------------------------------------ fitting
    def prepare(self, flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """Input (N, n_input_pixels) → emulator-grid (N, P) flux and σ, with σ = inf where the
        bitmask rejects a pixel, the fit mask leaves it out, or flux/σ is not finite or σ ≤ 0."""
        from starlabels.preprocess.bitmask import bad_pixels

        f = np.atleast_2d(np.asarray(flux, dtype=np.float64))
        e = np.atleast_2d(np.asarray(error, dtype=np.float64))
        if f.shape != e.shape or f.shape[1] != self.n_input_pixels:
            raise InputDataError(
                f"flux {f.shape} and error {e.shape} must both be (N, {self.n_input_pixels})"
            )
        f, e = f[:, self.pixel_index], e[:, self.pixel_index].copy()
        bad = ~(np.isfinite(f) & np.isfinite(e) & (e > 0))
        if bitmask is not None:
            b = np.atleast_2d(np.asarray(bitmask))
            if b.shape[0] != f.shape[0] or b.shape[1] != self.n_input_pixels:
                raise InputDataError(f"bitmask {b.shape} must be (N, {self.n_input_pixels})")
            bad |= bad_pixels(b[:, self.pixel_index], self.reject_bits)
        if self.fit_mask is not None:
            bad |= self.fit_mask[None, :]
        e[bad] = np.inf
        return np.where(np.isfinite(f), f, 0.0), e

    def fit(self, flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray | None = None, *,
            device: str | torch.device | None = None) -> PayneFit:
        """Fit N spectra (N, n_input_pixels); returns a :class:`PayneFit` (uncalibrated σ)."""
        from starlabels.utils import progress

        f, e = self.prepare(flux, error, bitmask)
        sm = self.spectrum_model(device)
        options = FitOptions(starts=self.starts(), rv_grid=self.rv_grid, max_iter=self.max_iter)
        chunks = range(0, f.shape[0], self.batch_size)
        results = [fit_spectra(sm, f[a:a + self.batch_size], e[a:a + self.batch_size], options)
                   for a in progress(chunks, desc="payne fit", total=len(chunks), unit="batch")]
        raw = _concat(results)
        if self.clip_sigma is not None:
            raw, e = self._clip(sm, raw, f, e, options)
        return self._physical(raw, f, e)

    def _clip(self, sm: SpectrumModel, raw: FitResult, f: np.ndarray, e: np.ndarray,
              options: FitOptions) -> tuple[FitResult, np.ndarray]:
        """Leave out pixels more than ``clip_sigma`` σ from the first fit (unflagged sky lines,
        cosmic rays) and refit those spectra from the first solution."""
        with np.errstate(invalid="ignore"):
            outlier = np.abs(f - raw.model) > self.clip_sigma * e
        redo = np.flatnonzero(outlier.any(1) & np.isfinite(raw.theta).all(1))
        if redo.size == 0:
            return raw, e
        e = e.copy()
        e[outlier] = np.inf
        for a in range(0, redo.size, self.batch_size):
            rows = redo[a:a + self.batch_size]
            again = fit_spectra(sm, f[rows], e[rows], options, theta0=raw.theta[rows])
            for k in FitResult.__dataclass_fields__:
                getattr(raw, k)[rows] = getattr(again, k)
        return raw, e

    def _physical(self, raw: FitResult, f: np.ndarray, e: np.ndarray) -> PayneFit:
        lo, hi = (np.asarray(x, dtype=np.float64) for x in self.emulator.label_range)
        span = hi - lo
        n_lab = self.emulator.n_labels
        labels = (raw.theta[:, :n_lab] + 0.5) * span + lo
        cov = raw.covariance[:, :n_lab, :n_lab] * span[None, :, None] * span[None, None, :]
        std = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
        return PayneFit(
            labels=labels, std=std, covariance=cov, rv=raw.theta[:, n_lab],
            rv_err=np.sqrt(np.clip(raw.covariance[:, n_lab, n_lab], 0.0, None)),
            reduced_chi2=raw.reduced_chi2, converged=raw.converged, n_pixels=raw.n_pixels,
            model=raw.model, continuum=raw.continuum, flux=f, error=e, raw=raw,
        )

    def predict_moments(self, flux, error, bitmask=None, *, device=None, seed=None):
        """Labels (N, L) and ``{"jacobian": σ² (N, L)}``; NaN rows where the fit did not converge
        or no pixel was usable."""
        res = self.fit(flux, error, bitmask, device=device)
        mean, var = res.labels.copy(), res.std**2
        failed = ~res.converged
        mean[failed] = np.nan
        var[failed] = np.nan
        return mean, {"jacobian": var}

    # ------------------------------------------------------------------ folder
    def settings(self) -> dict[str, Any]:
        """The fit settings as stored in ``config.json["payne"]``."""
        return {
            "layout": self.emulator.layout, "segments": [list(s) for s in self.segments],
            "continuum_degree": self.continuum_degree, "n_starts": self.n_starts,
            "seed": self.seed, "reject_bits": self.reject_bits, "max_iter": self.max_iter,
            "clip_sigma": self.clip_sigma,
            "batch_size": self.batch_size, "n_input_pixels": self.n_input_pixels,
            "emulator_file": self.emulator.path,
        }

    def save(self, folder: str | Path) -> Path:
        """Model folder: ``config.json`` (method "payne", labels, fit settings) and
        ``weights.safetensors`` (the emulator's arrays under ``emulator.<key>``, ``wavelength``,
        ``pixel_index``, ``fit_mask``, ``rv_grid``)."""
        config = self.base_config()
        config["payne"] = self.settings()
        tensors = {f"emulator.{k}": v.to(torch.float64) for k, v in self.emulator.weights.items()}
        tensors["wavelength"] = torch.as_tensor(self.wavelength)
        tensors["pixel_index"] = torch.as_tensor(self.pixel_index)
        if self.fit_mask is not None:
            tensors["fit_mask"] = torch.as_tensor(self.fit_mask.astype(np.uint8))
        if self.rv_grid is not None:
            tensors["rv_grid"] = torch.as_tensor(self.rv_grid)
        return write_folder(folder, config, tensors)

    @classmethod
    def load(cls, folder: str | Path) -> PayneModel:
        config, tensors, _ = read_folder(folder, cls.method)
        try:
            s = config["payne"]
            names = list(config["labels"]["names"])
            weights = {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("emulator.")}
            emulator = PayneEmulator(weights, s["layout"], tuple(names), s.get("emulator_file"),
                                     torch.float64)
            fit_mask = tensors["fit_mask"].numpy().astype(bool) if "fit_mask" in tensors else None
            model = cls(
                emulator, names, label_units=config["labels"].get("units"),
                wavelength=tensors["wavelength"].numpy(), pixel_index=tensors["pixel_index"].numpy(),
                n_input_pixels=s["n_input_pixels"], segments=[tuple(x) for x in s["segments"]],
                continuum_degree=s["continuum_degree"], fit_mask=fit_mask, n_starts=s["n_starts"],
                seed=s["seed"],
                rv_grid=tensors["rv_grid"].numpy() if "rv_grid" in tensors else None,
                reject_bits=s["reject_bits"], max_iter=s["max_iter"], clip_sigma=s["clip_sigma"],
                batch_size=s["batch_size"],
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelFormatError(f"{folder}: not a readable Payne model folder ({exc!r})") from None
        model.restore_base(config, Path(folder))
        return model


def payne_model(emulator_path: str | Path, label_names: Sequence[str], **kwargs: Any) -> PayneModel:
    """A :class:`PayneModel` fitting the emulator ``.npz`` at ``emulator_path`` whose labels are
    ``label_names`` (keyword arguments as :class:`PayneModel`)."""
    return PayneModel(emulator_path, label_names, **kwargs)


def _read_mask(mask: np.ndarray | str | Path | None, n_pixels: int) -> np.ndarray | None:
    if mask is None:
        return None
    if isinstance(mask, (str, Path)):
        path = Path(mask)
        try:
            with np.load(path) as npz:
                arrays = [np.asarray(npz[k]) for k in npz.files]
        except Exception as exc:  # missing, not a zip, damaged
            raise InputFileError(path, f"cannot read the fit mask .npz ({exc})") from exc
        fits = [a for a in arrays if a.dtype == bool and a.shape == (n_pixels,)]
        if not fits:
            raise InputFileError(path, f"no boolean array of {n_pixels} pixels (the fit mask)")
        return fits[0]
    m = np.asarray(mask)
    if m.shape != (n_pixels,):
        raise InputDataError(f"fit_mask has shape {m.shape}, expected ({n_pixels},)")
    return m.astype(bool)


def _concat(results: list[FitResult]) -> FitResult:
    fields = FitResult.__dataclass_fields__
    return FitResult(**{k: np.concatenate([getattr(r, k) for r in results]) for k in fields})
