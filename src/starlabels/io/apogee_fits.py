"""FITS helpers shared by the APOGEE spectrum readers (:mod:`starlabels.io.apogee` for apStar and
aspcapStar files, :mod:`starlabels.io.apvisit` for apVisit files): image HDUs with clear errors,
header values with NaN/defaults for absent keys, the log-linear apStar wavelengths, and the BADPIX
flag on non-finite pixels."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.core import apogee as apogee_core
from starlabels.errors import InputFileError
from starlabels.io.spectrum import validated_grid

__all__ = [
    "BADPIX", "N_APSTAR", "apogee_id_from_name", "apstar_wavelength", "flag_nonfinite", "header_float",
    "header_int", "header_str", "image_data", "wcs_wavelength",
]

#: the APOGEE_PIXMASK BADPIX bit value
BADPIX = 1 << apogee_core.PIXMASK_BITS["BADPIX"]
#: pixels of the apStar grid (8575)
N_APSTAR = apogee_core.N_PIXELS
_APOGEE_ID_IN_NAME = re.compile(r"(?:apStar|asStar|aspcapStar)-.*?-(2M[0-9+\-.]+?|[^-]+?)\.fits", re.I)


def flag_nonfinite(flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray, *,
                   copy: bool = True) -> np.ndarray:
    """Return ``bitmask`` (int64 copy) with BADPIX set wherever flux or error is not finite. With
    ``copy=False`` an int64 ``bitmask`` itself gets the bit (for a reader's own new array)."""
    out = np.array(bitmask, dtype=np.int64) if copy else np.asarray(bitmask, dtype=np.int64)
    finite = np.isfinite(flux) & np.isfinite(error)
    if not finite.all():  # (most spectra: nothing to set, no boolean indexing)
        out[~finite] |= BADPIX
    return out


def check_hdu_count(path: str | os.PathLike[str], n_hdus: int, kind: str, contents: tuple[str, ...]) -> int:
    """``n_hdus``, the number of HDUs of the ``kind`` file ``path``; :class:`InputFileError` when it
    has fewer than the ``contents`` (names of the HDUs such a file starts with), e.g. a truncated
    file."""
    if n_hdus < len(contents):
        raise InputFileError(
            path, f"not an {kind} file: {n_hdus} HDU(s), expected at least {len(contents)} "
                  f"({', '.join(contents)}); or the file is truncated"
        )
    return n_hdus


def image_data(hdul: Any, index: int, path: str | os.PathLike[str], name: str) -> np.ndarray:
    """Data of image HDU ``index`` as a native numpy array (InputFileError when unreadable)."""
    from astropy.io import fits

    if index >= len(hdul):
        raise InputFileError(path, f"has {len(hdul)} HDUs, no HDU{index} ({name})")
    hdu = hdul[index]
    if not isinstance(hdu, fits.ImageHDU | fits.PrimaryHDU | fits.CompImageHDU):
        raise InputFileError(path, f"HDU{index} ({name}) is a {type(hdu).__name__}, expected an image")
    try:
        data = hdu.data
    except Exception as e:
        raise InputFileError(path, f"cannot read HDU{index} ({name}): {type(e).__name__}: {e}") from e
    if data is None:
        raise InputFileError(path, f"HDU{index} ({name}) holds no data")
    return data


def header_float(header: Any, key: str) -> float:
    """``header[key]`` as float; NaN when absent, blank or not a number."""
    try:
        v = header[key]
        return float(v) if v is not None else float("nan")
    except (KeyError, TypeError, ValueError):
        return float("nan")


def header_int(header: Any, key: str, default: int = -1) -> int:
    """``header[key]`` as int; ``default`` when absent or not a number."""
    try:
        return int(header[key])
    except (KeyError, TypeError, ValueError):
        return default


def header_str(header: Any, key: str) -> str:
    """``header[key]`` as a stripped str; ``""`` when absent."""
    v = header.get(key)
    return "" if v is None else str(v).strip()


def apogee_id_from_name(path: str | os.PathLike[str]) -> str:
    """The APOGEE_ID in an apStar/asStar/aspcapStar file name (``""`` when the name has none)."""
    m = _APOGEE_ID_IN_NAME.search(Path(path).name)
    return m.group(1) if m else ""


def apstar_wavelength(n_pixels: int = N_APSTAR, crval: float = apogee_core.CRVAL,
                       cdelt: float = apogee_core.CDELT, crpix: float = 1.0) -> np.ndarray:
    """(n_pixels,) vacuum Å of a log-linear grid: 10**(crval + cdelt·(i + 1 − crpix)) (a new array;
    the few grids files use are computed once: 8575 powers cost more than reading an apStar row)."""
    return _log_linear(int(n_pixels), float(crval), float(cdelt), float(crpix)).copy()


@functools.lru_cache(maxsize=32)
def _log_linear(n_pixels: int, crval: float, cdelt: float, crpix: float) -> np.ndarray:
    out = 10.0 ** (crval + cdelt * (np.arange(n_pixels) - (crpix - 1.0)))
    out.flags.writeable = False
    if n_pixels >= 2 and np.all(out[1:] > out[:-1]):
        validated_grid(out)
    return out


def wcs_wavelength(header: Any, primary: Any, n_pixels: int, *, shared: bool = False) -> np.ndarray:
    """Å from the log-linear WCS of ``header`` (falling back on ``primary``, then the default): a new
    array, or with ``shared`` the one read-only array of that grid (checked once for
    :class:`~starlabels.io.spectrum.Spectrum` by :func:`~starlabels.io.spectrum.validated_grid`)."""
    crval, cdelt, crpix = apogee_core.CRVAL, apogee_core.CDELT, 1.0
    for h in (header, primary):
        if h is not None and "CRVAL1" in h and "CDELT1" in h:
            crval, cdelt, crpix = float(h["CRVAL1"]), float(h["CDELT1"]), float(h.get("CRPIX1", 1))
            break
    grid = _log_linear(int(n_pixels), crval, cdelt, crpix)
    return grid if shared else grid.copy()
