"""Readers for SDSS APOGEE spectra: apStar, aspcapStar and apVisit (allStar catalogues: :mod:`.allstar`).

All readers take a path, read with :mod:`astropy.io.fits` and return plain numpy arrays in
native byte order (ready for ``torch.from_numpy``). Anything wrong with a file raises
:class:`starlabels.errors.InputFileError` naming the file and the problem.

apStar row layout (worked out from the SDSS pipelines and the real DR17 file
``apStar-dr17-2M19485057+5005279.fits``)
----------------------------------------------------------------------------------------
HDU1 (flux), HDU2 (error), HDU3 (APOGEE_PIXMASK) and HDU4–7 (sky, sky error, telluric,
telluric error) are images of shape (n_rows, 8575) on the log-linear apStar grid
(log10 λ = CRVAL1 + CDELT1 · i, CRVAL1 = 4.179, CDELT1 = 6e-6, vacuum Å):

* ``NVISITS > 1``: ``n_rows = NVISITS + 2``. Row 0 is the pixel-by-pixel inverse-variance
  weighted combination, row 1 the "global" weighted combination (errors median-smoothed),
  rows 2 … NVISITS+1 the individual visits resampled to the rest-frame apStar grid.
* ``NVISITS == 1``: DR17 (apogee_drp) writes **2 rows**: row 0 is the combined spectrum, which
  for one visit *is* that visit (the weighted mean of one spectrum), and row 1 is an unused
  placeholder of zeros (flux 0, error 0, bitmask 0); no separate visit row is stored (the
  header's ``SNRVIS1`` is 0 for that reason). Releases before DR17 store a single 1-D row.

So ``row="combined"`` is always file row 0, and ``row="visits"`` is rows 2: when the file has
them, or the single combined row (shape (1, 8575)) when ``NVISITS == 1``.

Real DR17 files carry NaN flux *and* NaN error outside each detector's useful range (774
pixels in the example file: [0:202], [3324:3538], [6130:6295], [8382:8575]) with bitmask 0.
The readers keep those values as read (NaN) and set the BADPIX bit (0) on every pixel whose
flux or error is not finite, so preprocessing (which rejects BADPIX) never does arithmetic on
them. Zero errors (e.g. the placeholder row) are *not* flagged.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.core import apogee as apogee_core
from starlabels.core.grid import Grid
from starlabels.errors import InputFileError
from starlabels.io.allstar import DEFAULT_LABELS, AllStarTable, read_allstar
from starlabels.io.fits_file import native as _native
from starlabels.io.fits_file import open_fits as _open_fits

__all__ = [
    "DEFAULT_LABELS",
    "AllStarTable",
    "ApStarSpectrum",
    "ApVisitSpectrum",
    "AspcapSpectrum",
    "flag_nonfinite",
    "read_allstar",
    "read_apstar",
    "read_apvisit",
    "read_aspcapstar",
    "resample_to_apstar",
]

_BADPIX = 1 << apogee_core.PIXMASK_BITS["BADPIX"]
_N_APSTAR = apogee_core.N_PIXELS
_APOGEE_GRIDS: dict[int, Grid] = {
    g.n_pixels: g for g in (apogee_core.APSTAR, apogee_core.ASPCAP, apogee_core.PAYNE)
}
_C_KM_S = 299792.458
_APOGEE_ID_IN_NAME = re.compile(r"(?:apStar|asStar|aspcapStar)-.*?-(2M[0-9+\-.]+?|[^-]+?)\.fits", re.I)


# ----------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------
@dataclass
class ApStarSpectrum:
    """Spectra from one apStar file, on the 8575-pixel apStar grid.

    Attributes:
        flux: (8575,) for a single row, (n_visits, 8575) for ``row="visits"``; 1e-17
            erg/s/cm²/Å, as read (NaN where the file has NaN).
        error: same shape as ``flux``, 1σ flux uncertainty in the same units.
        bitmask: same shape, int64 APOGEE_PIXMASK; BADPIX set where flux or error is not finite.
        wavelength: (8575,) vacuum wavelength in Å from the header's CRVAL1/CDELT1/CRPIX1.
        meta: ``APOGEE_ID``, ``RA``, ``DEC`` (deg), ``SNR``, ``VHELIO`` (km/s), ``NVISITS``,
            ``J``, ``H``, ``K`` (mag), ``FIELD``, ``STARFLAG``, ``ROW`` (what was read),
            ``N_ROWS`` (rows in the file), ``FILE`` (path). Missing numbers are NaN.
    """

    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray
    wavelength: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AspcapSpectrum:
    """One aspcapStar spectrum (continuum-normalised) on the grid of its release.

    Attributes:
        flux: (P,) normalised flux; P = 8575 (DR16/DR17, grid ``"apstar"``) or 7214 (DR14,
            grid ``"payne"``), 7514 for arrays on the ``"aspcap"`` grid.
        error: (P,) 1σ uncertainty of the normalised flux.
        model: (P,) ASPCAP best-fit synthetic spectrum, or None when the file has no HDU3.
        bitmask: (P,) int64, BADPIX where flux or error is not finite (aspcapStar files carry
            no pixel mask of their own).
        wavelength: (P,) vacuum Å of each pixel.
        grid: name of the grid (``starlabels.core.apogee``: apstar, aspcap, payne).
        meta: ``APOGEE_ID``, ``FILE``, ``GRID`` and, when the file has the ASPCAP table
            (HDU4), its scalar columns of the first row (e.g. ``TEFF``, ``LOGG``).
    """

    flux: np.ndarray
    error: np.ndarray
    model: np.ndarray | None
    bitmask: np.ndarray
    wavelength: np.ndarray
    grid: str
    meta: dict[str, Any] = field(default_factory=dict)


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


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------
def flag_nonfinite(flux: np.ndarray, error: np.ndarray, bitmask: np.ndarray) -> np.ndarray:
    """Return ``bitmask`` (int64 copy) with BADPIX set wherever flux or error is not finite."""
    out = np.array(bitmask, dtype=np.int64)
    bad = ~np.isfinite(flux) | ~np.isfinite(error)
    out[bad] |= _BADPIX
    return out


def _image(hdul: Any, index: int, path: str | os.PathLike[str], name: str) -> np.ndarray:
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


def _header_float(header: Any, key: str) -> float:
    try:
        v = header[key]
        return float(v) if v is not None else float("nan")
    except (KeyError, TypeError, ValueError):
        return float("nan")


def _header_int(header: Any, key: str, default: int = -1) -> int:
    try:
        return int(header[key])
    except (KeyError, TypeError, ValueError):
        return default


def _header_str(header: Any, key: str) -> str:
    v = header.get(key)
    return "" if v is None else str(v).strip()


def _id_from_name(path: str | os.PathLike[str]) -> str:
    m = _APOGEE_ID_IN_NAME.search(Path(path).name)
    return m.group(1) if m else ""


def _apstar_wavelength(n_pixels: int = _N_APSTAR, crval: float = apogee_core.CRVAL,
                       cdelt: float = apogee_core.CDELT, crpix: float = 1.0) -> np.ndarray:
    """(n_pixels,) vacuum Å of a log-linear grid: 10**(crval + cdelt·(i + 1 − crpix))."""
    return 10.0 ** (crval + cdelt * (np.arange(n_pixels) - (crpix - 1.0)))


def _wavelength(header: Any, primary: Any, n_pixels: int) -> np.ndarray:
    """Å from the log-linear WCS of ``header`` (falling back on ``primary``, then the default)."""
    for h in (header, primary):
        if h is not None and "CRVAL1" in h and "CDELT1" in h:
            return _apstar_wavelength(n_pixels, float(h["CRVAL1"]), float(h["CDELT1"]),
                                      float(h.get("CRPIX1", 1)))
    return _apstar_wavelength(n_pixels)


# ----------------------------------------------------------------------------------------
# apStar
# ----------------------------------------------------------------------------------------
def _visit_rows(n_rows: int, nvisits: int, path: str | os.PathLike[str]) -> slice:
    """Which file rows hold the individual visits (see the module docstring)."""
    if n_rows >= 3:
        return slice(2, n_rows)
    if nvisits in (1, -1):  # one visit: the combined row is that visit
        return slice(0, 1)
    raise InputFileError(
        path, f"NVISITS={nvisits} but the file holds only {n_rows} row(s) (combined spectra), "
              "no individual visits"
    )


def read_apstar(path: str | os.PathLike[str], row: str | int = "combined") -> ApStarSpectrum:
    """Read an apStar (or LCO asStar) file.

    Args:
        path: the FITS file (``.fits`` or ``.fits.gz``).
        row: ``"combined"`` (file row 0, the pixel-weighted combination; 1-D result),
            an int file row (negative counts from the end; 1-D), or ``"visits"`` (the
            individual visit spectra, 2-D (n_visits, 8575); see the module docstring for the
            layout and the NVISITS = 1 case).

    Returns:
        :class:`ApStarSpectrum`. Non-finite flux/error pixels keep their values and get BADPIX.

    Raises:
        InputFileError: missing, truncated or non-FITS file; not the apStar layout (fewer than
            4 HDUs, HDU1–3 not images of matching shape with 8575 pixels); ``row`` not in file.
        ValueError: ``row`` is neither ``"combined"``, ``"visits"`` nor an int.
    """
    if isinstance(row, bool) or not (isinstance(row, int | np.integer) or row in ("combined", "visits")):
        raise ValueError(f"row must be 'combined', 'visits' or an int, got {row!r}")
    with _open_fits(path, "apStar") as hdul:
        if len(hdul) < 4:
            raise InputFileError(
                path, f"not an apStar file: {len(hdul)} HDU(s), expected at least 4 "
                      "(header, flux, error, bitmask); or the file is truncated"
            )
        arrays = [_image(hdul, i, path, n) for i, n in ((1, "flux"), (2, "error"), (3, "bitmask"))]
        shapes = {a.shape for a in arrays}
        if len(shapes) != 1:
            raise InputFileError(path, f"HDU1–3 shapes differ: {[a.shape for a in arrays]}")
        shape = arrays[0].shape
        if len(shape) not in (1, 2) or shape[-1] != _N_APSTAR:
            raise InputFileError(
                path, f"not an apStar file: HDU1 has shape {shape}, expected (8575,) or "
                      f"(n_rows, {_N_APSTAR})"
            )
        if not np.issubdtype(arrays[2].dtype, np.integer):
            raise InputFileError(path, f"HDU3 (bitmask) has dtype {arrays[2].dtype}, expected integers")
        primary = hdul[0].header
        n_rows = 1 if len(shape) == 1 else shape[0]
        nvisits = _header_int(primary, "NVISITS")

        if row == "combined":
            sel: int | slice = 0
        elif row == "visits":
            sel = _visit_rows(n_rows, nvisits, path)
        else:
            r = int(row)
            if not -n_rows <= r < n_rows:
                raise InputFileError(path, f"row {r} out of range: the file has {n_rows} row(s)")
            sel = r % n_rows
        try:
            if len(shape) == 1:
                flux, error, mask = (a[None, :][sel] for a in arrays)
            else:
                flux, error, mask = (a[sel] for a in arrays)
            flux, error = _native(flux), _native(error)
            mask = _native(mask, np.int64)
        except (TypeError, ValueError, OSError) as e:  # short data behind a complete header
            raise InputFileError(
                path, f"cannot read the spectra ({type(e).__name__}: {e}); truncated?"
            ) from e
        wavelength = _wavelength(hdul[1].header, primary, _N_APSTAR)

        if nvisits < 0:
            nvisits = n_rows - 2 if n_rows >= 3 else 1
        meta: dict[str, Any] = {
            "APOGEE_ID": _header_str(primary, "OBJID") or _id_from_name(path),
            "RA": _header_float(primary, "RA"),
            "DEC": _header_float(primary, "DEC"),
            "SNR": _header_float(primary, "SNR"),
            "VHELIO": _header_float(primary, "VHELIO"),
            "NVISITS": nvisits,
            "J": _header_float(primary, "J"),
            "H": _header_float(primary, "H"),
            "K": _header_float(primary, "K"),
            "FIELD": _header_str(primary, "FIELD"),
            "STARFLAG": _header_int(primary, "STARFLAG", 0),
            "ROW": row if isinstance(row, str) else int(row),
            "N_ROWS": n_rows,
            "FILE": str(path),
        }
    return ApStarSpectrum(flux, error, flag_nonfinite(flux, error, mask), wavelength, meta)


# ----------------------------------------------------------------------------------------
# aspcapStar
# ----------------------------------------------------------------------------------------
def read_aspcapstar(path: str | os.PathLike[str]) -> AspcapSpectrum:
    """Read an aspcapStar file: HDU1 normalised flux, HDU2 error, HDU3 best-fit model, HDU4 table.

    The grid is detected from the array length (8575 → ``apstar``
    for DR16/17, 7214 → ``payne`` for DR14, 7514 → ``aspcap``). Wavelengths come from the
    header WCS for the full apStar grid; a gap-deleted array cannot be described by one
    log-linear WCS, so its wavelengths are the grid's apStar pixels (CRVAL1/CDELT1 from the
    header when present).

    Raises:
        InputFileError: missing/truncated/non-FITS file, fewer than 3 HDUs, arrays of a length
            no APOGEE grid has, or flux/error shapes that differ.
    """
    from astropy.io import fits

    with _open_fits(path, "aspcapStar") as hdul:
        if len(hdul) < 3:
            raise InputFileError(
                path, f"not an aspcapStar file: {len(hdul)} HDU(s), expected at least 3 "
                      "(header, flux, error)"
            )
        flux = _image(hdul, 1, path, "flux")
        error = _image(hdul, 2, path, "error")
        if flux.ndim == 2 and flux.shape[0] == 1:
            flux, error = flux[0], error.reshape(-1) if error.ndim == 2 else error
        if flux.ndim != 1 or flux.shape != error.shape:
            raise InputFileError(path, f"flux {flux.shape} / error {error.shape}: expected equal 1-D arrays")
        grid = _APOGEE_GRIDS.get(int(flux.shape[0]))
        if grid is None:
            sizes = {g.name: n for n, g in _APOGEE_GRIDS.items()}
            raise InputFileError(path, f"not an aspcapStar spectrum: {flux.shape[0]} pixels; APOGEE grids "
                                       f"have {sizes}")
        model = None
        if len(hdul) > 3 and isinstance(hdul[3], fits.ImageHDU) and hdul[3].data is not None:
            m = hdul[3].data
            if m.shape[-1] == flux.shape[0]:
                model = _native(m.reshape(-1)[: flux.shape[0]])
        try:
            flux, error = _native(flux), _native(error)
        except (TypeError, ValueError) as e:
            raise InputFileError(path, f"cannot read the spectrum ({e}); truncated?") from e
        primary, h1 = hdul[0].header, hdul[1].header
        if grid.name == "apstar":
            wavelength = _wavelength(h1, primary, grid.n_pixels)
        else:  # a sub-grid of apStar pixels: no single WCS describes it
            wavelength = grid.wavelength.copy()

        meta: dict[str, Any] = {}
        if len(hdul) > 4 and isinstance(hdul[4], fits.BinTableHDU) and len(hdul[4].data):
            rec = hdul[4].data[0]
            for col in hdul[4].columns:
                v = rec[col.name]
                if isinstance(v, bytes | str):
                    meta[col.name.upper()] = (v.decode() if isinstance(v, bytes) else v).strip()
                elif np.ndim(v) == 0:
                    meta[col.name.upper()] = v.item() if hasattr(v, "item") else v
        meta["APOGEE_ID"] = (
            _header_str(primary, "OBJID") or str(meta.get("APOGEE_ID", "")) or _id_from_name(path)
        )
        meta["FILE"] = str(path)
        meta["GRID"] = grid.name
    mask = flag_nonfinite(flux, error, np.zeros(flux.shape, np.int64))
    return AspcapSpectrum(flux, error, model, mask, wavelength, grid.name, meta)


# ----------------------------------------------------------------------------------------
# apVisit
# ----------------------------------------------------------------------------------------
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
    lam = _apstar_wavelength() if target is None else np.asarray(target, dtype=np.float64)
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
    out_m = np.full(lam.shape, _BADPIX, dtype=np.int64)
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
    with _open_fits(path, "apVisit") as hdul:
        if len(hdul) < 5:
            raise InputFileError(
                path, f"not an apVisit file: {len(hdul)} HDU(s), expected at least 5 "
                      "(header, flux, error, bitmask, wavelength)"
            )
        names = ((1, "flux"), (2, "error"), (3, "bitmask"), (4, "wavelength"))
        try:
            flux, error, mask, wave = (_image(hdul, i, path, n) for i, n in names)
            flux, error, wave = _native(flux), _native(error), _native(wave, np.float64)
            mask = _native(mask, np.int64)
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
            "APOGEE_ID": _header_str(h, "OBJID"),
            "RA": _header_float(h, "RA"),
            "DEC": _header_float(h, "DEC"),
            "SNR": _header_float(h, "SNR"),
            "VHELIO": _header_float(h, "VHELIO"),
            "VRAD": _header_float(h, "VREL") if "VREL" in h else _header_float(h, "VRAD"),
            "BC": _header_float(h, "BC"),
            "NVISITS": 1,
            "J": _header_float(h, "J"),
            "H": _header_float(h, "H"),
            "K": _header_float(h, "K"),
            "PLATE": _header_str(h, "PLATE"),
            "MJD": _header_int(h, "MJD5"),
            "FIBERID": _header_int(h, "FIBERID"),
            "TELESCOPE": _header_str(h, "TELESCOP"),
            "JD": _header_float(h, "JD-MID"),
            "STARFLAG": _header_int(h, "STARFLAG", 0),
            "FILE": str(path),
        }
        if not np.isfinite(meta["VRAD"]):
            meta.update(_velocities_from_table(hdul))
    mask = flag_nonfinite(flux, error, mask)
    if not resample:
        return ApVisitSpectrum(flux, error, mask, wave, meta, resampled=False)

    target = _apstar_wavelength()
    if rest_frame:
        v = meta["VRAD"] if velocity is None else float(velocity)
        if not np.isfinite(v):
            raise InputFileError(
                path, "resampling to the rest frame needs a velocity, but the file has none (no VREL/VRAD "
                      "in the header or its visit table); "
                      "pass velocity=… (km/s) or rest_frame=False for the observed frame"
            )
        target = target * (1.0 + v / _C_KM_S)
        meta["REST_FRAME_VELOCITY"] = v
    try:
        rf, re_, rm = resample_to_apstar(wave, flux, error, mask, target)
    except ValueError as e:
        raise InputFileError(path, f"cannot resample: {e}") from e
    return ApVisitSpectrum(rf, re_, rm, _apstar_wavelength(), meta, resampled=True)
