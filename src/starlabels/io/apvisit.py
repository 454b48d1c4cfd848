"""Reader for SDSS APOGEE apVisit files (single visits, three chips) and the resampling of
per-chip spectra onto the apStar grid (:func:`resample_to_apstar`), optionally in the stellar rest
frame. apStar and aspcapStar files: :mod:`starlabels.io.apogee`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starlabels.errors import InputFileError
from starlabels.io.apogee_fits import (
    BADPIX,
    apstar_wavelength,
    check_hdu_count,
    flag_nonfinite,
    header_float,
    header_int,
    header_str,
    image_data,
)
from starlabels.io.fits_file import native, open_fits

__all__ = ["ApVisitSpectrum", "read_apvisit", "resample_to_apstar"]

#: speed of light, km/s
C_KM_S = 299792.458


@dataclass
class ApVisitSpectrum:
    """One apVisit spectrum.

    Raw (``resample=False``): arrays of shape (3, 4096) exactly as stored — chip rows in file
    order a, b, c = red, green, blue, wavelength *descending* within each chip; ``wavelength``
    (3, 4096) Å from HDU4 (observed frame, vacuum).
    Resampled (``resample=True``): (8575,) arrays on the apStar grid, ``wavelength`` (8575,).
    Units as apStar (1e-17 erg/s/cm²/Å); ``bitmask`` int64 APOGEE_PIXMASK.
    """

    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray
    wavelength: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    resampled: bool = False


def resample_to_apstar(
    wavelength: np.ndarray,
    flux: np.ndarray,
    error: np.ndarray,
    bitmask: np.ndarray,
    target: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linearly interpolate per-chip spectra onto ``target`` wavelengths (default: apStar grid).

    Args:
        wavelength, flux, error, bitmask: (n_chips, n_pix) arrays; each chip's wavelengths
            strictly monotonic (either direction), Å.
        target: (P,) wavelengths in Å; default the 8575-pixel apStar grid.

    Returns:
        ``(flux, error, bitmask)`` each (P,). For a target λ between chip pixels j and j+1 with
        t = (λ − λ_j)/(λ_{j+1} − λ_j): flux = (1−t)·f_j + t·f_{j+1};
        error = sqrt(((1−t)·σ_j)² + (t·σ_{j+1})²) (independent pixel errors; neighbouring
        output pixels become correlated); bitmask = m_j | m_{j+1}. Target pixels covered by no
        chip get flux = error = NaN and BADPIX; any non-finite result also gets BADPIX.
    """
    lam = apstar_wavelength() if target is None else np.asarray(target, dtype=np.float64)
    w = np.asarray(wavelength, dtype=np.float64)
    f = np.asarray(flux, dtype=np.float64)
    e = np.asarray(error, dtype=np.float64)
    m = np.asarray(bitmask).astype(np.int64)
    if w.ndim == 1:
        w, f, e, m = w[None], f[None], e[None], m[None]
    if not (w.shape == f.shape == e.shape == m.shape) or w.shape[-1] < 2:
        raise ValueError(f"wavelength/flux/error/bitmask shapes differ or too short: "
                         f"{w.shape}, {f.shape}, {e.shape}, {m.shape}")
    out_f = np.full(lam.shape, np.nan)
    out_e = np.full(lam.shape, np.nan)
    out_m = np.full(lam.shape, BADPIX, dtype=np.int64)
    for c in range(w.shape[0]):  # 3 chips, each step vectorised over pixels
        wc, fc, ec, mc = w[c], f[c], e[c], m[c]
        if wc[0] > wc[-1]:
            wc, fc, ec, mc = wc[::-1], fc[::-1], ec[::-1], mc[::-1]
        if not np.all(np.isfinite(wc)) or np.any(np.diff(wc) <= 0):
            raise ValueError(f"chip {c}: wavelengths are not finite and strictly monotonic")
        inside = (lam >= wc[0]) & (lam <= wc[-1])
        if not inside.any():
            continue
        li = lam[inside]
        hi = np.clip(np.searchsorted(wc, li, side="right"), 1, wc.size - 1)
        lo = hi - 1
        t = (li - wc[lo]) / (wc[hi] - wc[lo])
        out_f[inside] = (1.0 - t) * fc[lo] + t * fc[hi]
        out_e[inside] = np.sqrt(((1.0 - t) * ec[lo]) ** 2 + (t * ec[hi]) ** 2)
        out_m[inside] = mc[lo] | mc[hi]
    return out_f, out_e, flag_nonfinite(out_f, out_e, out_m)


def _velocities_from_table(hdul: Any) -> dict[str, float]:
    """VREL (→ ``VRAD``), VHELIO and BC from the first row of a table HDU that has them: DR17
    apVisit files keep the visit's velocities in HDU11, not in the primary header."""
    from astropy.io import fits

    for hdu in hdul[1:]:
        if not isinstance(hdu, fits.BinTableHDU) or int(hdu.header.get("NAXIS2", 0)) < 1:
            continue
        names = {n.upper(): n for n in hdu.columns.names}
        if "VREL" not in names:
            continue
        row = hdu.data[0]
        out = {}
        for key, name in (("VREL", "VRAD"), ("VHELIO", "VHELIO"), ("BC", "BC")):
            if key in names and np.ndim(row[names[key]]) == 0:
                out[name] = float(row[names[key]])
        return out
    return {}


