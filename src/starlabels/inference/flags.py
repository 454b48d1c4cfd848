"""Quality flags of predicted labels: the ``FLAG`` column of starlabels catalogs (int32 bitmask).

=====  ======================  ==================================================================
bit    name                    set when
=====  ======================  ==================================================================
0      INVALID_SPECTRUM        the spectrum has no usable pixel (NaN-only flux, no finite positive
                               error, every pixel masked) or its network input is not finite. The
                               row is kept; every label and uncertainty is NaN.
1      LOW_SNR                 SNR < ``snr_min`` (default 30): median flux/error of good pixels,
                               or the file's SNR keyword when the reader provides it. Unknown
                               SNR (no errors given) raises no flag.
2      MANY_MASKED_PIXELS      more than ``max_masked_fraction`` (default 25 %) of the pixels were
                               rejected (bitmask, NaN flux, bad error).
3      HIGH_UNCERTAINTY        out-of-distribution by uncertainty: for some label σ exceeds
                               ``ood_factor`` × the reference σ — the ``percentile``-th percentile
                               (default 99) of σ over the calibration (dev) set, stored in the
                               model config by :func:`starlabels.inference.calibration.calibrate`.
4      LABEL_OUT_OF_RANGE      out-of-distribution by value: some label outside the training
                               range (from the label scaler / training provenance, widened by
                               ``range_margin`` × its width).
5      UNCALIBRATED            σ is not calibrated: the model has no calibration for this
                               uncertainty method, or ``calibrated=False`` was asked for.
6      NONFINITE_OUTPUT        the network returned a non-finite value for a valid input; that
                               label (and its σ) is set to NaN.
7      NO_UNCERTAINTY          no uncertainty was computed (``uncertainty=None`` on a network
                               without a variance head): σ is NaN.
8      RESAMPLED               the spectrum was on another grid and was resampled onto the
                               model's (``resample="linear"``/``"flux-conserving"``).
9      DOMAIN_SHIFT            the spectrum is unlike the training spectra: its domain-shift score
                               (:mod:`starlabels.inference.domain_shift`; 1 = the dev set's 99th
                               percentile) exceeds 1. Its labels are extrapolations.
=====  ======================  ==================================================================

A row with ``FLAG == 0`` passed every check. ``decode(flag)`` lists the names of the set bits.
"""

from __future__ import annotations

import numpy as np

#: Flag bit numbers by name (see the module docstring for their meaning).
FLAG_BITS: dict[str, int] = {
    "INVALID_SPECTRUM": 0,
    "LOW_SNR": 1,
    "MANY_MASKED_PIXELS": 2,
    "HIGH_UNCERTAINTY": 3,
    "LABEL_OUT_OF_RANGE": 4,
    "UNCALIBRATED": 5,
    "NONFINITE_OUTPUT": 6,
    "NO_UNCERTAINTY": 7,
    "RESAMPLED": 8,
    "DOMAIN_SHIFT": 9,
}

#: One-line descriptions, same keys as :data:`FLAG_BITS` (written into catalog headers).
FLAG_DESCRIPTIONS: dict[str, str] = {
    "INVALID_SPECTRUM": "no usable pixel or non-finite network input; labels are NaN",
    "LOW_SNR": "SNR below snr_min",
    "MANY_MASKED_PIXELS": "fraction of rejected pixels above max_masked_fraction",
    "HIGH_UNCERTAINTY": "sigma above ood_factor x the calibration set's reference percentile",
    "LABEL_OUT_OF_RANGE": "a label outside the training range",
    "UNCALIBRATED": "uncertainty not calibrated for this method",
    "NONFINITE_OUTPUT": "network returned a non-finite value; that label is NaN",
    "NO_UNCERTAINTY": "no uncertainty computed; sigma is NaN",
    "RESAMPLED": "spectrum resampled from another grid onto the model's",
    "DOMAIN_SHIFT": "spectrum unlike the training spectra (domain-shift score > 1)",
}

