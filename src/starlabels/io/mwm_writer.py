"""Write spectra as SDSS-V Milky Way Mapper ``mwmStar`` / ``mwmVisit`` files (DR19 or DR20 layout).

The layout — primary header cards, the four extensions (HDU1 BOSS/APO, HDU2 BOSS/LCO,
HDU3 APOGEE/APO, HDU4 APOGEE/LCO), their wavelength cards and every column with its type, in
order — comes from ``starlabels/resources/mwm_layouts.json``, which ``scripts/mwm_layouts.py``
derives from the SDSS data model (``mwmStar.yaml``, ``mwmVisit.yaml``; DR19 = ``v_astra``
0.6.0, DR20 = 0.8.1). A test checks the JSON against the YAMLs.

What is written:

* one row per spectrum in the extension of its instrument (``Spectrum.instrument``:
  ``"apogee"``/``"boss"``) and observatory (``meta["TELESCOPE"]`` ``"apo25m"``/``"apo1m"`` → APO,
  ``"lco25m"`` → LCO; default APO). An mwmStar takes at most one spectrum per extension; an
  mwmVisit any number. Extensions without spectra are written empty (no rows), as SDSS does.
* the spectrum must be on the extension's log-linear grid from the data model
  (λ_i = 10**(CRVAL + CDELT·i), APOGEE 4.179 / 6e-6 / 8575 px, BOSS 3.5523 / 1e-4 / 4648 px);
  resample first otherwise.
* ``flux`` (float32), ``ivar`` = 1/σ² (float32; 0 where σ is inf/NaN/≤ 0), ``pixel_flags``
  (float32, as the data model types it; values must survive the conversion exactly),
  ``wavelength`` (mwmStar, float32), other per-pixel columns (``continuum`` …) NaN.
* scalar columns from the spectrum's meta (column name matched case-insensitively, e.g.
  ``SNR`` → ``snr``, ``MJD`` → ``mjd``), else from the file meta, else ``sdss_id``,
  ``telescope``, ``release``, ``filetype``, ``v_astra``, ``n_visits`` filled in; anything else
  0 (integers), NaN (floats), False or ``""``.
* primary header cards from ``meta`` (upper-case keys: ``SDSS_ID``, ``APOGEEID`` (or
  ``APOGEE_ID``), ``RA``, ``DEC``, ``HEALPIX`` …); cards without a value are written undefined;
  ``N_BOSS``/``N_APOGEE`` count the spectra (mwmVisit) unless given. ``CHECKSUM``/``DATASUM``
  on every HDU, like pipeline files.

Reading a written file with :func:`starlabels.io.read_spectra` gives back the wavelength, flux,
bitmask and meta exactly, and σ exactly whenever 1/σ² is a float32 number (else to float32
precision, relative 6e-8).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputDataError
from starlabels.io.atomic_file import atomic_write
from starlabels.io.fits_write import hdu_bytes, header_scalar
from starlabels.io.spectrum import Spectrum, ivar_from_error

__all__ = ["LAYOUTS", "mwm_layout", "mwm_wavelength", "write_mwm_star", "write_mwm_visit"]

#: Layout names accepted by the writers (data releases).
LAYOUTS: tuple[str, ...] = ("dr19", "dr20")
_OBSERVATORY = {"apo25m": "APO", "apo1m": "APO", "lco25m": "LCO", "apo": "APO", "lco": "LCO"}
_TELESCOPE = {"APO": "apo25m", "LCO": "lco25m"}


@lru_cache(maxsize=1)
def _layouts() -> dict[str, Any]:
    text = resources.files("starlabels").joinpath("resources/mwm_layouts.json").read_text()
    return json.loads(text)


def mwm_layout(kind: str, layout: str = "dr20") -> dict[str, Any]:
    """The layout of ``kind`` (``"mwmStar"``/``"mwmVisit"``) in ``layout`` (``"dr19"``/``"dr20"``):
    ``{"v_astra", "primary": [[key, value, comment], …], "hdus": [{"name", "header", "columns"}]}``."""
    data = _layouts()
    if kind not in ("mwmStar", "mwmVisit"):
        raise ValueError(f"kind must be 'mwmStar' or 'mwmVisit', got {kind!r}")
    lay = str(layout).lower()
    if lay not in data[kind]:
        raise ValueError(f"unknown layout {layout!r}; known: {sorted(data[kind])}")
    return data[kind][lay]


def mwm_wavelength(header: Mapping[str, Any]) -> np.ndarray:
    """(NPIXELS,) float64 vacuum Å of an mwm extension: 10**(CRVAL + CDELT·(i + 1 − CRPIX))."""
    n = int(header["NPIXELS"])
    crpix = float(header.get("CRPIX", 1))
    return np.power(10.0, float(header["CRVAL"]) + float(header["CDELT"]) * (np.arange(n) + 1 - crpix))


def _cards(hdu_layout: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v, _ in hdu_layout["header"]}


def _extension_for(spectrum: Spectrum, hdus: Sequence[Mapping[str, Any]]) -> int:
    instrument = spectrum.instrument.upper()
    tel = str(spectrum.meta.get("TELESCOPE", "apo25m") or "apo25m").strip().lower()
    obs = _OBSERVATORY.get(tel)
    if obs is None:
        raise InputDataError(f"TELESCOPE {tel!r} is not one of {sorted(_OBSERVATORY)}")
    for i, h in enumerate(hdus):
        c = _cards(h)
        if c["INSTRMNT"] == instrument and c["OBSRVTRY"] == obs:
            return i
    raise InputDataError(f"mwm files hold APOGEE and BOSS spectra, not instrument {spectrum.instrument!r}")


def _exact_float32(values: np.ndarray, what: str) -> np.ndarray:
    out = values.astype(np.float32)
    if not np.array_equal(out.astype(np.int64), values):
        raise InputDataError(f"{what} has values that float32 (the data model's type) cannot hold exactly")
    return out


def _default(base: str, kind: str, n_rows: int, n_pix: int) -> np.ndarray:
    shape: tuple[int, ...] = (n_rows,) if kind in ("scalar", "string") else (n_rows, n_pix if kind == "pixels"
                                                                             else 1)
    if base == "str":
        return np.full(shape, "", dtype="U1")
    if base == "bool":
        return np.zeros(shape, bool)
    if base.startswith("float"):
        return np.full(shape, np.nan, dtype=base)
    return np.zeros(shape, dtype=base)


def _meta_value(name: str, spectrum_meta: Mapping[str, Any], file_meta: Mapping[str, Any]) -> Any:
    up = name.upper()
    for m in (spectrum_meta, file_meta):
        for k, v in m.items():
            if str(k).upper() == up:
                return v
    return None


_FITS_CODE = {"float32": "E", "float64": "D", "int16": "I", "int32": "J", "int64": "K", "bool": "L"}
_BIG_ENDIAN = {"float32": ">f4", "float64": ">f8", "int16": ">i2", "int32": ">i4", "int64": ">i8",
               "bool": "S1"}


def _column_values(name: str, base: str, kind: str, rows: list[Spectrum], n_pix: int,
                   fixed: dict[str, Any], file_meta: Mapping[str, Any]) -> np.ndarray:
    """(n,) scalars or strings, or (n, width) arrays, of one column for the rows of one extension."""
    n = len(rows)
    values = _default(base, kind, n, n_pix)
    if name == "flux":
        return np.array([s.flux for s in rows], np.float32).reshape(n, n_pix)
    if name == "ivar":
        return np.array([ivar_from_error(s.error) for s in rows], np.float32).reshape(n, n_pix)
    if name == "pixel_flags":
        bits = np.array([s.bitmask for s in rows], np.int64).reshape(n, n_pix)
        return _exact_float32(bits, "pixel_flags") if base.startswith("float") else bits.astype(base)
    if name == "wavelength":
        return np.array([s.wavelength for s in rows], np.float32).reshape(n, n_pix)
    if kind not in ("scalar", "string"):
        return values
    strings: list[str] = [""] * n
    for i, s in enumerate(rows):
        v = _meta_value(name, s.meta, {}) if name not in fixed else None
        if v is None:
            v = fixed.get(name, _meta_value(name, {}, file_meta))
        if v is None:
            continue
        if kind == "string":
            strings[i] = str(v)
            continue
        try:
            values[i] = v
        except (TypeError, ValueError, OverflowError) as e:
            raise InputDataError(f"column {name}: cannot store {v!r} as {base} ({e})") from None
    if kind == "string":
        width = max([1, *(len(x) for x in strings)])
        return np.array(strings, dtype=f"U{width}")
    return values


def _table(columns: list[tuple[str, str, np.ndarray]],
           n_rows: int) -> tuple[list[tuple[str, Any, str]], bytes]:
    """Header cards of the table structure (TTYPE/TFORM/TDIM) and the big-endian row bytes."""
    fields: list[tuple[Any, ...]] = []
    cards: list[tuple[str, Any, str]] = []
    for i, (name, base, values) in enumerate(columns, start=1):
        cards.append((f"TTYPE{i}", name, ""))
        if values.dtype.kind == "U":
            width = max(1, values.dtype.itemsize // 4)
            cards.append((f"TFORM{i}", f"{width}A", ""))
            fields.append((name, f"S{width}"))
        elif values.ndim == 2:
            width = values.shape[1] if n_rows else 0
            cards.append((f"TFORM{i}", f"{width}{_FITS_CODE[base]}", ""))
            cards.append((f"TDIM{i}", f"({width})", ""))
            fields.append((name, _BIG_ENDIAN[base], (width,)))
        else:
            cards.append((f"TFORM{i}", _FITS_CODE[base], ""))
            fields.append((name, _BIG_ENDIAN[base]))
    table = np.zeros(n_rows, dtype=np.dtype(fields))
    for name, base, values in columns:
        if not n_rows:
            continue
        if values.dtype.kind == "U":
            table[name] = np.char.encode(values, "ascii", errors="replace")
        elif base == "bool":
            table[name] = np.where(values.astype(bool), b"T", b"F")
        else:
            table[name] = values
    structure = [("XTENSION", "BINTABLE", "binary table extension"), ("BITPIX", 8, "array data type"),
                 ("NAXIS", 2, "number of array dimensions"),
                 ("NAXIS1", table.dtype.itemsize, "length of dimension 1"),
                 ("NAXIS2", n_rows, "length of dimension 2"), ("PCOUNT", 0, "number of group parameters"),
                 ("GCOUNT", 1, "number of groups"), ("TFIELDS", len(columns), "number of table fields")]
    return structure + cards, table.tobytes()


def _write_bytes(data: bytes, path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Write ``data`` to ``path`` atomically (:func:`starlabels.io.atomic_file.atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data), overwrite)


def _write(kind: str, path: str | os.PathLike[str], spectra: Sequence[Spectrum],
           meta: Mapping[str, Any] | None, layout: str, overwrite: bool) -> Path:
    lay = mwm_layout(kind, layout)
    meta = dict(meta or {})
    if "APOGEEID" not in meta and "APOGEE_ID" in meta:
        meta["APOGEEID"] = meta["APOGEE_ID"]
    spectra = list(spectra)
    if not spectra:
        raise InputDataError(f"{kind}: no spectra to write")
    for s in spectra:
        if not isinstance(s, Spectrum):
            raise InputDataError(f"expected starlabels.io.Spectrum objects, got {type(s).__name__}")
    rows: list[list[Spectrum]] = [[] for _ in lay["hdus"]]
    for s in spectra:
        rows[_extension_for(s, lay["hdus"])].append(s)
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%y-%m-%d %H:%M:%S")

    counts = {"N_BOSS": sum(len(r) for r, h in zip(rows, lay["hdus"], strict=True)
                            if _cards(h)["INSTRMNT"] == "BOSS"),
              "N_APOGEE": sum(len(r) for r, h in zip(rows, lay["hdus"], strict=True)
                              if _cards(h)["INSTRMNT"] == "APOGEE")}
    primary: list[tuple[str, Any, str]] = [("SIMPLE", True, "conforms to FITS standard"),
                                           ("BITPIX", 8, "array data type"),
                                           ("NAXIS", 0, "number of array dimensions"), ("EXTEND", True, "")]
    for key, value, comment in lay["primary"]:
        if key in ("", "COMMENT"):
            primary.append((key, "" if value is None else str(value), ""))
            continue
        if key == "V_ASTRA":
            v = value
        elif key == "CREATED":
            v = created
        else:
            v = header_scalar(meta.get(key))
            if v is None and key in counts and kind == "mwmVisit":
                v = counts[key]
        primary.append((key, v, comment))
    parts = [hdu_bytes(primary, b"")]
    for ext_rows, ext in zip(rows, lay["hdus"], strict=True):
        cards = _cards(ext)
        n_pix = int(cards["NPIXELS"])
        grid = mwm_wavelength(cards)
        if kind == "mwmStar" and len(ext_rows) > 1:
            raise InputDataError(f"mwmStar: {len(ext_rows)} spectra for {ext['name']}; an mwmStar holds "
                                 "one combined spectrum per instrument and observatory (use write_mwm_visit)")
        for s in ext_rows:
            if s.n_pixels != n_pix or not np.allclose(s.wavelength, grid, rtol=1e-9, atol=0):
                raise InputDataError(
                    f"{ext['name']}: spectrum is not on the {cards['INSTRMNT']} grid of the data model "
                    f"(log10 λ = {cards['CRVAL']} + {cards['CDELT']}·i, {n_pix} px); resample it first"
                )
        fixed = {"sdss_id": meta.get("SDSS_ID"), "release": "sdss5", "filetype": kind,
                 "v_astra": lay["v_astra"], "healpix": meta.get("HEALPIX")}
        fixed = {k: v for k, v in fixed.items() if v is not None}
        if kind == "mwmStar" and ext_rows:
            fixed.setdefault("n_visits", 1)
        columns = []
        for name, base, col_kind in ext["columns"]:
            if name == "telescope":
                tel = [str(s.meta.get("TELESCOPE") or _TELESCOPE[cards["OBSRVTRY"]]) for s in ext_rows]
                width = max([1, *(len(t) for t in tel)])
                columns.append((name, "str", np.array(tel, f"U{width}")))
                continue
            columns.append((name, base, _column_values(name, base, col_kind, ext_rows, n_pix, fixed, meta)))
        header, data = _table(columns, len(ext_rows))
        header += [(key, created if key == "CREATED" else value, comment)
                   for key, value, comment in ext["header"]]
        parts.append(hdu_bytes(header, data))
    return _write_bytes(b"".join(parts), path, overwrite)


def write_mwm_star(path: str | os.PathLike[str], spectra: Sequence[Spectrum],
                   meta: Mapping[str, Any] | None = None, layout: str = "dr20", *,
                   overwrite: bool = False) -> Path:
    """Write an mwmStar file: one combined spectrum per instrument/observatory (see module docs).

    Args:
        path: output file (written atomically; parent folders created).
        spectra: :class:`~starlabels.io.Spectrum` objects on the APOGEE or BOSS grid of the data
            model; ``meta["TELESCOPE"]`` picks APO (default) or LCO, other meta keys fill
            same-named columns (``SNR``, ``V_RAD``, ``MIN_MJD`` …).
        meta: primary-header values by card name (``SDSS_ID``, ``APOGEEID``/``APOGEE_ID``,
            ``RA``, ``DEC``, ``HEALPIX`` …); ``SDSS_ID`` and ``HEALPIX`` also fill the columns.
        layout: ``"dr19"`` (``v_astra`` 0.6.0) or ``"dr20"`` (0.8.1).
        overwrite: replace an existing file.

    Raises:
        InputDataError: no spectra, two for one extension, an instrument other than APOGEE/BOSS,
            an unknown telescope, a spectrum off the data-model grid, or pixel flags float32
            cannot hold.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    return _write("mwmStar", path, spectra, meta, layout, overwrite)


def write_mwm_visit(path: str | os.PathLike[str], spectra: Sequence[Spectrum],
                    meta: Mapping[str, Any] | None = None, layout: str = "dr20", *,
                    overwrite: bool = False) -> Path:
    """Write an mwmVisit file: any number of visit spectra per instrument/observatory, one row
    each (``meta["MJD"]`` etc. fill the visit columns). Arguments and errors as
    :func:`write_mwm_star`."""
    return _write("mwmVisit", path, spectra, meta, layout, overwrite)
