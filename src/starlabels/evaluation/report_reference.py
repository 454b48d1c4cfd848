"""Which labels the report shows and which reference values it compares them with: label columns
of the catalog, reference columns (``X``, ``X_REF``, ``REF_X``, ``TRUE_X``, ``X_TRUE``; any case)
of a reference table matched by star id or of the catalog itself, and each star's group.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from starlabels.errors import InputDataError, InputFileError
from starlabels.evaluation.columns import get_column, ids_of, match_reference
from starlabels.evaluation.report_inputs import ModelCard, read_table

__all__ = ["REFERENCE_PATTERNS", "Reference", "error_matrix", "find_column", "load_reference",
           "resolve_id_column", "resolve_labels"]

#: Reference-column spellings tried for label ``X`` (case-insensitive), after ``X`` itself.
REFERENCE_PATTERNS: tuple[str, ...] = ("{}_REF", "REF_{}", "TRUE_{}", "{}_TRUE")

_NON_LABEL_COLUMNS = {"SDSS_ID", "APOGEE_ID", "TELESCOPE", "HDU", "RA", "DEC", "SNR", "SOURCE", "FLAG",
                      "DOMAIN_SHIFT", "MODEL_NAME", "MODEL_VERSION"}


@dataclass
class Reference:
    """Reference labels aligned to the catalog rows: ``R`` (N, L) in label units, NaN where absent;
    ``E`` (N, L) their uncertainties (0 where a label has none) or ``None``; the column used per
    label; where they came from; the stars matched; and each star's group when known."""

    R: np.ndarray  # (N, L) NaN where absent
    E: np.ndarray | None  # (N, L) reference uncertainties or None
    columns: dict[str, str]  # label -> reference column used
    err_columns: dict[str, str]
    source: str
    n_matched: int
    groups: np.ndarray | None = None
    group_column: str | None = None


def find_column(columns: Iterable[str], candidates: Sequence[str]) -> str | None:
    """The first of ``candidates`` among ``columns`` (case-insensitive), spelled as in ``columns``."""
    by_upper = {c.upper(): c for c in columns}
    for cand in candidates:
        if cand.upper() in by_upper:
            return by_upper[cand.upper()]
    return None


def _reference_columns(columns: Sequence[str], labels: Sequence[str], *, own: bool
                       ) -> tuple[dict[str, str], dict[str, str]]:
    """Label → reference column (and → its ``_ERR`` column). ``own``: the table is the catalog,
    so the bare label names are its predictions, not references."""
    found, errs = {}, {}
    for x in labels:
        cands = [p.format(x) for p in REFERENCE_PATTERNS]
        col = find_column(columns, cands if own else [x, *cands])
        if col is None:
            continue
        found[x] = col
        ecol = find_column(columns, [f"{col}_ERR"])
        if ecol is not None:
            errs[x] = ecol
    return found, errs


def resolve_labels(card: ModelCard, catalog: pd.DataFrame, catalog_path: Path,
                    notes: list[str]) -> list[str]:
    """The model's labels that the catalog has (a note names those it lacks), or, for a config
    without label names, the catalog columns ``X`` with an ``X_ERR`` beside them. Raises
    :class:`InputFileError` when there are none."""
    cols = set(catalog.columns)
    names = card.label_names
    if names:
        present = [x for x in names if x in cols]
        absent = [x for x in names if x not in cols]
        if not present:
            raise InputFileError(
                catalog_path, f"has none of the model's label columns ({', '.join(names)})"
            )
        if absent:
            notes.append(f"the catalog has no column for the model's label(s) {', '.join(absent)}")
        return present
    inferred = [c for c in catalog.columns
                if c not in _NON_LABEL_COLUMNS and "_ERR" not in c and f"{c}_ERR" in cols]
    if not inferred:
        raise InputFileError(catalog_path, "no label columns found (expected X with X_ERR columns)")
    notes.append(f"label names taken from the catalog ({', '.join(inferred)}): the model config "
                 "does not list them")
    return inferred


def _groups_from(table: pd.DataFrame, column: str) -> np.ndarray:
    g = table[column]
    return g.astype(str).str.strip().to_numpy()


