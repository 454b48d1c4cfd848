"""The bottom layer: wavelength grids, pixel bitmasks and instruments, as data.

Nothing here knows about files, preprocessing or models; every other layer imports from here.
APOGEE and BOSS are two instruments (:mod:`starlabels.core.apogee`, :mod:`starlabels.core.boss`);
any other spectrograph is :func:`from_wavelength` away.
"""

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid, log_linear_grid
from starlabels.core.instrument import (
    GENERIC_BITMASK,
    Instrument,
    available,
    find_grid,
    from_wavelength,
    get,
    register,
)
from starlabels.core.reference import ReferenceFile, find_reference

__all__ = [
    "GENERIC_BITMASK", "Grid", "Instrument", "PixelBitmask", "ReferenceFile", "available", "find_grid",
    "find_reference", "from_wavelength", "get", "log_linear_grid", "register",
]
