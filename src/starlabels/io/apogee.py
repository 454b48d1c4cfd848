"""Readers for SDSS APOGEE apStar and aspcapStar spectra (apVisit: :mod:`.apvisit`, re-exported here;
allStar catalogues: :mod:`.allstar`; FITS helpers: :mod:`.apogee_fits`).

All readers take a path and return plain numpy arrays in native byte order (ready for
``torch.from_numpy``). apStar files are read through :mod:`starlabels.io.fits_source` (the file's
own headers and only the rows asked for where it is a plain FITS file, astropy otherwise; one reader,
:func:`apstar_from_source`, on either), aspcapStar files likewise (:func:`aspcapstar_from_source`).
Anything wrong with a file raises :class:`starlabels.errors.InputFileError` naming the file and the
problem.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starlabels.core import apogee as apogee_core
from starlabels.core.grid import Grid
from starlabels.errors import InputFileError
from starlabels.io.allstar import DEFAULT_LABELS, AllStarTable, read_allstar
from starlabels.io.apogee_fits import (
    N_APSTAR,
    apogee_id_from_name,
    check_hdu_count,
    flag_nonfinite,
    header_float,
    header_int,
    header_str,
    wcs_wavelength,
)
from starlabels.io.apvisit import ApVisitSpectrum, read_apvisit, resample_to_apstar
from starlabels.io.fits_source import AstropySource, FitsSource, read_fits

__all__ = [
    "DEFAULT_LABELS",
    "AllStarTable",
    "ApStarSpectrum",
    "ApVisitSpectrum",
    "AspcapSpectrum",
    "apstar_from_source",
    "aspcapstar_from_hdul",
    "aspcapstar_from_source",
    "flag_nonfinite",
    "read_allstar",
    "read_apstar",
    "read_apvisit",
    "read_aspcapstar",
    "resample_to_apstar",
]

_APOGEE_GRIDS: dict[int, Grid] = {
    g.n_pixels: g for g in (apogee_core.APSTAR, apogee_core.ASPCAP, apogee_core.PAYNE)
}


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
    return read_fits(path, "apStar", lambda source: apstar_from_source(source, row))


def apstar_from_source(source: FitsSource, row: str | int = "combined", *,
                       shared_wavelength: bool = False, dtype: Any = None) -> ApStarSpectrum:
    """:func:`read_apstar` on an open file (either backend of :mod:`starlabels.io.fits_source`).

    Reads the headers of HDU0–3 and, of HDU1–3, only the rows ``row`` selects. With
    ``shared_wavelength`` the wavelengths are the grid's one read-only array (see
    :func:`~starlabels.io.apogee_fits.wcs_wavelength`) instead of a new one; with ``dtype`` flux and
    error come in that dtype (cast as they are read; default: the file's).
    """
    path = source.path
    check_hdu_count(path, len(source), "apStar", ("header", "flux", "error", "bitmask"))
    names = ((1, "flux"), (2, "error"), (3, "bitmask"))
    shapes = [source.image_shape(i, n) for i, n in names]
    if len(set(shapes)) != 1:
        raise InputFileError(path, f"HDU1–3 shapes differ: {shapes}")
    shape = shapes[0]
    if len(shape) not in (1, 2) or shape[-1] != N_APSTAR:
        raise InputFileError(
            path, f"not an apStar file: HDU1 has shape {shape}, expected (8575,) or "
                  f"(n_rows, {N_APSTAR})"
        )
    primary = source.header(0)
    n_rows = 1 if len(shape) == 1 else shape[0]
    nvisits = header_int(primary, "NVISITS")

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
        parts = ((1, "flux", dtype), (2, "error", dtype), (3, "bitmask", None))  # (bitmask: checked below)
        if len(shape) == 1:
            flux, error, mask = (source.image(i, n, None, t)[None, :][sel] for i, n, t in parts)
        else:
            flux, error, mask = (source.image(i, n, sel, t) for i, n, t in parts)
    except (TypeError, ValueError, OSError) as e:  # short data behind a complete header
        raise InputFileError(
            path, f"cannot read the spectra ({type(e).__name__}: {e}); truncated?"
        ) from e
    if not np.issubdtype(mask.dtype, np.integer):
        raise InputFileError(path, f"HDU3 (bitmask) has dtype {mask.dtype}, expected integers")
    wavelength = wcs_wavelength(source.header(1), primary, N_APSTAR, shared=shared_wavelength)

    if nvisits < 0:
        nvisits = n_rows - 2 if n_rows >= 3 else 1
    meta: dict[str, Any] = {
        "APOGEE_ID": header_str(primary, "OBJID") or apogee_id_from_name(path),
        "RA": header_float(primary, "RA"),
        "DEC": header_float(primary, "DEC"),
        "SNR": header_float(primary, "SNR"),
        "VHELIO": header_float(primary, "VHELIO"),
        "NVISITS": nvisits,
        "J": header_float(primary, "J"),
        "H": header_float(primary, "H"),
        "K": header_float(primary, "K"),
        "FIELD": header_str(primary, "FIELD"),
        "STARFLAG": header_int(primary, "STARFLAG", 0),
        "ROW": row if isinstance(row, str) else int(row),
        "N_ROWS": n_rows,
        "FILE": str(path),
    }
    # (``mask`` is a new array of this reader's: flagged in place where it is int64 already)
    return ApStarSpectrum(flux, error, flag_nonfinite(flux, error, mask, copy=False), wavelength, meta)


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
    return read_fits(path, "aspcapStar", aspcapstar_from_source)


def aspcapstar_from_hdul(hdul: Any, path: str | os.PathLike[str]) -> AspcapSpectrum:
    """:func:`read_aspcapstar` on an already open file (``hdul`` from
    :func:`~starlabels.io.fits_file.open_fits`)."""
    return aspcapstar_from_source(AstropySource(hdul, path))


def aspcapstar_from_source(source: FitsSource) -> AspcapSpectrum:
    """:func:`read_aspcapstar` on an open file (either backend of :mod:`starlabels.io.fits_source`)."""
    path = source.path
    n_hdus = check_hdu_count(path, len(source), "aspcapStar", ("header", "flux", "error"))
    for index, name in ((1, "flux"), (2, "error")):
        source.image_shape(index, name)  # (no such HDU, not an image, no data: errors naming it)
    try:
        flux, error = source.image(1, "flux"), source.image(2, "error")
    except (TypeError, ValueError, OSError) as e:
        raise InputFileError(path, f"cannot read the spectrum ({e}); truncated?") from e
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
    three = source.image_info(3) if n_hdus > 3 else None
    if three is not None and three[1] and 0 not in three[1]:
        m = source.image(3, "model")
        if m.shape[-1] == flux.shape[0]:
            model = np.array(m.reshape(-1)[: flux.shape[0]])
    primary, h1 = source.header(0), source.header(1)
    if grid.name == "apstar":
        wavelength = wcs_wavelength(h1, primary, grid.n_pixels)
    else:  # a sub-grid of apStar pixels: no single WCS describes it
        wavelength = grid.wavelength.copy()

    meta: dict[str, Any] = {}
    if n_hdus > 4 and source.is_bintable(4) and int(source.header(4).get("NAXIS2", 0)):
        for name, column in source.table(4).items():  # the scalar cells of the first row
            v = column[0]
            if isinstance(v, bytes | str):
                meta[name.upper()] = (v.decode() if isinstance(v, bytes) else str(v)).strip()
            elif np.ndim(v) == 0:
                meta[name.upper()] = v.item() if hasattr(v, "item") else v
    meta["APOGEE_ID"] = (
        header_str(primary, "OBJID") or str(meta.get("APOGEE_ID", "")) or apogee_id_from_name(path)
    )
    meta["FILE"] = str(path)
    meta["GRID"] = grid.name
    mask = flag_nonfinite(flux, error, np.zeros(flux.shape, np.int64))
    return AspcapSpectrum(flux, error, model, mask, wavelength, grid.name, meta)
