"""Labels from SDSS-V summary tables: ``astraAllStar<Pipeline>`` (ASPCAP, AstroNN, ApogeeNet, BossNet,
TheCannon, ThePayne, …; DR19 ``v_astra`` 0.6.0, DR20 0.8.1), and :func:`read_label_table`, which
tells them from DR14–17 allStar files.

Layout (SDSS data model ``astraAllStar*.yaml``): HDU0 summary only (``PIPELINE``, ``V_ASTRA``);
HDU1 results from BOSS spectra, HDU2 results from APOGEE spectra; one row per star *and
spectrum source* (a star observed from APO and LCO has two rows). Column names are lower case:
``sdss_id`` (int64, the key), ``sdss4_apogee_id``, ``telescope``, ``snr``, labels such as ``teff``,
``logg``, ``fe_h``, ``m_h_atm``, ``alpha_m_atm``, ``mg_h`` …, their errors ``e_<label>``, per-label
flags ``<label>_flags`` (ASPCAP abundances), and the result flags ``result_flags`` (int64),
``flag_warn`` and ``flag_bad`` (bool), plus ``spectrum_flags`` (APOGEE HDU).

Quality cuts applied by :func:`read_astra_allstar` (each can be turned off; the counts go to
``meta``):

1. rows with ``flag_bad`` set are dropped (``drop_flag_bad=True``); rows with ``flag_warn`` are kept
   unless ``drop_flag_warn=True``;
2. a label whose ``<label>_flags`` column is non-zero is set to MISSING in that row
   (``mask_label_flags=True``); NaN/inf and ≤ −9999 values are MISSING as in allStar;
3. optional ``min_snr`` and ``telescope`` filters;
4. one row per ``sdss_id`` (``unique=True``): the row with the highest ``snr`` (ties: file order).

Labels are asked for by name, case-insensitively (``TEFF``, ``LOGG``, ``FE_H``, ``MG_H`` …).
``M_H`` and ``ALPHA_M`` fall back on ASPCAP's ``m_h_atm``/``alpha_m_atm``. An ``X_FE`` label absent
from the table is derived as ``x_h − fe_h`` with error √(e_x_h² + e_fe_h²) (errors treated as
independent; ``meta["DERIVED_LABELS"]`` lists them).

The result is an :class:`~starlabels.io.AllStarTable` with ``key_column="SDSS_ID"`` and ``keys``
the int64 sdss_ids; ``apogee_id`` holds ``sdss4_apogee_id`` (``""`` where empty);
``aspcapflag`` = ``result_flags``, ``starflag`` = ``spectrum_flags`` (0 where absent); ``columns``
always holds ``FLAG_BAD``, ``FLAG_WARN``, ``RESULT_FLAGS``, ``SPECTRUM_FLAGS``, ``TELESCOPE``,
``SNR`` and every ``<LABEL>_FLAGS`` the table has, plus the extra ``columns`` asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputFileError
from starlabels.io.allstar import DEFAULT_LABELS, AllStarTable, read_allstar
from starlabels.io.fits_file import is_fits, native, open_fits
from starlabels.io.label_columns import flag_values, missing_to_sentinel, stripped_strings

__all__ = ["is_astra_table", "read_astra_allstar", "read_label_table"]

_FALLBACK = {"m_h": "m_h_atm", "alpha_m": "alpha_m_atm", "c_m": "c_m_atm", "n_m": "n_m_atm"}
_HDU_NAMES = {"boss": 1, "apogee": 2}


def is_astra_table(path: str | os.PathLike[str]) -> bool:
    """True for an SDSS-V summary table: a FITS file with ``PIPELINE`` or ``V_ASTRA`` in HDU0 and
    an ``sdss_id`` column, or a CSV/Parquet file with ``sdss_id`` but no ``apogee_id`` column."""
    from astropy.io import fits

    p = Path(path)
    if is_fits(p):
        with open_fits(p, "summary table") as hdul:
            tables = [h for h in hdul[1:] if isinstance(h, fits.BinTableHDU)]
            has_id = any("sdss_id" in {n.lower() for n in h.columns.names} for h in tables)
            has_apogee = any("apogee_id" in {n.lower() for n in h.columns.names} for h in tables)
            return has_id and not has_apogee
    names = _flat_names(p)
    return "sdss_id" in names and "apogee_id" not in names


def _flat_names(p: Path) -> set[str]:
    import pandas as pd

    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return {n.lower() for n in pq.read_schema(p).names}
        return {str(n).strip().lower() for n in pd.read_csv(p, nrows=0).columns}
    except Exception as e:
        raise InputFileError(p, f"cannot read the table header ({type(e).__name__}: {e})") from e


class _Columns:
    """Lower-case name → column, read on first use (a DR19 astraAllStarASPCAP has 396 columns and
    1.5 million rows; only the asked-for ones are read)."""

    def __init__(self, names: Sequence[str], getter: Any):
        self._names = {str(n).strip().lower(): n for n in names}
        self._getter = getter
        self._cache: dict[str, np.ndarray] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Any:
        return iter(self._names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = native(self._getter(self._names[name]))
        return self._cache[name]

    def get(self, name: str, default: Any = None) -> Any:
        """The column ``name`` (lower case), or ``default`` when the table has none."""
        if name not in self._names:
            return default
        return self[name]


def _fits_table(p: Path, hdul: Any, hdu: int | str) -> tuple[_Columns, int, str]:
    from astropy.io import fits

    tables = {i: h for i, h in enumerate(hdul) if isinstance(h, fits.BinTableHDU)}
    if isinstance(hdu, str) and hdu.lower() == "auto":
        filled = [i for i, h in tables.items() if int(h.header.get("NAXIS2", 0)) > 0]
        if len(filled) != 1:
            raise InputFileError(p, f"{len(filled)} non-empty result tables (HDUs {filled}); "
                                    "choose one with hdu='apogee' (HDU2), 'boss' (HDU1) or a number")
        index = filled[0]
    else:
        index = _HDU_NAMES.get(hdu.lower(), -1) if isinstance(hdu, str) else int(hdu)
        if index not in tables:
            raise InputFileError(p, f"HDU {hdu} is not a table (tables: {sorted(tables)})")
    data = tables[index].data
    n = 0 if data is None else len(data)
    getter = (lambda c: data.field(c)) if n else (lambda c: np.zeros(0))
    return _Columns(tables[index].columns.names, getter), n, f"HDU{index}"


def read_astra_allstar(
    path: str | os.PathLike[str],
    labels: Sequence[str] = DEFAULT_LABELS,
    *,
    columns: Sequence[str] = (),
    hdu: int | str = "auto",
    drop_flag_bad: bool = True,
    drop_flag_warn: bool = False,
    mask_label_flags: bool = True,
    min_snr: float | None = None,
    telescope: str | Sequence[str] | None = None,
    unique: bool = True,
) -> AllStarTable:
    """Labels, errors and flags from an astraAllStar<Pipeline> table, keyed on ``sdss_id``.

    Args:
        path: FITS (``.fits`` / ``.fits.gz``), CSV or Parquet with the astra columns.
        labels: label names (case-insensitive), e.g. ``("TEFF", "LOGG", "FE_H", "MG_FE")``.
        columns: extra columns returned in ``.columns`` (upper-case keys).
        hdu: ``"auto"`` (the one non-empty result table), ``"apogee"`` (HDU2), ``"boss"`` (HDU1) or
            an HDU number.
        drop_flag_bad, drop_flag_warn, mask_label_flags, min_snr, telescope, unique: the quality
            cuts of the module docstring.

    Returns:
        :class:`~starlabels.io.AllStarTable` (``key_column="SDSS_ID"``); ``meta`` has ``FILE``,
        ``HDU``, ``PIPELINE`` (when known), ``N_ROWS`` (in the file), ``N_DROPPED_FLAG_BAD``,
        ``N_DROPPED_FLAG_WARN``, ``N_DROPPED_SNR``, ``N_DROPPED_TELESCOPE``, ``N_DUPLICATES``,
        ``N_MASKED_BY_LABEL_FLAGS`` (per label), ``DERIVED_LABELS``, ``MISSING_ERROR_COLUMNS``.

    Raises:
        InputFileError: unreadable file, no ``sdss_id`` column, a label or column the table lacks
            (the message lists label-like columns it has), or an ambiguous ``hdu="auto"``.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "astraAllStar file does not exist")
    cuts = {"drop_flag_bad": drop_flag_bad, "drop_flag_warn": drop_flag_warn,
            "mask_label_flags": mask_label_flags, "min_snr": min_snr, "telescope": telescope,
            "unique": unique}
    if is_fits(p):
        with open_fits(p, "astraAllStar") as hdul:
            cols, n, where = _fits_table(p, hdul, hdu)
            pipeline = hdul[0].header.get("PIPELINE")
            try:
                return _build(p, cols, n, where, pipeline, labels, columns, **cuts)
            except InputFileError:
                raise
            except Exception as e:
                raise InputFileError(p, f"cannot read the table ({type(e).__name__}: {e})") from e
    import pandas as pd

    try:
        df = pd.read_parquet(p) if p.suffix.lower() in (".parquet", ".pq") else pd.read_csv(p)
    except Exception as e:
        raise InputFileError(p, f"cannot read the table ({type(e).__name__}: {e})") from e
    cols = _Columns([str(c) for c in df.columns], lambda c: df[c].to_numpy())
    return _build(p, cols, len(df), "-", None, labels, columns, **cuts)


