"""Wavelength grids, pixel bitmasks and continuum normalisation."""

from starlabels.preprocess.bitmask import DEFAULT_REJECT_BITS, PIXMASK_BITS, bad_pixels
from starlabels.preprocess.continuum import (
    ContinuumFit,
    continuum_normalise,
    continuum_normalize,
    fit_continuum,
    pseudo_normalise,
    pseudo_normalize,
    select_continuum_pixels,
)
from starlabels.preprocess.continuum_masks import load_continuum_mask, mask_from_indices
from starlabels.preprocess.grids import APSTAR, ASPCAP, GRIDS, PAYNE, Grid, convert, get_grid
from starlabels.preprocess.masking import BAD_PIXEL_ERROR, raw_flux, rejected_pixels
from starlabels.preprocess.pipeline import PreprocessConfig

__all__ = [
    "APSTAR", "ASPCAP", "BAD_PIXEL_ERROR", "DEFAULT_REJECT_BITS", "GRIDS", "PAYNE", "PIXMASK_BITS",
    "ContinuumFit", "Grid", "PreprocessConfig", "bad_pixels", "continuum_normalise", "continuum_normalize",
    "convert", "fit_continuum", "get_grid", "load_continuum_mask", "mask_from_indices", "pseudo_normalise",
    "pseudo_normalize",
    "raw_flux", "rejected_pixels", "select_continuum_pixels",
]
