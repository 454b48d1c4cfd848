"""One training-label table from the spectroscopic catalog, M-dwarf and YSO labels (APOGEE Net §2).

Groups (value of the ``group`` column):

- ``"payne"``: spectroscopic labels (The Payne, ASPCAP, ...) where they are trusted, i.e.
  Teff > 4000 K **or** log g < 3.5 (paper §2.2); cool dwarfs outside that region are not used.
- ``"mdwarf"``: photometric labels from :func:`starlabels.labels.mdwarf_labels` (rows with a label).
- ``"yso"``: labels of young stars from the photometric CNN (:mod:`starlabels.labels.yso`).

Precedence (:data:`PRECEDENCE`): **yso > mdwarf > payne**. A star present in several inputs takes
*all* its labels from the highest group that labels it; labels are never mixed between groups
(a YSO without [Fe/H] gets MISSING, not the Payne value). Reason: the YSO labels exist because
main-sequence relations and spectroscopic fits fail for young stars (the M-dwarf selection even
excludes star-forming fields), and the M-dwarf labels exist because the Payne is wrong for cool
dwarfs.

Uncertainties: an input's ``<LABEL>_ERR`` column is used where finite and > 0, otherwise the
group's default from :data:`DEFAULT_ERRORS` (or ``default_errors=``). Missing labels and their
errors are ``MISSING`` (-9999).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.labels.mdwarf import column_as_float, column_as_str, find_column, table_columns
from starlabels.units import label_unit

#: Label columns of the assembled table (allStar names: K, dex, dex).
LABELS: tuple[str, ...] = ("TEFF", "LOGG", "FE_H")
#: Units attached to the table columns (dex is not a FITS unit, so it goes in the description).
_TABLE_UNITS: dict[str, str] = {"TEFF": "K"}
#: Group names, highest precedence first.
PRECEDENCE: tuple[str, ...] = ("yso", "mdwarf", "payne")
#: The spectroscopic labels are used where TEFF > PAYNE_TEFF_MIN or LOGG < PAYNE_LOGG_MAX.
PAYNE_TEFF_MIN = 4000.0
PAYNE_LOGG_MAX = 3.5

#: Default 1-sigma uncertainties per group when the input has no usable ``*_ERR`` column.
#: payne: the typical values quoted for The Payne in the paper's §2.2 (Ting et al. 2019).
#: mdwarf, yso: assumed values of the same order (the paper quotes none); override as needed.
DEFAULT_ERRORS: dict[str, dict[str, float]] = {
    "payne": {"TEFF": 100.0, "LOGG": 0.1, "FE_H": 0.03},
    "mdwarf": {"TEFF": 100.0, "LOGG": 0.1, "FE_H": 0.15},
    "yso": {"TEFF": 100.0, "LOGG": 0.1, "FE_H": 0.1},
}


def payne_usable(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """True where spectroscopic labels are trusted: Teff > 4000 K or log g < 3.5 (NaN-safe)."""
    t, g = np.asarray(teff, dtype=float), np.asarray(logg, dtype=float)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(t) & (t > PAYNE_TEFF_MIN)) | (np.isfinite(g) & (g < PAYNE_LOGG_MAX))


def _group_arrays(
    table: Any, group: str, id_column: str, labels: Sequence[str], errors: Mapping[str, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids (M,), values (M, L), errors (M, L)) of the rows of ``table`` that carry a label."""
    id_col = find_column(table, id_column)
    if id_col is None:
        raise InputDataError(f"{group} table has no id column {id_column!r} "
                             f"(has {', '.join(table_columns(table)[:20])})")
    ids = column_as_str(table, id_col)
    n = len(ids)
    vals = np.full((n, len(labels)), np.nan)
    errs = np.full((n, len(labels)), np.nan)
    for j, lab in enumerate(labels):
        col = find_column(table, lab)
        if col is not None:
            vals[:, j] = column_as_float(table, col)
        ecol = find_column(table, f"{lab}_ERR")
        if ecol is not None:
            errs[:, j] = column_as_float(table, ecol)
    if group == "payne":
        teff = vals[:, labels.index("TEFF")] if "TEFF" in labels else np.full(n, np.nan)
        logg = vals[:, labels.index("LOGG")] if "LOGG" in labels else np.full(n, np.nan)
        has = payne_usable(teff, logg)
    else:
        has = np.isfinite(vals).any(axis=1)
    has &= ids != ""
    ids, vals, errs = ids[has], vals[has], errs[has]
    uniq, counts = np.unique(ids.astype(str), return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:5].tolist()
        raise InputDataError(f"{group} table has duplicated {id_column} among labelled rows: {dup}")
    default = np.array([errors.get(lab, np.nan) for lab in labels], dtype=float)
    with np.errstate(invalid="ignore"):
        bad_err = ~(np.isfinite(errs) & (errs > 0))
    errs = np.where(bad_err, default[None, :], errs)
    missing = ~np.isfinite(vals)
    vals[missing] = MISSING
    errs[missing | ~np.isfinite(errs)] = MISSING
    return ids, vals, errs


