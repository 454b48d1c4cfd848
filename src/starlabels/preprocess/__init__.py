"""Wavelength grids, pixel bitmasks and continuum normalisation."""

from starlabels.preprocess.bitmask import DEFAULT_REJECT_BITS, PIXMASK_BITS, bad_pixels
from starlabels.preprocess.grids import APSTAR, ASPCAP, GRIDS, PAYNE, Grid, convert, get_grid

__all__ = [
    "APSTAR", "ASPCAP", "DEFAULT_REJECT_BITS", "GRIDS", "PAYNE", "PIXMASK_BITS", "Grid",
    "bad_pixels", "convert", "get_grid",
]
