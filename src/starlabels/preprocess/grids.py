"""Grid look-up and lossless conversion between a grid and its sub-grids.

Grids are data (:mod:`starlabels.core.grid`); the built-in ones belong to the instruments
(:mod:`starlabels.core.apogee`: ``apstar``, ``aspcap``, ``payne``; :mod:`starlabels.core.boss`:
``boss``). This module finds a grid by name (or, for files and models written before grids were
stored, by pixel count) and moves arrays between a grid and any grid whose pixels are a subset of
it. Converting to a grid that holds pixels the source lacks fills them with ``fill`` (NaN by
default), so a round trip small → large → small is exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from starlabels.core import apogee, boss
from starlabels.core.grid import Grid
from starlabels.core.instrument import available, get

__all__ = [
    "APSTAR", "APSTAR_DETECTOR_SEGMENTS", "ASPCAP", "BOSS", "DETECTORS", "GRIDS", "PAYNE", "Grid",
    "convert", "get_grid", "index_in", "pixel_ranges", "wavelength_from_header",
]

APSTAR: Grid = apogee.APSTAR
ASPCAP: Grid = apogee.ASPCAP
PAYNE: Grid = apogee.PAYNE
BOSS: Grid = boss.COADD
#: Built-in grids by name.
GRIDS: dict[str, Grid] = {g.name: g for g in (APSTAR, ASPCAP, PAYNE, BOSS)}
#: APOGEE's detector names, blue to red.
DETECTORS: tuple[str, ...] = APSTAR.segment_names


def pixel_ranges(grid: Grid) -> tuple[tuple[int, int], ...]:
    """Half-open pixel index range of each segment of ``grid``."""
    return tuple((s.start, s.stop) for s in grid.segment_slices)


#: apStar pixel ranges of APOGEE's three detectors (continuum fits on the apStar grid use them).
APSTAR_DETECTOR_SEGMENTS: tuple[tuple[int, int], ...] = pixel_ranges(APSTAR)


def get_grid(grid: Any) -> Grid:
    """A grid from a :class:`Grid`, a ``Grid.to_dict()`` mapping, a name (a built-in grid such as
    ``"apstar"``, ``"aspcap"``, ``"payne"``, ``"boss"``, or an instrument name for its native grid), or —
    for files and models written before grids were stored — a pixel count of a built-in grid."""
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, Mapping):
        return Grid.from_dict(grid)
    if isinstance(grid, str):
        key = grid.lower()
        if key in GRIDS:
            return GRIDS[key]
        for name in available():
            inst = get(name)
            if key == name:
                return inst.grid
            for g in inst.grids():
                if g.name == key:
                    return g
        raise ValueError(f"unknown grid {grid!r}; known: {sorted(GRIDS)}")
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        for g in GRIDS.values():
            if g.n_pixels == int(grid):
                return g
        sizes = {g.name: g.n_pixels for g in GRIDS.values()}
        raise ValueError(f"no built-in grid has {grid} pixels; known sizes: {sizes}")
    raise ValueError(f"cannot make a grid from {type(grid).__name__} {grid!r}")


def index_in(grid: Any, parent: Any) -> np.ndarray:
    """(P,) int: the index in ``parent`` of each pixel of ``grid`` (``grid`` must be a sub-grid)."""
    g, p = get_grid(grid), get_grid(parent)
    pos = g.positions_in(p)
    if pos is None:
        raise ValueError(f"grid {g.describe()} is not a sub-grid of {p.describe()}")
    return pos


def convert(array: Any, src: Any, dst: Any, fill: float = np.nan, axis: int = -1) -> np.ndarray:
    """Move ``array`` (…, n_src, …) from grid ``src`` to grid ``dst`` along ``axis``.

    One grid's pixels must be a subset of the other's. Pixels of ``dst`` that ``src`` lacks get
    ``fill``; pixels of ``src`` outside ``dst`` are dropped. Integer arrays keep their dtype (``fill``
    is then cast, e.g. a bitmask value).
    """
    src_g, dst_g = get_grid(src), get_grid(dst)
    a = np.asarray(array)
    axis = axis % a.ndim
    if a.shape[axis] != src_g.n_pixels:
        raise ValueError(
            f"array has {a.shape[axis]} pixels along axis {axis}, grid {src_g.name!r} has {src_g.n_pixels}"
        )
    if src_g.same_as(dst_g):
        return a.copy()
    pos_dst_in_src = dst_g.positions_in(src_g)
    if pos_dst_in_src is not None:  # dst ⊂ src: a take
        return np.take(a, pos_dst_in_src, axis=axis)
    pos_src_in_dst = src_g.positions_in(dst_g)
    if pos_src_in_dst is None:
        raise ValueError(
            f"grids {src_g.describe()} and {dst_g.describe()} are not sub-grids of one another; "
            "resample instead (starlabels.preprocess.resample)"
        )
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        if not np.isfinite(fill):
            raise ValueError("converting an integer/bool array needs a finite `fill`")
        dtype = a.dtype
    else:
        dtype = np.result_type(a.dtype, np.float32)
    shape = list(a.shape)
    shape[axis] = dst_g.n_pixels
    out = np.full(shape, fill, dtype=dtype)
    idx: list[Any] = [slice(None)] * a.ndim
    idx[axis] = pos_src_in_dst
    out[tuple(idx)] = a
    return out


def wavelength_from_header(header: Any) -> np.ndarray:
    """Wavelengths in Å from a FITS header's log-linear WCS (CRVAL1, CDELT1, NAXIS1, CRPIX1)."""
    missing = [k for k in ("CRVAL1", "CDELT1", "NAXIS1") if k not in header]
    if missing:
        raise ValueError(f"header has no log-linear wavelength solution (missing {missing})")
    crpix = float(header.get("CRPIX1", 1.0))
    n = int(header["NAXIS1"])
    i = np.arange(n) - (crpix - 1.0)
    return 10.0 ** (float(header["CRVAL1"]) + float(header["CDELT1"]) * i)


# ---------------------------------------------------------------------------------------------
# APOGEE names kept for code written against the apStar-only grids (values come from core.apogee)

APSTAR_N_PIXELS: int = apogee.N_PIXELS
APSTAR_CRVAL1: float = apogee.CRVAL
APSTAR_CDELT1: float = apogee.CDELT


def apstar_wavelength(
    n_pixels: int = apogee.N_PIXELS, crval1: float = apogee.CRVAL, cdelt1: float = apogee.CDELT
) -> np.ndarray:
    """(n_pixels,) vacuum wavelengths in Å of a log-linear grid: 10**(crval1 + cdelt1·i)."""
    return 10.0 ** (crval1 + cdelt1 * np.arange(n_pixels))


def apstar_to_aspcap(array: Any, axis: int = -1) -> np.ndarray:
    """(…, apStar) → (…, ASPCAP): delete the detector gaps."""
    return convert(array, APSTAR, ASPCAP, axis=axis)


def aspcap_to_apstar(array: Any, fill: float = np.nan, axis: int = -1) -> np.ndarray:
    """(…, ASPCAP) → (…, apStar): gaps filled with ``fill``."""
    return convert(array, ASPCAP, APSTAR, fill=fill, axis=axis)
