"""One entry point for spectra: :func:`read_spectra` recognises a file by its content, not its name.

Formats (:func:`identify_format` returns the name; checked in this order, from headers and
column names only, without reading the data; mwm and image formats from the file's own headers
through :mod:`starlabels.io.fits_source`, the rest with astropy):

=================  ==========================================================================
``mwmStar``        HDU0 has V_ASTRA; tables BOSS/APO, BOSS/LCO, APOGEE/APO, APOGEE/LCO with a
``mwmVisit``       ``wavelength``/``min_mjd`` (star) or ``mjd`` (visit) column (DR19, DR20)
``boss-spec``      HDU1 a table with FLUX, LOGLAM, IVAR (specFull, spec-lite; any DR)
``apStar``         ≥ 4 HDUs, HDU1 an image of 8575 pixels (1 or n rows), HDU3 an integer image;
``apStar-sdss5``   ``-sdss5`` when HDU0 has the SDSS-V cards HEALPIX or APRED
``aspcapStar``     HDU1 a 1-D image of 8575, 7514 or 7214 pixels, HDU3 (if any) not integer
``apVisit``        ≥ 5 HDUs, HDU1 a 2-D image (chips × pixels), HDU4 a float image of that shape
``table-fits``     a FITS table with wavelength, flux and error/ivar columns (:mod:`.table`)
``npz``/``csv``    the same as NumPy ``.npz`` arrays or a CSV header line
=================  ==========================================================================

What :func:`read_spectra` returns for each (all :class:`~starlabels.io.Spectrum`):
mwm files one spectrum per non-empty row (:func:`~starlabels.io.read_mwm`); apStar the combined
spectrum (``rows="visits"``: each visit); aspcapStar its continuum-normalised spectrum on its
grid (``meta["NORMALISED"] = True``); apVisit the visit resampled onto the apStar grid *in the
stellar rest frame* (``rest_frame=False`` keeps the observed frame); BOSS spec the coadd;
tables one spectrum per row/array.

:func:`scan_inputs` sorts files (or folders, recursively) into readable ones and skipped ones
with the reason, so that nothing a user points at is silently ignored.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError
from starlabels.io.apogee import aspcapstar_from_source
from starlabels.io.apvisit import read_apvisit
from starlabels.io.boss import boss_from_hdul, is_boss_spec
from starlabels.io.fits_file import is_fits, open_fits
from starlabels.io.fits_source import AstropySource, DirectSource, FitsSource, NeedsAstropyError
from starlabels.io.sdss_v import apstar_spectra_from_source, mwm_from_source, mwm_kind
from starlabels.io.spectrum import Spectrum
from starlabels.io.table import read_table_spectra, table_kind

__all__ = ["FORMATS", "identify_format", "list_files", "read_spectra", "scan_inputs"]

#: Format names :func:`identify_format` can return.
FORMATS: tuple[str, ...] = ("mwmStar", "mwmVisit", "boss-spec", "apStar", "apStar-sdss5", "aspcapStar",
                            "apVisit", "table-fits", "npz", "csv")
_APOGEE_LENGTHS = (8575, 7514, 7214)


def _identify(source: FitsSource) -> str | None:
    """The format of an open FITS file (None: none of the FITS formats above but ``table-fits``).

    A :class:`DirectSource` identifies mwm files and the image formats; it raises
    :class:`NeedsAstropyError` for other files whose HDU1 is a table (BOSS spec, tables: their readers
    use astropy) and files it cannot name (so that astropy describes them in the error).
    """
    direct = not isinstance(source, AstropySource)
    kind = mwm_kind(source)
    if kind is not None:
        return kind
    if not direct and is_boss_spec(source.hdul):
        return "boss-spec"
    n = len(source)
    one = source.image_info(1) if n > 1 else None
    if direct and n > 1 and one is None:
        raise NeedsAstropyError  # HDU1 a table: BOSS spec, a table of spectra, or none
    fmt = None
    if one is not None and one[1]:
        _bitpix, shape = one
        three = source.image_info(3) if n > 3 else None
        three_int = three is not None and three[0] > 0 and three[1] == shape
        if n >= 4 and shape[-1] == 8575 and len(shape) in (1, 2) and three_int:
            primary = source.header(0)
            fmt = "apStar-sdss5" if ("HEALPIX" in primary or "APRED" in primary) else "apStar"
        elif (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)) and shape[-1] in _APOGEE_LENGTHS \
                and not three_int:
            fmt = "aspcapStar"
        else:
            four = source.image_info(4) if n > 4 else None
            if len(shape) == 2 and four is not None and four[1] == shape and four[0] < 0:
                fmt = "apVisit"
    if fmt is None and direct:
        raise NeedsAstropyError
    return fmt


def identify_format(path: str | os.PathLike[str]) -> str:
    """The format of a spectrum file, from its content (see the module table).

    Raises:
        InputFileError: missing, empty, truncated or unreadable file, or content that is none of
            the formats (the message says what was found).
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file does not exist")
    if p.is_dir():
        raise InputFileError(p, "is a directory, not a spectrum file")
    if is_fits(p):
        try:
            with DirectSource.open(p, "spectrum") as source:
                return str(_identify(source))
        except NeedsAstropyError:
            pass
        with open_fits(p, "spectrum") as hdul:
            fmt = _identify(AstropySource(hdul, p))
            described = ", ".join(f"HDU{i} {type(h).__name__}"
                                  f"{' ' + str(h.header.get('EXTNAME')) if h.header.get('EXTNAME') else ''}"
                                  for i, h in enumerate(hdul[:6]))
        if fmt is not None:
            return fmt
        if table_kind(p) == "table-fits":
            return "table-fits"
        raise InputFileError(p, f"FITS file of no known spectrum format ({described}); "
                                "expected mwmStar/mwmVisit, apStar, aspcapStar, apVisit, BOSS spec or a "
                                "table with wavelength, flux and error columns")
    if p.stat().st_size == 0:
        raise InputFileError(p, "file is empty")
    kind = table_kind(p)
    if kind is not None:
        return kind
    found = ""
    with contextlib.suppress(OSError, ValueError), np.load(p, allow_pickle=False) as z:
        found = f" (NPZ keys: {', '.join(z.files[:20])})"
    raise InputFileError(p, "not a spectrum file: neither FITS nor a CSV/NPZ table with wavelength, flux "
                            f"and error (or ivar) columns{found}")


