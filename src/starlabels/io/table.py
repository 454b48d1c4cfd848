"""Generic spectra tables: FITS binary table, CSV or NPZ holding wavelength, flux and error.

Any spectrograph's spectra can come in as a table. Column (FITS/CSV) or key (NPZ) names are
matched case-insensitively against these aliases:

===========  ===========================================================================
wavelength   ``wavelength``, ``wave``, ``lambda``, ``lam``, ``wl`` (Å, vacuum); or ``loglam``
             (log10 Å)
flux         ``flux``
error        ``error``, ``err``, ``sigma``, ``flux_err``, ``flux_error``, ``e_flux``,
             ``uncertainty`` (1σ); or ``ivar`` (inverse variance → σ, inf where ≤ 0)
bitmask      ``bitmask``, ``mask``, ``pixel_flags``, ``flags``, ``and_mask`` (optional; integers)
===========  ===========================================================================

Shapes: one spectrum per file with one value per row (FITS/CSV) or 1-D arrays (NPZ); or several
spectra as array columns (FITS: one spectrum per row, flux of shape (P,) per row) or 2-D arrays
(NPZ flux (N, P)); the wavelength may be shared (P,) or per spectrum (N, P). Strictly decreasing
wavelengths are reversed; anything else non-monotonic raises
:class:`~starlabels.errors.InputFileError` naming the file and HDU (or row).

``instrument``: the argument, else the FITS header's ``INSTRUME``/``INSTRMNT`` or the NPZ key
``instrument``, else ``"custom"``. Meta: ``FILE``, ``HDU``, ``FORMAT`` (``table-fits``, ``csv``,
``npz``), ``ROW`` for multi-spectrum files, and any of ``SDSS_ID``, ``APOGEE_ID``, ``TELESCOPE``,
``RA``, ``DEC``, ``SNR``, ``OBJECT`` found as FITS header cards, NPZ scalars or
(multi-spectrum FITS) scalar columns.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError
from starlabels.io.fits_file import is_fits, native, open_fits, plain_value
from starlabels.io.spectrum import Spectrum, error_from_ivar, monotonic_order

__all__ = ["ALIASES", "find_columns", "read_table_spectra", "table_kind"]

ALIASES: dict[str, tuple[str, ...]] = {
    "wavelength": ("wavelength", "wave", "lambda", "lam", "wl"),
    "loglam": ("loglam",),
    "flux": ("flux",),
    "error": ("error", "err", "sigma", "flux_err", "flux_error", "e_flux", "uncertainty"),
    "ivar": ("ivar", "inverse_variance"),
    "bitmask": ("bitmask", "mask", "pixel_flags", "flags", "and_mask"),
}
_META_KEYS = ("SDSS_ID", "APOGEE_ID", "TELESCOPE", "RA", "DEC", "SNR", "OBJECT")
_ZIP_MAGIC = b"PK\x03\x04"


def find_columns(names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Map role (``wavelength``, ``loglam``, ``flux``, ``error``, ``ivar``, ``bitmask``) → actual name."""
    by_lower = {str(n).lower(): str(n) for n in names}
    found = {}
    for role, aliases in ALIASES.items():
        for a in aliases:
            if a in by_lower:
                found[role] = by_lower[a]
                break
    return found


def _usable(found: Mapping[str, str]) -> bool:
    return ("wavelength" in found or "loglam" in found) and "flux" in found and (
        "error" in found or "ivar" in found)


