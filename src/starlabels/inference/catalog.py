"""Label catalogs from many input files: FITS, CSV or Parquet, written incrementally and resumable.

Columns (docs/DESIGN.md, "Catalog columns"): ``SDSS_ID`` (int; -1 when the file has none — SDSS-V
files have it, DR17 apStar files do not), ``APOGEE_ID``, ``TELESCOPE`` (e.g. ``apo25m``, ``lco25m``)
and ``HDU`` (the extension the spectrum came from, e.g. ``APOGEE/APO``), ``RA``, ``DEC`` (deg),
``SNR``, ``SOURCE`` (input file; ``file.h5[row]`` for HDF5 rows), then for each label ``X``: ``X``
(physical units), ``X_ERR`` (total, calibrated; NaN when no uncertainty was computed) and the
parts that were computed, ``X_ERR_EPISTEMIC``, ``X_ERR_ALEATORIC``, ``X_ERR_NOISE``,
``X_ERR_DELTA``, ``X_ERR_FISHER`` (The Cannon), ``X_ERR_JACOBIAN`` (a Payne fit) (1σ, calibrated
like X_ERR), ``X_ERR_FLOOR`` (a ``floor`` calibration's constant part) and ``X_ERR_COVERAGE`` (the
label-coverage part), so X_ERR² = Σ parts²; then ``DOMAIN_SHIFT`` (float, the input-space
domain-shift score of :mod:`starlabels.inference.domain_shift`, > 1 = flagged; NaN when the model
has none), ``FLAG`` (int32, bits in
:mod:`starlabels.inference.flags`), ``MODEL_NAME`` (the model folder's name; ``cannon:<folder>`` /
``payne:<folder>`` for a :class:`~starlabels.models.method.LabelMethod`, so each row says which
method made it) and ``MODEL_VERSION``.

Any model works: a network's :class:`~starlabels.models.folder.TrainedModel`, a Cannon or a Payne
fitter (a LabelMethod), or the folder of any of them.

Inputs are spectrum files of any format :func:`starlabels.io.read_spectra` recognises by content
(mwmStar/mwmVisit, apStar, aspcapStar, apVisit, BOSS spec, tables), folders of them and starlabels
HDF5 datasets; a spectrum on another grid than the model's is resampled when ``resample`` is given
and otherwise listed as skipped, naming its file and HDU (:mod:`starlabels.inference.catalog_inputs`).

How the writing works (the same scheme for every output format):

1. The inputs are expanded and cut into **units** — ``files_per_unit`` files, or
   ``rows_per_unit`` consecutive rows of one HDF5 file — in a deterministic order. A unit is the
   grain of work, of resuming, of distribution over Dask workers and of random seeding (its seed is
   derived from ``seed`` and the unit's key), so a unit gives the same numbers wherever it runs.
2. Each finished unit is written to ``<OUT>.parts/unit-<index>-<key>.parquet`` (atomically: a
   temporary file renamed into place), then a ``.json`` marker with its row count and skipped
   inputs. A unit whose marker exists is done; an interrupted run, started again with the same
   arguments, skips those and only computes the rest. ``<OUT>.parts/manifest.json`` records the
   model and settings; resuming with different ones is refused (``overwrite=True`` restarts).
3. When every unit is done the parts are assembled, in unit order, into ``OUT`` (FITS via an
   astropy Table with units, CSV, or Parquet; written to a temporary file and renamed), and the
   skipped inputs are listed in ``<OUT>.skipped.tsv`` (``path<TAB>reason``). The parts folder is
   removed unless ``keep_parts``.

Unreadable or unsuitable inputs (missing, truncated, not a spectrum, another grid without
``resample``, wrong kind for the model) never stop a run: they are listed in the skipped file with
the reason (``file[HDU]`` for one spectrum of a multi-spectrum file). Invalid spectra inside
readable files (e.g. NaN-only) keep their row, with NaN labels and the INVALID_SPECTRUM flag.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import StarlabelsError
from starlabels.inference import flags as flag_bits
from starlabels.inference.catalog_inputs import (
    FILES_PER_UNIT,
    HDF5_SUFFIXES,
    ID_COLUMNS,
    ROWS_PER_UNIT,
    InputItem,
    Unit,
    expand_inputs,
    plan_units,
    read_hdf5_unit,
    read_spectra_unit,
)
from starlabels.inference.predict import InferenceModel, Prediction, predict, resolve
from starlabels.output_lock import OutputLock, lock_path
from starlabels.utils import progress

__all__ = [
    "FILES_PER_UNIT",
    "FORMATS",
    "HDF5_SUFFIXES",
    "ROWS_PER_UNIT",
    "CatalogResult",
    "InputItem",
    "OutputLock",
    "Unit",
    "assemble",
    "catalog_columns",
    "catalog_frame",
    "expand_inputs",
    "lock_path",
    "plan_units",
    "predict_unit",
    "read_catalog",
    "run_catalog",
    "run_settings",
]

FORMATS: tuple[str, ...] = ("fits", "csv", "parquet")
#: Part names in catalog order and their column suffixes.
#: variance parts written as ``<LABEL>_ERR_<PART>`` columns (networks; "fisher": The Cannon;
#: "jacobian": a Payne fit)
PART_ORDER: tuple[str, ...] = ("epistemic", "aleatoric", "noise", "delta", "fisher", "jacobian", "floor",
                               "coverage")


@dataclass
class CatalogResult:
    """Outcome of a catalog run: output path, rows written, skipped inputs, units computed now."""

    path: Path
    n_rows: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_path: Path | None = None
    units_total: int = 0
    units_computed: int = 0
    #: rows per flag name (``{"INVALID_SPECTRUM": 5, "MANY_MASKED_PIXELS": 10, ...}``; a row counts
    #: once under each of its bits), and rows with any flag in :data:`SUMMARY_FLAGS`
    flag_counts: dict[str, int] = field(default_factory=dict)
    #: units that failed as a whole after :data:`UNIT_TRIES` tries (``(unit name, error)``); their
    #: inputs are listed in ``skipped``; the parts folder is kept so a resume retries them
    failed_units: list[tuple[str, str]] = field(default_factory=list)

    @property
    def n_flagged(self) -> int:
        """Rows that are not usable as they are: INVALID_SPECTRUM or MANY_MASKED_PIXELS or
        NONFINITE_OUTPUT (see :attr:`flag_counts` for every bit)."""
        return int(self.flag_counts.get("_PROBLEM_ROWS", 0))

    def summary(self) -> str:
        """One line per problem kind, for logs and the CLI."""
        kinds = [f"{n} {k}" for k, n in self.flag_counts.items() if not k.startswith("_") and n]
        lines = [f"{self.n_rows} rows, {self.n_flagged} with a problem flag"
                 + (f" ({', '.join(kinds)})" if kinds else "")]
        if self.skipped:
            lines.append(f"{len(self.skipped)} input(s) skipped (unreadable or unsuitable)")
        if self.failed_units:
            lines.append(f"{len(self.failed_units)} unit(s) failed as a whole: "
                         + "; ".join(f"{n}: {e}" for n, e in self.failed_units[:3]))
        return "\n".join(lines)


def _same_preprocessing(stored: Any, im: InferenceModel) -> bool:
    cfg = im.preprocessing
    if cfg is None or not hasattr(cfg, "to_dict"):
        return False
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            return False
    return json.dumps(stored, sort_keys=True, default=str) == json.dumps(cfg.to_dict(), sort_keys=True,
                                                                         default=str)


def predict_unit(
    im: InferenceModel, unit: Unit, settings: dict[str, Any]
) -> tuple[Any, list[tuple[str, str]]]:
    """Read and predict one unit → (pandas DataFrame in catalog column order, skipped inputs)."""
    import pandas as pd

    opts = dict(settings)
    seed = opts.pop("seed", 0)
    resample = opts.pop("resample", None)
    if unit.items and unit.items[0].kind == "hdf5":
        blocks, skipped = read_hdf5_unit(unit.items[0], im, resample, _same_preprocessing)
    else:
        blocks, skipped = read_spectra_unit(unit, im, resample)
    frames = []
    for i, (_, b) in enumerate(sorted(blocks.items())):
        if not b.flux:
            continue
        flux = np.concatenate(b.flux)
        error = np.concatenate(b.error)
        bitmask = np.concatenate(b.bitmask) if b.bitmask else None
        meta = {k: [m[k] for m in b.meta] for k in (*ID_COLUMNS, "_ORDER")}
        pre = b.kind == "pre"
        pred = predict(
            im, flux, error, bitmask=bitmask, preprocessed=pre, grid=None if pre else b.grid,
            seed=unit.seed(seed) + i, snr=np.asarray(meta["SNR"], np.float64), **opts,
        )
        pred.flags[np.concatenate(b.resampled)] |= flag_bits.bit("RESAMPLED")
        meta["SNR"] = pred.snr
        df = catalog_frame(pred, meta, im.name, im.version)
        df["_ORDER"] = meta["_ORDER"]
        frames.append(df)
    if not frames:
        return None, skipped
    # blocks (grids, raw/preprocessed) back to the unit's input order
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values("_ORDER", kind="stable").drop(columns="_ORDER").reset_index(drop=True)
    return df, skipped


#: Identity columns a catalog frame leaves out when its meta does not give them (see catalog_frame).
OPTIONAL_ID_COLUMNS: tuple[str, ...] = ("SDSS_ID", "TELESCOPE", "HDU")


def catalog_columns(
    label_names: Sequence[str], parts: Iterable[str], id_columns: Sequence[str] = ID_COLUMNS
) -> list[str]:
    """Column names in catalog order for these labels and computed parts."""
    parts = [p for p in PART_ORDER if p in set(parts)]
    cols = list(id_columns)
    for x in label_names:
        cols += [x, f"{x}_ERR", *(f"{x}_ERR_{p.upper()}" for p in parts)]
    return [*cols, "DOMAIN_SHIFT", "FLAG", "MODEL_NAME", "MODEL_VERSION"]


def catalog_frame(pred: Prediction, meta: dict[str, Any], model_name: str, model_version: str):
    """A pandas DataFrame of catalog rows from a :class:`Prediction` and per-row ``meta``
    (:data:`~starlabels.inference.catalog_inputs.ID_COLUMNS`, each length N). ``SDSS_ID``,
    ``TELESCOPE`` and ``HDU`` are columns only when ``meta`` gives them (catalog runs always do)."""
    import pandas as pd

    n = len(pred)
    data: dict[str, Any] = {
        "SDSS_ID": np.asarray(meta.get("SDSS_ID", np.full(n, -1)), np.int64),
        "APOGEE_ID": np.asarray(meta["APOGEE_ID"], dtype=str),
        "TELESCOPE": np.asarray(meta.get("TELESCOPE", np.full(n, "")), dtype=str),
        "HDU": np.asarray(meta.get("HDU", np.full(n, "")), dtype=str),
        "RA": np.asarray(meta["RA"], np.float64),
        "DEC": np.asarray(meta["DEC"], np.float64),
        "SNR": np.asarray(meta["SNR"], np.float64),
        "SOURCE": np.asarray(meta["SOURCE"], dtype=str),
    }
    errs = pred.sigma_parts()
    for k, x in enumerate(pred.label_names):
        data[x] = pred.mean[:, k]
        data[f"{x}_ERR"] = pred.std[:, k]
        for p in PART_ORDER:
            if p in errs:
                data[f"{x}_ERR_{p.upper()}"] = errs[p][:, k]
    shift = np.asarray(getattr(pred, "domain_shift", np.zeros(0)), np.float64)
    data["DOMAIN_SHIFT"] = shift if shift.shape == (n,) else np.full(n, np.nan)  # > 1: flag DOMAIN_SHIFT
    data["FLAG"] = pred.flags.astype(np.int32)
    data["MODEL_NAME"] = np.full(n, model_name)
    data["MODEL_VERSION"] = np.full(n, model_version)
    ids = [c for c in ID_COLUMNS if c in meta or c not in OPTIONAL_ID_COLUMNS]
    return pd.DataFrame(data, columns=catalog_columns(pred.label_names, errs, ids))


# ----------------------------------------------------------------------------------------------
# parts folder, resume, assembly


def parts_dir(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".parts")


def skipped_path(out: str | os.PathLike) -> Path:
    return Path(str(out) + ".skipped.tsv")


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


def prepare_run(
    im: InferenceModel,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    settings: dict[str, Any],
    *,
    files_per_unit: int = FILES_PER_UNIT,
    rows_per_unit: int = ROWS_PER_UNIT,
    overwrite: bool = False,
) -> tuple[list[Unit], list[Unit], list[tuple[str, str]]]:
    """Expand inputs, plan units and set up ``<out>.parts``. Returns (all units, pending units,
    skipped-at-planning). Raises :class:`StarlabelsError` when an existing parts folder was made
    with other settings (unless ``overwrite``)."""
    items, skipped = expand_inputs(inputs)
    units, sk2 = plan_units(items, files_per_unit=files_per_unit, rows_per_unit=rows_per_unit)
    skipped += sk2
    pdir = parts_dir(out)
    manifest = {
        "model_name": im.name, "model_version": im.version, "settings": _jsonable(settings),
        "files_per_unit": files_per_unit, "rows_per_unit": rows_per_unit,
        "label_names": im.label_names,
    }
    mpath = pdir / "manifest.json"
    if pdir.exists() and overwrite:
        shutil.rmtree(pdir)
    if mpath.exists():
        old = json.loads(mpath.read_text())
        if old != json.loads(json.dumps(manifest)):
            raise StarlabelsError(
                f"{pdir} holds parts of a run with other settings or another model "
                f"({_diff(old, manifest)}); remove it or pass overwrite=True (--overwrite)"
            )
    else:
        pdir.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(mpath, json.dumps(manifest, indent=1))
    pending = [u for u in units if not (pdir / f"{u.name}.json").exists()]
    return units, pending, skipped


def _diff(old: dict, new: dict) -> str:
    new = json.loads(json.dumps(new))
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return "differs in " + ", ".join(keys)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d, default=str))


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_unit(pdir: Path, unit: Unit, df: Any, skipped: list[tuple[str, str]]) -> int:
    """Store a finished unit: its rows (Parquet) then its done-marker (JSON). Returns rows."""
    n = 0 if df is None else len(df)
    if n:
        tmp = pdir / f".{unit.name}.{os.getpid()}.parquet.tmp"
        df.to_parquet(tmp, index=False)
        os.replace(tmp, pdir / f"{unit.name}.parquet")
    marker = {"rows": n, "skipped": [list(s) for s in skipped],
              "items": [asdict(i) for i in unit.items]}
    _atomic_write_text(pdir / f"{unit.name}.json", json.dumps(marker))
    return n


def run_unit(im: InferenceModel, unit: Unit, pdir: Path, settings: dict[str, Any]) -> int:
    """Predict one unit and store it; returns its number of rows."""
    df, skipped = predict_unit(im, unit, settings)
    return write_unit(pdir, unit, df, skipped)


#: Tries of a unit that fails as a whole (an I/O error, a full disk) before it is recorded failed.
UNIT_TRIES: int = 3
#: Flags that make a row a "problem" row in the run summary (n_flagged).
SUMMARY_FLAGS: tuple[str, ...] = ("INVALID_SPECTRUM", "MANY_MASKED_PIXELS", "NONFINITE_OUTPUT")


def failed_marker(pdir: Path, unit: Unit) -> Path:
    return pdir / f"{unit.name}.failed.json"


def run_unit_safely(im: InferenceModel, unit: Unit, pdir: Path, settings: dict[str, Any],
                    tries: int = UNIT_TRIES) -> int | None:
    """:func:`run_unit` retried up to ``tries`` times; a unit that still fails is recorded in
    ``<unit>.failed.json`` (error text) and ``None`` returned — the run goes on. Per-star problems
    never get here (they are flags); this is for a unit failing as a whole. A later success removes
    the failure record."""
    err = ""
    for _ in range(max(1, int(tries))):
        try:
            n = run_unit(im, unit, pdir, settings)
        except (OSError, StarlabelsError, ValueError, RuntimeError) as exc:
            err = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
            continue
        failed_marker(pdir, unit).unlink(missing_ok=True)
        return n
    _atomic_write_text(failed_marker(pdir, unit), json.dumps({"error": err, "tries": int(tries)}))
    return None


def flag_counts(flags: np.ndarray) -> dict[str, int]:
    """Rows per flag bit name, plus ``"_PROBLEM_ROWS"``: rows with any :data:`SUMMARY_FLAGS` bit."""
    flags = np.asarray(flags, np.int64)
    counts = {n: int(((flags >> b) & 1).sum()) for n, b in flag_bits.FLAG_BITS.items()}
    problem = sum(flag_bits.bit(n) for n in SUMMARY_FLAGS)
    counts["_PROBLEM_ROWS"] = int(((flags & problem) != 0).sum())
    return counts


def assemble(
    im_label_names: Sequence[str],
    label_units: Sequence[str],
    units: Sequence[Unit],
    out: str | os.PathLike,
    fmt: str,
    skipped: list[tuple[str, str]],
    *,
    meta: dict[str, Any] | None = None,
    keep_parts: bool = False,
) -> CatalogResult:
    """Join the unit parts (in unit order) into ``out`` and write the skipped-inputs file."""
    import pandas as pd

    pdir = parts_dir(out)
    frames = []
    skipped = list(skipped)
    failed: list[tuple[str, str]] = []
    for u in units:
        marker = pdir / f"{u.name}.json"
        if not marker.exists() and failed_marker(pdir, u).exists():
            err = json.loads(failed_marker(pdir, u).read_text())["error"]
            failed.append((u.name, err))
            skipped += [(i.path if i.kind != "hdf5" else f"{i.path}[{i.start}:{i.stop}]",
                         f"unit {u.name} failed after retries: {err}") for i in u.items]
            continue
        if not marker.exists():
            raise StarlabelsError(f"unit {u.name} is not finished; cannot assemble {out}")
        info = json.loads(marker.read_text())
        skipped += [tuple(s) for s in info["skipped"]]
        if info["rows"]:
            frames.append(pd.read_parquet(pdir / f"{u.name}.parquet"))
    if frames:
        df = pd.concat(frames, ignore_index=True)
    else:
        df = pd.DataFrame({c: [] for c in catalog_columns(im_label_names, ())})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(df, out, fmt, im_label_names, label_units, meta=meta)
    sp = skipped_path(out)
    _atomic_write_text(sp, "path\treason\n" + "".join(
        f"{p}\t{' '.join(str(r).split())}\n" for p, r in skipped
    ))
    if not keep_parts and not failed:  # failed units keep the parts: a resume retries only them
        shutil.rmtree(pdir, ignore_errors=True)
    return CatalogResult(path=out, n_rows=len(df), skipped=skipped, skipped_path=sp,
                         units_total=len(units), failed_units=failed,
                         flag_counts=flag_counts(df["FLAG"].to_numpy() if len(df) else np.zeros(0)))


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
        md[b"starlabels"] = json.dumps({"units": units, **_jsonable(meta)}).encode()
        pq.write_table(table.replace_schema_metadata(md), tmp)
    else:
        _write_fits(df, tmp, units, meta)
    os.replace(tmp, out)


def _write_fits(df: Any, path: Path, units: dict[str, str], meta: dict[str, Any]) -> None:
    """FITS binary table with units that ``Table.read`` parses without a warning: units of the FITS
    standard as ``TUNITn``; others (``dex``, which FITS cannot express) only in astropy's
    serialized-column header (astropy readers get ``astropy_units.dex`` back) and, for any reader, in the
    comment of the column's ``TTYPEn`` card (``[dex]``)."""
    import warnings

    from astropy import units as astropy_units
    from astropy.io import fits
    from astropy.table import QTable, Table
    from astropy.utils.exceptions import AstropyUserWarning

    from starlabels.inference.flags import FLAG_BITS

    t = Table.from_pandas(df)
    raw_units: dict[str, str] = {}
    for c, s in units.items():
        if c not in t.colnames or not s:
            continue
        try:
            astropy_units.Unit(s).to_string("fits")
            t[c].unit = s
        except (ValueError, astropy_units.UnitsError):
            raw_units[c] = s
    if raw_units:  # astropy serializes non-FITS units of Quantity columns in the header
        t = QTable(t)
        for c, s in raw_units.items():
            unit = astropy_units.Unit(s, parse_strict="silent")
            if not isinstance(unit, astropy_units.UnrecognizedUnit):
                t[c] = np.asarray(t[c], np.float64) * unit
    for k, v in meta.items():
        t.meta[k[:8].upper()] = v
    t.meta["comments"] = [f"FLAG bit {b}: {n}" for n, b in FLAG_BITS.items()]
    with warnings.catch_warnings():  # "unit 'dex' could not be saved in native FITS format": known
        warnings.simplefilter("ignore", AstropyUserWarning)
        t.write(path, format="fits", overwrite=True)  # Table.write serializes the non-FITS units
    if raw_units:
        with fits.open(path, mode="update") as hdul:
            header = hdul[1].header
            for i in range(1, int(header["TFIELDS"]) + 1):
                if header[f"TTYPE{i}"] in raw_units:
                    header.comments[f"TTYPE{i}"] = f"[{raw_units[header[f'TTYPE{i}']]}]"


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


