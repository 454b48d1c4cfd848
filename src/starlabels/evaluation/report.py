"""A report users can read: one self-contained HTML page for a trained model and its catalog.

:func:`build_report` (the ``starlabels report`` command) writes ``DIR/index.html`` with

1. the **model card** from the model folder's ``config.json`` (read directly, no torch needed):
   architecture, labels and units, label normalisation, preprocessing, spectrum scaling,
   uncertainty calibration and training provenance (data files, sizes, splits, dates, …), plus
   the training curve from ``history.csv``;
2. a **catalog summary**: counts, flagged fractions per ``FLAG`` bit
   (:mod:`starlabels.inference.flags`), label ranges and median uncertainties (and their parts);
3. when reference labels are given, the **accuracy tables** of
   :mod:`starlabels.evaluation.metrics`: residuals per label, per group, per SNR bin, and the
   z-score widths of the calibration check;
4. every **figure** the inputs allow (:mod:`starlabels.evaluation.plots`): Kiel diagrams coloured by
   [Fe/H] and by an uncertainty with PARSEC isochrones, the young-star selection with its age bins,
   uncertainty vs SNR, predicted vs reference, residuals vs SNR and z-score histograms. What the
   inputs do not allow is listed on the page with the reason.

Figures are PNG files in ``DIR/figures/`` (default) or embedded in the page as base64
(``embed=True``, one file to mail around). Every table is also written as CSV (full precision) to
``DIR/tables/``. All text taken from the inputs is HTML-escaped.

Inputs
------
catalog
    FITS, CSV or Parquet with the catalog columns of docs/DESIGN.md (``APOGEE_ID``, ``SNR``, ``X``,
    ``X_ERR``, ``X_ERR_<PART>``, ``FLAG``, ``MODEL_NAME``, ``MODEL_VERSION``).
reference
    A FITS/CSV/Parquet table of trusted labels — or a simulated HDF5 dataset, whose
    ``meta/true_<LABEL>`` become ``TRUE_<LABEL>`` — matched to the catalog by ``APOGEE_ID``, with columns
    named like the labels (``TEFF``) or ``TEFF_REF``, ``REF_TEFF``, ``TRUE_TEFF``, ``TEFF_TRUE``
    (case-insensitive); ``<column>_ERR`` is the reference uncertainty, added in quadrature in the
    z-scores. Reference columns can also live in the catalog itself (``TEFF_REF``, ``TRUE_TEFF``, …):
    they are used when no reference table is given, or when ``reference`` is the catalog's path.
    A ``GROUP`` column (reference first, then catalog) gives the per-group tables.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from starlabels.errors import InputDataError, InputFileError, StarlabelsError
from starlabels.evaluation import metrics as label_metrics
from starlabels.evaluation.binned_statistics import quiet_nan_warnings

__all__ = [
    "ModelCard",
    "ReportResult",
    "build_report",
    "read_model_card",
    "read_table",
]

#: Suffixes of readable tables and their format.
TABLE_FORMATS: dict[str, str] = {
    ".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".fit.gz": "fits",
    ".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet",
}
#: Model-folder format versions this module knows how to present.
KNOWN_FORMAT_VERSIONS: tuple[int, ...] = (1,)
#: Reference-column spellings tried for label ``X`` (case-insensitive), after ``X`` itself.
REFERENCE_PATTERNS: tuple[str, ...] = ("{}_REF", "REF_{}", "TRUE_{}", "{}_TRUE")
#: Uncertainty parts of the catalog, in catalog order.
PARTS: tuple[str, ...] = ("EPISTEMIC", "ALEATORIC", "NOISE", "DELTA")
#: Default isochrone age (log10 yr; 4 Gyr) drawn on the Kiel diagrams.
DEFAULT_ISOCHRONE_AGES: tuple[float, ...] = (9.6,)
#: Labels per figure for the multi-panel figures (keeps panels readable at page width).
PANELS_PER_FIGURE = 3

_NON_LABEL_COLUMNS = {"SDSS_ID", "APOGEE_ID", "TELESCOPE", "HDU", "RA", "DEC", "SNR", "SOURCE", "FLAG",
                      "DOMAIN_SHIFT", "MODEL_NAME", "MODEL_VERSION"}


# --------------------------------------------------------------------------------------------
# reading inputs
# --------------------------------------------------------------------------------------------


def _table_format(path: Path) -> str | None:
    name = path.name.lower()
    for suffix, fmt in sorted(TABLE_FORMATS.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return fmt
    return None


def _hdf5_truth_table(path: Path, what: str) -> pd.DataFrame:
    """A starlabels HDF5 dataset as a reference table: ``APOGEE_ID`` (``meta/apogee_id``),
    ``GROUP``, ``SNR`` and every simulated truth ``meta/true_<LABEL>`` as ``TRUE_<LABEL>`` (what
    ``starlabels simulate`` writes)."""
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            meta = fh.get("meta")
            if meta is None:
                raise InputFileError(path, f"{what}: HDF5 file has no meta/ group (not a starlabels dataset)")
            text = lambda a: [x.decode() if isinstance(x, bytes) else str(x) for x in a]  # noqa: E731
            frame: dict[str, Any] = {}
            if "apogee_id" in meta:
                frame["APOGEE_ID"] = text(meta["apogee_id"][:])
            if "group" in meta:
                frame["GROUP"] = text(meta["group"][:])
            if "snr" in meta:
                frame["SNR"] = np.asarray(meta["snr"][:], np.float64)
            truth = sorted(k for k in meta if k.startswith("true_"))
            for k in truth:
                frame["TRUE_" + k[len("true_"):]] = np.asarray(meta[k][:], np.float64)
    except OSError as exc:
        raise InputFileError(path, f"{what}: not a readable HDF5 file ({exc})") from None
    if not truth:
        raise InputFileError(path, f"{what}: HDF5 dataset has no meta/true_<LABEL> columns (simulated "
                                   "truth); give a label table (FITS, CSV, Parquet) instead")
    if "APOGEE_ID" not in frame:
        raise InputFileError(path, f"{what}: HDF5 dataset has no meta/apogee_id to match the catalog by")
    return pd.DataFrame(frame)


def read_table(path: str | os.PathLike, what: str = "catalog") -> pd.DataFrame:
    """Read a FITS (first table HDU), CSV or Parquet table as a DataFrame, without torch.

    FITS byte strings are decoded and multi-dimensional columns (e.g. allStar's ``X_H`` arrays)
    are left out; CSV ids (``APOGEE_ID``) stay strings. Raises :class:`InputFileError` for a
    missing file, an unknown suffix or an unreadable table; ``what`` names the table in messages.
    """
    p = Path(path)
    if not p.is_file():
        raise InputFileError(p, f"{what} file does not exist")
    if p.name.lower().endswith((".h5", ".hdf5")):
        return _hdf5_truth_table(p, what)
    fmt = _table_format(p)
    if fmt is None:
        raise InputFileError(
            p, f"unknown {what} format; expected one of {', '.join(sorted(TABLE_FORMATS))}"
        )
    try:
        if fmt == "csv":
            return pd.read_csv(p, dtype={"APOGEE_ID": str, "SOURCE": str, "MODEL_NAME": str,
                                         "MODEL_VERSION": str})
        if fmt == "parquet":
            return pd.read_parquet(p)
        from astropy.table import Table

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unit-parsing warnings of foreign FITS files
            t = Table.read(p, format="fits")
        keep = [c for c in t.colnames if len(t[c].shape) <= 1]
        t = t[keep]
        frame = {}
        for c in keep:
            col = t[c]
            if col.dtype.kind == "S":
                frame[c] = np.char.strip(np.char.decode(np.ma.filled(np.asarray(col), b""), "utf-8"))
            elif col.dtype.kind == "U":
                frame[c] = np.char.strip(np.ma.filled(np.asarray(col), ""))
            elif np.ma.isMaskedArray(col) or hasattr(col, "mask"):
                data = np.ma.asarray(col)
                frame[c] = (np.ma.filled(data.astype(float), np.nan) if data.mask.any()
                            else np.asarray(data.data))
            else:
                frame[c] = np.asarray(col)
        return pd.DataFrame(frame)
    except InputFileError:
        raise
    except Exception as exc:  # pandas/astropy/pyarrow raise many types for bad files
        raise InputFileError(p, f"cannot read the {what} as a {fmt.upper()} table ({exc})") from None


@dataclass
class ModelCard:
    """What a model folder says about itself, read from ``config.json`` (and ``history.csv``).

    ``config`` is the parsed JSON object; ``notes`` lists what is missing or odd (a partial config
    still gives a card: absent sections are shown as "not recorded").
    """

    folder: Path
    config: dict[str, Any]
    history: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def section(self, key: str) -> Any:
        """One top-level entry of ``config.json`` (``None`` when absent)."""
        return self.config.get(key)

    @property
    def architecture(self) -> str | None:
        arch = self.section("architecture")
        if isinstance(arch, Mapping) and arch.get("name"):
            return str(arch["name"])
        return None

    @property
    def architecture_kwargs(self) -> dict[str, Any]:
        arch = self.section("architecture")
        kw = arch.get("kwargs") if isinstance(arch, Mapping) else None
        return dict(kw) if isinstance(kw, Mapping) else {}

    @property
    def name(self) -> str:
        """The folder's name (what ``starlabels predict`` writes as ``MODEL_NAME``)."""
        return self.folder.resolve().name or str(self.folder)

    @property
    def label_names(self) -> list[str]:
        labels = self.section("labels")
        names = labels.get("names") if isinstance(labels, Mapping) else None
        if isinstance(names, list) and all(isinstance(x, str) for x in names):
            return list(names)
        return []

    @property
    def label_units(self) -> dict[str, str]:
        """Unit per label name: from the config where recorded, else the allStar convention."""
        labels = self.section("labels")
        units = labels.get("units") if isinstance(labels, Mapping) else None
        names = self.label_names
        out = {n: label_metrics.label_unit(n) for n in names}
        if isinstance(units, list) and len(units) == len(names):
            out.update({n: str(u) for n, u in zip(names, units, strict=True)})
        return out

    def label_normalisation(self) -> dict[str, tuple[float, float]]:
        """``{label: (mean, std)}`` of the label scaler (empty when not recorded)."""
        norm = self.section("normalisation")
        lab = norm.get("labels") if isinstance(norm, Mapping) else None
        if not isinstance(lab, Mapping):
            return {}
        mean, std = lab.get("mean"), lab.get("std")
        names = lab.get("names") or self.label_names
        if not (isinstance(mean, list) and isinstance(std, list) and isinstance(names, list)):
            return {}
        if not (len(mean) == len(std) == len(names)):
            return {}
        return {str(n): (_num(m), _num(s)) for n, m, s in zip(names, mean, std, strict=True)}

    def calibration_table(self) -> pd.DataFrame | None:
        """Calibration factors as a tidy table: ``label, method, scale`` (+ σ_MAD of z before and
        after, dev-set size, reference σ where recorded). Reads both the plain ``{label: scale}``
        form and the per-method form of :mod:`starlabels.inference.calibration`. ``None`` when the
        model is not calibrated."""
        cal = self.section("calibration")
        if not isinstance(cal, Mapping) or not cal:
            return None
        rows: list[dict[str, Any]] = []
        methods = cal.get("methods")
        if isinstance(methods, Mapping):
            for method, entry in methods.items():
                if not isinstance(entry, Mapping):
                    continue
                scales = entry.get("scales") if isinstance(entry.get("scales"), Mapping) else {}
                for label, scale in scales.items():
                    row: dict[str, Any] = {"label": str(label), "method": str(method),
                                           "scale": _num(scale)}
                    for key, col in (("sigma_mad_before", "z_sigma_mad_before"),
                                     ("sigma_mad_after", "z_sigma_mad_after"), ("n_dev", "n_dev"),
                                     ("sigma_reference", "sigma_reference")):
                        val = entry.get(key)
                        if isinstance(val, Mapping) and label in val:
                            row[col] = _num(val[label])
                    rows.append(row)
        else:
            rows = [{"label": str(k), "method": "all", "scale": _num(v)} for k, v in cal.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)]
        return pd.DataFrame(rows) if rows else None


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _grid_lines(cfg: Mapping[str, Any]) -> list[str]:
    """"Input grid: …" / "Network input grid: …" lines (Grid.describe()) from a model config;
    empty for configs that record no grid and whose preprocessing cannot be read."""
    from starlabels.preprocess.grids import get_grid

    lines = []
    pre = cfg.get("preprocessing")
    if isinstance(pre, Mapping):
        try:
            from starlabels.preprocess.pipeline import PreprocessConfig

            c = PreprocessConfig.from_dict(dict(pre))
            lines.append(f"Input grid (raw spectra, instrument {c.instrument}): {c.grid.describe()}")
        except Exception:  # a config this version cannot read: the raw entries are listed below
            pass
    if isinstance(cfg.get("grid"), Mapping):
        try:
            lines.append(f"Network input grid: {get_grid(cfg['grid']).describe()}")
        except Exception:
            lines.append("Network input grid: unreadable (checksum or format mismatch)")
    return lines