def assemble_labels(
    spectro: Any | None = None,
    mdwarf: Any | None = None,
    yso: Any | None = None,
    *,
    id_column: str = "APOGEE_ID",
    labels: Sequence[str] = LABELS,
    default_errors: Mapping[str, Mapping[str, float]] | None = None,
):
    """Merge the label sources into one training table (see the module docstring for the rules).

    Parameters
    ----------
    spectro, mdwarf, yso
        Tables (dict of arrays, astropy Table, pandas DataFrame) with ``id_column`` and the label
        columns (``TEFF`` K, ``LOGG`` dex, ``FE_H`` dex; names matched case-insensitively, so the
        ``teff/logg/fe_h`` output of :func:`~starlabels.labels.mdwarf_labels` works), optionally
        ``<LABEL>_ERR``. NaN and -9999 are missing. Any may be ``None``. Within each input the ids of
        labelled rows must be unique.
    labels
        Label columns to carry.
    default_errors
        ``{group: {label: sigma}}`` overriding :data:`DEFAULT_ERRORS`.

    Returns
    -------
    astropy.table.Table
        One row per labelled star: ``id_column`` (str), the labels, ``<LABEL>_ERR``, ``group``
        (``"payne"``, ``"mdwarf"``, ``"yso"``). Rows are ordered by first appearance among the
        *labelled* rows of spectro, then mdwarf, then yso. MISSING marks absent labels and
        errors. ``meta`` holds ``n_<group>`` (rows taken from each group), ``n_overridden``
        (stars labelled by more than one group; the higher group won) and ``n_spectro_unused``
        (spectroscopic rows outside the trusted region and not labelled otherwise).
    """
    from astropy.table import Table

    labels = list(labels)
    errors = {g: dict(DEFAULT_ERRORS.get(g, {})) for g in PRECEDENCE}
    for g, d in (default_errors or {}).items():
        if g not in errors:
            raise InputDataError(f"unknown group {g!r} in default_errors (groups: {PRECEDENCE})")
        errors[g].update(d)
    sources = {"payne": spectro, "mdwarf": mdwarf, "yso": yso}
    order = ("payne", "mdwarf", "yso")  # row order of the output
    parts = {g: _group_arrays(sources[g], g, id_column, labels, errors[g])
             for g in order if sources[g] is not None}

    if not parts:
        all_ids = np.array([], dtype=object)
    else:
        all_ids = np.concatenate([parts[g][0] for g in order if g in parts]).astype(str)
    uniq, first = np.unique(all_ids, return_index=True)
    # output row of each unique id: ids ordered by first appearance
    out_row = np.empty(len(uniq), dtype=np.int64)
    out_row[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    out_ids = all_ids[np.sort(first)] if len(all_ids) else np.array([], dtype=str)
    n = len(out_ids)
    vals = np.full((n, len(labels)), MISSING)
    errs = np.full((n, len(labels)), MISSING)
    group = np.full(n, "", dtype=object)
    n_sources = np.zeros(n, dtype=np.int64)
    for g in reversed(PRECEDENCE):  # lowest first; higher groups overwrite
        if g not in parts:
            continue
        ids, v, e = parts[g]
        rows = out_row[np.searchsorted(uniq, ids.astype(str))]
        vals[rows], errs[rows], group[rows] = v, e, g
        n_sources[rows] += 1

    out = Table()
    out[id_column] = out_ids.astype(str)
    for j, lab in enumerate(labels):
        out[lab] = vals[:, j]
    for j, lab in enumerate(labels):
        out[f"{lab}_ERR"] = errs[:, j]
    for lab in labels:
        for c in (lab, f"{lab}_ERR"):
            out[c].unit = _TABLE_UNITS.get(lab)
            out[c].description = f"{c} ({label_unit(lab)}; {MISSING:g} = missing)"
    out["group"] = group.astype(str)
    for g in PRECEDENCE:
        out.meta[f"n_{g}"] = int(np.count_nonzero(group == g))
    out.meta["n_overridden"] = int(np.count_nonzero(n_sources > 1))
    if spectro is not None:
        id_col = find_column(spectro, id_column)
        sp_ids = column_as_str(spectro, id_col).astype(str)
        out.meta["n_spectro_unused"] = int(np.count_nonzero(~np.isin(sp_ids, out_ids)))
    else:
        out.meta["n_spectro_unused"] = 0
    out.meta["precedence"] = list(PRECEDENCE)
    return out