# ----------------------------------------------------------------------------------------------
# single-process driver


def run_catalog(
    model: Any,
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    format: str | None = None,
    uncertainty: str | None = None,
    n_samples: int = 100,
    seed: int = 0,
    batch_size: int = 256,
    device: str | None = None,
    calibrated: bool = True,
    files_per_unit: int = FILES_PER_UNIT,
    rows_per_unit: int = ROWS_PER_UNIT,
    overwrite: bool = False,
    keep_parts: bool = False,
    resample: str | None = None,
) -> CatalogResult:
    """Predict every input and write the catalog ``out`` (single process). See the module docstring.

    ``model`` is a TrainedModel or a model folder; ``inputs`` files/directories/HDF5 datasets;
    ``resample`` ``None`` (spectra on another grid are skipped, listed with file and HDU),
    ``"linear"`` or ``"flux-conserving"`` (resampled onto the model's grid, flag RESAMPLED).
    Returns a :class:`CatalogResult`.
    """
    fmt = guess_format(out, format)
    im = resolve(model)
    settings = run_settings(uncertainty=uncertainty, n_samples=n_samples, seed=seed,
                            batch_size=batch_size, device=device, calibrated=calibrated, resample=resample)
    with OutputLock(out):
        units, pending, skipped = prepare_run(im, inputs, out, settings, files_per_unit=files_per_unit,
                                              rows_per_unit=rows_per_unit, overwrite=overwrite)
        pdir = parts_dir(out)
        for u in progress(pending, desc="catalog", total=len(pending), unit="unit"):
            run_unit_safely(im, u, pdir, settings)
        res = assemble(im.label_names, im.label_units, units, out, fmt, skipped,
                       meta=catalog_meta(im, settings), keep_parts=keep_parts)
    res.units_computed = len(pending)
    return res


def run_settings(**kw: Any) -> dict[str, Any]:
    """The keyword arguments every unit passes to :func:`predict` (plus ``seed``)."""
    return {
        "uncertainty": kw.get("uncertainty"), "n_samples": int(kw.get("n_samples", 100)),
        "seed": int(kw.get("seed", 0)), "batch_size": int(kw.get("batch_size", 256)),
        "device": kw.get("device"), "calibrated": bool(kw.get("calibrated", True)),
        "resample": kw.get("resample"),
    }


def catalog_meta(im: InferenceModel, settings: dict[str, Any]) -> dict[str, Any]:
    return {"MODEL": im.name, "MODELVER": im.version, "UNCERT": str(settings["uncertainty"]),
            "NSAMPLES": settings["n_samples"], "CALIB": settings["calibrated"],
            "RESAMPLE": str(settings.get("resample"))}