def _with_id_column(table: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """``table`` with its id column spelled ``id_column`` (SDSS-V tables write ``sdss_id``)."""
    if id_column in table.columns:
        return table
    same = [c for c in table.columns if str(c).lower() == id_column.lower()]
    return table.rename(columns={same[0]: id_column}) if same else table


def resolve_id_column(id_column: str, catalog: pd.DataFrame, reference: str | os.PathLike | None) -> str:
    """``"auto"`` → ``SDSS_ID`` when the catalog has SDSS_IDs (SDSS-V files) and the reference, if
    any, has an sdss_id column; else ``APOGEE_ID``. Any other value is returned as given."""
    if id_column != "auto":
        return id_column
    has = "SDSS_ID" in catalog.columns and bool(
        (pd.to_numeric(catalog["SDSS_ID"], errors="coerce") > 0).any())
    if has and reference is not None:
        try:
            names = {str(c).lower() for c in read_table(Path(reference), "reference").columns}
        except InputFileError:
            names = set()
        has = "sdss_id" in names
    return "SDSS_ID" if has else "APOGEE_ID"


def load_reference(
    catalog: pd.DataFrame, catalog_path: Path, reference: str | os.PathLike | None,
    labels: Sequence[str], id_column: str, group_column: str | None, notes: list[str],
) -> Reference | None:
    """Reference labels aligned to the catalog rows: from ``reference`` matched by ``id_column``,
    or from the catalog's own reference columns when ``reference`` is ``None`` or the catalog's
    path (``None`` when it has none). Groups from ``group_column`` (default ``GROUP``) of the
    reference, else of the catalog. Remarks go to ``notes``; unusable inputs raise
    :class:`InputFileError` naming the file."""
    own = reference is None or Path(reference).resolve() == catalog_path.resolve()
    if own:
        cols, errs = _reference_columns(list(catalog.columns), labels, own=True)
        if not cols:
            if reference is not None:
                spellings = ", ".join(p.format("X") for p in REFERENCE_PATTERNS)
                raise InputFileError(catalog_path, "was given as its own reference but has no "
                                     f"reference columns ({spellings})")
            if group_column:
                notes.append(f"group column {group_column!r} not used: there are no reference labels")
            return None
        R = np.full((len(catalog), len(labels)), np.nan)
        E = np.zeros_like(R) if errs else None  # labels without reference errors: σ_ref = 0
        for j, x in enumerate(labels):
            if x in cols:
                R[:, j] = get_column(catalog, cols[x])
            if E is not None and x in errs:
                E[:, j] = get_column(catalog, errs[x])
        ref = Reference(R, E, cols, errs, f"columns of the catalog {catalog_path.name}",
                         int(np.isfinite(R).any(axis=1).sum()))
    else:
        rpath = Path(reference)
        table = _with_id_column(read_table(rpath, "reference"), id_column)
        for t, p, what in ((catalog, catalog_path, "catalog"), (table, rpath, "reference")):
            if id_column not in t.columns:
                raise InputFileError(p, f"the {what} has no {id_column!r} column to match stars by")
        cols, errs = _reference_columns([c for c in table.columns if c != id_column], labels,
                                        own=False)
        if not cols:
            raise InputFileError(rpath, f"has no reference column for any label ({', '.join(labels)})")
        ref_ids = ids_of(table, id_column)
        try:
            renamed = pd.DataFrame({id_column: ref_ids,
                                    **{x: get_column(table, c) for x, c in cols.items()},
                                    **{f"{x}_ERR": get_column(table, c)
                                       for x, c in errs.items()}})
            matched = match_reference(
                catalog, renamed, [*cols, *(f"{x}_ERR" for x in errs)], id_column=id_column
            )
        except InputDataError as exc:
            raise InputFileError(rpath, str(exc)) from None
        cat_ids = ids_of(catalog, id_column)
        in_ref = pd.Index(ref_ids).get_indexer(cat_ids) >= 0
        n_matched = int(in_ref.sum())
        if n_matched == 0:
            raise InputFileError(rpath, f"no {id_column} in common with the catalog")
        R = np.full((len(catalog), len(labels)), np.nan)
        E = np.zeros_like(R) if errs else None  # labels without reference errors: σ_ref = 0
        for j, x in enumerate(labels):
            if x in cols:
                R[:, j] = matched[x].to_numpy()
            if E is not None and x in errs:
                E[:, j] = matched[f"{x}_ERR"].to_numpy()
        ref = Reference(R, E, cols, errs, f"{rpath.name} ({len(table)} rows)", n_matched)
        if len(catalog) > n_matched:
            notes.append(
                f"{len(catalog) - n_matched} of {len(catalog)} catalog stars are not in the reference table"
            )
        gcol = (
            find_column(table.columns, [group_column])
            if group_column
            else find_column(table.columns, ["GROUP"])
        )
        if gcol is not None:
            s = pd.Series(_groups_from(table, gcol), index=ref_ids)
            s = s[~s.index.duplicated()]
            ref.groups = s.reindex(cat_ids).fillna("not in reference").to_numpy()
            ref.group_column = f"{gcol} (reference)"
    missing = [x for x in labels if x not in ref.columns]
    if missing:
        notes.append(f"no reference values for {', '.join(missing)}")
    if ref.groups is None:
        gcol = (
            find_column(catalog.columns, [group_column])
            if group_column
            else find_column(catalog.columns, ["GROUP"])
        )
        if gcol is not None:
            ref.groups = _groups_from(catalog, gcol)
            ref.group_column = f"{gcol} (catalog)"
    if group_column and ref.groups is None:
        raise InputFileError(
            reference or catalog_path, f"no group column {group_column!r} in the reference or the catalog"
        )
    return ref


def error_matrix(catalog: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    """(N, L) reported uncertainties (NaN where there is no ``X_ERR`` column or value)."""
    E = np.full((len(catalog), len(labels)), np.nan)
    for j, x in enumerate(labels):
        if f"{x}_ERR" in catalog.columns:
            E[:, j] = get_column(catalog, f"{x}_ERR")
    return E

