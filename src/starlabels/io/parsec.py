"""PARSEC isochrone grids: the one reader, and where the reference files are found.

A PARSEC grid is a table with one row per isochrone point: the FITS table the project uses as
reference (``parsec_photometry_grid.fits.gz``: PARSEC v1.2S with Gaia/2MASS photometry, upper-case
columns ``MH``, ``LOGAGE``, ``MINI``, ``LOGTE``, ``LOGG``, ``LABEL``, ``GAIAEDR3_GMAG``, …) or the
text file written by the CMD web tool (``#`` comment lines; the last comment line starting with
``Zini`` names the columns; repeated headers of multi-isochrone files are skipped). Other tables
astropy reads by extension (``.ecsv``, ``.csv``, ``.hdf5``, ``.parquet``, ``.vot``/``.xml``) are
read as they are. :func:`read_parsec_table` returns an astropy ``Table`` with the file's own
column names; :func:`grid_column` matches a quantity's possible names.

The extinction-coefficient file beside the grid (``extinction_coefficients.txt``: ``NAME A_band/A_V
[LAMBDA WIDTH]`` per line) is read by :func:`read_extinction_coefficients`.

Neither file ships with the package. :func:`parsec_grid_path` and
:func:`extinction_coefficients_path` find them: a path given by the caller; for the grid,
``$STARLABELS_ISOCHRONES``; else :func:`starlabels.core.reference.find_reference`
(``$STARLABELS_REFERENCE_DIR`` and its sub-folders one level down, then the download cache).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.core.reference import find_reference
from starlabels.errors import InputFileError

__all__ = [
    "EXTINCTION_COEFFICIENTS_NAME", "PARSEC_GRID_NAME", "extinction_coefficients_path", "grid_column",
    "parsec_grid_path", "read_extinction_coefficients", "read_parsec_table",
]

#: File name of the reference PARSEC grid with photometry.
PARSEC_GRID_NAME = "parsec_photometry_grid.fits.gz"
#: File name of the A_band / A_V coefficients that accompany the grid.
EXTINCTION_COEFFICIENTS_NAME = "extinction_coefficients.txt"

_FITS_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts")
_ASTROPY_SUFFIXES = (".ecsv", ".csv", ".hdf5", ".h5", ".parquet", ".vot", ".xml")


def parsec_grid_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The PARSEC grid: ``path`` when given, else ``$STARLABELS_ISOCHRONES``, else
    :data:`PARSEC_GRID_NAME` found by :func:`~starlabels.core.reference.find_reference`
    (:class:`InputFileError` naming every place looked at when absent)."""
    if path is not None:
        return Path(path)
    env = os.environ.get("STARLABELS_ISOCHRONES")
    if env:
        return Path(env)
    return find_reference(PARSEC_GRID_NAME)


def extinction_coefficients_path(
    path: str | os.PathLike[str] | None = None, grid: str | os.PathLike[str] | None = None
) -> Path:
    """The extinction-coefficient file: ``path`` when given, else
    :data:`EXTINCTION_COEFFICIENTS_NAME` beside ``grid`` (when that file exists), else found by
    :func:`~starlabels.core.reference.find_reference`."""
    if path is not None:
        return Path(path)
    if grid is not None:
        beside = Path(grid).parent / EXTINCTION_COEFFICIENTS_NAME
        if beside.is_file():
            return beside
    return find_reference(EXTINCTION_COEFFICIENTS_NAME)


def read_parsec_table(path: str | os.PathLike[str]) -> Any:
    """Read a PARSEC grid as an astropy Table: FITS (the first HDU with a table), a CMD text
    file, or a table astropy reads by its extension (see the module docstring).

    Raises :class:`InputFileError` naming the file for a missing or unreadable file, a CMD file
    without its ``# Zini ...`` header line or data rows, or rows that do not match the header.
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "isochrone grid not found")
    name = path.name.lower()
    if name.endswith(_FITS_SUFFIXES + _ASTROPY_SUFFIXES):
        try:
            return Table.read(path)
        except Exception as exc:  # astropy raises many types for unreadable files
            raise InputFileError(path, f"cannot read the isochrone table ({exc})") from exc
    return _read_cmd_text(path)


def _read_cmd_text(path: Path) -> Any:
    """The CMD web tool's text output as an astropy Table (float columns)."""
    from astropy.table import Table

    header: list[str] | None = None
    rows: list[str] = []
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc})") from exc
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            words = s.lstrip("#").split()
            if words and words[0].lower() == "zini" and header is None:
                header = words
            continue
        rows.append(s)
    if header is None:
        raise InputFileError(path, "no CMD header line ('# Zini MH logAge Mini ...') found")
    if not rows:
        raise InputFileError(path, "no data rows")
    try:
        data = np.loadtxt(rows, dtype=float, ndmin=2)
    except ValueError as exc:
        raise InputFileError(path, f"unparsable data row ({exc})") from exc
    if data.shape[1] != len(header):
        raise InputFileError(
            path, f"header names {len(header)} columns but data rows have {data.shape[1]}"
        )
    return Table(data, names=header)


def grid_column(colnames: Sequence[str], options: Sequence[str]) -> str | None:
    """The first of ``options`` present in ``colnames`` (exact match first, then case-insensitive;
    the CMD magnitudes ``Jmag``, ``Hmag`` and ``Gmag`` only match exactly, since their lower-case
    forms name other bands in some grids); None when none is present."""
    for o in options:
        if o in colnames:
            return o
    lower = {c.lower(): c for c in colnames}
    for o in options:
        if o.lower() in lower and o.lower() not in ("jmag", "hmag", "gmag"):
            return lower[o.lower()]
    return None


def read_extinction_coefficients(path: str | os.PathLike[str]) -> dict[str, float]:
    """A_band / A_V per band name from a whitespace table ``NAME EXTINCTION [LAMBDA WIDTH]``.

    Lines starting with ``#`` and blank lines are skipped. Raises :class:`InputFileError` for a
    missing file or a line whose second field is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "extinction-coefficient file not found")
    out: dict[str, float] = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        try:
            out[parts[0]] = float(parts[1])
        except (IndexError, ValueError):
            raise InputFileError(path, f"line {i} is not 'NAME A_band/A_V ...': {s!r}") from None
    if not out:
        raise InputFileError(path, "no extinction coefficients found")
    return out