def _build(p: Path, cols: _Columns, n: int, where: str, pipeline: Any, labels: Sequence[str],
           columns: Sequence[str], *, drop_flag_bad: bool, drop_flag_warn: bool, mask_label_flags: bool,
           min_snr: float | None, telescope: str | Sequence[str] | None, unique: bool) -> AllStarTable:
    if "sdss_id" not in cols:
        raise InputFileError(p, f"{where}: no sdss_id column; not an SDSS-V summary table")
    label_names = tuple(str(x).upper() for x in labels)
    lab = np.full((n, len(label_names)), MISSING)
    err = np.full((n, len(label_names)), MISSING)
    derived, missing_err, masked = [], [], {}
    for j, name in enumerate(label_names):
        low = name.lower()
        src = low if low in cols else _FALLBACK.get(low)
        if src is not None and src in cols:
            lab[:, j] = missing_to_sentinel(cols[src])
            if f"e_{src}" in cols:
                err[:, j] = missing_to_sentinel(cols[f"e_{src}"])
            else:
                missing_err.append(f"e_{src}")
            flag_col = f"{src}_flags"
            if mask_label_flags and flag_col in cols:
                bad = np.asarray(cols[flag_col]).astype(np.int64) != 0
                masked[name] = int(bad.sum())
                lab[bad, j] = MISSING
                err[bad, j] = MISSING
            continue
        if low.endswith("_fe") and f"{low[:-3]}_h" in cols and "fe_h" in cols:
            x_h, fe_h = missing_to_sentinel(cols[f"{low[:-3]}_h"]), missing_to_sentinel(cols["fe_h"])
            ok = (x_h != MISSING) & (fe_h != MISSING)
            if mask_label_flags:
                for fc in (f"{low[:-3]}_h_flags", "fe_h_flags"):
                    if fc in cols:
                        ok &= np.asarray(cols[fc]).astype(np.int64) == 0
            lab[ok, j] = x_h[ok] - fe_h[ok]
            if f"e_{low[:-3]}_h" in cols and "e_fe_h" in cols:
                ex, ef = missing_to_sentinel(cols[f"e_{low[:-3]}_h"]), missing_to_sentinel(cols["e_fe_h"])
                ok_e = ok & (ex != MISSING) & (ef != MISSING)
                err[ok_e, j] = np.sqrt(ex[ok_e] ** 2 + ef[ok_e] ** 2)
            derived.append(name)
            continue
        label_like = sorted(c for c in cols if not c.startswith(("e_", "raw_")) and not c.endswith(
            ("_flags", "_rchi2", "_task_pk", "_flag", "_id", "_mag")))
        raise InputFileError(p, f"{where}: no column for label {name!r}; label-like columns: "
                                f"{', '.join(label_like[:60])}")
    absent = [c for c in columns if str(c).lower() not in cols]
    if absent:
        raise InputFileError(p, f"{where}: column(s) {absent} not in the table")

    def flags(name: str, dtype: Any = np.int64) -> np.ndarray:
        return flag_values(cols.get(name), n, dtype)

    flag_bad, flag_warn = flags("flag_bad", bool), flags("flag_warn", bool)
    snr = np.asarray(cols["snr"], np.float64) if "snr" in cols else np.full(n, np.nan)
    tel = stripped_strings(cols["telescope"]) if "telescope" in cols else np.full(n, "", dtype="U1")
    keep = np.ones(n, bool)
    counts: dict[str, Any] = {}
    if drop_flag_bad:
        counts["N_DROPPED_FLAG_BAD"] = int((keep & flag_bad).sum())
        keep &= ~flag_bad
    if drop_flag_warn:
        counts["N_DROPPED_FLAG_WARN"] = int((keep & flag_warn).sum())
        keep &= ~flag_warn
    if min_snr is not None:
        low_snr = ~(snr >= float(min_snr))
        counts["N_DROPPED_SNR"] = int((keep & low_snr).sum())
        keep &= ~low_snr
    if telescope is not None:
        wanted = {telescope} if isinstance(telescope, str) else set(telescope)
        off = ~np.isin(tel, sorted(wanted))
        counts["N_DROPPED_TELESCOPE"] = int((keep & off).sum())
        keep &= ~off
    rows = np.flatnonzero(keep)
    ids = np.asarray(cols["sdss_id"]).astype(np.int64)
    if unique and rows.size:
        score = np.where(np.isfinite(snr[rows]), snr[rows], -np.inf)
        order = np.lexsort((rows, -score, ids[rows]))  # by id, best snr first, then file order
        sorted_rows = rows[order]
        first = np.r_[True, ids[sorted_rows][1:] != ids[sorted_rows][:-1]]
        counts["N_DUPLICATES"] = int((~first).sum())
        rows = np.sort(sorted_rows[first])
    extra = {
        "FLAG_BAD": flag_bad[rows], "FLAG_WARN": flag_warn[rows], "RESULT_FLAGS": flags("result_flags")[rows],
        "SPECTRUM_FLAGS": flags("spectrum_flags")[rows], "TELESCOPE": tel[rows], "SNR": snr[rows],
    }
    for name in label_names:
        src = name.lower() if name.lower() in cols else _FALLBACK.get(name.lower(), "")
        if f"{src}_flags" in cols:
            extra[f"{name}_FLAGS"] = flags(f"{src}_flags")[rows]
    for c in columns:
        v = np.asarray(cols[str(c).lower()])
        extra[str(c).upper()] = stripped_strings(v)[rows] if v.dtype.kind in "SUO" else v[rows]
    apogee_id = (stripped_strings(cols["sdss4_apogee_id"])[rows] if "sdss4_apogee_id" in cols
                 else np.full(rows.size, "", dtype="U1"))
    meta = {"FILE": str(p), "HDU": where, "PIPELINE": pipeline, "N_ROWS": n, **counts,
            "N_MASKED_BY_LABEL_FLAGS": masked, "DERIVED_LABELS": derived,
            "MISSING_ERROR_COLUMNS": missing_err}
    return AllStarTable(
        labels=lab[rows], label_errors=err[rows], label_names=label_names, apogee_id=apogee_id,
        aspcapflag=flags("result_flags")[rows], starflag=flags("spectrum_flags")[rows], columns=extra,
        meta=meta, key_column="SDSS_ID", keys=ids[rows],
    )


