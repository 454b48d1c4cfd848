"""Readers for SDSS-V Milky Way Mapper files: ``mwmStar`` / ``mwmVisit`` (DR19, DR20) and the
SDSS-V ``apStar`` (HEALPix-path) layout.

mwmStar / mwmVisit (SDSS data model ``mwmStar.yaml``, ``mwmVisit.yaml``; DR19 ``v_astra`` 0.6.0,
DR20 0.8.1 — the two layouts differ in header cards and a few columns, not in what is read here)
------------------------------------------------------------------------------------------------
HDU0 holds target information only (``SDSS_ID``, ``APOGEEID``, ``RA``, ``DEC``, …). HDU1–4 are
binary tables named ``BOSS/APO``, ``BOSS/LCO``, ``APOGEE/APO``, ``APOGEE/LCO``; each row is one
spectrum (mwmStar: the combined spectrum, at most one row; mwmVisit: one row per visit). An
extension without spectra has no rows and is skipped. Per row:

* wavelength from the extension header: λ_i = 10**(CRVAL + CDELT·(i + 1 − CRPIX)), NPIXELS
  pixels (APOGEE 4.179 / 6e-6 / 8575, BOSS 3.5523 / 1e-4 / 4648), vacuum Å;
* ``flux``; ``error`` = 1/√``ivar`` (``inf`` where ivar ≤ 0); ``bitmask`` = ``pixel_flags``
  (the data model stores them as float32; converted to int64, which is exact);
* ``meta``: ``FILE``, ``HDU`` (extension name), ``FORMAT`` (``mwmStar``/``mwmVisit``),
  ``V_ASTRA``, ``ROW``, ``SDSS_ID``, ``TELESCOPE`` (the row's ``telescope``, e.g. ``apo25m``),
  ``OBSERVATORY``, ``RA``/``DEC`` (HDU0), ``SNR``, ``APOGEE_ID`` (APOGEE rows: ``obj``, else
  HDU0 ``APOGEEID``) and every other scalar column of the row under its upper-case name
  (``MJD``, ``V_RAD``, ``IN_STACK``, …).

An mwm file whose four extensions are all empty raises :class:`InputFileError` naming the file.

SDSS-V apStar (``apStar-{apred}-{telescope}-{obj}.fits`` under HEALPix folders; ``apStar.yaml``
release DR19): the same images as DR17 — HDU1 flux, HDU2 error, HDU3 pixel mask, rows 0 and 1
the two combined stacks, then the visits — with SDSS-V header cards (``APRED``, ``HEALPIX``,
``CATID``, ``VRAD``). :func:`read_apstar_spectra` reads either generation into
:class:`~starlabels.io.Spectrum` objects.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from starlabels.errors import InputFileError
from starlabels.io.apogee import apstar_from_source
from starlabels.io.fits_file import plain_value
from starlabels.io.fits_source import AstropySource, FitsSource, read_fits
from starlabels.io.spectrum import Spectrum, error_from_ivar, monotonic_order

__all__ = ["MWM_EXTENSIONS", "apstar_spectra_from_source", "mwm_from_hdul", "mwm_from_source", "mwm_kind",
           "read_apstar_spectra", "read_mwm"]

#: Extension names of mwmStar/mwmVisit files, in file order (HDU1–4).
MWM_EXTENSIONS: tuple[str, ...] = ("BOSS/APO", "BOSS/LCO", "APOGEE/APO", "APOGEE/LCO")
_TELESCOPE_OF = {"APO": "apo25m", "LCO": "lco25m"}
_ARRAY_COLUMNS = frozenset({"flux", "ivar", "pixel_flags", "wavelength", "continuum",
                            "nmf_rectified_model_flux", "wresl", "delta_ra", "delta_dec"})
_TELESCOPE_IN_TEXT = re.compile(r"(?<![A-Za-z0-9])(apo25m|lco25m|apo1m)(?![A-Za-z0-9])")


def mwm_kind(source: Any) -> str | None:
    """``"mwmStar"``, ``"mwmVisit"`` or None (not an mwm file), from headers and column names only.

    ``source``: a :class:`~starlabels.io.fits_source.FitsSource` or an astropy HDUList."""
    if not isinstance(source, FitsSource):
        source = AstropySource(source, "")
    n = len(source)
    if n < 2 or "V_ASTRA" not in source.header(0):
        return None
    kind = None
    for index in range(1, n):
        header = source.header(index)
        if not source.is_bintable(index) or str(header.get("EXTNAME", "")).upper() not in MWM_EXTENSIONS:
            continue
        names = _column_names(header)
        if "flux" not in names or "ivar" not in names or "model_flux" in names:
            return None  # astraStar/astraVisit pipeline outputs carry model_flux
        if "wavelength" in names or "min_mjd" in names:
            return "mwmStar"
        if "mjd" in names:
            return "mwmVisit"  # the four extensions share their columns: the first one decides
    return kind


def _column_names(header: Any) -> set[str]:
    """Lower-case column names of a binary table from its TTYPEn cards (parsing ``hdu.columns``
    costs ~10 ms per table in astropy, more than reading an mwm file's spectra)."""
    n = int(header.get("TFIELDS", 0))
    return {str(header.get(f"TTYPE{i}", "")).strip().lower() for i in range(1, n + 1)}


def _header_scalar(header: Any, key: str) -> Any:
    v = header.get(key)
    if v is None or isinstance(v, bool):
        return v
    return plain_value(v)


def _int_flags(values: np.ndarray, path: str | os.PathLike[str], hdu: str) -> np.ndarray:
    if values.dtype.kind in "iub":
        return values.astype(np.int64)
    v = values.astype(np.float64)
    if not np.all(np.isfinite(v)) or np.any(v < 0) or np.any(v != np.rint(v)):
        raise InputFileError(path, f"HDU {hdu}: pixel_flags hold values that are not non-negative integers")
    return v.astype(np.int64)


def read_mwm(path: str | os.PathLike[str], *, extensions: tuple[str, ...] | None = None) -> list[Spectrum]:
    """Read every spectrum of an mwmStar or mwmVisit file (see the module docstring).

    Args:
        path: the FITS file.
        extensions: only these extension names (e.g. ``("APOGEE/APO", "APOGEE/LCO")``); default all.

    Returns:
        One :class:`~starlabels.io.Spectrum` per row of every non-empty extension, in file order.

    Raises:
        InputFileError: not an mwm file; all extensions empty; an extension without CRVAL/CDELT/
            NPIXELS or whose arrays are not NPIXELS long; pixel flags that are not integers.
    """
    return read_fits(path, "mwmStar/mwmVisit", lambda source: mwm_from_source(source, extensions=extensions))


def mwm_from_hdul(hdul: Any, path: str | os.PathLike[str], *,
                  extensions: tuple[str, ...] | None = None) -> list[Spectrum]:
    """:func:`read_mwm` on an already open file (``hdul`` from :func:`~starlabels.io.fits_file.open_fits`)."""
    return mwm_from_source(AstropySource(hdul, path), extensions=extensions)


def mwm_from_source(source: FitsSource, *, extensions: tuple[str, ...] | None = None) -> list[Spectrum]:
    """:func:`read_mwm` on an open file (either backend of :mod:`starlabels.io.fits_source`)."""
    path = source.path
    out: list[Spectrum] = []
    wanted = None if extensions is None else {e.upper() for e in extensions}
    kind = mwm_kind(source)
    if kind is None:
        raise InputFileError(path, "not an mwmStar/mwmVisit file (needs V_ASTRA in HDU0 and "
                                   f"binary tables named {', '.join(MWM_EXTENSIONS)})")
    primary = source.header(0)
    file_meta = {"FILE": str(path), "FORMAT": kind}
    for key in ("V_ASTRA", "SDSS_ID", "RA", "DEC"):
        v = _header_scalar(primary, key)
        if v is not None and v != "":
            file_meta[key] = v
    apogee_id = _header_scalar(primary, "APOGEEID")
    n_rows_total = 0
    for index in range(len(source)):
        h = source.header(index)
        name = str(h.get("EXTNAME", "")).upper()
        if name not in MWM_EXTENSIONS:
            continue
        n_rows = int(h.get("NAXIS2", 0))
        n_rows_total += n_rows
        if n_rows == 0 or (wanted is not None and name not in wanted):
            continue
        missing = [k for k in ("CRVAL", "CDELT", "NPIXELS") if k not in h]
        if missing:
            raise InputFileError(path, f"HDU {name}: no wavelength solution (missing {missing})")
        n_pix = int(h["NPIXELS"])
        crpix = float(h.get("CRPIX", 1))
        wave = 10.0 ** (float(h["CRVAL"]) + float(h["CDELT"]) * (np.arange(n_pix) + 1 - crpix))
        order = monotonic_order(wave, path, name)
        try:
            data = {k.lower(): v for k, v in source.table(index).items()}
            flux = data["flux"].astype(np.float64)
            ivar = data["ivar"].astype(np.float64)
            flags = data["pixel_flags"] if "pixel_flags" in data else np.zeros(flux.shape, int)
        except (KeyError, TypeError, ValueError, OSError) as e:
            raise InputFileError(path, f"HDU {name}: cannot read flux/ivar/pixel_flags "
                                       f"({type(e).__name__}: {e}); truncated?") from e
        flux, ivar, flags = (np.reshape(a, (n_rows, -1)) for a in (flux, ivar, flags))
        if flux.shape[1] != n_pix or ivar.shape != flux.shape or flags.shape != flux.shape:
            raise InputFileError(path, f"HDU {name}: flux {flux.shape}, ivar {ivar.shape}, pixel_flags "
                                       f"{flags.shape}; expected ({n_rows}, NPIXELS={n_pix})")
        bits = _int_flags(flags, path, name)
        error = error_from_ivar(ivar)
        instrument = str(h.get("INSTRMNT", name.split("/")[0])).strip().lower()
        observatory = str(h.get("OBSRVTRY", name.split("/")[-1])).strip().upper()
        columns = {c: v for c, v in data.items() if c not in _ARRAY_COLUMNS and v.ndim == 1}
        for i in range(n_rows):
            meta = dict(file_meta)
            for c, col in columns.items():
                v = col[i]
                if np.ndim(v) == 0:
                    meta.setdefault(c.upper(), plain_value(v))
            meta["HDU"] = name
            meta["ROW"] = i
            meta["OBSERVATORY"] = observatory
            if not meta.get("TELESCOPE"):
                meta["TELESCOPE"] = _TELESCOPE_OF.get(observatory, observatory.lower())
            if instrument == "apogee" and (meta.get("OBJ") or apogee_id):
                meta["APOGEE_ID"] = str(meta.get("OBJ") or apogee_id)
            out.append(Spectrum(instrument, wave[order], flux[i][order], error[i][order], bits[i][order],
                                meta))
    if n_rows_total == 0:
        raise InputFileError(path, f"{kind} has no spectra: all of its extensions "
                                   f"({', '.join(MWM_EXTENSIONS)}) are empty")
    return out


def _telescope_from_header(primary: Any, path: str | os.PathLike[str]) -> str | None:
    for key in ("TELESCOP", "TELESCOPE"):
        v = str(primary.get(key, "") or "").strip().lower()
        if v in ("apo25m", "lco25m", "apo1m"):
            return v
    for key in ("SFILE1", "FILENAME"):
        m = _TELESCOPE_IN_TEXT.search(str(primary.get(key, "") or ""))
        if m:
            return m.group(1)
    m = _TELESCOPE_IN_TEXT.search(os.path.basename(str(path)))
    if m:
        return m.group(1)
    if os.path.basename(str(path)).startswith("asStar"):
        return "lco25m"
    return None


def read_apstar_spectra(path: str | os.PathLike[str], rows: str = "combined") -> list[Spectrum]:
    """An apStar file (DR14–DR17 or the SDSS-V HEALPix layout) as :class:`Spectrum` objects.

    Args:
        path: the file.
        rows: ``"combined"`` (row 0, one spectrum) or ``"visits"`` (one per visit; see
            :func:`starlabels.io.read_apstar` for the one-visit case).

    Returns:
        Spectra on the 8575-pixel apStar grid with the bitmask as stored plus BADPIX where flux or
        error is not finite; meta from :func:`read_apstar` plus ``HDU`` (1, the flux image),
        ``FORMAT`` (``apStar`` or ``apStar-sdss5``), ``TELESCOPE`` (header, visit file names or the
        file name), and for SDSS-V files ``HEALPIX``, ``APRED``, ``CATALOGID`` and ``VRAD``.
    """
    if rows not in ("combined", "visits"):
        raise ValueError(f"rows must be 'combined' or 'visits', got {rows!r}")
    return read_fits(path, "apStar", lambda source: apstar_spectra_from_source(source, rows))


def apstar_spectra_from_source(source: FitsSource, rows: str = "combined") -> list[Spectrum]:
    """:func:`read_apstar_spectra` on an open file (either backend of :mod:`starlabels.io.fits_source`)."""
    if rows not in ("combined", "visits"):
        raise ValueError(f"rows must be 'combined' or 'visits', got {rows!r}")
    # one grid for every spectrum; flux and error read straight into Spectrum's float64
    spec = apstar_from_source(source, row=rows, shared_wavelength=True, dtype=np.float64)
    primary = source.header(0)
    sdss5 = "HEALPIX" in primary or "APRED" in primary
    extra: dict[str, Any] = {"HDU": 1, "FORMAT": "apStar-sdss5" if sdss5 else "apStar"}
    tel = _telescope_from_header(primary, source.path)
    if tel:
        extra["TELESCOPE"] = tel
    if sdss5:
        for key, name in (("HEALPIX", "HEALPIX"), ("APRED", "APRED"), ("CATID", "CATALOGID"),
                          ("VRAD", "VRAD"), ("SDSS_ID", "SDSS_ID")):
            if key in primary:
                extra[name] = _header_scalar(primary, key)
    flux = np.atleast_2d(spec.flux)
    error = np.atleast_2d(spec.error)
    bits = np.atleast_2d(spec.bitmask)
    out = []
    for i in range(flux.shape[0]):
        meta = {**spec.meta, **extra}
        if flux.shape[0] > 1 or rows == "visits":
            meta["VISIT"] = i
        out.append(Spectrum("apogee", spec.wavelength, flux[i], error[i], bits[i], meta))
    return out
