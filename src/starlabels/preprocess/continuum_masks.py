"""Continuum-pixel masks: read from ``.npy``/``.npz`` files, built from pixel indices, and put on a grid.

A continuum mask is a (P,) bool array on a grid (APOGEE: the ASPCAP grid), True at the pixels the
continuum fits of :mod:`starlabels.preprocess.continuum` use. A mask stored on a sub- or super-grid
of the wanted one (APOGEE's apStar or Payne grid) is converted (pixels the mask's grid lacks:
False).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from starlabels.core.grid import Grid
from starlabels.errors import InputDataError, InputFileError
from starlabels.preprocess.grids import ASPCAP, GRIDS, convert, get_grid

__all__ = ["MaskLike", "load_continuum_mask", "mask_from_indices", "mask_on_grid", "resolve_continuum_mask"]

#: What callers may pass as a continuum mask: a bool array, a mask file, or None (every pixel).
MaskLike = np.ndarray | str | Path | None


def mask_on_grid(mask: np.ndarray, what: str, grid: Grid = ASPCAP) -> np.ndarray:
    """A (n,) bool mask on ``grid`` or on a built-in grid that is a sub- or super-grid of it → (P,)
    bool on ``grid`` (pixels the mask's grid lacks: False). ``what`` names the mask in errors.

    Raises ``InputDataError`` when no built-in grid of n pixels is related to ``grid``."""
    n = mask.shape[0]
    if n == grid.n_pixels:
        return mask.astype(bool, copy=True)
    for other in GRIDS.values():
        if other.n_pixels == n:
            try:
                return convert(mask, other, grid, fill=0).astype(bool)
            except ValueError:
                continue
    related = [f"{g.n_pixels} ({g.name})" for g in GRIDS.values()
               if g.positions_in(grid) is not None or grid.positions_in(g) is not None]
    raise InputDataError(
        f"{what} has {n} pixels; expected {grid.n_pixels} (grid {grid.name!r})"
        + (f" or a related grid: {', '.join(related)}" if related else "")
    )


def load_continuum_mask(path: str | Path, key: str | None = None, grid: Grid | str = ASPCAP) -> np.ndarray:
    """Load a boolean continuum-pixel mask from ``.npy`` or ``.npz``.

    Parameters
    ----------
    path:
        File holding a 1-D boolean (or 0/1) array on ``grid`` or on a built-in grid that is a sub- or
        super-grid of it (for APOGEE: the ASPCAP, apStar or Payne grid). For ``.npz`` the array is
        ``key``, else the only array in the file, else the only 1-D array of a known grid length.
    key:
        Name of the array inside an ``.npz`` file.

    grid:
        Grid to return the mask on (default APOGEE's ASPCAP grid); a mask stored on a sub- or
        super-grid of it is converted.

    Returns
    -------
    (P,) bool on ``grid`` (pixels the file's grid lacks are False).

    Raises
    ------
    InputFileError
        Missing/unreadable file, no suitable array, wrong length or non-boolean values.
    """
    from starlabels.io.array_file import load_array_file  # (here: importing starlabels.io costs ~50 ms)

    p = Path(path)
    loaded = load_array_file(p, "continuum mask")
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            keys = list(loaded.keys())
            if key is not None:
                if key not in keys:
                    raise InputFileError(p, f"no array {key!r} (has {keys})")
                arr = loaded[key]
            elif len(keys) == 1:
                arr = loaded[keys[0]]
            else:
                sizes = {g.n_pixels for g in GRIDS.values()}
                cands = [k for k in keys if loaded[k].ndim == 1 and loaded[k].shape[0] in sizes]
                if len(cands) != 1:
                    raise InputFileError(p, f"several arrays {keys}; pass key= to choose one")
                arr = loaded[cands[0]]
    else:
        arr = loaded
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise InputFileError(p, f"continuum mask must be 1-D, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        if not (np.issubdtype(arr.dtype, np.number) and np.isin(arr, (0, 1)).all()):
            raise InputFileError(p, f"continuum mask must be boolean (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    try:
        return mask_on_grid(arr, "continuum mask", get_grid(grid))
    except InputDataError as exc:
        raise InputFileError(p, str(exc)) from None


def mask_from_indices(indices: Iterable[int], n_pixels: int = ASPCAP.n_pixels) -> np.ndarray:
    """(n_pixels,) bool, True at ``indices`` (pixel indices on the ASPCAP grid by default)."""
    idx = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n_pixels):
        raise InputDataError(f"continuum pixel indices must be integers in [0, {n_pixels})")
    mask = np.zeros(n_pixels, dtype=bool)
    mask[idx.astype(np.int64)] = True
    return mask


def resolve_continuum_mask(continuum_mask: MaskLike, grid: Grid = ASPCAP) -> np.ndarray | None:
    """A continuum mask as callers give it — None, a mask file (:func:`load_continuum_mask`), or a
    bool array on ``grid`` or a related built-in grid — → None or (P,) bool on ``grid``."""
    if continuum_mask is None:
        return None
    if isinstance(continuum_mask, (str, Path)):
        return load_continuum_mask(continuum_mask, grid=grid)
    m = np.asarray(continuum_mask)
    if m.dtype != np.bool_:
        raise InputDataError(
            f"continuum_mask must be a boolean array (got dtype {m.dtype}); "
            "for pixel indices use mask_from_indices()"
        )
    if m.ndim != 1:
        raise InputDataError(f"continuum_mask must be 1-D, got shape {m.shape}")
    return mask_on_grid(m, "continuum_mask", grid)