def _from_objects(source: Any) -> list[Spectrum] | None:
    if isinstance(source, Spectrum):
        return [source]
    if hasattr(source, "spectral_axis") and hasattr(source, "flux"):
        return Spectrum.from_specutils(source)
    if isinstance(source, list | tuple) and source and not isinstance(source[0], str | os.PathLike):
        out: list[Spectrum] = []
        for item in source:
            got = _from_objects(item)
            if got is None:
                return None
            out.extend(got)
        return out
    return None


def _apvisit(path: Path, rest_frame: bool, velocity: float | None) -> list[Spectrum]:
    v = read_apvisit(path, resample=True, rest_frame=rest_frame, velocity=velocity)
    meta = dict(v.meta)
    meta.update(HDU=1, FORMAT="apVisit", REST_FRAME=rest_frame)
    if not meta.get("TELESCOPE"):
        meta.pop("TELESCOPE", None)
    return [Spectrum("apogee", v.wavelength, v.flux, v.error, v.bitmask, meta)]


def _aspcapstar(source: FitsSource) -> list[Spectrum]:
    a = aspcapstar_from_source(source)
    meta = dict(a.meta)
    meta.update(HDU=1, FORMAT="aspcapStar", NORMALISED=True)
    return [Spectrum("apogee", a.wavelength, a.flux, a.error, a.bitmask, meta)]


def read_spectra(source: Any, *, rows: str = "combined", rest_frame: bool = True,
                 velocity: float | None = None, instrument: str | None = None) -> list[Spectrum]:
    """Read every spectrum in ``source``, whatever its format (see the module docstring).

    Args:
        source: a path (str / PathLike); a :class:`~starlabels.io.Spectrum`; a
            ``specutils.Spectrum`` / ``SpectrumList`` or a list of either.
        rows: apStar files: ``"combined"`` (default) or ``"visits"``.
        rest_frame: apVisit files: resample onto the apStar grid in the rest frame (default) or,
            with False, in the observed frame.
        velocity: apVisit files: the radial velocity (km/s) for the rest frame, overriding the
            file's VREL (SDSS-V apVisit files carry none; see :func:`~starlabels.io.read_apvisit`).
        instrument: name given to spectra from generic tables that do not name their instrument.

    Returns:
        A list of :class:`~starlabels.io.Spectrum` (never empty).

    Raises:
        InputFileError: the file is unreadable, of no known format, or bad inside (names the HDU).
        InputDataError: in-memory input that is not a spectrum.
    """
    objects = _from_objects(source)
    if objects is not None:
        return objects
    if not isinstance(source, str | os.PathLike):
        from starlabels.errors import InputDataError

        raise InputDataError(f"read_spectra takes a path or spectra, got {type(source).__name__}")
    path = Path(source)
    got = _read_fits_file(path, rows)
    if isinstance(got, list):
        return got
    if got == "apVisit":
        return _apvisit(path, rest_frame, velocity)
    identify_format(path)  # tables (FITS, NPZ, CSV); anything else raises, naming what it found
    return read_table_spectra(path, instrument=instrument)