def read_apvisit(
    path: str | os.PathLike[str],
    resample: bool = False,
    *,
    rest_frame: bool = True,
    velocity: float | None = None,
) -> ApVisitSpectrum:
    """Read an apVisit file: HDU1 flux, HDU2 error, HDU3 bitmask, HDU4 wavelength, each (3, 4096).

    Args:
        path: the FITS file.
        resample: False → raw (3, 4096) arrays as stored (chips red→blue, wavelength
            descending). True → (8575,) arrays on the apStar grid via
            :func:`resample_to_apstar` (linear interpolation, errors propagated, bitmask
            OR-ed from the two neighbours, uncovered pixels NaN + BADPIX).
        rest_frame: with ``resample`` (default True), shift to the stellar rest frame like the
            apStar visit combination, as models trained on apStar/aspcapStar spectra expect:
            the visit is sampled at λ_grid·(1 + v/c), v = ``velocity``, else the header's
            VREL/VRAD, else the VREL column of the visit table (HDU11 of DR17 files), km/s.
            SDSS-V (DR19) apVisit files carry no velocity: pass ``velocity``. ``False`` keeps
            the observed frame (until issue 13 this was the default; at −44 and −67 km/s it
            moved a model's labels by up to 361 K and 0.77 dex).
        velocity: radial velocity in km/s overriding the header value.

    Raises:
        InputFileError: missing/truncated/non-FITS file, fewer than 5 HDUs, arrays that are not
            (n_chips, n_pix) of one shape, non-monotonic chip wavelengths, or no velocity in
            the header when ``rest_frame`` needs one.
    """
    with open_fits(path, "apVisit") as hdul:
        check_hdu_count(path, len(hdul), "apVisit", ("header", "flux", "error", "bitmask", "wavelength"))
        names = ((1, "flux"), (2, "error"), (3, "bitmask"), (4, "wavelength"))
        try:
            flux, error, mask, wave = (image_data(hdul, i, path, n) for i, n in names)
            flux, error, wave = native(flux), native(error), native(wave, np.float64)
            mask = native(mask, np.int64)
        except (TypeError, ValueError, OSError) as e:
            raise InputFileError(
                path, f"cannot read the spectra ({type(e).__name__}: {e}); truncated?"
            ) from e
        if flux.ndim != 2 or not (flux.shape == error.shape == mask.shape == wave.shape):
            raise InputFileError(
                path, f"not an apVisit file: HDU1–4 shapes {flux.shape}, {error.shape}, "
                      f"{mask.shape}, {wave.shape}; expected equal (n_chips, n_pix)"
            )
        h = hdul[0].header
        meta: dict[str, Any] = {
            "APOGEE_ID": header_str(h, "OBJID"),
            "RA": header_float(h, "RA"),
            "DEC": header_float(h, "DEC"),
            "SNR": header_float(h, "SNR"),
            "VHELIO": header_float(h, "VHELIO"),
            "VRAD": header_float(h, "VREL") if "VREL" in h else header_float(h, "VRAD"),
            "BC": header_float(h, "BC"),
            "NVISITS": 1,
            "J": header_float(h, "J"),
            "H": header_float(h, "H"),
            "K": header_float(h, "K"),
            "PLATE": header_str(h, "PLATE"),
            "MJD": header_int(h, "MJD5"),
            "FIBERID": header_int(h, "FIBERID"),
            "TELESCOPE": header_str(h, "TELESCOP"),
            "JD": header_float(h, "JD-MID"),
            "STARFLAG": header_int(h, "STARFLAG", 0),
            "FILE": str(path),
        }
        if not np.isfinite(meta["VRAD"]):
            meta.update(_velocities_from_table(hdul))
    mask = flag_nonfinite(flux, error, mask)
    if not resample:
        return ApVisitSpectrum(flux, error, mask, wave, meta, resampled=False)

    target = apstar_wavelength()
    if rest_frame:
        v = meta["VRAD"] if velocity is None else float(velocity)
        if not np.isfinite(v):
            raise InputFileError(
                path, "resampling to the rest frame needs a velocity, but the file has none (no VREL/VRAD "
                      "in the header or its visit table); "
                      "pass velocity=… (km/s) or rest_frame=False for the observed frame"
            )
        target = target * (1.0 + v / C_KM_S)
        meta["REST_FRAME_VELOCITY"] = v
    try:
        rf, re_, rm = resample_to_apstar(wave, flux, error, mask, target)
    except ValueError as e:
        raise InputFileError(path, f"cannot resample: {e}") from e
    return ApVisitSpectrum(rf, re_, rm, apstar_wavelength(), meta, resampled=True)