def table_kind(path: str | os.PathLike[str]) -> str | None:
    """``"table-fits"``/``"npz"``/``"csv"`` when the file's content holds a spectra table, else None
    (FITS files are only checked for a binary table with the needed columns)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if is_fits(p):
        try:
            with open_fits(p, "table") as hdul:
                return "table-fits" if _fits_table(hdul) is not None else None
        except InputFileError:
            return None
    if head.startswith(_ZIP_MAGIC):
        try:
            with np.load(p, allow_pickle=False) as z:
                return "npz" if _usable(find_columns(list(z.files))) else None
        except (OSError, ValueError):
            return None
    try:
        first = head.decode("utf-8").splitlines()[0]
    except (UnicodeDecodeError, IndexError):
        return None
    cols = [c.strip().strip('"').lstrip("#").strip() for c in first.split(",")]
    return "csv" if _usable(find_columns(cols)) else None


def _fits_table(hdul: Any) -> int | None:
    from astropy.io import fits

    for i, hdu in enumerate(hdul):
        if isinstance(hdu, fits.BinTableHDU | fits.TableHDU) and _usable(find_columns(hdu.columns.names)):
            return i
    return None


def _build(path: str | os.PathLike[str], hdu: str, fmt: str, instrument: str, arrays: dict[str, np.ndarray],
           meta: dict[str, Any], row_meta: list[dict[str, Any]] | None = None) -> list[Spectrum]:
    try:
        arrays = {k: (v if k == "bitmask" else np.asarray(v, np.float64)) for k, v in arrays.items()}
    except (TypeError, ValueError) as e:
        raise InputFileError(path, f"HDU {hdu}: non-numeric values ({e})") from None
    flux = arrays["flux"]
    single = flux.ndim == 1
    flux2 = np.atleast_2d(flux)
    n, p = flux2.shape
    if "wavelength" in arrays:
        wave = np.asarray(arrays["wavelength"], np.float64)
    else:
        wave = 10.0 ** np.asarray(arrays["loglam"], np.float64)
    wave2 = np.broadcast_to(np.atleast_2d(wave), (n, p)) if wave.shape[-1] == p else None
    if wave2 is None:
        raise InputFileError(path, f"HDU {hdu}: wavelength has {wave.shape[-1]} values, flux {p}")
    if "error" in arrays:
        err = np.asarray(arrays["error"], np.float64)
        err = np.where(np.isfinite(err) & (err > 0), err, np.inf)
    else:
        err = error_from_ivar(arrays["ivar"])
    if np.atleast_2d(err).shape != (n, p):
        raise InputFileError(path, f"HDU {hdu}: error shape {np.shape(err)} differs from flux {flux.shape}")
    err2 = np.atleast_2d(err)
    if "bitmask" in arrays:
        bits = np.atleast_2d(np.asarray(arrays["bitmask"]))
        if bits.shape != (n, p):
            raise InputFileError(path, f"HDU {hdu}: bitmask shape {bits.shape}, flux {flux2.shape}")
        if bits.dtype.kind == "b":
            bits = bits.astype(np.int64)
        if bits.dtype.kind not in "iu":
            b = bits.astype(np.float64)
            if not np.all(np.isfinite(b)) or np.any(b != np.rint(b)) or np.any(b < 0):
                raise InputFileError(path, f"HDU {hdu}: bitmask holds non-integer values")
            bits = b.astype(np.int64)
    else:
        bits = np.zeros((n, p), np.int64)
    out = []
    for i in range(n):
        where = hdu if single else f"{hdu} row {i}"
        order = monotonic_order(wave2[i], path, where)
        m = dict(meta)
        if not single:
            m["ROW"] = i
        if row_meta is not None:
            m.update(row_meta[i])
        out.append(Spectrum(instrument, wave2[i][order], flux2[i][order], err2[i][order],
                            bits[i].astype(np.int64)[order], m))
    return out


def read_table_spectra(path: str | os.PathLike[str], instrument: str | None = None) -> list[Spectrum]:
    """Read the spectra of a FITS/CSV/NPZ table (see the module docstring).

    Raises:
        InputFileError: unreadable file, no wavelength + flux + error/ivar columns (the message lists
            what the file has), mismatched shapes, non-monotonic wavelength, non-integer bitmask.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "file does not exist")
    kind = table_kind(p)
    meta: dict[str, Any] = {"FILE": str(p)}
    if kind == "table-fits":
        with open_fits(p, "table") as hdul:
            index = _fits_table(hdul)
            assert index is not None
            hdu = hdul[index]
            found = find_columns(hdu.columns.names)
            name = str(hdu.header.get("EXTNAME", index)).strip() or str(index)
            try:
                data = hdu.data
                arrays = {role: native(data[col]) for role, col in found.items()}
            except (TypeError, ValueError, OSError) as e:
                raise InputFileError(p, f"HDU {name}: cannot read the table ({type(e).__name__}: {e})") from e
            inst = instrument
            for h in (hdu.header, hdul[0].header):
                for key in _META_KEYS:
                    if key in h and key not in meta:
                        meta[key] = plain_value(h[key])
                for key in ("INSTRUME", "INSTRMNT"):
                    if inst is None and h.get(key):
                        inst = str(h[key]).strip().lower()
            row_meta = None
            if arrays["flux"].ndim == 2:  # array columns: one spectrum per row
                cols = {n.upper(): n for n in hdu.columns.names}
                row_meta = [{k: plain_value(data[cols[k]][i]) for k in _META_KEYS if k in cols}
                            for i in range(arrays["flux"].shape[0])]
                if arrays.get("wavelength", arrays.get("loglam")) is not None:
                    w = arrays.get("wavelength", arrays.get("loglam"))
                    if w.ndim == 2 and np.all(w == w[:1]):
                        arrays["wavelength" if "wavelength" in arrays else "loglam"] = w[0]
            meta.update(FORMAT="table-fits", HDU=name)
            return _build(p, name, "table-fits", inst or "custom", arrays, meta, row_meta)
    if kind == "npz":
        with np.load(p, allow_pickle=False) as z:
            found = find_columns(list(z.files))
            arrays = {role: np.asarray(z[key]) for role, key in found.items()}
            inst = instrument
            for key in z.files:
                v = z[key]
                if v.ndim == 0 and key.upper() in _META_KEYS:
                    meta[key.upper()] = plain_value(v[()])
                if key.lower() == "instrument" and v.ndim == 0 and inst is None:
                    inst = str(v[()]).strip().lower()
        meta.update(FORMAT="npz", HDU="-")
        return _build(p, "-", "npz", inst or "custom", arrays, meta)
    if kind == "csv":
        import pandas as pd

        try:
            df = pd.read_csv(p, comment=None)
        except Exception as e:
            raise InputFileError(p, f"cannot read as CSV ({type(e).__name__}: {e})") from e
        df.columns = [str(c).strip().lstrip("#").strip() for c in df.columns]
        found = find_columns(list(df.columns))
        arrays = {role: df[col].to_numpy() for role, col in found.items()}
        meta.update(FORMAT="csv", HDU="-")
        return _build(p, "-", "csv", instrument or "custom", arrays, meta)
    raise InputFileError(
        p, "not a spectra table: needs a wavelength (or loglam), a flux and an error (or ivar) column; "
           f"accepted names: {ALIASES}"
    )
