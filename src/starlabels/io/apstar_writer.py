"""Write spectra in the real SDSS apStar (and aspcapStar) file layout, atomically.

:func:`write_apstar` produces files that :func:`starlabels.io.read_apstar` (and other apStar
readers) read like pipeline files:

=====  ==================================================================================
HDU0   header only: OBJID, RA, DEC, SNR, VHELIO, NVISITS, J, H, K (+ any other scalar meta
       with a FITS-legal key) and the log-linear WCS (CRVAL1=4.179, CDELT1=6e-6, CRPIX1=1,
       CTYPE1='LOG-LINEAR', DC-FLAG=1, NWAVE=8575)
HDU1   flux (n_rows, 8575)             HDU2  flux error
HDU3   APOGEE_PIXMASK (int32)          HDU4  sky (zeros)        HDU5  sky error (zeros)
HDU6   telluric (ones)                 HDU7  telluric error (zeros)
=====  ==================================================================================

Rows follow DR17: without visits (one visit), 2 rows — the combined spectrum and a zero
placeholder row; with ``k`` visit spectra, ``k + 2`` rows — the combined spectrum, the
combined spectrum again (where the pipeline stores its "global-weighted" combination, which
this writer does not compute) and then the visits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.core import apogee as apogee_core
from starlabels.errors import InputDataError
from starlabels.io.atomic_file import atomic_write_hdulist
from starlabels.io.fits_write import header_scalar

__all__ = ["write_apstar", "write_aspcapstar"]

_HEADER_KEYS = ("RA", "DEC", "SNR", "VHELIO", "NVISITS", "J", "H", "K")
_COMMENTS = {
    "OBJID": "APOGEE object name",
    "RA": "right ascension, deg, J2000",
    "DEC": "declination, deg, J2000",
    "SNR": "Median S/N per apStar pixel",
    "VHELIO": "S/N weighted mean barycentric RV",
    "NVISITS": "Number of visit spectra combined flag",
    "J": "2MASS J magnitude",
    "H": "2MASS H magnitude",
    "K": "2MASS K magnitude",
}
_KEYWORD = re.compile(r"^[A-Z0-9_-]{1,8}$")
_SKIP_META = {"APOGEE_ID", "OBJID", "FILE", "ROW", "N_ROWS", *_HEADER_KEYS}


def _wcs_cards(header: Any, n_pixels: int = apogee_core.N_PIXELS) -> None:
    header["CRVAL1"] = (apogee_core.CRVAL, "Start log10(wavelength) in subsequent HDUs")
    header["CDELT1"] = (apogee_core.CDELT, "Dispersion in log10(wave) in subsequent HDUs")
    header["CRPIX1"] = (1, "Pixel of starting wavelength in subsequent HDUs")
    header["CTYPE1"] = ("LOG-LINEAR", "Logarithmic wavelength scale in subsequent HDUs")
    header["DC-FLAG"] = (1, "Logarithmic wavelength scale in subsequent HDUs")
    header["NWAVE"] = (n_pixels, "Number of wavelengths in subsequent HDUs")


def _spectrum(a: Any, name: str, n_pixels: int, integer: bool = False) -> np.ndarray:
    x = np.asarray(a)
    if x.shape != (n_pixels,):
        raise InputDataError(f"{name} has shape {x.shape}, expected ({n_pixels},)")
    if integer:
        if not np.issubdtype(x.dtype, np.integer):
            raise InputDataError(f"{name} must be an integer array, got {x.dtype}")
        return x.astype(np.int32)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x


def _visits(visits: Any, n_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(visits, Mapping):
        try:
            vf, ve, vm = visits["flux"], visits["error"], visits["bitmask"]
        except KeyError as e:
            raise InputDataError(f"visits mapping needs 'flux', 'error', 'bitmask'; missing {e}") from None
    elif hasattr(visits, "flux") and hasattr(visits, "error") and hasattr(visits, "bitmask"):
        vf, ve, vm = visits.flux, visits.error, visits.bitmask
    elif isinstance(visits, Sequence) and len(visits) == 3:
        vf, ve, vm = visits
    else:
        raise InputDataError("visits must be (flux, error, bitmask), a mapping with those keys, "
                             "or an object with those attributes")
    vf, ve, vm = np.atleast_2d(vf), np.atleast_2d(ve), np.atleast_2d(vm)
    if not (vf.shape == ve.shape == vm.shape) or vf.ndim != 2 or vf.shape[1] != n_pixels:
        raise InputDataError(
            f"visit arrays must all be (n_visits, {n_pixels}); got {vf.shape}, {ve.shape}, {vm.shape}"
        )
    if vf.shape[0] == 0:
        raise InputDataError("visits given but empty")
    if not np.issubdtype(vm.dtype, np.integer):
        raise InputDataError(f"visit bitmask must be integers, got {vm.dtype}")
    return vf, ve, vm.astype(np.int32)


def write_apstar(
    path: str | os.PathLike[str],
    flux: Any,
    error: Any,
    bitmask: Any,
    meta: Mapping[str, Any],
    *,
    visits: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write one star's spectra as an apStar file (layout in the module docstring), atomically.

    Args:
        path: output file; parent folders are created.
        flux, error: (8575,) combined spectrum and its 1σ error (1e-17 erg/s/cm²/Å); float
            arrays keep their dtype (float32 or float64), NaN allowed.
        bitmask: (8575,) integer APOGEE_PIXMASK (written as int32).
        meta: header values — ``APOGEE_ID`` (or ``OBJID``), ``RA``, ``DEC``, ``SNR``,
            ``VHELIO``, ``NVISITS``, ``J``, ``H``, ``K``; NaN/None values are left out (readers
            give NaN). Without ``SNR`` the median of flux/error over finite pixels is written.
            Other scalar entries whose key is a legal FITS keyword (≤ 8 chars) are written too.
        visits: optional individual visits as ``(flux, error, bitmask)``, each
            (n_visits, 8575) (or a mapping / object with those names).
        overwrite: replace an existing file.

    Returns:
        The path written.

    Raises:
        InputDataError: wrong shapes or dtypes, or ``meta["NVISITS"]`` disagreeing with the
            number of visits given.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    from astropy.io import fits

    n = apogee_core.N_PIXELS
    f = _spectrum(flux, "flux", n)
    e = _spectrum(error, "error", n)
    m = _spectrum(bitmask, "bitmask", n, integer=True)
    if visits is None:
        nvisits = int(meta.get("NVISITS", 1) or 1)
        rows_f = np.stack([f, np.zeros_like(f)])
        rows_e = np.stack([e, np.zeros_like(e)])
        rows_m = np.stack([m, np.zeros_like(m)])
    else:
        vf, ve, vm = _visits(visits, n)
        nvisits = vf.shape[0]
        if meta.get("NVISITS") is not None and int(meta["NVISITS"]) != nvisits:
            raise InputDataError(f"meta NVISITS={meta['NVISITS']} but {nvisits} visit spectra given")
        dtype = np.result_type(f.dtype, vf.dtype)
        rows_f = np.concatenate([f[None], f[None], vf]).astype(dtype)
        rows_e = np.concatenate([e[None], e[None], ve]).astype(np.result_type(e.dtype, ve.dtype))
        rows_m = np.concatenate([m[None], m[None], vm])

    primary = fits.PrimaryHDU()
    h = primary.header
    _wcs_cards(h)
    objid = meta.get("APOGEE_ID", meta.get("OBJID", ""))
    h["OBJID"] = (str(objid), _COMMENTS["OBJID"])
    values = dict(meta)
    values["NVISITS"] = nvisits
    if header_scalar(values.get("SNR")) is None:
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = f / e
        snr = snr[np.isfinite(snr)]
        values["SNR"] = float(np.median(snr)) if snr.size else None
    for key in _HEADER_KEYS:
        v = header_scalar(values.get(key))
        if v is not None:
            h[key] = (v, _COMMENTS[key])
    for key, v in meta.items():
        k = str(key).upper()
        sv = header_scalar(v)
        if k in _SKIP_META or sv is None or not _KEYWORD.match(k):
            continue
        if k in h:  # never let meta clobber the WCS/structure cards
            continue
        h[k] = sv
    h.add_history("HDU0 : header")
    for i, what in enumerate(("flux", "flux uncertainty", "pixel bitmask", "sky", "sky uncertainty",
                              "telluric", "telluric uncertainty"), start=1):
        h.add_history(f"HDU{i} : {what}")

    units = ("Flux (10^-17 erg/s/cm^2/Ang)", "Err (10^-17 erg/s/cm^2/Ang)", "Pixel bitmask",
             "Sky (10^-17 erg/s/cm^2/Ang)", "Sky error (10^-17 erg/s/cm^2/Ang)", "Telluric",
             "Telluric error")
    arrays = (rows_f, rows_e, rows_m, np.zeros_like(rows_f), np.zeros_like(rows_e),
              np.ones_like(rows_f), np.zeros_like(rows_e))
    hdus = [primary]
    for data, unit in zip(arrays, units, strict=True):
        hdu = fits.ImageHDU(np.ascontiguousarray(data))
        _wcs_cards(hdu.header)
        for k in ("DC-FLAG", "NWAVE"):
            del hdu.header[k]
        hdu.header["BUNIT"] = unit
        hdus.append(hdu)
    return atomic_write_hdulist(fits.HDUList(hdus), path, overwrite=overwrite)


def write_aspcapstar(
    path: str | os.PathLike[str],
    flux: Any,
    error: Any,
    meta: Mapping[str, Any],
    *,
    model: Any = None,
    overwrite: bool = False,
) -> Path:
    """Write a continuum-normalised spectrum as an aspcapStar file, atomically.

    HDU0 header (OBJID, log-linear WCS), HDU1 flux, HDU2 error, HDU3 best-fit model (zeros when
    ``model`` is None), HDU4 a one-row table with APOGEE_ID and the scalar entries of ``meta``
    (e.g. TEFF, LOGG, FE_H). The arrays may be on any APOGEE grid (8575 apStar as DR16/17, 7214
    as DR14, 7514); :func:`starlabels.io.read_aspcapstar` detects it from the length.

    Raises:
        InputDataError: flux/error/model are not equal-length 1-D arrays of an APOGEE grid.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    from astropy.io import fits

    f = np.asarray(flux)
    e = np.asarray(error)
    if f.ndim != 1 or f.shape != e.shape:
        raise InputDataError(f"flux {f.shape} and error {e.shape} must be equal 1-D arrays")
    grids = {g.n_pixels: g for g in (apogee_core.APSTAR, apogee_core.ASPCAP, apogee_core.PAYNE)}
    grid = grids.get(int(f.shape[0]))
    if grid is None:
        raise InputDataError(f"no APOGEE grid has {f.shape[0]} pixels; known sizes: "
                             f"{ {g.name: n for n, g in grids.items()} }")
    mdl = np.zeros_like(f) if model is None else np.asarray(model)
    if mdl.shape != f.shape:
        raise InputDataError(f"model has shape {mdl.shape}, expected {f.shape}")
    primary = fits.PrimaryHDU()
    objid = str(meta.get("APOGEE_ID", meta.get("OBJID", "")))
    primary.header["OBJID"] = (objid, _COMMENTS["OBJID"])
    _wcs_cards(primary.header, grid.n_pixels)
    hdus = [primary]
    for data, unit in ((f, "normalised flux"), (e, "normalised flux error"), (mdl, "best-fit model")):
        hdu = fits.ImageHDU(np.ascontiguousarray(data))
        _wcs_cards(hdu.header, grid.n_pixels)
        hdu.header["BUNIT"] = unit
        hdus.append(hdu)
    cols = [fits.Column(name="APOGEE_ID", format=f"{max(len(objid), 1)}A", array=np.array([objid]))]
    for key, v in meta.items():
        k = str(key).upper()
        sv = header_scalar(v)
        if k in ("APOGEE_ID", "OBJID") or sv is None:
            continue
        if isinstance(sv, str):
            cols.append(fits.Column(name=k, format=f"{max(len(sv), 1)}A", array=np.array([sv])))
        elif isinstance(sv, bool | int):
            cols.append(fits.Column(name=k, format="K", array=np.array([int(sv)])))
        else:
            cols.append(fits.Column(name=k, format="D", array=np.array([sv])))
    hdus.append(fits.BinTableHDU.from_columns(cols))
    return atomic_write_hdulist(fits.HDUList(hdus), path, overwrite=overwrite)
