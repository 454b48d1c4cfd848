"""The result of :func:`starlabels.predict`: labels, σ and their variance parts, and quality flags
of N spectra (:class:`Prediction`). A plain container: it imports nothing else of
:mod:`starlabels.inference`, so every module that makes or reads predictions can import it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """Labels of N spectra.

    Attributes
    ----------
    mean, std:
        (N, L) float64, physical units (``label_units``); ``std`` is the total uncertainty,
        calibrated when the model carries a calibration for this method (and ``calibrated``).
        NaN for invalid spectra (see ``flags``) and, for ``std``, when no uncertainty was computed.
    label_names, label_units:
        L names (allStar columns, e.g. ``TEFF``) and units.
    variance_parts:
        Named (N, L) *variance* components (physical units²), e.g. ``"epistemic"``,
        ``"aleatoric"``, ``"noise"``, ``"delta"``; scaled by the calibration factor² like ``std``,
        so ``std**2 == sum(variance_parts.values())``. :meth:`sigma_parts` gives them as σ.
    flags:
        (N,) int32 bitmask, bits in :mod:`starlabels.inference.flags`.
    snr:
        (N,) signal-to-noise used for the LOW_SNR flag (NaN when unknown).
    masked_fraction:
        (N,) fraction of rejected pixels.
    uncertainty, n_samples, calibrated:
        How the uncertainties were made; ``calibrated`` is True when scale factors were applied.
    scales:
        (L,) calibration factors applied to ``std`` (ones when uncalibrated).
    domain_shift:
        (N,) input-space domain-shift score (:mod:`starlabels.inference.domain_shift`): larger =
        less like the training spectra; > 1 sets the ``DOMAIN_SHIFT`` flag. NaN when the model
        has no fitted estimator or the spectrum is invalid.
    """

    mean: np.ndarray
    std: np.ndarray
    label_names: list[str]
    label_units: list[str] = field(default_factory=list)
    variance_parts: dict[str, np.ndarray] = field(default_factory=dict)
    flags: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    snr: np.ndarray = field(default_factory=lambda: np.zeros(0))
    masked_fraction: np.ndarray = field(default_factory=lambda: np.zeros(0))
    uncertainty: str | None = None
    n_samples: int = 0
    calibrated: bool = False
    scales: np.ndarray | None = None
    domain_shift: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __len__(self) -> int:
        return int(self.mean.shape[0])

    def sigma_parts(self) -> dict[str, np.ndarray]:
        """The variance parts as standard deviations (σ, label units): ``{"epistemic": (N, L), ...}``."""
        return {k: np.sqrt(v) for k, v in self.variance_parts.items()}

    def label(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` (N,) of one label by name."""
        try:
            k = self.label_names.index(name)
        except ValueError:
            raise KeyError(f"no label {name!r}; labels: {self.label_names}") from None
        return self.mean[:, k], self.std[:, k]
