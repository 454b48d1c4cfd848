"""One entry point for spectra: :func:`read_spectra` recognises a file by its content, not its name.

Formats (:func:`identify_format` returns the name; checked in this order, from headers and
column names only, without reading the data):

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
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError
from starlabels.io.apogee import read_aspcapstar
from starlabels.io.apvisit import read_apvisit
from starlabels.io.boss import boss_from_hdul, is_boss_spec
from starlabels.io.fits_file import is_fits, open_fits
from starlabels.io.sdss_v import mwm_from_hdul, mwm_kind, read_apstar_spectra
from starlabels.io.spectrum import Spectrum
from starlabels.io.table import read_table_spectra, table_kind

__all__ = ["FORMATS", "identify_format", "read_spectra", "scan_inputs"]

#: Format names :func:`identify_format` can return.
FORMATS: tuple[str, ...] = ("mwmStar", "mwmVisit", "boss-spec", "apStar", "apStar-sdss5", "aspcapStar",
                            "apVisit", "table-fits", "npz", "csv")
_APOGEE_LENGTHS = (8575, 7514, 7214)


def _image_info(hdu: Any) -> tuple[int, tuple[int, ...]] | None:
    """(BITPIX, shape in numpy order) of an image HDU from its header, or None."""
    from astropy.io import fits

    if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
        return None
    h = hdu.header
    naxis = int(h.get("ZNAXIS", h.get("NAXIS", 0)))
    prefix = "ZNAXIS" if "ZNAXIS" in h else "NAXIS"
    shape = tuple(int(h.get(f"{prefix}{i}", 0)) for i in range(naxis, 0, -1))
    return int(h.get("ZBITPIX", h.get("BITPIX", 0))), shape


def _identify_fits(hdul: Any) -> str | None:
    kind = mwm_kind(hdul)
    if kind is not None:
        return kind
    if is_boss_spec(hdul):
        return "boss-spec"
    n = len(hdul)
    one = _image_info(hdul[1]) if n > 1 else None
    if one is not None and one[1]:
        _bitpix, shape = one
        three = _image_info(hdul[3]) if n > 3 else None
        three_int = three is not None and three[0] > 0 and three[1] == shape
        if n >= 4 and shape[-1] == 8575 and len(shape) in (1, 2) and three_int:
            primary = hdul[0].header
            return "apStar-sdss5" if ("HEALPIX" in primary or "APRED" in primary) else "apStar"
        if (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)) and shape[-1] in _APOGEE_LENGTHS \
                and not three_int:
            return "aspcapStar"
        four = _image_info(hdul[4]) if n > 4 else None
        if len(shape) == 2 and four is not None and four[1] == shape and four[0] < 0:
            return "apVisit"
    return None


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
        with open_fits(p, "spectrum") as hdul:
            fmt = _identify_fits(hdul)
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


def _aspcapstar(path: Path) -> list[Spectrum]:
    a = read_aspcapstar(path)
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
    if path.is_file() and is_fits(path):
        with open_fits(path, "spectrum") as hdul:  # one open for the SDSS-V tables
            fmt = _identify_fits(hdul)
            if fmt in ("mwmStar", "mwmVisit"):
                return mwm_from_hdul(hdul, path)
            if fmt == "boss-spec":
                return boss_from_hdul(hdul, path)
    fmt = identify_format(path)
    if fmt in ("apStar", "apStar-sdss5"):
        return read_apstar_spectra(path, rows=rows)
    if fmt == "aspcapStar":
        return _aspcapstar(path)
    if fmt == "apVisit":
        return _apvisit(path, rest_frame, velocity)
    return read_table_spectra(path, instrument=instrument)


def _files(paths: Iterable[str | os.PathLike[str]], recursive: bool) -> Iterable[Path]:
    for item in paths:
        p = Path(item)
        if p.is_dir():
            walker = sorted(p.rglob("*") if recursive else p.iterdir())
            yield from (f for f in walker if not f.is_dir())
        else:
            yield p


def scan_inputs(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], *,
                recursive: bool = True) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Sort files and folders into spectrum files and the rest, by content.

    Args:
        paths: files and/or folders (folders are walked, recursively by default, in sorted order).
        recursive: walk sub-folders.

    Returns:
        ``(readable, skipped)``: the files :func:`read_spectra` can read (in order, no duplicates),
        and ``(path, reason)`` for every other file (not a spectrum format, unreadable, missing),
        so that callers can list what they did not use. Only headers are read.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    readable: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for f in _files(paths, recursive):
        key = f.resolve() if f.exists() else f
        if key in seen:
            continue
        seen.add(key)
        try:
            identify_format(f)
        except InputFileError as e:
            skipped.append((f, e.problem))
            continue
        readable.append(f)
    return readable, skipped
