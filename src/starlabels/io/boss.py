"""Reader for SDSS BOSS ``spec`` files (specFull and spec-lite; SDSS data model ``specFull.yaml``).

Layout (DR9–DR20; the SDSS-V releases DR18–DR20 add ``SDSS_ID``/``CATALOGID`` keyed tables):

* HDU0: header only (``OBSERVAT`` APO/LCO, ``TELESCOP``, ``RA``/``DEC``, ``COEFF0``/``COEFF1`` =
  the log10 λ grid, ``MJD``, ``FIELDID``/``PLATEID``, ``RUN2D`` …).
* HDU1 ``COADD``: one row per pixel — ``FLUX``, ``LOGLAM`` (log10 vacuum Å), ``IVAR``,
  ``AND_MASK``, ``OR_MASK``, ``WDISP``, ``SKY``, ``MODEL`` (+ ``WRESL`` in SDSS-V).
* HDU2 ``SPALL``: one row of summary values (``SDSS_ID``, ``CATALOGID``, ``FIBER_RA``/``FIBER_DEC``,
  ``SN_MEDIAN_ALL``, …). HDU3 ``ZALL``, HDU4 ``ZLINE``; specFull files then hold one table per
  exposure (``MJD_EXP_…`` or ``B1-…``/``R2-…``), which this reader does not return.

:func:`read_boss_spec` returns the coadd as one :class:`~starlabels.io.Spectrum`:
``wavelength`` = 10**LOGLAM — snapped to the exact grid 10**(COEFF0 + COEFF1·i) when the header
has ``COEFF0``/``COEFF1`` and every LOGLAM is within 1e-5 dex of it (LOGLAM is stored as float32,
≈ 2e-7 dex of rounding), so SDSS-V coadds land exactly on the ``boss`` instrument grid;
``error`` = 1/√IVAR (``inf`` where IVAR ≤ 0); ``bitmask`` = ``AND_MASK`` (the bits set in every
exposure, the SDSS recommendation for rejecting pixels; ``OR_MASK`` is in ``meta`` only as
``OR_MASK_ANY``). Meta: ``FILE``, ``HDU`` (``COADD``), ``FORMAT`` (``boss-spec``), ``TELESCOPE``
(``apo25m``/``lco25m`` from OBSERVAT), ``OBSERVATORY``, ``SDSS_ID``, ``CATALOGID``, ``RA``/``DEC``
(SPALL FIBER_RA/FIBER_DEC, else the header's PLUG_RA/PLUG_DEC, else RA/DEC), ``SNR``
(SN_MEDIAN_ALL), ``MJD``, ``FIELD``, ``RUN2D`` where present.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from starlabels.errors import InputFileError
from starlabels.io.fits_file import native, open_fits, plain_value
from starlabels.io.spectrum import Spectrum, error_from_ivar, monotonic_order

__all__ = ["boss_from_hdul", "is_boss_spec", "read_boss_spec"]

_REQUIRED = ("FLUX", "LOGLAM", "IVAR")
_TELESCOPE_OF = {"APO": "apo25m", "LCO": "lco25m"}
_SNAP_TOLERANCE_DEX = 1e-5


def is_boss_spec(hdul: Any) -> bool:
    """True when HDU1 is a binary table with FLUX, LOGLAM and IVAR columns (case-insensitive)."""
    from astropy.io import fits

    if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
        return False
    names = {n.upper() for n in hdul[1].columns.names}
    return all(c in names for c in _REQUIRED)


def _column(data: Any, names: dict[str, str], key: str) -> np.ndarray | None:
    name = names.get(key)
    return None if name is None else native(data[name])


def read_boss_spec(path: str | os.PathLike[str]) -> list[Spectrum]:
    """Read the coadded spectrum of a BOSS specFull/spec-lite file (see the module docstring).

    Returns:
        A one-element list: the coadd, instrument ``"boss"``.

    Raises:
        InputFileError: not a spec file (HDU1 without FLUX/LOGLAM/IVAR), unreadable or truncated
            data, non-monotonic LOGLAM (naming the HDU), AND_MASK that is not integer.
    """

    with open_fits(path, "BOSS spec") as hdul:
        return boss_from_hdul(hdul, path)


def boss_from_hdul(hdul: Any, path: str | os.PathLike[str]) -> list[Spectrum]:
    """:func:`read_boss_spec` on an already open file."""
    from astropy.io import fits

    if not is_boss_spec(hdul):
        raise InputFileError(path, "not a BOSS spec file: HDU1 is not a table with FLUX, LOGLAM, IVAR")
    coadd = hdul[1]
    hdu_name = str(coadd.header.get("EXTNAME", "1")).strip() or "1"
    names = {n.upper(): n for n in coadd.columns.names}
    try:
        data = coadd.data
        flux = native(data[names["FLUX"]], np.float64)
        loglam = native(data[names["LOGLAM"]], np.float64)
        ivar = native(data[names["IVAR"]], np.float64)
        and_mask = _column(data, names, "AND_MASK")
        if and_mask is None:
            and_mask = _column(data, names, "MASK")
        or_mask = _column(data, names, "OR_MASK")
    except (KeyError, TypeError, ValueError, OSError) as e:
        raise InputFileError(path, f"HDU {hdu_name}: cannot read the coadd ({type(e).__name__}: {e}); "
                                   "truncated?") from e
    if flux.ndim != 1 or flux.size < 2:
        raise InputFileError(path, f"HDU {hdu_name}: FLUX shape {flux.shape}, expected 1 value per row")
    if and_mask is None:
        and_mask = np.zeros(flux.shape, np.int64)
    elif and_mask.dtype.kind not in "iu":
        raise InputFileError(path, f"HDU {hdu_name}: AND_MASK has dtype {and_mask.dtype}, not integers")
    primary = hdul[0].header
    wave = 10.0 ** loglam
    order = monotonic_order(wave, path, hdu_name)
    if "COEFF0" in primary and "COEFF1" in primary and order == slice(None):
        c0, c1 = float(primary["COEFF0"]), float(primary["COEFF1"])
        start = round((loglam[0] - c0) / c1)
        exact = c0 + c1 * (start + np.arange(loglam.size))
        if np.max(np.abs(exact - loglam)) < _SNAP_TOLERANCE_DEX:
            wave = 10.0 ** exact
    observatory = str(primary.get("OBSERVAT", "") or "").strip().upper()
    meta: dict[str, Any] = {"FILE": str(path), "HDU": hdu_name, "FORMAT": "boss-spec"}
    if observatory:
        meta["OBSERVATORY"] = observatory
        meta["TELESCOPE"] = _TELESCOPE_OF.get(observatory, observatory.lower())
    for key, name in (("PLUG_RA", "RA"), ("PLUG_DEC", "DEC"), ("MJD", "MJD"), ("RUN2D", "RUN2D"),
                      ("FIELDID", "FIELD"), ("PLATEID", "PLATE")):
        if key in primary and name not in meta and primary[key] not in (None, ""):
            meta[name] = plain_value(primary[key])
    for key in ("RA", "DEC"):
        if key not in meta and key in primary:
            meta[key] = plain_value(primary[key])
    spall = next((h for h in hdul[2:] if isinstance(h, fits.BinTableHDU)
                  and str(h.header.get("EXTNAME", "")).upper() == "SPALL"), None)
    if spall is not None and spall.data is not None and len(spall.data):
        row = spall.data[0]
        cols = {n.upper(): n for n in spall.columns.names}
        for key, name in (("SDSS_ID", "SDSS_ID"), ("CATALOGID", "CATALOGID"), ("FIBER_RA", "RA"),
                          ("FIBER_DEC", "DEC"), ("SN_MEDIAN_ALL", "SNR"), ("MJD", "MJD"),
                          ("FIELD", "FIELD")):
            if key in cols and np.ndim(row[cols[key]]) == 0:
                meta[name] = plain_value(row[cols[key]])
    if or_mask is not None and or_mask.dtype.kind in "iu":
        meta["OR_MASK_ANY"] = int(np.bitwise_or.reduce(or_mask.astype(np.int64)))
    return [Spectrum("boss", wave[order], flux[order], error_from_ivar(ivar)[order],
                     and_mask.astype(np.int64)[order], meta)]
