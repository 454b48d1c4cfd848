"""Labels from allStar-like catalogues (DR14–DR17 allStar FITS, or CSV / Parquet with the same
columns), keyed on APOGEE_ID. SDSS-V astraAllStar tables: :mod:`starlabels.io.astra`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputFileError
from starlabels.io.fits_file import native, open_fits
from starlabels.io.label_columns import flag_values, missing_to_sentinel, stripped_strings

__all__ = ["DEFAULT_LABELS", "AllStarTable", "read_allstar"]

#: Labels read by :func:`read_allstar` when none are named.
DEFAULT_LABELS: tuple[str, ...] = ("TEFF", "LOGG", "FE_H")


@dataclass
class AllStarTable:
    """Labels and identifiers read from an allStar-like catalogue.

    Attributes:
        labels: (N, L) float64 in the catalogue's units; MISSING (-9999.0) where the
            catalogue has -9999 (or less) or NaN/inf.
        label_errors: (N, L) float64, same convention; all MISSING for a label whose
            ``<LABEL>_ERR`` column is absent.
        label_names: the L label names (upper case, as asked).
        apogee_id: (N,) str, stripped.
        aspcapflag, starflag: (N,) int64 bit flags (0 when the column is absent).
        columns: the extra columns asked for, by upper-case name (arrays as read).
        meta: ``FILE``, ``N_ROWS``, ``MISSING_ERROR_COLUMNS``.
        key_column: the identifier that joins the table to spectra: ``"APOGEE_ID"`` (allStar) or
            ``"SDSS_ID"`` (SDSS-V astraAllStar tables, :func:`starlabels.io.read_label_table`).
        keys: (N,) the identifiers of ``key_column`` (None → ``apogee_id``); use :attr:`key`.
    """

    labels: np.ndarray
    label_errors: np.ndarray
    label_names: tuple[str, ...]
    apogee_id: np.ndarray
    aspcapflag: np.ndarray
    starflag: np.ndarray
    columns: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    key_column: str = "APOGEE_ID"
    keys: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def key(self) -> np.ndarray:
        """(N,) identifiers of :attr:`key_column` (str APOGEE_IDs, or int64 SDSS_IDs)."""
        return self.apogee_id if self.keys is None else self.keys

    def lookup(self, ids: Any) -> np.ndarray:
        """Row index of each id in ``ids`` (−1 when absent; first row for duplicated keys).

        Ids are compared as stripped strings, so ``"12345"`` and ``12345`` find the same SDSS_ID.
        """
        keys = np.char.strip(np.asarray(self.key).astype(str))
        uniq, first = np.unique(keys, return_index=True)
        index = dict(zip(uniq.tolist(), first.tolist(), strict=True))
        wanted = np.atleast_1d(np.asarray(ids)).astype(str)
        return np.array([index.get(str(i).strip(), -1) for i in wanted], dtype=np.int64)



# ----------------------------------------------------------------------------------------
# allStar
# ----------------------------------------------------------------------------------------
def _table_kind(p: Path) -> str:
    name = p.name.lower()
    for suffix in (".gz", ".bz2", ".xz", ".zip"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.endswith((".fits", ".fit", ".fts")):
        return "fits"
    if name.endswith((".csv", ".txt")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    with open(p, "rb") as fh:
        head = fh.read(9)
    if head == b"SIMPLE  =":
        return "fits"
    if head[:4] == b"PAR1":
        return "parquet"
    return "csv"


class _Columns:
    """Case-insensitive column access over a FITS table or a pandas DataFrame."""

    def __init__(self, names: Sequence[str], getter: Any, n_rows: int):
        self.by_upper = {n.upper(): n for n in names}
        self.getter = getter
        self.n_rows = n_rows
        self.all_names: list[str] = list(names)

    def has(self, name: str) -> bool:
        return name.upper() in self.by_upper

    def get(self, name: str) -> np.ndarray:
        return np.asarray(self.getter(self.by_upper[name.upper()]))


def read_allstar(
    path: str | os.PathLike[str],
    labels: Sequence[str] = DEFAULT_LABELS,
    *,
    columns: Sequence[str] = (),
    error_suffix: str = "_ERR",
    hdu: int = 1,
) -> AllStarTable:
    """Read labels, label errors and identifiers from an allStar FITS table (or CSV/Parquet).

    Only the asked-for columns are read (the FITS file is memory-mapped, so a multi-GB DR17
    allStar is fine). Column names match case-insensitively.

    Args:
        path: allStar FITS (``hdu`` holds the table), ``.csv`` or ``.parquet``.
        labels: label columns, e.g. ``("TEFF", "LOGG", "FE_H", "MG_FE")``.
        columns: extra columns returned in ``.columns`` (e.g. ``"TELESCOPE"``, ``"FIELD"``,
            ``"SNR"``, ``"EXTRATARG"``).
        error_suffix: label error column = label + suffix (allStar: ``TEFF_ERR``).
        hdu: FITS extension with the table.

    Returns:
        :class:`AllStarTable`; -9999 (or less) and NaN/inf both become MISSING (-9999.0).
        APOGEE_ID is required; ASPCAPFLAG/STARFLAG are 0 and label errors MISSING when the
        columns are absent.

    Raises:
        InputFileError: missing/unreadable file, no table in ``hdu``, or a named label /
            column / APOGEE_ID absent (the message lists what the file has).
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "allStar file does not exist")
    label_names = tuple(str(n).upper() for n in labels)
    kind = _table_kind(p)

    def build(cols: _Columns) -> AllStarTable:
        wanted = ["APOGEE_ID", *label_names, *(str(c).upper() for c in columns)]
        absent = [n for n in wanted if not cols.has(n)]
        if absent:
            have = sorted(cols.all_names)
            shown = ", ".join(have[:40]) + (" …" if len(have) > 40 else "")
            raise InputFileError(p, f"column(s) {absent} not in the table; it has: {shown}")
        n = cols.n_rows
        lab = np.full((n, len(label_names)), MISSING)
        err = np.full((n, len(label_names)), MISSING)
        missing_err = []
        for j, name in enumerate(label_names):
            lab[:, j] = missing_to_sentinel(cols.get(name))
            if cols.has(name + error_suffix):
                err[:, j] = missing_to_sentinel(cols.get(name + error_suffix))
            else:
                missing_err.append(name + error_suffix)

        def flags(name: str) -> np.ndarray:
            return flag_values(cols.get(name) if cols.has(name) else None, n)

        extra = {}
        for c in columns:
            v = cols.get(str(c))
            extra[str(c).upper()] = stripped_strings(v) if v.dtype.kind in "SUO" else native(v)
        return AllStarTable(
            labels=lab,
            label_errors=err,
            label_names=label_names,
            apogee_id=stripped_strings(cols.get("APOGEE_ID")),
            aspcapflag=flags("ASPCAPFLAG"),
            starflag=flags("STARFLAG"),
            columns=extra,
            meta={"FILE": str(p), "N_ROWS": n, "MISSING_ERROR_COLUMNS": missing_err},
        )

    if kind == "fits":
        from astropy.io import fits

        with open_fits(p, "allStar") as hdul:
            if hdu >= len(hdul) or not isinstance(hdul[hdu], fits.BinTableHDU | fits.TableHDU):
                raise InputFileError(p, f"HDU{hdu} is not a table (file has {len(hdul)} HDUs)")
            try:
                data = hdul[hdu].data
                names = list(hdul[hdu].columns.names)
                n = 0 if data is None else len(data)
                return build(_Columns(names, (lambda c: data.field(c)) if n else
                                      (lambda c: np.zeros(0)), n))
            except InputFileError:
                raise
            except Exception as e:
                raise InputFileError(p, f"cannot read the table ({type(e).__name__}: {e})") from e

    import pandas as pd

    wanted_upper = {"APOGEE_ID", "ASPCAPFLAG", "STARFLAG", *label_names,
                    *(n + error_suffix for n in label_names), *(str(c).upper() for c in columns)}
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(p).names
            df = pd.read_parquet(p, columns=[c for c in names if c.upper() in wanted_upper])
            all_names = names
        else:
            all_names = list(pd.read_csv(p, nrows=0).columns)
            df = pd.read_csv(p, usecols=lambda c: str(c).upper() in wanted_upper)
    except Exception as e:
        raise InputFileError(p, f"cannot read as {kind} ({type(e).__name__}: {e})") from e
    for c in df.columns:
        if df[c].dtype == object:
            df[c] = df[c].fillna("").astype(str)
    cols = _Columns([str(c) for c in df.columns], lambda c: df[c].to_numpy(), len(df))
    cols.all_names = [str(c) for c in all_names]
    return build(cols)