def read_model_card(model: str | os.PathLike) -> ModelCard:
    """Read a model folder's ``config.json`` (or that file's path) and ``history.csv``.

    Raises :class:`InputFileError` when the folder or ``config.json`` is missing or the file is not
    a JSON object. A partial config is accepted: each missing section becomes a note on the card.
    """
    p = Path(model)
    if p.is_file() and p.name == "config.json":
        folder, cfg_path = p.parent, p
    else:
        folder, cfg_path = p, p / "config.json"
        if not p.exists():
            raise InputFileError(p, "model folder does not exist")
        if not p.is_dir():
            raise InputFileError(p, "expected a model folder (with config.json), got a file")
        if not cfg_path.is_file():
            raise InputFileError(p, "not a starlabels model folder: it has no config.json")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputFileError(cfg_path, f"not valid JSON ({exc})") from None
    if not isinstance(cfg, dict):
        raise InputFileError(cfg_path, f"expected a JSON object, got {type(cfg).__name__}")
    card = ModelCard(folder=folder, config=cfg)
    version = cfg.get("format_version")
    if version not in KNOWN_FORMAT_VERSIONS:
        card.notes.append(
            f"config.json has format_version {version!r}; this starlabels knows "
            f"{', '.join(map(str, KNOWN_FORMAT_VERSIONS))}, so the card shows what it can read"
        )
    for key, meaning in (("architecture", "network architecture"), ("labels", "label names and units"),
                         ("normalisation", "label normalisation"), ("preprocessing", "preprocessing"),
                         ("calibration", "calibration"), ("training", "training provenance")):
        if key not in cfg:
            card.notes.append(f"config.json has no {key!r} entry: {meaning} not recorded")
    if "labels" in cfg and not card.label_names:
        card.notes.append("config.json 'labels' has no list of label names")
    hist = folder / "history.csv"
    if hist.is_file():
        try:
            card.history = pd.read_csv(hist)
        except Exception as exc:  # malformed CSV of any kind
            card.notes.append(f"history.csv is unreadable ({exc}); no training curve")
    return card


