"""The less common settings of :func:`starlabels.predict`, as one object (:class:`PredictOptions`).

``predict`` itself takes the model, the spectra (flux, error, bitmask, their grid), the uncertainty
method and where/how to run it; everything else — calibration on/off, the label-coverage part, the
error cap of noise/delta σ, the quality-flag thresholds and the chunk size — is a field here, with
the same defaults as before the split. Immutable: build a new one with
``dataclasses.replace(options, calibrated=False)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlabels.errors import InputDataError
from starlabels.inference import flags as flag_bits

__all__ = ["CHUNK_SIZE", "PredictOptions"]

#: Spectra preprocessed and sent to the device per step (bounded memory for any N).
CHUNK_SIZE = 256


@dataclass(frozen=True)
class PredictOptions:
    """Less common settings of :func:`starlabels.predict` (``options=PredictOptions(...)``).

    Attributes
    ----------
    calibrated:
        Apply the model's calibration for the uncertainty method (default True). Without one, or
        with False, σ is the raw σ and the rows carry flag ``UNCALIBRATED``.
    coverage:
        Add the label-coverage variance part ``"coverage"`` (label units²) when the model has one
        fitted (:func:`starlabels.inference.coverage.fit_coverage`; with any ``uncertainty``).
    error_cap:
        Per-pixel errors of the ``"noise"``/``"delta"`` methods are capped at this many times the
        spectrum's mean error of its good pixels (dimensionless; None: no cap). ``"auto"``
        (default): 5 (APOGEE Net §3.5), or no second cap when the model's raw-flux preprocessing
        already capped the errors.
    snr_min:
        Flag ``LOW_SNR`` below this SNR (median flux/error per pixel; default 30).
    max_masked_fraction:
        Flag ``MANY_MASKED_PIXELS`` above this fraction (0–1) of rejected pixels (default 0.25).
    ood_factor:
        Flag ``HIGH_UNCERTAINTY`` when a σ exceeds this many times the calibration set's reference
        σ (dimensionless; default 1).
    chunk_size:
        Spectra preprocessed and sent to the device per step (default 256): bounds the memory of
        a call for any number of spectra; results do not depend on it.
    """

    calibrated: bool = True
    coverage: bool = True
    error_cap: float | str | None = "auto"
    snr_min: float = flag_bits.SNR_MIN
    max_masked_fraction: float = flag_bits.MAX_MASKED_FRACTION
    ood_factor: float = flag_bits.OOD_FACTOR
    chunk_size: int = CHUNK_SIZE

    def __post_init__(self) -> None:
        if isinstance(self.error_cap, str) and self.error_cap != "auto":
            raise InputDataError(f"error_cap must be a number, None or 'auto', got {self.error_cap!r}")
