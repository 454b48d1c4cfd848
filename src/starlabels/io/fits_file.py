"""Opening FITS files safely and copying their data into native numpy arrays.

Shared by every reader in :mod:`starlabels.io`: :func:`open_fits` turns every failure (missing,
empty, not FITS, truncated, corrupt) into :class:`~starlabels.errors.InputFileError` naming the
file and the problem.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError

__all__ = ["FITS_BLOCK", "bintable_columns", "bintable_dtype", "check_fits_file", "is_compressed", "is_fits",
           "native", "open_fits", "read_bintable"]

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


def _data_offset(hdul: Any, index: int) -> int:
    """Byte offset of HDU ``index``'s data. astropy's public ``fileinfo`` re-serialises every header
    to check for resizing (≈ 15 ms for an mwm file); the offset it reports is the HDU's
    ``_data_offset``, used here when present."""
    offset = getattr(hdul[index], "_data_offset", None)
    return int(offset) if offset is not None else int(hdul.fileinfo(index)["datLoc"])


def _data_end(hdul: Any, index: int) -> int:
    hdu = hdul[index]
    offset, size = getattr(hdu, "_data_offset", None), getattr(hdu, "_data_size", None)
    if offset is None or size is None:
        info = hdul.fileinfo(index)
        return int(info["datLoc"]) + int(info["datSpan"])
    return int(offset) + int(size)


def is_compressed(path: str | os.PathLike[str]) -> bool:
    """True for names ending in a compression suffix (``.gz``, ``.bz2``, ``.fz``, ``.zip``)."""
    return os.path.splitext(os.fspath(path))[1].lower() in _COMPRESSED


def check_fits_file(path: str | os.PathLike[str], what: str) -> int:
    """The size in bytes of a file that may be FITS, after the checks that need no parsing.

    Raises:
        InputFileError: missing, a folder, empty, or (uncompressed) not starting with the FITS
            signature or not a whole number of 2880-byte blocks.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, f"{what} file does not exist")
    if p.is_dir():
        raise InputFileError(p, f"is a directory, expected a {what} FITS file")
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(p, "file is empty")
    if not is_compressed(p):
        with open(p, "rb") as fh:
            head = fh.read(9)
        if head != b"SIMPLE  =":
            raise InputFileError(p, f"not a FITS file (does not start with 'SIMPLE  ='); expected {what}")
        if size % FITS_BLOCK:
            raise InputFileError(
                p, f"truncated FITS file: {size} bytes is not a multiple of the {FITS_BLOCK}-byte "
                   "FITS block"
            )
    return size


@contextlib.contextmanager
def open_fits(path: str | os.PathLike[str], what: str) -> Iterator[Any]:
    """Open a FITS file; every failure becomes an InputFileError naming file and problem."""
    from astropy.io import fits

    p = Path(path)
    size = check_fits_file(p, what)
    compressed = is_compressed(p)
    try:
        hdul = fits.open(p, memmap=not compressed, lazy_load_hdus=False)
    except Exception as e:  # astropy raises OSError/ValueError/... for corrupt files
        raise InputFileError(p, f"cannot open as FITS ({type(e).__name__}: {e})") from e
    try:
        if not compressed and len(hdul):
            end = _data_end(hdul, len(hdul) - 1)
            if end > size:
                raise InputFileError(
                    p, f"truncated FITS file: headers need {end} bytes, file has {size}"
                )
        yield hdul
    finally:
        hdul.close()


_TFORM = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])")
_NUMPY_CODE = {"L": "S1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "A": "S"}


def bintable_dtype(header: Any) -> np.dtype | None:
    """The numpy dtype of a binary table row from its TFORMn cards, or None when a column needs
    astropy (scaled, variable-length, complex or bit columns)."""
    n = int(header.get("TFIELDS", 0))
    fields = []
    for i in range(1, n + 1):
        if f"TSCAL{i}" in header or f"TZERO{i}" in header:
            return None
        m = _TFORM.match(str(header.get(f"TFORM{i}", "")))
        if m is None or m.group(2) not in _NUMPY_CODE:
            return None
        repeat = int(m.group(1) or 1)
        code = m.group(2)
        name = str(header.get(f"TTYPE{i}", f"col{i}")).strip()
        if code == "A":
            fields.append((name, f"S{max(repeat, 1)}") if repeat else (name, "S1", (0,)))
        elif "," in str(header.get(f"TDIM{i}", "")):
            return None  # multi-dimensional cells: let astropy shape them
        elif repeat == 1 and not (m.group(1) and f"TDIM{i}" in header):
            fields.append((name, _NUMPY_CODE[code]))
        else:
            fields.append((name, _NUMPY_CODE[code], (repeat,)))
    dtype = np.dtype(fields)
    return dtype if dtype.itemsize == int(header.get("NAXIS1", -1)) else None


def read_bintable(hdul: Any, index: int, path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """All columns of binary-table HDU ``index`` as native numpy arrays (name → (NAXIS2, …) array).

    Reads the rows straight from the file with numpy at the HDU's data offset when the file is not
    compressed and every column is a plain fixed-size type (astropy builds a Column object per
    column first, which costs more than the data for files like mwmStar); otherwise through
    ``hdul[index].data``. Logical columns become bool, strings ``str`` (stripped).
    """
    hdu = hdul[index]
    n_rows = int(hdu.header.get("NAXIS2", 0))
    dtype = bintable_dtype(hdu.header)
    compressed = Path(path).suffix.lower() in _COMPRESSED
    out: dict[str, np.ndarray] = {}
    if dtype is not None and not compressed:
        offset = _data_offset(hdul, index)
        raw = np.fromfile(path, dtype=dtype, count=n_rows, offset=offset) if n_rows else np.zeros(0, dtype)
        if raw.shape[0] != n_rows:
            raise InputFileError(path, f"HDU {index}: truncated table ({raw.shape[0]} of {n_rows} rows)")
        return bintable_columns(raw, hdu.header)
    data = hdu.data
    for name in ([] if data is None else data.names):
        col = np.asarray(data.field(name))
        out[name] = np.char.strip(col.astype(str)) if col.dtype.kind in "SU" else native(col)
    return out


def bintable_columns(raw: np.ndarray, header: Any) -> dict[str, np.ndarray]:
    """The columns of binary-table rows ``raw`` (read with :func:`bintable_dtype`'s dtype) as native
    arrays: logical columns as bool, strings as ``str`` (stripped)."""
    out: dict[str, np.ndarray] = {}
    dtype = raw.dtype
    for name in dtype.names or ():
        col = raw[name]
        base = dtype.fields[name][0].base
        if base == np.dtype("S1") and col.dtype.kind == "S" and str(
                header.get(f"TFORM{dtype.names.index(name) + 1}", "")).strip().endswith("L"):
            out[name] = col == b"T"
        elif col.dtype.kind == "S":
            out[name] = np.char.strip(np.char.decode(col, "ascii", errors="replace"))
        else:
            out[name] = native(col)
    return out


def plain_value(v: Any) -> Any:
    """A header card or table cell as a plain Python value: bytes decoded and stripped, strings
    stripped, numpy scalars turned into Python numbers; anything else as it is."""
    if isinstance(v, bytes):
        return v.decode(errors="replace").strip()
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, np.generic):
        return v.item()
    return v