# --------------------------------------------------------------------------------------------
# assembling the numbers
# --------------------------------------------------------------------------------------------


@dataclass
class _Reference:
    """Reference labels aligned to the catalog rows."""

    R: np.ndarray  # (N, L) NaN where absent
    E: np.ndarray | None  # (N, L) reference uncertainties or None
    columns: dict[str, str]  # label -> reference column used
    err_columns: dict[str, str]
    source: str
    n_matched: int
    groups: np.ndarray | None = None
    group_column: str | None = None


def _find_column(columns: Iterable[str], candidates: Sequence[str]) -> str | None:
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
        col = _find_column(columns, cands if own else [x, *cands])
        if col is None:
            continue
        found[x] = col
        ecol = _find_column(columns, [f"{col}_ERR"])
        if ecol is not None:
            errs[x] = ecol
    return found, errs


def _resolve_labels(card: ModelCard, catalog: pd.DataFrame, catalog_path: Path,
                    notes: list[str]) -> list[str]:
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


def _load_reference(
    catalog: pd.DataFrame, catalog_path: Path, reference: str | os.PathLike | None,
    labels: Sequence[str], id_column: str, group_column: str | None, notes: list[str],
) -> _Reference | None:
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
                R[:, j] = label_metrics.get_column(catalog, cols[x])
            if E is not None and x in errs:
                E[:, j] = label_metrics.get_column(catalog, errs[x])
        ref = _Reference(R, E, cols, errs, f"columns of the catalog {catalog_path.name}",
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
        ref_ids = label_metrics.ids_of(table, id_column)
        try:
            renamed = pd.DataFrame({id_column: ref_ids,
                                    **{x: label_metrics.get_column(table, c) for x, c in cols.items()},
                                    **{f"{x}_ERR": label_metrics.get_column(table, c)
                                       for x, c in errs.items()}})
            matched = label_metrics.match_reference(
                catalog, renamed, [*cols, *(f"{x}_ERR" for x in errs)], id_column=id_column
            )
        except InputDataError as exc:
            raise InputFileError(rpath, str(exc)) from None
        cat_ids = label_metrics.ids_of(catalog, id_column)
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
        ref = _Reference(R, E, cols, errs, f"{rpath.name} ({len(table)} rows)", n_matched)
        if len(catalog) > n_matched:
            notes.append(
                f"{len(catalog) - n_matched} of {len(catalog)} catalog stars are not in the reference table"
            )
        gcol = (
            _find_column(table.columns, [group_column])
            if group_column
            else _find_column(table.columns, ["GROUP"])
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
            _find_column(catalog.columns, [group_column])
            if group_column
            else _find_column(catalog.columns, ["GROUP"])
        )
        if gcol is not None:
            ref.groups = _groups_from(catalog, gcol)
            ref.group_column = f"{gcol} (catalog)"
    if group_column and ref.groups is None:
        raise InputFileError(
            reference or catalog_path, f"no group column {group_column!r} in the reference or the catalog"
        )
    return ref


def _error_matrix(catalog: pd.DataFrame, labels: Sequence[str]) -> np.ndarray:
    """(N, L) reported uncertainties (NaN where there is no ``X_ERR`` column or value)."""
    E = np.full((len(catalog), len(labels)), np.nan)
    for j, x in enumerate(labels):
        if f"{x}_ERR" in catalog.columns:
            E[:, j] = label_metrics.get_column(catalog, f"{x}_ERR")
    return E


def _summary_tables(
    catalog: pd.DataFrame, labels: Sequence[str], units: Mapping[str, str], id_column: str
) -> dict[str, pd.DataFrame]:
    """Counts, flag fractions and label ranges of the catalog alone."""
    from starlabels.inference.flags import FLAG_BITS, FLAG_DESCRIPTIONS

    n = len(catalog)
    P, _ = label_metrics.label_matrix(catalog, list(labels))
    rows: list[tuple[str, Any]] = [("stars (rows)", n)]
    if id_column in catalog.columns:
        rows.append(
            (f"distinct {id_column}", int(pd.Series(label_metrics.ids_of(catalog, id_column)).nunique()))
        )
    rows.append(("rows with every label", int(np.isfinite(P).all(axis=1).sum())))
    out: dict[str, pd.DataFrame] = {}
    if "FLAG" in catalog.columns:
        flag = np.asarray(pd.to_numeric(catalog["FLAG"], errors="coerce").fillna(0), dtype=np.int64)
        rows.append(("rows with FLAG = 0", int((flag == 0).sum())))
        known = 0
        frows = []
        for name, b in FLAG_BITS.items():
            known |= 1 << b
            k = int(((flag >> b) & 1).sum())
            frows.append(
                {
                    "bit": b,
                    "flag": name,
                    "meaning": FLAG_DESCRIPTIONS.get(name, ""),
                    "n": k,
                    "fraction": k / n if n else float("nan"),
                }
            )
        other = int(((flag & ~known) != 0).sum())
        if other:
            frows.append(
                {
                    "bit": -1,
                    "flag": "other bits",
                    "meaning": "bits not documented in starlabels.inference.flags",
                    "n": other,
                    "fraction": other / n,
                }
            )
        anyf = int((flag != 0).sum())
        frows.append(
            {
                "bit": -1,
                "flag": "any",
                "meaning": "at least one flag set",
                "n": anyf,
                "fraction": anyf / n if n else float("nan"),
            }
        )
        fl = pd.DataFrame(frows)
        fl["bit"] = fl["bit"].map(lambda b: "" if b < 0 else str(b))
        out["flags"] = fl
    if "SNR" in catalog.columns:
        snr = label_metrics.get_column(catalog, "SNR")
        if np.isfinite(snr).any():
            rows.append(("median SNR", float(np.nanmedian(snr))))
            rows.append(
                (
                    "SNR range",
                    f"{label_metrics.format_number(float(np.nanmin(snr)))} – "
                    f"{label_metrics.format_number(float(np.nanmax(snr)))}",
                )
            )
    for col in ("MODEL_NAME", "MODEL_VERSION"):
        if col in catalog.columns:
            vals = pd.unique(catalog[col].astype(str).str.strip())
            shown = ", ".join(map(str, vals[:5])) + (f" (+{len(vals) - 5} more)" if len(vals) > 5 else "")
            rows.append((col, shown))
    if "SOURCE" in catalog.columns:
        rows.append(("input files (SOURCE)", int(catalog["SOURCE"].astype(str).nunique())))
    out["counts"] = pd.DataFrame(rows, columns=["quantity", "value"])
    E = _error_matrix(catalog, labels)
    lrows = []
    with quiet_nan_warnings():
        for j, x in enumerate(labels):
            v = P[:, j][np.isfinite(P[:, j])]
            row: dict[str, Any] = {
                "label": x,
                "unit": units.get(x, label_metrics.label_unit(x)),
                "n": int(v.size),
            }
            q = np.percentile(v, [0, 1, 50, 99, 100]) if v.size else [np.nan] * 5
            row.update(dict(zip(("min", "p1", "median", "p99", "max"), map(float, q), strict=True)))
            row["median_err"] = float(np.nanmedian(E[:, j])) if np.isfinite(E[:, j]).any() else np.nan
            for part in PARTS:
                c = f"{x}_ERR_{part}"
                if c in catalog.columns:
                    row[f"median_err_{part.lower()}"] = float(
                        np.nanmedian(label_metrics.get_column(catalog, c))
                    )
            lrows.append(row)
    out["labels"] = pd.DataFrame(lrows)
    return out


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------


@dataclass
class FigureEntry:
    """A figure on the page: ``src`` is a relative file path or a ``data:`` URI; ``width`` the
    CSS width (px) that shows it at its physical size (96 px per inch)."""

    key: str
    title: str
    caption: str
    src: str
    file: Path | None = None
    width: int | None = None


class _Figures:
    """Collects figures (saved as files or embedded) and what had to be skipped, with why."""

    def __init__(self, out_dir: Path, embed: bool) -> None:
        self.out_dir = out_dir
        self.embed = embed
        self.entries: list[FigureEntry] = []
        self.skipped: list[tuple[str, str]] = []

    def add(self, key: str, title: str, caption: str, fig: Any) -> None:
        from starlabels.evaluation.plots import DPI, save_figure

        width = round(float(fig.get_size_inches()[0]) * 96)
        if self.embed:
            buf = io.BytesIO()
            fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
            src = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
            self.entries.append(FigureEntry(key, title, caption, src, width=width))
        else:
            path = save_figure(fig, self.out_dir / "figures" / f"{key}.png")
            self.entries.append(FigureEntry(key, title, caption, f"figures/{path.name}", path, width))

    def skip(self, title: str, reason: str) -> None:
        self.skipped.append((title, reason))

    def attempt(self, key: str, title: str, caption: str, draw: Any) -> None:
        """Draw with ``draw()``; a failure becomes a skipped entry with the error message."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = draw()
        except Exception as exc:  # the report must still be written; the page says what failed
            self.skip(title, f"could not be drawn: {type(exc).__name__}: {exc}")
            return
        self.add(key, title, caption, fig)


def _chunks(
    items: Sequence[str], title: str, size: int = PANELS_PER_FIGURE
) -> list[tuple[int, str, list[str]]]:
    """``(k, title, labels)`` per figure of at most ``size`` labels; titles say "(k of n)"."""
    parts = [list(items[i : i + size]) for i in range(0, len(items), size)]
    n = len(parts)
    return [(k, f"{title} ({k} of {n})" if n > 1 else title, chunk) for k, chunk in enumerate(parts, 1)]


def _isochrones(
    spec: str | os.PathLike | bool | None, feh: np.ndarray | None, ages: Sequence[float], notes: list[str]
) -> list[Any]:
    """PARSEC isochrones at ``ages`` and the catalog's 10th/50th/90th percentile [Fe/H]
    (snapped to the grid). ``spec``: None = look in the shared-data folder, False = none, or a
    path (then a missing file is an error)."""
    if spec is False:
        notes.append("isochrones not drawn (turned off)")
        return []
    from starlabels.evaluation.isochrones import default_isochrone_path, load_isochrones, select_isochrones

    if spec is None or spec is True:
        try:
            path = default_isochrone_path()
        except InputFileError as exc:
            notes.append(f"no PARSEC isochrones on the Kiel diagrams: {exc.problem}")
            return []
    else:
        path = Path(spec)
    grid = load_isochrones(path)
    avail = grid.metallicities
    want = [0.0]
    if feh is not None and np.isfinite(feh).any():
        want = list(np.nanpercentile(feh, [10, 50, 90]))
    mh = list(dict.fromkeys(float(avail[np.argmin(np.abs(avail - w))]) for w in want))
    isos = select_isochrones(list(ages), mh, grid=grid)
    notes.append(
        f"PARSEC isochrones from {Path(path).name}: log age {', '.join(f'{a:g}' for a in ages)}, "
        f"[M/H] {', '.join(f'{z:+.2f}' for z in mh)} (the catalog's 10/50/90th percentile [Fe/H])"
    )
    return isos


def _history_figure(history: pd.DataFrame) -> Any:
    from matplotlib.figure import Figure

    from starlabels.evaluation.plots import FONT, style_axes

    fig = Figure(figsize=(6.4, 3.6), layout="constrained")
    ax = fig.add_subplot()
    x = pd.to_numeric(history.get("epoch", pd.Series(np.arange(1, len(history) + 1))), errors="coerce")
    drawn = []
    for col, style, name in (("train_loss", "-o", "training"), ("dev_loss", "-s", "dev (validation)")):
        if col in history.columns:
            y = pd.to_numeric(history[col], errors="coerce").to_numpy(float)
            if np.isfinite(y).any():
                ax.plot(x, y, style, ms=3, lw=1.5, label=name)
                drawn.append(y[np.isfinite(y)])
    if not drawn:
        raise InputDataError("history.csv has no finite train_loss or dev_loss")
    allv = np.concatenate(drawn)
    if (allv > 0).all() and allv.max() / allv.min() > 20:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (training objective)")
    ax.legend(fontsize=FONT["legend"], frameon=False)
    style_axes(ax)
    return fig


def _make_figures(
    figs: _Figures,
    card: ModelCard,
    catalog: pd.DataFrame,
    labels: list[str],
    ref: _Reference | None,
    isochrones: str | os.PathLike | bool | None,
    isochrone_ages: Sequence[float],
    notes: list[str],
) -> None:
    from starlabels.evaluation import plots as pl

    cols = set(catalog.columns)
    E = _error_matrix(catalog, labels)
    has_err = [x for j, x in enumerate(labels) if np.isfinite(E[:, j]).any()]
    snr = label_metrics.get_column(catalog, "SNR") if "SNR" in cols else None
    has_snr = snr is not None and bool((np.isfinite(snr) & (snr > 0)).any())

    # training curve
    if card.history is not None:
        figs.attempt(
            "training_history",
            "Training curve",
            "Loss per epoch on the training and dev sets (history.csv of the model folder).",
            lambda: _history_figure(card.history),
        )
    else:
        figs.skip("Training curve", "the model folder has no history.csv")

    # Kiel diagrams
    kiel_ok = {"TEFF", "LOGG"} <= cols and bool(
        (
            np.isfinite(label_metrics.get_column(catalog, "TEFF"))
            & np.isfinite(label_metrics.get_column(catalog, "LOGG"))
        ).any()
    )
    if kiel_ok:
        feh = label_metrics.get_column(catalog, "FE_H") if "FE_H" in cols else None
        colors = []
        if feh is not None and np.isfinite(feh).any():
            colors.append("FE_H")
        else:
            figs.skip("Kiel diagram coloured by [Fe/H]", "the catalog has no [Fe/H] (FE_H) values")
        err_col = next((f"{x}_ERR" for x in ("LOGG", "TEFF", "FE_H", *labels) if x in has_err), None)
        if err_col:
            colors.append(err_col)
        else:
            figs.skip("Kiel diagram coloured by uncertainty", "the catalog has no uncertainties")
        try:
            isos = _isochrones(isochrones, feh, isochrone_ages, notes)
        except StarlabelsError as exc:
            if isochrones not in (None, True):
                raise
            notes.append(f"no isochrones drawn: {exc}")
            isos = []
        what = " and by ".join(
            label_metrics.label_display(c, tex=False)
            if "_ERR" not in c
            else f"σ({label_metrics.label_display(c.split('_ERR')[0], tex=False)})"
            for c in colors
        )
        iso_text = " Lines: PARSEC isochrones (see notes)." if isos else ""
        if colors:
            figs.attempt(
                "kiel",
                "Kiel diagram",
                f"log g against Teff of the predicted labels, coloured by {what}.{iso_text}",
                lambda: pl.plot_kiel_panels(catalog, colors=colors, isochrones=isos or None),
            )
        else:
            figs.attempt(
                "kiel",
                "Kiel diagram",
                f"log g against Teff of the predicted labels.{iso_text}",
                lambda: pl.plot_kiel(catalog, color=None, isochrones=isos or None),
            )
        from starlabels.labels.young import LOGG_AGE_BIN_EDGES, in_young_polygon

        inside = int(
            in_young_polygon(
                label_metrics.get_column(catalog, "TEFF"), label_metrics.get_column(catalog, "LOGG")
            ).sum()
        )
        figs.attempt(
            "young_selection",
            "Young-star selection",
            f"The young-star polygon of APOGEE Net §4.1 with the log g age bins of §4.2 "
            f"(edges {', '.join(f'{e:g}' for e in LOGG_AGE_BIN_EDGES)} dex); {inside} "
            "star(s) inside the polygon.",
            lambda: pl.plot_young_selection(catalog),
        )
    else:
        why = "the catalog has no TEFF and LOGG values"
        figs.skip("Kiel diagrams", why)
        figs.skip("Young-star selection", why)

    # uncertainty vs SNR
    if not has_err:
        figs.skip("Uncertainty vs SNR", "the catalog has no uncertainties (X_ERR)")
    elif not has_snr:
        figs.skip("Uncertainty vs SNR", "the catalog has no positive SNR values")
    else:
        for k, title, chunk in _chunks(has_err, "Uncertainty vs SNR"):
            figs.attempt(
                f"uncertainty_vs_snr_{k}",
                title,
                "Reported (calibrated) uncertainty against SNR, with the running median and "
                "the 16–84 % band: "
                + ", ".join(label_metrics.label_display(x, tex=False) for x in chunk)
                + ".",
                lambda chunk=chunk: pl.plot_uncertainty_vs_snr(catalog, chunk),
            )

    # against the reference
    ref_title = ("Predicted vs reference", "Residuals vs SNR", "z-score histograms")
    if ref is None:
        for t in ref_title:
            figs.skip(t, "no reference labels (pass --reference)")
        return
    P, _ = label_metrics.label_matrix(catalog, labels)
    both = [x for j, x in enumerate(labels) if (np.isfinite(P[:, j]) & np.isfinite(ref.R[:, j])).any()]
    if not both:
        for t in ref_title:
            figs.skip(t, "no star has both a prediction and a reference value")
        return
    idx = {x: j for j, x in enumerate(labels)}
    for k, title, chunk in _chunks(both, "Predicted vs reference"):
        js = [idx[x] for x in chunk]
        figs.attempt(
            f"pred_vs_ref_{k}",
            title,
            "Predicted against reference label (dashed 1:1), residuals below with the running "
            "median"
            + (", coloured by SNR" if has_snr else "")
            + ": "
            + ", ".join(label_metrics.label_display(x, tex=False) for x in chunk)
            + ".",
            lambda js=js, chunk=chunk: pl.plot_pred_vs_ref(
                P[:, js],
                ref.R[:, js],
                chunk,
                color=snr if has_snr else None,
                color_name="SNR" if has_snr else None,
            ),
        )
    if has_snr:
        jb = [idx[x] for x in both]
        eb = E[:, jb] if np.isfinite(E[:, jb]).any(axis=0).all() else None
        table = label_metrics.residuals_by_snr(P[:, jb], ref.R[:, jb], both, snr=snr, err=eb)
        figs.attempt(
            "residuals_vs_snr",
            "Residuals vs SNR",
            "Median |Δ| and σ_MAD of the residual Δ = predicted − reference in SNR bins"
            + (", with the median reported uncertainty." if eb is not None else "."),
            lambda: pl.plot_binned_residuals(table, x_label="SNR (per pixel)", log_x=True),
        )
    else:
        figs.skip("Residuals vs SNR", "the catalog has no positive SNR values")
    zl = [x for x in both if x in has_err]
    if zl:
        js = [idx[x] for x in zl]
        Er = None if ref.E is None else ref.E[:, js]
        for k, title, chunk in _chunks(zl, "z-score histograms"):
            cj = [zl.index(x) for x in chunk]
            figs.attempt(
                f"zscores_{k}",
                title,
                "z = (predicted − reference)/σ against the unit Gaussian; calibrated "
                "uncertainties give σ_MAD(z) ≈ 1 and 68.3 % within |z| ≤ 1.",
                lambda cj=cj, chunk=chunk: pl.plot_zscore_histograms(
                    P[:, js][:, cj],
                    ref.R[:, js][:, cj],
                    chunk,
                    pred_err=E[:, js][:, cj],
                    ref_err=None if Er is None else Er[:, cj],
                ),
            )
    else:
        figs.skip("z-score histograms", "the catalog has no uncertainties (X_ERR)")


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

_CSS = """
:root { --ink: #1d232b; --muted: #5b6673; --line: #d7dde4; --band: #f4f6f9; --accent: #1f5f9e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans",
  "Liberation Sans", "DejaVu Sans", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 64px; }
header { border-bottom: 3px solid var(--accent); margin-bottom: 8px; padding-bottom: 8px; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 6px; }
p, li { max-width: 80ch; }
.meta, .muted, figcaption, .note { color: var(--muted); }
.meta { font-size: 14px; margin: 2px 0; }
nav ol { columns: 2; margin: 8px 0; padding-left: 20px; }
a { color: var(--accent); }
code, .code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
  "Liberation Mono", monospace; font-size: 0.9em; }
