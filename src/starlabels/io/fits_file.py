"""Opening FITS files safely and copying their data into native numpy arrays.

Shared by every reader in :mod:`starlabels.io`: :func:`open_fits` turns every failure (missing,
empty, not FITS, truncated, corrupt) into :class:`~starlabels.errors.InputFileError` naming the
file and the problem.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError

__all__ = ["FITS_BLOCK", "is_fits", "native", "open_fits"]

FITS_BLOCK = 2880
_COMPRESSED = (".gz", ".bz2", ".fz", ".zip")


def is_fits(path: str | os.PathLike[str]) -> bool:
    """True when the file starts with the FITS signature, or is a compressed ``.fits.gz``-like
    file (whose content is checked when it is opened)."""
    p = Path(path)
    if p.suffix.lower() in _COMPRESSED:
        return ".fit" in p.name.lower()
    try:
        with open(p, "rb") as fh:
            return fh.read(9) == b"SIMPLE  ="
    except OSError:
        return False


def native(a: Any, dtype: Any = None) -> np.ndarray:
    """A C-contiguous copy in native byte order (FITS data are big-endian)."""
    a = np.asarray(a)
    dt = np.dtype(dtype) if dtype is not None else a.dtype
    if dt.byteorder not in ("=", "|"):
        dt = dt.newbyteorder("=")
    return np.array(a, dtype=dt, order="C", copy=True)


@contextlib.contextmanager
def open_fits(path: str | os.PathLike[str], what: str) -> Iterator[Any]:
    """Open a FITS file; every failure becomes an InputFileError naming file and problem."""
    from astropy.io import fits

    p = Path(path)
    if not p.exists():
        raise InputFileError(p, f"{what} file does not exist")
    if p.is_dir():
        raise InputFileError(p, f"is a directory, expected a {what} FITS file")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(p, "file is empty")
    compressed = p.suffix.lower() in _COMPRESSED
    if not compressed:
        with open(p, "rb") as fh:
            head = fh.read(9)
        if head != b"SIMPLE  =":
            raise InputFileError(p, f"not a FITS file (does not start with 'SIMPLE  ='); expected {what}")
        if size % FITS_BLOCK:
            raise InputFileError(
                p, f"truncated FITS file: {size} bytes is not a multiple of the {FITS_BLOCK}-byte "
                   "FITS block"
            )
    try:
        hdul = fits.open(p, memmap=not compressed, lazy_load_hdus=False)
    except Exception as e:  # astropy raises OSError/ValueError/... for corrupt files
        raise InputFileError(p, f"cannot open as FITS ({type(e).__name__}: {e})") from e
    try:
        if not compressed and len(hdul):
            info = hdul.fileinfo(len(hdul) - 1)
            end = int(info["datLoc"]) + int(info["datSpan"])
            if end > size:
                raise InputFileError(
                    p, f"truncated FITS file: headers need {end} bytes, file has {size}"
                )
        yield hdul
    finally:
        hdul.close()
