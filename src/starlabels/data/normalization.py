"""Label and spectrum normalisation saved with a trained model.

:class:`LabelScaler`
    Per-label mean and standard deviation fitted on the training labels, ignoring MISSING/NaN.
    ``transform`` standardises (MISSING stays MISSING), ``transform_errors`` divides label errors by
    the std, ``inverse_transform`` undoes ``transform`` (to floating-point rounding, computed in
    float64), ``inverse_transform_std`` scales standardised uncertainties back to physical units.

:class:`SpectrumScaler`
    ``mode="centred"``: subtract the per-pixel mean flux of the training set (astroNN's input
    normalisation, ``std`` is 1); ``mode="none"``: identity (APOGEE Net feeds raw flux). Rejected
    pixels (error ≥ ``BAD_PIXEL_ERROR``) are left out of the per-pixel mean when errors are given.
    Its tensors (``mean``, ``std``) are stored in the model's weights file.

Both accept numpy arrays or torch tensors and return the same kind (tensors stay on their device).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from starlabels.constants import MISSING, SPECTRUM_MODE_ALIASES, SPECTRUM_MODES
from starlabels.errors import InputDataError
from starlabels.preprocess.masking import BAD_PIXEL_ERROR

__all__ = ["SPECTRUM_MODES", "SPECTRUM_MODE_ALIASES", "LabelScaler", "SpectrumScaler"]

ArrayLike = Any  # np.ndarray | torch.Tensor


def _present(x: ArrayLike) -> ArrayLike:
    if isinstance(x, torch.Tensor):
        return torch.isfinite(x) & (x != MISSING)
    return np.isfinite(x) & (x != MISSING)


def _as_2d_labels(x: ArrayLike, n_labels: int, who: str) -> None:
    if x.ndim not in (1, 2) or x.shape[-1] != n_labels:
        raise InputDataError(f"{who}: expected (N, {n_labels}) or ({n_labels},), got {tuple(x.shape)}")


class LabelScaler:
    """Standardise labels with per-label mean and std (fitted ignoring MISSING/NaN).

    Parameters
    ----------
    mean, std:
        (L,) per-label mean and standard deviation in physical units, or ``None`` until :meth:`fit`.
    names:
        Optional label names (kept in :meth:`to_dict`).
    """

    def __init__(
        self,
        mean: Sequence[float] | np.ndarray | None = None,
        std: Sequence[float] | np.ndarray | None = None,
        names: Sequence[str] | None = None,
    ) -> None:
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64).copy()
        self.std = None if std is None else np.asarray(std, dtype=np.float64).copy()
        self.names = None if names is None else [str(n) for n in names]
        if (self.mean is None) != (self.std is None):
            raise InputDataError("LabelScaler: give both mean and std, or neither")
        if self.mean is not None:
            self._validate()

    def _validate(self) -> None:
        assert self.mean is not None and self.std is not None
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise InputDataError(
                f"LabelScaler: mean {self.mean.shape} and std {self.std.shape} must be equal (L,)"
            )
        if not (np.isfinite(self.mean).all() and np.isfinite(self.std).all() and (self.std > 0).all()):
            raise InputDataError("LabelScaler: mean must be finite and std finite and > 0")
        if self.names is not None and len(self.names) != len(self.mean):
            raise InputDataError(f"LabelScaler: {len(self.names)} names for {len(self.mean)} labels")

    @property
    def n_labels(self) -> int:
        self._check_fitted()
        assert self.mean is not None
        return len(self.mean)

    def _check_fitted(self) -> None:
        if self.mean is None:
            raise InputDataError("LabelScaler is not fitted: call fit() or give mean and std")

    def fit(self, labels: ArrayLike) -> LabelScaler:
        """Fit on (N, L) physical labels; MISSING/NaN entries are ignored. Returns ``self``.

        std is the population standard deviation (ddof = 0) of the present values; a label with a
        single distinct value gets std 1. Raises InputDataError for a label with no present value.
        """
        x = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        if x.ndim != 2:
            raise InputDataError(f"LabelScaler.fit: labels must be (N, L), got shape {x.shape}")
        x = x.astype(np.float64)
        ok = _present(x)
        count = ok.sum(axis=0)
        if (count == 0).any():
            bad = np.flatnonzero(count == 0).tolist()
            which = [self.names[i] for i in bad] if self.names else bad
            raise InputDataError(f"LabelScaler.fit: label(s) {which} have no present value")
        xz = np.where(ok, x, 0.0)
        mean = xz.sum(axis=0) / count
        var = (np.where(ok, x - mean, 0.0) ** 2).sum(axis=0) / count
        std = np.sqrt(var)
        std[~(std > 0)] = 1.0
        self.mean, self.std = mean, std
        self._validate()
        return self

    def _params(self, x: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        _as_2d_labels(x, len(self.mean), "LabelScaler")
        if isinstance(x, torch.Tensor):
            return (
                torch.as_tensor(self.mean, device=x.device),
                torch.as_tensor(self.std, device=x.device),
            )
        return self.mean, self.std

    @staticmethod
    def _apply(x: ArrayLike, fn, keep_missing: bool = True) -> ArrayLike:
        """fn on float64 values where present; MISSING elsewhere; same kind/dtype as ``x``."""
        if isinstance(x, torch.Tensor):
            dtype = x.dtype if x.is_floating_point() else torch.float64
            xd = x.to(torch.float64)
            ok = _present(xd)
            out = torch.where(ok, fn(torch.where(ok, xd, 0.0)), MISSING)
            return out.to(dtype)
        xa = np.asarray(x)
        dtype = xa.dtype if np.issubdtype(xa.dtype, np.floating) else np.float64
        xd = xa.astype(np.float64)
        ok = _present(xd)
        out = np.where(ok, fn(np.where(ok, xd, 0.0)), MISSING)
        return out.astype(dtype)

    def transform(self, labels: ArrayLike) -> ArrayLike:
        """Physical (N, L) or (L,) labels → standardised ``(x − mean)/std``; MISSING/NaN → MISSING."""
        m, s = self._params(labels)
        return self._apply(labels, lambda v: (v - m) / s)

    def inverse_transform(self, z: ArrayLike) -> ArrayLike:
        """Standardised labels → physical ``z·std + mean``; MISSING/NaN → MISSING."""
        m, s = self._params(z)
        return self._apply(z, lambda v: v * s + m)

    def transform_errors(self, errors: ArrayLike) -> ArrayLike:
        """Physical label errors → standardised ``σ/std``; MISSING/NaN → MISSING."""
        _, s = self._params(errors)
        return self._apply(errors, lambda v: v / s)

    def inverse_transform_std(self, sigma: ArrayLike) -> ArrayLike:
        """Standardised uncertainties → physical ``σ·std`` (MISSING/NaN → MISSING)."""
        _, s = self._params(sigma)
        return self._apply(sigma, lambda v: v * s)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable ``{"mean": [...], "std": [...], "names": [...] | None}``."""
        self._check_fitted()
        assert self.mean is not None and self.std is not None
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "names": self.names}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LabelScaler:
        try:
            return cls(d["mean"], d["std"], d.get("names"))
        except (KeyError, TypeError) as exc:
            raise InputDataError(f"LabelScaler.from_dict: needs 'mean' and 'std': {exc}") from None

    def __repr__(self) -> str:
        if self.mean is None:
            return "LabelScaler(unfitted)"
        return f"LabelScaler(n_labels={len(self.mean)}, names={self.names})"