.code { color: var(--muted); margin-left: 4px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 14px; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--band); border-bottom: 2px solid var(--line); white-space: nowrap; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv th { background: none; font-weight: 600; white-space: nowrap; border-bottom: 1px solid var(--line); }
table.kv table.kv { margin: 0; font-size: 13px; }
.table-wrap { overflow-x: auto; }
.cards { display: flex; flex-wrap: wrap; gap: 8px 48px; align-items: flex-start; }
.links { font-size: 13px; margin: 0 0 12px; }
figure { margin: 20px 0 28px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: 14px; margin-top: 6px; max-width: 90ch; }
.skipped li, .notes li { margin: 2px 0; }
.box { background: var(--band); border-left: 4px solid var(--accent); padding: 8px 14px; margin: 12px 0; }
details summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 48px; font-size: 13px; color: var(--muted); }
"""

#: Column headings of the metrics tables (the raw name is kept in ``data-col``).
COLUMN_TITLES: dict[str, str] = {
    "label": "label",
    "unit": "unit",
    "group": "group",
    "n": "N",
    "bin_lo": "SNR from",
    "bin_hi": "SNR to",
    "by_median": "median SNR",
    "median": "median Δ",
    "sigma_mad": "σ_MAD(Δ)",
    "median_abs": "median |Δ|",
    "mean": "mean Δ",
    "std": "std Δ",
    "rms": "RMS Δ",
    "median_err": "median σ",
    "mean_err": "mean σ",
    "z_median": "median z",
    "z_sigma_mad": "σ_MAD(z)",
    "z_std": "std z",
    "z_rms": "RMS z",
    "frac_1sigma": "|z| ≤ 1",
    "frac_2sigma": "|z| ≤ 2",
    "min": "min",
    "p1": "1st pct",
    "p99": "99th pct",
    "max": "max",
    "median_err_epistemic": "σ epistemic",
    "median_err_aleatoric": "σ aleatoric",
    "median_err_noise": "σ noise",
    "median_err_delta": "σ delta",
    "fraction": "fraction",
    "scale": "scale",
    "method": "method",
    "z_sigma_mad_before": "σ_MAD(z) before",
    "z_sigma_mad_after": "σ_MAD(z) after",
    "n_dev": "N dev",
    "sigma_reference": "σ reference",
    "mean_label": "mean",
    "std_label": "std",
}


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _label_html(name: str) -> str:
    disp = label_metrics.label_display(name, tex=False)
    if disp == name:
        return f"<code>{_e(name)}</code>"
    return f'{_e(disp)}<span class="code">{_e(name)}</span>'


def _cell(col: str, v: Any, digits: int) -> str:
    if col == "label" and isinstance(v, str):
        return f'<td data-value="{_e(v)}">{_label_html(v)}</td>'
    if isinstance(v, bool | np.bool_) or v is None:
        return f"<td>{_e('' if v is None else v)}</td>"
    if isinstance(v, int | np.integer):
        return f'<td class="num" data-value="{int(v)}">{int(v)}</td>'
    if isinstance(v, float | np.floating):
        fv = float(v)
        text = label_metrics.format_number(fv, digits)
        if col in ("fraction", "frac_1sigma", "frac_2sigma") and math.isfinite(fv):
            text = f"{fv:.3f}"
        elif col in ("bin_lo", "bin_hi"):
            text = f"{fv:g}"
        return f'<td class="num" data-value="{_e(repr(fv))}">{_e(text)}</td>'
    return f"<td>{_e(v)}</td>"


#: Tables longer than this are folded (click to open); the CSV copy is always complete.
FOLD_ROWS = 60


def _table_html(
    df: pd.DataFrame,
    table_id: str,
    *,
    digits: int = 4,
    titles: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> str:
    """An HTML table: headings from :data:`COLUMN_TITLES` (``titles`` overrides; the raw column
    name in ``data-col``), numbers to ``digits`` significant figures with the full value in
    ``data-value``. ``columns`` picks the columns shown. Long tables are folded."""
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    titles = {**COLUMN_TITLES, **(titles or {})}
    numeric = {
        c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns
    }
    num_class = ' class="num"'
    head = "".join(
        f'<th data-col="{_e(c)}"{num_class if numeric[c] else ""}>{_e(titles.get(str(c), c))}</th>'
        for c in df.columns
    )
    body = []
    for row in df.itertuples(index=False, name=None):
        cells = "".join(_cell(str(c), v, digits) for c, v in zip(df.columns, row, strict=True))
        body.append(f"<tr>{cells}</tr>")
    table = (
        f'<div class="table-wrap"><table id="{_e(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )
    if len(df) > FOLD_ROWS:
        return f"<details><summary>Show the table ({len(df)} rows)</summary>{table}</details>"
    return table


#: Values of a long list shown in the model card (the folder's config.json has them all).
LIST_SHOWN = 200


def _value_html(v: Any, depth: int = 0) -> str:
    """A config value: nested mappings as nested tables, long lists folded, scalars escaped."""
    if isinstance(v, Mapping):
        if not v:
            return '<span class="muted">(empty)</span>'
        return _kv_html(v, depth + 1)
    if isinstance(v, list | tuple):
        if not v:
            return '<span class="muted">(none)</span>'
        if all(not isinstance(x, Mapping | list | tuple) for x in v):
            text = ", ".join(_scalar_text(x) for x in v)
            if len(v) > 12 or len(text) > 400:
                shown = ", ".join(_scalar_text(x) for x in v[:LIST_SHOWN])
                more = f", … ({len(v) - LIST_SHOWN} more)" if len(v) > LIST_SHOWN else ""
                return f"<details><summary>{len(v)} values</summary><code>{_e(shown + more)}</code></details>"
            return _e(text)
        items = "".join(f"<li>{_value_html(x, depth + 1)}</li>" for x in v)
        return f"<ol>{items}</ol>"
    if v is None:
        return '<span class="muted">none</span>'
    return _e(_scalar_text(v))


def _scalar_text(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _kv_html(d: Mapping[str, Any], depth: int = 0, order: Sequence[str] = ()) -> str:
    keys = [k for k in order if k in d] + [k for k in d if k not in order]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_value_html(d[k], depth)}</td></tr>" for k in keys)
    return f'<table class="kv">{rows}</table>'


_TRAINING_ORDER = (
    "data_files",
    "files",
    "sizes",
    "splits",
    "dates",
    "epochs",
    "optimiser",
    "loss",
    "batch_size",
    "patience",
    "seed",
    "device",
    "world_size",
)


def _csv_link(name: str) -> str:
    """Link to the CSV copy of table ``name`` (every table shown is written to ``tables/``)."""
    return f'<p class="links"><a href="tables/{_e(name)}.csv">CSV (full precision)</a></p>'


def _model_card_html(card: ModelCard, labels_shown: Sequence[str], tables: dict[str, pd.DataFrame]) -> str:
    parts = ['<h2 id="model">1. Model card</h2>']
    cfg = card.config
    overview: dict[str, Any] = {
        "model folder": str(card.folder),
        "architecture": card.architecture or "not recorded",
        "created": cfg.get("created", "not recorded"),
        "starlabels version": cfg.get("starlabels_version", "not recorded"),
        "format version": cfg.get("format_version", "not recorded"),
    }
    parts.append('<div class="cards"><div><h3>Overview</h3>' + _kv_html(overview) + "</div>")
    if card.architecture_kwargs:
        parts.append("<div><h3>Architecture settings</h3>" + _kv_html(card.architecture_kwargs) + "</div>")
    parts.append("</div>")
    # labels, units, normalisation, calibration side by side
    parts.append("<h3>Labels, units and normalisation</h3>")
    norm = card.label_normalisation()
    units = card.label_units
    names = card.label_names or list(labels_shown)
    lab = pd.DataFrame(
        {
            "label": names,
            "unit": [units.get(n, label_metrics.label_unit(n)) for n in names],
            "mean_label": [norm.get(n, (np.nan, np.nan))[0] for n in names],
            "std_label": [norm.get(n, (np.nan, np.nan))[1] for n in names],
        }
    )
    tables["model_labels"] = lab
    parts.append(_table_html(lab, "table-model-labels", digits=6))
    if not norm:
        parts.append('<p class="note">Label normalisation (means, standard deviations) not recorded.</p>')
    else:
        parts.append(
            '<p class="note">The network predicts (label − mean)/std; mean and std come '
            "from the training labels.</p>"
        )
    spectra = (
        (cfg.get("normalisation") or {}).get("spectra")
        if isinstance(cfg.get("normalisation"), Mapping)
        else None
    )
    parts.append("<h3>Preprocessing and spectrum scaling</h3>")
    pre = cfg.get("preprocessing")
    grids = _grid_lines(cfg)
    if grids:
        parts.append("<p>" + "<br>".join(html.escape(g) for g in grids) + "</p>")
    if "preprocessing" not in cfg:
        parts.append('<p class="note">Preprocessing not recorded.</p>')
    elif pre is None:
        parts.append("<p>None: the network takes the spectra as stored.</p>")
    elif isinstance(pre, Mapping):
        shown = {k: v for k, v in pre.items() if k != "input_grid"}  # described above, not listed
        parts.append(_kv_html(shown))
    else:
        parts.append(f"<p>{_value_html(pre)}</p>")
    if isinstance(spectra, Mapping):
        parts.append("<p>Spectrum scaling (network input):</p>" + _kv_html(spectra))
    parts.append("<h3>Uncertainty calibration</h3>")
    cal = card.calibration_table()
    if cal is None:
        parts.append(
            '<p class="note">No calibration: the reported uncertainties are the network\'s '
            "own (not rescaled on a dev set).</p>"
        )
    else:
        tables["calibration"] = cal
        parts.append(
            "<p>Each uncertainty is multiplied by the scale fitted on the dev set so that "
            "σ_MAD of z = (pred − ref)/σ is 1.</p>"
        )
        parts.append(_table_html(cal, "table-calibration"))
        extra = {k: v for k, v in (cfg.get("calibration") or {}).items() if k not in ("methods", "format")}
        extra = {k: v for k, v in extra.items() if isinstance(v, Mapping | list)}
        if extra and isinstance(cfg.get("calibration"), Mapping) and "methods" in cfg["calibration"]:
            parts.append(_kv_html(extra))
    parts.append("<h3>Training data and provenance</h3>")
    training = cfg.get("training")
    if isinstance(training, Mapping) and training:
        parts.append(_kv_html(training, order=_TRAINING_ORDER))
    else:
        parts.append('<p class="note">Training provenance not recorded.</p>')
    if card.history is not None:
        parts.append(
            f"<p>{len(card.history)} epoch(s) in history.csv; the training curve is among "
            'the <a href="#figures">figures</a>.</p>'
        )
    return "\n".join(parts)


def _section_tables(
    title: str,
    anchor: str,
    intro: str,
    df: pd.DataFrame | None,
    table_id: str,
    csv: str,
    columns: Sequence[str] | None = None,
) -> str:
    """A metrics sub-section: heading, explanation (HTML), the table and its CSV link."""
    out = [f'<h3 id="{anchor}">{_e(title)}</h3>', f"<p>{intro}</p>"]
    if df is None or df.empty:
        out.append('<p class="note">Nothing to show.</p>')
    else:
        out.append(_table_html(df, table_id, columns=columns))
        out.append(csv)
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# the report
# --------------------------------------------------------------------------------------------


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    ``path``: the HTML page; ``figures``: the figures on it (file paths when not embedded);
    ``skipped``: (what, why) for figures and tables the inputs did not allow; ``tables``: the
    tables shown, as DataFrames (also written as CSV to ``DIR/tables/``); ``notes``: remarks about
    the inputs shown on the page.
    """

    path: Path
    figures: list[FigureEntry]
    skipped: list[tuple[str, str]]
    tables: dict[str, pd.DataFrame]
    notes: list[str]


