"""APOGEE wavelength grids and lossless conversions between them.

Three grids are used throughout starlabels, all subsets of the apStar log-linear grid
(log10 λ[Å] = CRVAL1 + CDELT1 · i, i = 0 … 8574, vacuum wavelengths):

``apstar``  8575 pixels, the full apStar grid (APOGEE Net's raw-flux input).
``aspcap``  7514 pixels, detector gaps deleted: apStar [246:3274] + [3585:6080] + [6344:8335]
            (astroNN's continuum-normalised input).
``payne``   7214 pixels, The Payne's grid: apStar [322:3242] + [3648:6048] + [6412:8306].

Each grid is a tuple of half-open apStar pixel ranges, one per detector (blue, green, red).
Converting to a grid that contains pixels the source lacks fills them with ``fill`` (NaN by
default), so a round trip small → large → small is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

APSTAR_N_PIXELS = 8575
APSTAR_CRVAL1 = 4.179
APSTAR_CDELT1 = 6e-6
DETECTORS = ("blue", "green", "red")


@dataclass(frozen=True)
class Grid:
    """A wavelength grid given as apStar pixel ranges, one half-open range per detector."""

    name: str
    segments: tuple[tuple[int, int], ...]

    @property
    def n_pixels(self) -> int:
        return sum(b - a for a, b in self.segments)

    @cached_property
    def apstar_index(self) -> np.ndarray:
        """(n_pixels,) int: the apStar pixel index of each pixel of this grid."""
        return np.concatenate([np.arange(a, b) for a, b in self.segments])

    @cached_property
    def detector_slices(self) -> tuple[slice, ...]:
        """One slice per detector into an array on *this* grid."""
        out, start = [], 0
        for a, b in self.segments:
            out.append(slice(start, start + b - a))
            start += b - a
        return tuple(out)

    def wavelength(
        self, crval1: float = APSTAR_CRVAL1, cdelt1: float = APSTAR_CDELT1
    ) -> np.ndarray:
        """(n_pixels,) vacuum wavelengths in Å."""
        return 10.0 ** (crval1 + cdelt1 * self.apstar_index)


APSTAR = Grid("apstar", ((0, APSTAR_N_PIXELS),))
ASPCAP = Grid("aspcap", ((246, 3274), (3585, 6080), (6344, 8335)))
PAYNE = Grid("payne", ((322, 3242), (3648, 6048), (6412, 8306)))
GRIDS: dict[str, Grid] = {g.name: g for g in (APSTAR, ASPCAP, PAYNE)}

# apStar has no gaps in its array, but its detectors still end where ASPCAP's do; continuum
# fits on the apStar grid use these three ranges.
APSTAR_DETECTOR_SEGMENTS = ASPCAP.segments


def get_grid(grid: str | int | Grid) -> Grid:
    """Look a grid up by name (``"apstar"``, ``"aspcap"``, ``"payne"``) or by pixel count."""
    if isinstance(grid, Grid):
        return grid
    if isinstance(grid, str):
        try:
            return GRIDS[grid.lower()]
        except KeyError:
            raise ValueError(f"unknown grid {grid!r}; known: {sorted(GRIDS)}") from None
    for g in GRIDS.values():
        if g.n_pixels == int(grid):
            return g
    sizes = {g.name: g.n_pixels for g in GRIDS.values()}
    raise ValueError(f"no APOGEE grid has {grid} pixels; known sizes: {sizes}")


def apstar_wavelength(
    n_pixels: int = APSTAR_N_PIXELS,
    crval1: float = APSTAR_CRVAL1,
    cdelt1: float = APSTAR_CDELT1,
) -> np.ndarray:
    """(n_pixels,) vacuum wavelengths in Å of a log-linear grid: 10**(crval1 + cdelt1·i)."""
    return 10.0 ** (crval1 + cdelt1 * np.arange(n_pixels))


def wavelength_from_header(header) -> np.ndarray:
    """Wavelengths in Å from a FITS header's log-linear WCS (CRVAL1, CDELT1, NAXIS1, CRPIX1)."""
    missing = [k for k in ("CRVAL1", "CDELT1", "NAXIS1") if k not in header]
    if missing:
        raise ValueError(f"header has no log-linear wavelength solution (missing {missing})")
    crpix = float(header.get("CRPIX1", 1.0))
    n = int(header["NAXIS1"])
    i = np.arange(n) - (crpix - 1.0)
    return 10.0 ** (float(header["CRVAL1"]) + float(header["CDELT1"]) * i)


def convert(array, src: str | int | Grid, dst: str | int | Grid, fill: float = np.nan, axis=-1):
    """Move ``array`` (…, n_src, …) from grid ``src`` to grid ``dst`` along ``axis``.

    Pixels of ``dst`` that ``src`` lacks get ``fill``; pixels of ``src`` outside ``dst`` are
    dropped. Integer arrays keep their dtype (``fill`` is then cast, e.g. a bitmask value).
    """
    src_g, dst_g = get_grid(src), get_grid(dst)
    a = np.asarray(array)
    axis = axis % a.ndim
    if a.shape[axis] != src_g.n_pixels:
        raise ValueError(
            f"array has {a.shape[axis]} pixels along axis {axis}, "
            f"grid {src_g.name!r} has {src_g.n_pixels}"
        )
    if src_g == dst_g:
        return a.copy()
    # position of each apStar pixel in src (or -1)
    where_src = np.full(APSTAR_N_PIXELS, -1)
    where_src[src_g.apstar_index] = np.arange(src_g.n_pixels)
    pos = where_src[dst_g.apstar_index]
    have = pos >= 0
    if have.all():
        return np.take(a, pos, axis=axis)
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        if not np.isfinite(fill):
            raise ValueError("converting an integer/bool array needs a finite `fill`")
        dtype = a.dtype
    else:
        dtype = np.result_type(a.dtype, np.float32)
    shape = list(a.shape)
    shape[axis] = dst_g.n_pixels
    out = np.full(shape, fill, dtype=dtype)
    idx = [slice(None)] * a.ndim
    idx[axis] = np.flatnonzero(have)
    out[tuple(idx)] = np.take(a, pos[have], axis=axis)
    return out


def apstar_to_aspcap(array, axis=-1):
    """(…, 8575) → (…, 7514): delete the detector gaps."""
    return convert(array, APSTAR, ASPCAP, axis=axis)


def aspcap_to_apstar(array, fill: float = np.nan, axis=-1):
    """(…, 7514) → (…, 8575): gaps filled with ``fill``."""
    return convert(array, ASPCAP, APSTAR, fill=fill, axis=axis)