class SpectrumScaler:
    """Per-pixel spectrum normalisation: ``(flux − mean) / std``.

    ``mode="centred"`` (astroNN; the older spelling ``"centered"`` is read as it): ``mean`` is
    the per-pixel mean flux over the training set, ``std`` is 1. ``mode="standardised"``: also
    divided by the per-pixel standard deviation over the training set (1 where a pixel does not
    vary) — for raw-flux input, whose pixels differ in scale and scatter. ``mode="none"``
    (APOGEE Net raw flux as published): identity, no tensors. Fit in one call (:meth:`fit`) or in
    chunks (:meth:`partial_fit`, for datasets read lazily).
    """

    def __init__(
        self,
        mode: str = "centred",
        mean: ArrayLike | None = None,
        std: ArrayLike | None = None,
    ) -> None:
        mode = SPECTRUM_MODE_ALIASES.get(mode, mode)
        if mode not in SPECTRUM_MODES:
            raise InputDataError(f"SpectrumScaler: mode must be one of {SPECTRUM_MODES}, got {mode!r}")
        self.mode = mode
        self.mean: torch.Tensor | None = None
        self.std: torch.Tensor | None = None
        self._sum: np.ndarray | None = None
        self._count: np.ndarray | None = None
        self._sum_all: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None
        self._rows = 0
        if mean is not None:
            self.mean = torch.as_tensor(np.asarray(mean), dtype=torch.float32).clone()
            self.std = (
                torch.ones_like(self.mean)
                if std is None
                else torch.as_tensor(np.asarray(std), dtype=torch.float32).clone()
            )
            if self.mean.ndim != 1 or self.std.shape != self.mean.shape:
                raise InputDataError("SpectrumScaler: mean and std must be equal (P,) arrays")

    @property
    def fitted(self) -> bool:
        return self.mode == "none" or self.mean is not None

    @property
    def n_pixels(self) -> int | None:
        return None if self.mean is None else int(self.mean.numel())

    def fit(self, flux: ArrayLike, error: ArrayLike | None = None) -> SpectrumScaler:
        """Fit on (N, P) training flux (and optional errors to leave rejected pixels out)."""
        self._sum = self._count = self._sum_all = self._sum_sq = None
        self._rows = 0
        self.partial_fit(flux, error)
        return self.finalise()

    def partial_fit(self, flux: ArrayLike, error: ArrayLike | None = None) -> SpectrumScaler:
        """Accumulate a chunk of (N, P) flux; call :meth:`finalise` after the last chunk.

        Pixels with error ≥ ``BAD_PIXEL_ERROR`` (rejected by the preprocessing) or non-finite flux
        are not counted; a pixel rejected in every spectrum gets the mean of all its values.
        """
        if self.mode == "none":
            return self
        f = flux.detach().cpu().numpy() if isinstance(flux, torch.Tensor) else np.asarray(flux)
        if f.ndim != 2:
            raise InputDataError(f"SpectrumScaler.fit: flux must be (N, P), got shape {f.shape}")
        f = f.astype(np.float64)
        ok = np.isfinite(f)
        if error is not None:
            e = error.detach().cpu().numpy() if isinstance(error, torch.Tensor) else np.asarray(error)
            if e.shape != f.shape:
                raise InputDataError(f"SpectrumScaler.fit: error {e.shape} != flux {f.shape}")
            ok &= ~(e >= float(BAD_PIXEL_ERROR))
        if self._sum is not None and self._sum.shape[0] != f.shape[1]:
            raise InputDataError(
                f"SpectrumScaler.partial_fit: {f.shape[1]} pixels, earlier chunks had {self._sum.shape[0]}"
            )
        fo = np.where(ok, f, 0.0)
        s = fo.sum(axis=0)
        sq = (fo * fo).sum(axis=0)
        c = ok.sum(axis=0)
        sa = np.where(np.isfinite(f), f, 0.0).sum(axis=0)
        if self._sum is None:
            self._sum, self._count, self._sum_all, self._sum_sq = s, c, sa, sq
        else:
            self._sum += s
            self._count += c
            self._sum_all += sa
            self._sum_sq += sq
        self._rows += f.shape[0]
        return self

    def finalize(self) -> SpectrumScaler:
        """Deprecated spelling of :meth:`finalise` (same result, with a DeprecationWarning)."""
        warnings.warn("SpectrumScaler.finalize() is now finalise()", DeprecationWarning, stacklevel=2)
        return self.finalise()

    def finalise(self) -> SpectrumScaler:
        """Turn the accumulated sums into ``mean`` (float32, (P,)) and ``std`` (ones, or the
        per-pixel standard deviation of the counted values for ``"standardised"``)."""
        if self.mode == "none":
            return self
        if self._sum is None or self._rows == 0:
            raise InputDataError("SpectrumScaler: no spectra were given to fit")
        assert self._count is not None and self._sum_all is not None
        mean = np.where(
            self._count > 0, self._sum / np.maximum(self._count, 1), self._sum_all / self._rows
        )
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.std = torch.ones_like(self.mean)
        if self.mode == "standardised":
            assert self._sum_sq is not None
            n = np.maximum(self._count, 1)
            var = self._sum_sq / n - (self._sum / n) ** 2
            std = np.sqrt(np.clip(var, 0.0, None))
            ok = (self._count > 1) & (std > 1e-12 * np.maximum(np.abs(mean), 1e-30))
            self.std = torch.as_tensor(np.where(ok, std, 1.0), dtype=torch.float32)
        self._sum = self._count = self._sum_all = self._sum_sq = None
        self._rows = 0
        return self

    def transform(self, flux: ArrayLike) -> ArrayLike:
        """(…, P) flux → normalised flux, same kind (numpy or tensor on its device) and float dtype."""
        if self.mode == "none":
            return flux
        if self.mean is None or self.std is None:
            raise InputDataError("SpectrumScaler is not fitted")
        if flux.shape[-1] != self.mean.numel():
            raise InputDataError(
                f"SpectrumScaler: spectra have {flux.shape[-1]} pixels, the scaler {self.mean.numel()}"
            )
        if isinstance(flux, torch.Tensor):
            dtype = flux.dtype if flux.is_floating_point() else torch.float32
            m = self.mean.to(device=flux.device, dtype=dtype)
            s = self.std.to(device=flux.device, dtype=dtype)
            return (flux.to(dtype) - m) / s
        fa = np.asarray(flux)
        dtype = fa.dtype if np.issubdtype(fa.dtype, np.floating) else np.float32
        return ((fa - self.mean.numpy()) / self.std.numpy()).astype(dtype, copy=False)

    def inverse_transform(self, x: ArrayLike) -> ArrayLike:
        """Undo :meth:`transform`."""
        if self.mode == "none":
            return x
        if self.mean is None or self.std is None:
            raise InputDataError("SpectrumScaler is not fitted")
        if isinstance(x, torch.Tensor):
            return x * self.std.to(x.device, x.dtype) + self.mean.to(x.device, x.dtype)
        return np.asarray(x) * self.std.numpy() + self.mean.numpy()

    def to_dict(self) -> dict[str, Any]:
        """JSON part: ``{"mode": ..., "n_pixels": ...}`` (the tensors go to the weights file)."""
        return {"mode": self.mode, "n_pixels": self.n_pixels}

    def state_dict(self, prefix: str = "spectrum_scaler.") -> dict[str, torch.Tensor]:
        """Tensors to store beside the network weights (empty for ``mode="none"``)."""
        if self.mode == "none" or self.mean is None or self.std is None:
            return {}
        return {prefix + "mean": self.mean.contiguous(), prefix + "std": self.std.contiguous()}

    @classmethod
    def from_state(
        cls, d: dict[str, Any], tensors: dict[str, torch.Tensor], prefix: str = "spectrum_scaler."
    ) -> SpectrumScaler:
        """Rebuild from :meth:`to_dict` output and the tensors of :meth:`state_dict`."""
        mode = d.get("mode", "none")
        if mode == "none":
            return cls("none")
        if prefix + "mean" not in tensors:
            raise InputDataError(f"SpectrumScaler mode {mode!r} needs tensor {prefix}mean")
        return cls(mode, tensors[prefix + "mean"].float(), tensors.get(prefix + "std"))

    def __repr__(self) -> str:
        return f"SpectrumScaler(mode={self.mode!r}, n_pixels={self.n_pixels})"