def build_report(
    model: str | os.PathLike,
    catalog: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    reference: str | os.PathLike | None = None,
    embed: bool = False,
    figures: bool = True,
    isochrones: str | os.PathLike | bool | None = None,
    isochrone_ages: Sequence[float] = DEFAULT_ISOCHRONE_AGES,
    group_column: str | None = None,
    id_column: str = "auto",
    title: str | None = None,
) -> ReportResult:
    """Write ``out_dir/index.html``: model card, catalog summary, metrics tables and figures.

    Parameters
    ----------
    model
        Model folder (or its ``config.json``). Only the config and ``history.csv`` are read.
    catalog
        Catalog table (FITS/CSV/Parquet, DESIGN.md columns).
    out_dir
        Output folder (created); ``index.html``, ``figures/*.png`` and ``tables/*.csv`` inside.
        PNG files left in ``figures/`` by an earlier report are removed.
    id_column
        Star id matching the reference: ``"auto"`` (``SDSS_ID`` for catalogs of SDSS-V files when
        the reference has it, else ``APOGEE_ID``), or a column name.
    reference
        Table of reference labels matched by ``id_column`` (see the module docstring), or the
        catalog's own path to use its ``X_REF``/``TRUE_X`` columns. Without it, reference columns
        in the catalog are used when present.
    embed
        Embed the figures in the page as base64 PNG instead of writing ``figures/``.
    figures
        ``False`` leaves the figures out (tables only; quick).
    isochrones
        PARSEC grid path; ``None`` looks in the shared-data folder (skipped with a note when
        absent); ``False`` draws none.
    isochrone_ages
        log10(age / yr) of the isochrones drawn.
    group_column
        Column (reference, then catalog) giving each star's group for the per-group table;
        default ``GROUP`` when present.
    title
        Page title (default: "starlabels report: <model folder name>").

    Raises :class:`InputFileError` for unreadable inputs, a catalog without the model's labels,
    or a reference that matches no star.
    """
    out = Path(out_dir)
    catalog_path = Path(catalog)
    if figures and isinstance(isochrones, str | os.PathLike) and not Path(isochrones).is_file():
        raise InputFileError(isochrones, "isochrone file does not exist")
    card = read_model_card(model)
    cat = read_table(catalog_path, "catalog")
    notes = list(card.notes)
    labels = _resolve_labels(card, cat, catalog_path, notes)
    units = {x: card.label_units.get(x, label_metrics.label_unit(x)) for x in labels}
    id_column = resolve_id_column(id_column, cat, reference)
    ref = _load_reference(cat, catalog_path, reference, labels, id_column, group_column, notes)

    if out.exists() and not out.is_dir():
        raise InputFileError(out, "exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            old.unlink()

    tables: dict[str, pd.DataFrame] = {}
    summary = _summary_tables(cat, labels, units, id_column)
    tables.update({f"summary_{k}": v for k, v in summary.items()})

    skipped: list[tuple[str, str]] = []
    metrics_html = _metrics(cat, labels, units, ref, tables, skipped)

    figs = _Figures(out, embed)
    if figures:
        _make_figures(figs, card, cat, labels, ref, isochrones, isochrone_ages, notes)
        from starlabels.evaluation.report_fits import add_fit_figures  # Payne models only (issue 15)

        add_fit_figures(figs, card, cat, catalog_path)
    else:
        figs.skip("Figures", "left out on request (figures=False / --no-figures)")
    if fig_dir.is_dir() and not any(fig_dir.iterdir()):
        fig_dir.rmdir()

    model_html = _model_card_html(card, labels, tables)  # adds model_labels / calibration tables

    table_dir = out / "tables"
    table_dir.mkdir(exist_ok=True)
    for old in table_dir.glob("*.csv"):
        old.unlink()
    for name, df in tables.items():
        label_metrics.write_table(df, table_dir / f"{name}.csv")

    page = _page(
        title or f"starlabels report: {card.name}",
        card,
        cat,
        catalog_path,
        labels,
        ref,
        summary,
        model_html,
        metrics_html,
        figs,
        skipped + figs.skipped,
        notes,
    )
    path = out / "index.html"
    tmp = out / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return ReportResult(
        path=path, figures=figs.entries, skipped=skipped + figs.skipped, tables=tables, notes=notes
    )


def _metrics(
    cat: pd.DataFrame,
    labels: list[str],
    units: Mapping[str, str],
    ref: _Reference | None,
    tables: dict[str, pd.DataFrame],
    skipped: list[tuple[str, str]],
) -> str:
    """The accuracy section as HTML (adds its tables to ``tables``)."""
    if ref is None:
        for t in ("Residuals per label", "Residuals per group", "Residuals per SNR bin", "z-score widths"):
            skipped.append((t, "no reference labels (pass --reference)"))
        return (
            '<p class="box">No reference labels were given, so there are no accuracy tables. '
            "Pass <code>--reference TABLE</code> (trusted labels matched by APOGEE_ID) to get "
            "residuals per label, group and SNR bin and the z-score calibration check.</p>"
        )
    P, _ = label_metrics.label_matrix(cat, labels)
    use = [j for j, x in enumerate(labels) if x in ref.columns]
    names = [labels[j] for j in use]
    P, R = P[:, use], ref.R[:, use]
    E = _error_matrix(cat, names)
    err = E if np.isfinite(E).any(axis=0).all() else None
    u = {x: units[x] for x in names}
    out = []
    resid = label_metrics.residual_table(P, R, names, err=err, units=u)
    tables["residuals"] = resid
    out.append(
        _section_tables(
            "Residuals per label",
            "residuals",
            "Δ = predicted − reference, in label units; σ_MAD = 1.4826 · median|Δ − median Δ|"
            + (
                "; median σ is the median reported uncertainty of the same stars." if err is not None else "."
            ),
            resid,
            "table-residuals",
            _csv_link("residuals"),
        )
    )
    if ref.groups is not None:
        grp = label_metrics.residual_table(P, R, names, err=err, units=u, groups=ref.groups)
        grp = grp[grp["n"] > 0].reset_index(drop=True)
        tables["residuals_by_group"] = grp
        out.append(
            _section_tables(
                "Residuals per group",
                "groups",
                f"The same statistics per group (column {_e(ref.group_column)}); “all” is the whole "
                "sample; groups without a matched star are left out.",
                grp,
                "table-groups",
                _csv_link("residuals_by_group"),
            )
        )
    else:
        skipped.append(("Residuals per group", "no GROUP column in the reference or the catalog"))
    if "SNR" in cat.columns and np.isfinite(label_metrics.get_column(cat, "SNR")).any():
        by_snr = label_metrics.residuals_by_snr(
            P, R, names, snr=label_metrics.get_column(cat, "SNR"), err=err, units=u
        )
        by_snr = by_snr[by_snr["n"] > 0].reset_index(drop=True)
        tables["residuals_by_snr"] = by_snr
        out.append(
            _section_tables(
                "Residuals per SNR bin",
                "snr",
                "Residual statistics in bins of SNR (non-empty bins only; mean, std and RMS are in the "
                "CSV file).",
                by_snr,
                "table-snr",
                _csv_link("residuals_by_snr"),
                columns=[
                    "label",
                    "unit",
                    "bin_lo",
                    "bin_hi",
                    "by_median",
                    "n",
                    "median",
                    "sigma_mad",
                    "median_abs",
                    "median_err",
                ],
            )
        )
    else:
        skipped.append(("Residuals per SNR bin", "the catalog has no SNR values"))
    zcols = [j for j in range(len(names)) if np.isfinite(E[:, j]).any()]
    if zcols:
        zn = [names[j] for j in zcols]
        Er = None if ref.E is None else ref.E[:, [labels.index(x) for x in zn]]
        zt = label_metrics.zscore_table(P[:, zcols], R[:, zcols], zn, pred_err=E[:, zcols], ref_err=Er)
        tables["zscores"] = zt
        with_ref = (
            (
                "σ_ref from the reference's uncertainty columns "
                + ", ".join(_e(c) for c in ref.err_columns.values())
            )
            if Er is not None
            else "the reference has no uncertainties (σ_ref = 0)"
        )
        out.append(
            _section_tables(
                "z-score widths (calibration check)",
                "zscores",
                f"z = (predicted − reference)/√(σ² + σ_ref²), {with_ref}. Calibrated Gaussian "
                f"uncertainties give σ_MAD(z) ≈ std z ≈ 1 and {label_metrics.GAUSS_1SIGMA:.3f} / "
                f"{label_metrics.GAUSS_2SIGMA:.3f} "
                "of the stars within |z| ≤ 1 / 2.",
                zt,
                "table-zscores",
                _csv_link("zscores"),
            )
        )
    else:
        skipped.append(("z-score widths", "the catalog has no uncertainties (X_ERR)"))
    return "\n".join(out)


def _page(
    title: str,
    card: ModelCard,
    cat: pd.DataFrame,
    catalog_path: Path,
    labels: list[str],
    ref: _Reference | None,
    summary: dict[str, pd.DataFrame],
    model_html: str,
    metrics_html: str,
    figs: _Figures,
    skipped: list[tuple[str, str]],
    notes: list[str],
) -> str:
    from starlabels import __version__

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ref_text = (
        "none"
        if ref is None
        else f"{_e(ref.source)}: {ref.n_matched} of {len(cat)} catalog stars matched; columns "
        + ", ".join(f"{_e(x)} ← {_e(c)}" for x, c in ref.columns.items())
    )
    h = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="starlabels ' + _e(__version__) + '">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<header><h1>{_e(title)}</h1>",
        f'<p class="meta">Catalog <code>{_e(catalog_path)}</code> ({len(cat)} stars, labels '
        + ", ".join(_e(x) for x in labels)
        + ")</p>",
        f'<p class="meta">Model <code>{_e(card.folder)}</code> · reference: {ref_text}</p>',
        f'<p class="meta">Written {now} by starlabels {_e(__version__)}</p></header>',
        "<nav><ol>"
        '<li><a href="#model">Model card</a></li><li><a href="#catalog">Catalog summary</a></li>'
        '<li><a href="#accuracy">Accuracy against the reference</a></li>'
        '<li><a href="#figures">Figures</a></li><li><a href="#skipped">Not shown, and why</a></li>'
        "</ol></nav>",
    ]
    if notes:
        h.append(
            '<div class="box notes"><strong>Notes</strong><ul>'
            + "".join(f"<li>{_e(n)}</li>" for n in notes)
            + "</ul></div>"
        )
    h.append(model_html)
    h.append('<h2 id="catalog">2. Catalog summary</h2>')
    h.append(_table_html(summary["counts"], "table-counts"))
    h.append(_csv_link("summary_counts"))
    if "flags" in summary:
        h.append(
            "<h3>Quality flags</h3><p>Stars with each <code>FLAG</code> bit set "
            "(a star can have several).</p>"
        )
        h.append(_table_html(summary["flags"], "table-flags"))
        h.append(_csv_link("summary_flags"))
    else:
        h.append('<p class="note">The catalog has no FLAG column.</p>')
    h.append(
        "<h3>Predicted labels</h3><p>Ranges of the predicted labels (min, percentiles, max) "
        "and the median reported uncertainty σ and, where computed, of its parts.</p>"
    )
    h.append(_table_html(summary["labels"], "table-labels", titles={"median": "median"}))
    h.append(_csv_link("summary_labels"))
    h.append('<h2 id="accuracy">3. Accuracy against the reference</h2>')
    h.append(metrics_html)
    h.append('<h2 id="figures">4. Figures</h2>')
    if not figs.entries:
        h.append('<p class="note">No figure could be drawn from these inputs.</p>')
    for f in figs.entries:
        h.append(
            f'<figure id="fig-{_e(f.key)}"><h3>{_e(f.title)}</h3>'
            f'<img src="{_e(f.src)}" alt="{_e(f.title)}"'
            + (f' style="width: {f.width}px"' if f.width else "")
            + ">"
            f"<figcaption>{_e(f.caption)}</figcaption></figure>"
        )
    h.append('<h2 id="skipped">5. Not shown, and why</h2>')
    if skipped:
        h.append(
            '<ul class="skipped">'
            + "".join(f"<li><strong>{_e(what)}</strong>: {_e(why)}</li>" for what, why in skipped)
            + "</ul>"
        )
    else:
        h.append("<p>Everything could be shown.</p>")
    h.append(
        "<footer>Statistics: starlabels.evaluation.metrics; figures: "
        "starlabels.evaluation.plots.</footer></main></body></html>"
    )
    return "\n".join(h) + "\n"