def _read_fits_file(path: Path, rows: str) -> list[Spectrum] | str | None:
    """:func:`_from_fits` on ``path`` opened once (twice where the direct backend hands over to
    astropy); None for files that are not FITS (or missing: :func:`identify_format` says so)."""
    try:
        with DirectSource.open(path, "spectrum", quiet=True) as source:
            return _from_fits(source, rows)
    except NeedsAstropyError:
        pass
    if path.is_file() and is_fits(path):
        with open_fits(path, "spectrum") as hdul:
            return _from_fits(AstropySource(hdul, path), rows)
    return None


def _from_fits(source: FitsSource, rows: str) -> list[Spectrum] | str | None:
    """The spectra of an open FITS file, or the format name of those read by path (apVisit) or
    None (tables, and files of no format, which :func:`read_table_spectra` reports)."""
    fmt = _identify(source)
    if fmt in ("apStar", "apStar-sdss5"):
        return apstar_spectra_from_source(source, rows=rows)
    if fmt in ("mwmStar", "mwmVisit"):
        return mwm_from_source(source)
    if fmt == "aspcapStar":
        return _aspcapstar(source)
    if fmt == "boss-spec" and isinstance(source, AstropySource):
        return boss_from_hdul(source.hdul, source.path)
    return fmt


def _walk(folder: str, real_folder: str, recursive: bool) -> Iterator[tuple[str, str]]:
    """``(path, dedup key)`` of the files under ``folder``, depth first, names sorted (the order of
    sorting the paths' parts). The key is the file's real path: ``real_folder`` joined with the name,
    so only symbolic links cost a ``realpath``; a broken link's key is its own path. Symbolic links
    to folders are neither walked nor listed, and an unreadable sub-folder holds nothing (as
    ``Path.rglob`` does)."""
    try:
        with os.scandir(folder) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except (PermissionError, NotADirectoryError, FileNotFoundError):
        return
    for entry in entries:
        link = entry.is_symlink()
        if entry.is_dir():  # follows a link
            if recursive and not link:
                yield from _walk(entry.path, os.path.join(real_folder, entry.name), recursive)
        elif not link:
            yield entry.path, os.path.join(real_folder, entry.name)
        else:
            yield entry.path, os.path.realpath(entry.path) if os.path.exists(entry.path) else entry.path


def _files(paths: Iterable[str | os.PathLike[str]], recursive: bool) -> Iterator[tuple[str, str]]:
    for item in paths:
        path = os.fspath(item)
        if os.path.isdir(path):
            yield from _walk(path, os.path.realpath(path), recursive)
        else:
            yield path, os.path.realpath(path) if os.path.exists(path) else path


def list_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
               recursive: bool = True) -> list[Path]:
    """The files of ``paths``, in order, without opening them.

    Args:
        paths: files and/or folders (folders are walked, recursively by default, in sorted order).
        recursive: walk sub-folders.

    Returns:
        Every file once (duplicates — the same file reached twice, also through another path to it
        — dropped after the first), given files in the order given, folders' files in sorted order.
        Paths that do not exist are kept (the reader reports them).
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[Path] = []
    seen: set[str] = set()
    for path, key in _files(paths, recursive):
        if key not in seen:
            seen.add(key)
            out.append(Path(path))
    return out


def scan_inputs(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                recursive: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Sort files and folders into spectrum files and the rest, by content.

    Args:
        paths: files and/or folders (folders are walked, recursively by default, in sorted order).
        recursive: walk sub-folders.

    Returns:
        ``(readable, skipped)``: the files :func:`read_spectra` can read (in order, no duplicates:
        :func:`list_files`), and ``(path, reason)`` for every other file (not a spectrum format,
        unreadable, missing), so that callers can list what they did not use. Only headers are read.
    """
    readable: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for f in list_files(paths, recursive=recursive):
        try:
            identify_format(f)
        except InputFileError as e:
            skipped.append((f, e.problem))
            continue
        readable.append(f)
    return readable, skipped
