"""Robust statistics used across the package: one σ_MAD for metrics, calibration, YSO and benches,
and one fast row-wise NaN-median (:func:`nanmedian_rows`) for per-spectrum medians.

Bottom layer: imports numpy only, so every layer may use it.

σ_MAD = 1.4826 · median(|x − median(x)|) (astroNN eq. 9) is the robust standard deviation: for a
Gaussian sample it estimates σ (1.4826 = 1/Φ⁻¹(3/4)), and it ignores a minority of outliers.
"""

from __future__ import annotations

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
        finite = np.isfinite(array)
        # a slice without finite values gives NaN; it is filled with zeros first so that numpy has
        # nothing to warn about (warnings.catch_warnings would change process-wide state: not thread-safe)
        empty = ~finite.any(axis=axis, keepdims=True)
        array = np.where(finite, array, np.where(empty, 0.0, np.nan))
        centre = np.nanmedian(array, axis=axis, keepdims=True)
        result = MAD_TO_SIGMA * np.nanmedian(np.abs(array - centre), axis=axis)
        result = np.where(empty.reshape(np.shape(result)), np.nan, result)
    else:
        centre = np.median(array, axis=axis, keepdims=True)
        result = MAD_TO_SIGMA * np.median(np.abs(array - centre), axis=axis)
    return float(result) if np.ndim(result) == 0 else result


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """Median of each row of a 2-D array, NaN left out: ``np.nanmedian(values, axis=1)``, bit for bit.

    ``values`` (N, P) → (N,) in the values' float dtype (float64 for integer input); NaN for a row
    without a non-NaN value, with no warning (nothing to silence, so safe in threads). ±inf count as
    values, as in numpy. One vectorised row-wise sort instead of numpy's per-row Python loop for
    rows longer than 600 (``np.apply_along_axis``). The mean of the two middle values is taken in
    the values' dtype, as numpy does.
    """
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"nanmedian_rows needs a 2-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if array.shape[1] == 0:
        return np.full(array.shape[0], np.nan, dtype=array.dtype)
    ordered = np.sort(array, axis=1)  # NaN sort last
    count = np.count_nonzero(~np.isnan(array), axis=1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[:, None], axis=1)[:, 0]
    high = np.take_along_axis(ordered, (count // 2).clip(max=array.shape[1] - 1)[:, None], axis=1)[:, 0]
    with np.errstate(invalid="ignore", over="ignore"):  # -inf + inf and float overflow give numpy's answer
        middle = (low + high) / 2
    out = np.where(count % 2 == 1, high, middle).astype(array.dtype, copy=False)
    out[count == 0] = np.nan
    return out
