"""Catalog files: the three formats (FITS with units, CSV, Parquet), written atomically and read back.

:func:`write_table` writes a catalog frame (:mod:`starlabels.inference.catalog_columns`) to a
temporary file renamed into place; units of the labels go into FITS ``TUNITn`` cards where FITS can
express them (others, e.g. ``dex``, into astropy's serialized-column header and the ``TTYPEn``
comment) and into the Parquet schema metadata. :func:`read_catalog` reads any of the three back as a
pandas DataFrame with text columns as ``str``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlabels.errors import StarlabelsError

__all__ = ["FORMATS", "column_units", "guess_format", "read_catalog", "write_table"]

FORMATS: tuple[str, ...] = ("fits", "csv", "parquet")


def guess_format(out: str | os.PathLike, fmt: str | None) -> str:
    """``fmt`` if given, else from the extension of ``out`` (.fits/.fit, .csv, .parquet/.pq)."""
    if fmt:
        if fmt.lower() not in FORMATS:
            raise StarlabelsError(f"unknown catalog format {fmt!r}; choose from {FORMATS}")
        return fmt.lower()
    name = str(out).lower()
    for ext, f in ((".fits", "fits"), (".fit", "fits"), (".fits.gz", "fits"), (".csv", "csv"),
                   (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return f
    raise StarlabelsError(f"cannot tell the catalog format from {out!r}; pass format=fits|csv|parquet")


def column_units(columns: Sequence[str], label_names: Sequence[str], label_units: Sequence[str]) -> dict:
    """Unit string per column (``""`` for dimensionless/text)."""
    units = {"RA": "deg", "DEC": "deg"}
    for x, u in zip(label_names, label_units, strict=False):
        for c in columns:
            if c == x or c.startswith(f"{x}_ERR"):
                units[c] = u
    return units


def write_table(df: Any, out: Path, fmt: str, label_names: Sequence[str], label_units: Sequence[str],
                *, meta: dict[str, Any] | None = None) -> None:
    """Write a catalog DataFrame as FITS (with units), CSV or Parquet, atomically."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    units = column_units(list(df.columns), label_names, label_units)
    meta = dict(meta or {})
    if fmt == "csv":
        df.to_csv(tmp, index=False, float_format="%.8g")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(df, preserve_index=False)
        md = dict(table.schema.metadata or {})
        md[b"starlabels"] = json.dumps({"units": units, **json.loads(json.dumps(meta, default=str))}).encode()
        pq.write_table(table.replace_schema_metadata(md), tmp)
    else:
        _write_fits(df, tmp, units, meta)
    os.replace(tmp, out)


def _write_fits(df: Any, path: Path, units: dict[str, str], meta: dict[str, Any]) -> None:
    """FITS binary table with units that ``Table.read`` parses without a warning: units of the FITS
    standard as ``TUNITn``; others (``dex``, which FITS cannot express) as no ``TUNITn`` but in
    astropy's serialized-column header (astropy readers get ``astropy_units.dex`` back) and, for any
    reader, in the comment of the column's ``TTYPEn`` card (``[dex]``).

    Nothing astropy would warn about is handed to it (a column with a non-FITS unit makes
    ``Table.write`` warn), so no warnings filter is needed: the writer runs in a thread beside others,
    and the filter list is process-wide state."""
    from astropy import units as astropy_units
    from astropy.io import fits
    from astropy.table import Table

    from starlabels.inference.flags import FLAG_BITS

    t = Table.from_pandas(df)
    comment_units: dict[str, str] = {}  # non-FITS units: only in the TTYPEn comment ...
    serialized_units: dict[str, Any] = {}  # ... and, those astropy knows, in its serialized columns
    for c, s in units.items():
        if c not in t.colnames or not s:
            continue
        unit = astropy_units.Unit(s, parse_strict="silent")
        if _fits_unit(unit):
            t[c].unit = unit
        else:
            comment_units[c] = s
            if not isinstance(unit, astropy_units.UnrecognizedUnit):
                serialized_units[c] = unit
    for k, v in meta.items():
        t.meta[k[:8].upper()] = v
    t.meta["comments"] = [f"FLAG bit {b}: {n}" for n, b in FLAG_BITS.items()]
    if serialized_units:
        dtypes = {c: t[c].dtype for c in serialized_units}
        t.meta["comments"] += _serialized_unit_comments(serialized_units, dtypes)
    hdu = fits.table_to_hdu(t, character_as_bytes=True)
    for i in range(1, int(hdu.header["TFIELDS"]) + 1):
        if hdu.header[f"TTYPE{i}"] in comment_units:
            hdu.header.comments[f"TTYPE{i}"] = f"[{comment_units[hdu.header[f'TTYPE{i}']]}]"
    hdu.writeto(path, overwrite=True)


def _fits_unit(unit: Any) -> bool:
    """Whether ``unit`` (an astropy unit) can be written as a FITS-standard ``TUNITn`` string."""
    from astropy import units as astropy_units

    if isinstance(unit, astropy_units.UnrecognizedUnit):
        return False
    try:
        unit.to_string("fits")
    except (ValueError, astropy_units.UnitsError):
        return False
    return True


_SERIALIZED_BEGIN = "--BEGIN-ASTROPY-SERIALIZED-COLUMNS--"
_SERIALIZED_END = "--END-ASTROPY-SERIALIZED-COLUMNS--"


def _serialized_unit_comments(units: dict[str, Any], dtypes: dict[str, Any]) -> list[str]:
    """``COMMENT`` lines from which astropy's FITS reader gives columns back as quantities.

    ``units`` maps column name → astropy unit, ``dtypes`` column name → numpy dtype. The lines are
    astropy's serialized-column block, the one ``Table.write`` writes for ``Quantity`` columns: a YAML
    header (astropy's YAML dumper) between the BEGIN and END lines, each line cut
    into 70-character pieces of which all but the last end with a backslash (a card holds 72).
    """
    from astropy.io.misc import yaml
    from astropy.table import SerializedColumn

    header = {
        "datatype": [{"name": c, "datatype": str(dtypes[c])} for c in units],
        "meta": {"__serialized_columns__": {
            c: {"__class__": "astropy.units.quantity.Quantity", "unit": u,
                "value": SerializedColumn({"name": c})}
            for c, u in units.items()
        }},
    }
    lines = []
    for line in yaml.dump(header).splitlines():
        pieces = [line[i:i + 70] for i in range(0, len(line), 70)] or [""]
        lines += [f"{p}\\" for p in pieces[:-1]] + pieces[-1:]
    return [_SERIALIZED_BEGIN, *lines, _SERIALIZED_END]


def read_catalog(path: str | os.PathLike, fmt: str | None = None):
    """Read a catalog back as a pandas DataFrame (any of the three formats)."""
    import pandas as pd

    fmt = guess_format(path, fmt)
    text = ("APOGEE_ID", "TELESCOPE", "HDU", "SOURCE")
    if fmt == "csv":
        df = pd.read_csv(path, keep_default_na=True, dtype={c: str for c in text})
    elif fmt == "parquet":
        df = pd.read_parquet(path)
    else:
        from astropy.table import Table

        t = Table.read(path, format="fits", unit_parse_strict="silent")
        df = t.to_pandas()
        for c in df.columns:
            if df[c].dtype == object and len(df) and isinstance(df[c].iloc[0], bytes):
                df[c] = df[c].str.decode("utf-8")
    for c in text:  # empty strings come back as NaN from CSV (empty field) and FITS (masked)
        if c in df.columns:
            df[c] = df[c].fillna("").astype(str)
    return df
