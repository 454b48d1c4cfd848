"""Robust statistics used across the package: one σ_MAD for metrics, calibration, YSO and benches.

Bottom layer: imports numpy only, so every layer may use it.

σ_MAD = 1.4826 · median(|x − median(x)|) (astroNN eq. 9) is the robust standard deviation: for a
Gaussian sample it estimates σ (1.4826 = 1/Φ⁻¹(3/4)), and it ignores a minority of outliers.
"""

from __future__ import annotations

import warnings

import numpy as np

#: σ_MAD = MAD_TO_SIGMA · MAD for a Gaussian: 1/Φ⁻¹(0.75).
MAD_TO_SIGMA = 1.4826


def sigma_mad(values: np.ndarray, axis: int | None = None, *, ignore_nan: bool = True) -> np.ndarray | float:
    """σ_MAD of ``values`` along ``axis`` (all values when None), in the values' unit.

    With ``ignore_nan`` (default) NaN and ±inf are left out and a slice with no finite values gives
    NaN; without it numpy's plain median is used (faster; any NaN gives NaN). Returns a float for a
    scalar result, else an array shaped like ``values`` without ``axis``.
    """
    array = np.asarray(values, dtype=np.float64)
    if ignore_nan:
        array = np.where(np.isfinite(array), array, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            # an all-NaN slice gives NaN by design; numpy would warn about it
            warnings.simplefilter("ignore", RuntimeWarning)
            centre = np.nanmedian(array, axis=axis, keepdims=True)
            result = MAD_TO_SIGMA * np.nanmedian(np.abs(array - centre), axis=axis)
    else:
        centre = np.median(array, axis=axis, keepdims=True)
        result = MAD_TO_SIGMA * np.median(np.abs(array - centre), axis=axis)
    return float(result) if np.ndim(result) == 0 else result