#: Flag bit values (integer masks), e.g. ``pred.flags & DOMAIN_SHIFT``.
DOMAIN_SHIFT: int = 1 << 9

SNR_MIN: float = 30.0
MAX_MASKED_FRACTION: float = 0.25
OOD_FACTOR: float = 1.0
RANGE_MARGIN: float = 0.0


def bit(name: str) -> int:
    """The integer value (1 << bit) of flag ``name``."""
    try:
        return 1 << FLAG_BITS[name.upper()]
    except KeyError:
        raise ValueError(f"unknown flag {name!r}; known: {sorted(FLAG_BITS)}") from None


def decode(value: int) -> list[str]:
    """Names of the flags set in one ``FLAG`` value."""
    return [name for name, b in FLAG_BITS.items() if int(value) >> b & 1]


def spectrum_flags(
    valid: np.ndarray,
    snr: np.ndarray,
    masked_fraction: np.ndarray,
    *,
    snr_min: float = SNR_MIN,
    max_masked_fraction: float = MAX_MASKED_FRACTION,
) -> np.ndarray:
    """Flags known before the network runs. All inputs (N,); returns (N,) int32.

    ``valid``: bool, False → INVALID_SPECTRUM. ``snr`` NaN (unknown, e.g. no errors given) raises
    no LOW_SNR flag. ``masked_fraction`` in [0, 1].
    """
    valid = np.asarray(valid, dtype=bool)
    snr = np.asarray(snr, dtype=np.float64)
    flags = np.zeros(valid.shape, dtype=np.int32)
    flags[~valid] |= bit("INVALID_SPECTRUM")
    with np.errstate(invalid="ignore"):
        flags[valid & np.isfinite(snr) & (snr < snr_min)] |= bit("LOW_SNR")
    flags[np.asarray(masked_fraction) > max_masked_fraction] |= bit("MANY_MASKED_PIXELS")
    return flags


def label_flags(
    mean: np.ndarray,
    std: np.ndarray,
    *,
    sigma_reference: np.ndarray | None = None,
    ood_factor: float = OOD_FACTOR,
    label_range: tuple[np.ndarray, np.ndarray] | None = None,
    range_margin: float = RANGE_MARGIN,
) -> np.ndarray:
    """Flags from the predictions. ``mean``, ``std`` (N, L) physical units → (N,) int32.

    ``sigma_reference`` (L,): HIGH_UNCERTAINTY when any σ_k > ``ood_factor`` × reference_k (labels
    whose reference is NaN are not checked). ``label_range`` = (lo, hi), each (L,):
    LABEL_OUT_OF_RANGE when any label lies outside [lo − m·w, hi + m·w] with w = hi − lo and
    m = ``range_margin``. NaN values (invalid rows) raise no flag here.
    """
    mean = np.asarray(mean, dtype=np.float64)
    std = np.asarray(std, dtype=np.float64)
    flags = np.zeros(mean.shape[0], dtype=np.int32)
    with np.errstate(invalid="ignore"):
        if sigma_reference is not None:
            ref = np.asarray(sigma_reference, dtype=np.float64).reshape(1, -1)
            high = (std > ood_factor * ref) & np.isfinite(ref)
            flags[high.any(axis=1)] |= bit("HIGH_UNCERTAINTY")
        if label_range is not None:
            lo = np.asarray(label_range[0], dtype=np.float64).reshape(1, -1)
            hi = np.asarray(label_range[1], dtype=np.float64).reshape(1, -1)
            w = hi - lo
            out = (mean < lo - range_margin * w) | (mean > hi + range_margin * w)
            flags[out.any(axis=1)] |= bit("LABEL_OUT_OF_RANGE")
    return flags


def describe() -> str:
    """A plain-text table of the flag bits (for catalog headers and ``--help``)."""
    return "\n".join(f"{FLAG_BITS[n]:>2d} {n}: {FLAG_DESCRIPTIONS[n]}" for n in FLAG_BITS)
