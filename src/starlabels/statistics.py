"""Robust statistics used across the package: one σ_MAD for metrics, calibration, YSO and benches,
and fast exact row-wise medians for per-spectrum medians (:func:`nanmedian_rows`,
:func:`masked_median_rows`: one partial sort per row, see :func:`middle_values_rows`).

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
    values, as in numpy. Vectorised (:func:`masked_median_rows`) instead of numpy's per-row Python
    loop for rows longer than 600 (``np.apply_along_axis``). The mean of the two middle values is
    taken in the values' dtype, as numpy does.
    """
    array = np.asarray(values)
    if array.ndim != 2:
        raise ValueError(f"nanmedian_rows needs a 2-D array, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.floating):
        return masked_median_rows(array.astype(np.float64), None, overwrite_input=True)
    return masked_median_rows(array, None)


def count_per_row(mask: np.ndarray) -> np.ndarray:
    """(N,) int64 number of True entries in each row of an (N, P) bool array:
    ``np.count_nonzero(mask, axis=1)``, about 5× faster (bytes summed in uint16, no cast to intp)."""
    array = np.asarray(mask, dtype=bool)
    if array.ndim != 2:
        raise ValueError(f"count_per_row needs a 2-D array, got shape {array.shape}")
    accumulator = np.uint16 if array.shape[1] < 2**16 else np.int64
    return array.view(np.uint8).sum(axis=1, dtype=accumulator).astype(np.int64)


def masked_median_rows(
    values: np.ndarray, masked: np.ndarray | None, *, overwrite_input: bool = False, nan_free: bool = False
) -> np.ndarray:
    """Median of each row's entries where ``masked`` is False (NaN entries count as masked).

    ``values`` (N, P) float, ``masked`` (N, P) bool or None (NaN only) → (N,) in the values'
    dtype: the middle value, or the mean of the two middle values taken in the values' dtype (as
    ``np.median``), of each row's unmasked entries; NaN for a row without one. Equal to
    ``np.median(row[~mask])`` per row (a zero median may differ in its sign where +0 and −0 tie).
    ``overwrite_input``: ``values`` may be used as the work array (its entries are then reordered
    and overwritten); else it is copied. ``nan_free`` and the method: :func:`middle_values_rows`.
    """
    low, high, count = middle_values_rows(values, masked, overwrite_input=overwrite_input, nan_free=nan_free)
    with np.errstate(invalid="ignore", over="ignore"):  # -inf + inf and float overflow give numpy's answer
        middle = (low + high) / 2
    out = np.where(count % 2 == 1, high, middle).astype(low.dtype, copy=False)
    out[count == 0] = np.nan
    return out


def middle_values_rows(
    values: np.ndarray, masked: np.ndarray | None, *, overwrite_input: bool = False, nan_free: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The two middle values of each row's unmasked entries: ``(low, high, count)``.

    ``values`` (N, P) float, ``masked`` (N, P) bool or None (NaN entries count as masked too). For a row
    with ``count`` unmasked entries, ``low`` and ``high`` are their order statistics of rank
    ``(count - 1) // 2`` and ``count // 2`` (equal for an odd count; the median is their mean), in
    the values' dtype; undefined (any value) where ``count`` is 0. ``overwrite_input`` as
    :func:`masked_median_rows`. ``nan_free``: the caller guarantees that no unmasked entry is NaN
    (saves a pass over the values; a NaN there would then give wrong middle values).

    Method: one partial sort per row at one fixed rank, ``P // 2``, for every row (``np.partition``;
    numpy's vectorised single-rank selection, about half the time of a full row sort). That works
    because the masked entries of a row with ``r`` of them become ``r // 2`` copies of −inf (its
    first masked entries in column order) and the rest +inf: the unmasked entries then hold ranks
    ``r // 2`` … ``r // 2 + count - 1`` of the row, so their two middle ranks are ``P // 2 - 1`` or
    ``P // 2`` for every parity of ``r`` and ``count``, i.e. the largest entry left of the partition
    point or the entry at it. Unmasked ±inf tie with the padding and take the same ranks.
    """
    array = np.asarray(values)
    mask = None if masked is None else np.asarray(masked, dtype=bool)
    if array.ndim != 2 or (mask is not None and mask.shape != array.shape):
        raise ValueError(
            f"values must be 2-D (N, P) and masked of the same shape, got {array.shape} and "
            f"{None if mask is None else mask.shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"values must be a float array, got dtype {array.dtype}")
    n, p = array.shape
    if p == 0:
        nothing = np.full(n, np.nan, dtype=array.dtype)
        return nothing, nothing.copy(), np.zeros(n, dtype=np.int64)
    own = overwrite_input and array.flags.c_contiguous and array.flags.writeable
    work = array if own else np.array(array, order="C")
    if mask is None:
        missing = np.isnan(work)
    elif nan_free:
        missing = mask
    else:
        missing = np.isnan(work)
        missing |= mask
    flat = np.flatnonzero(missing)  # row-major: each row's masked entries in column order
    first = np.searchsorted(flat, np.arange(n + 1) * p)  # where each row starts in ``flat``
    n_missing = np.diff(first)
    if flat.size:  # r // 2 × −inf then the rest +inf, row by row, in the order of ``flat``
        pads = np.array([-np.inf, np.inf], dtype=work.dtype)
        counts = np.column_stack([n_missing // 2, n_missing - n_missing // 2]).reshape(-1)
        work.reshape(-1)[flat] = np.repeat(np.tile(pads, n), counts)
    k = p // 2
    work.partition(k, axis=1)
    at_k = work[:, k].copy()
    below_k = work[:, :k].max(axis=1) if k else at_k
    count = p - n_missing
    pad = n_missing // 2
    low = np.where(pad + (count - 1) // 2 == k, at_k, below_k)
    high = np.where(pad + count // 2 == k, at_k, below_k)
    return low, high, count