def read_label_table(path: str | os.PathLike[str], labels: Sequence[str] = DEFAULT_LABELS, *,
                     columns: Sequence[str] = (), **astra_options: Any) -> AllStarTable:
    """Labels from an allStar (DR14–17, keyed on APOGEE_ID) or an SDSS-V astraAllStar table (keyed
    on SDSS_ID), told apart by content (:func:`is_astra_table`).

    Returns the :class:`~starlabels.io.AllStarTable` of :func:`~starlabels.io.read_allstar` or
    :func:`read_astra_allstar`; ``table.key_column`` (``"APOGEE_ID"``/``"SDSS_ID"``) and
    ``table.key`` say how to join it to spectra (``Spectrum.meta[table.key_column]``), and
    ``table.lookup(ids)`` gives row numbers. ``astra_options`` (quality cuts, ``hdu``) apply to
    astra tables only.

    Raises:
        InputFileError: as the two readers; astra options given for an allStar file.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "label table does not exist")
    if is_astra_table(p):
        return read_astra_allstar(p, labels, columns=columns, **astra_options)
    if astra_options:
        raise InputFileError(p, f"options {sorted(astra_options)} apply to astraAllStar tables; this is an "
                                "allStar-like table keyed on APOGEE_ID")
    return read_allstar(p, labels, columns=columns)
