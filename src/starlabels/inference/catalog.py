"""Label catalogs from many input files: FITS, CSV or Parquet, written incrementally and resumable.

Columns (docs/DESIGN.md, "Catalog columns"): ``APOGEE_ID``, ``RA``, ``DEC`` (deg), ``SNR``,
``SOURCE`` (input file; ``file.h5[row]`` for HDF5 rows), then for each label ``X``: ``X``
(physical units), ``X_ERR`` (total, calibrated; NaN when no uncertainty was computed) and the
parts that were computed, ``X_ERR_EPISTEMIC``, ``X_ERR_ALEATORIC``, ``X_ERR_NOISE``,
``X_ERR_DELTA``, ``X_ERR_FISHER`` (The Cannon), ``X_ERR_JACOBIAN`` (a Payne fit) (1σ, calibrated
like X_ERR), ``X_ERR_FLOOR`` (a ``floor`` calibration's constant part) and ``X_ERR_COVERAGE`` (the
label-coverage part), so X_ERR² = Σ parts²; then ``FLAG`` (int32, bits in
:mod:`starlabels.inference.flags`), ``MODEL_NAME`` (the model folder's name; ``cannon:<folder>`` /
``payne:<folder>`` for a :class:`~starlabels.models.method.LabelMethod`, so each row says which
method made it) and ``MODEL_VERSION``.

Any model works: a network's :class:`~starlabels.models.folder.TrainedModel`, a Cannon or a Payne
fitter (a LabelMethod), or the folder of any of them.

Inputs are apStar/asStar files, aspcapStar files (continuum-normalised: used as preprocessed input
by models with continuum preprocessing, skipped by raw-flux models), directories of them (searched
recursively) and starlabels HDF5 datasets.

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

Unreadable or unsuitable inputs (missing, truncated, wrong grid length, wrong kind for the model)
never stop a run: they are listed in the skipped file with the reason. Invalid spectra inside
readable files (e.g. NaN-only) keep their row, with NaN labels and the INVALID_SPECTRUM flag.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputFileError, StarlabelsError
from starlabels.inference.predict import InferenceModel, Prediction, predict, resolve
from starlabels.utils import progress

FORMATS: tuple[str, ...] = ("fits", "csv", "parquet")
#: Part names in catalog order and their column suffixes.
#: variance parts written as ``<LABEL>_ERR_<PART>`` columns (networks; "fisher": The Cannon;
#: "jacobian": a Payne fit)
PART_ORDER: tuple[str, ...] = ("epistemic", "aleatoric", "noise", "delta", "fisher", "jacobian", "floor",
                               "coverage")
FITS_PATTERNS: tuple[str, ...] = ("apStar-*.fits", "asStar-*.fits", "aspcapStar-*.fits",
                                  "apStar-*.fits.gz", "asStar-*.fits.gz", "aspcapStar-*.fits.gz")
HDF5_SUFFIXES: tuple[str, ...] = (".h5", ".hdf5")
FILES_PER_UNIT = 64
ROWS_PER_UNIT = 1024


@dataclass(frozen=True)
class InputItem:
    """One input: a FITS file (``kind`` ``"apstar"`` or ``"aspcapstar"``) or rows
    [``start``, ``stop``) of an HDF5 dataset (``kind`` ``"hdf5"``)."""

    kind: str
    path: str
    start: int = 0
    stop: int = 0


@dataclass(frozen=True)
class Unit:
    """A unit of work: consecutive items, its position ``index`` and a stable ``key``."""

    index: int
    items: tuple[InputItem, ...]

    @property
    def key(self) -> str:
        text = json.dumps([asdict(i) for i in self.items], sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def name(self) -> str:
        return f"unit-{self.index:06d}-{self.key}"

    def seed(self, seed: int) -> int:
        """The unit's own seed (same wherever the unit runs)."""
        h = hashlib.sha1(f"{int(seed)}:{self.key}".encode()).hexdigest()
        return int(h[:15], 16)


@dataclass
class CatalogResult:
    """Outcome of a catalog run: output path, rows written, skipped inputs, units computed now."""

    path: Path
    n_rows: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    skipped_path: Path | None = None
    units_total: int = 0
    units_computed: int = 0


# ----------------------------------------------------------------------------------------------
# inputs


def _fits_kind(path: Path) -> str:
    return "aspcapstar" if path.name.lower().startswith("aspcapstar") else "apstar"


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> tuple[list[InputItem], list[tuple[str, str]]]:
    """Expand files and directories into input items (HDF5 rows not split yet).

    Directories are searched recursively for apStar/asStar/aspcapStar FITS files and HDF5
    datasets, sorted by path. Returns ``(items, skipped)`` with ``skipped`` (path, reason) for
    inputs that do not exist or have an unknown type.
    """
    items: list[InputItem] = []
    skipped: list[tuple[str, str]] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            found = set()
            for pat in FITS_PATTERNS:
                found.update(p.rglob(pat))
            for suf in HDF5_SUFFIXES:
                found.update(p.rglob(f"*{suf}"))
            if not found:
                skipped.append((str(p), "directory holds no apStar/aspcapStar/HDF5 files"))
            for f in sorted(found):
                items.append(_item(f))
        elif p.is_file():
            if p.suffix.lower() in HDF5_SUFFIXES:
                items.append(InputItem("hdf5", str(p)))
            elif p.name.lower().endswith((".fits", ".fits.gz", ".fit")):
                items.append(InputItem(_fits_kind(p), str(p)))
            else:
                skipped.append((str(p), "unknown input type (expected .fits, .fits.gz, .h5, .hdf5)"))
        else:
            skipped.append((str(p), "does not exist"))
    return items, skipped


def _item(f: Path) -> InputItem:
    if f.suffix.lower() in HDF5_SUFFIXES:
        return InputItem("hdf5", str(f))
    return InputItem(_fits_kind(f), str(f))


def plan_units(
    items: Sequence[InputItem], *, files_per_unit: int = FILES_PER_UNIT, rows_per_unit: int = ROWS_PER_UNIT
) -> tuple[list[Unit], list[tuple[str, str]]]:
    """Cut items into units: runs of up to ``files_per_unit`` FITS files, and ``rows_per_unit``
    row ranges of each HDF5 file. Unreadable HDF5 files go to ``skipped``."""
    from starlabels.data.hdf5 import read_dataset_info

    units: list[Unit] = []
    skipped: list[tuple[str, str]] = []
    pending: list[InputItem] = []

    def flush() -> None:
        if pending:
            units.append(Unit(len(units), tuple(pending)))
            pending.clear()

    for it in items:
        if it.kind == "hdf5":
            flush()
            try:
                n = read_dataset_info(it.path).n_rows
            except InputFileError as exc:
                skipped.append((it.path, exc.problem))
                continue
            for a in range(0, n, max(1, rows_per_unit)):
                units.append(Unit(len(units), (InputItem("hdf5", it.path, a, min(n, a + rows_per_unit)),)))
        else:
            pending.append(it)
            if len(pending) >= files_per_unit:
                flush()
    flush()
    return units, skipped


# ----------------------------------------------------------------------------------------------
# one unit


@dataclass
class _Block:
    """Spectra of one kind from a unit, ready for :func:`predict`."""

    flux: list[np.ndarray] = field(default_factory=list)
    error: list[np.ndarray] = field(default_factory=list)
    bitmask: list[np.ndarray] = field(default_factory=list)
    meta: list[dict[str, Any]] = field(default_factory=list)


def _model_kind(im: InferenceModel) -> str:
    cfg = im.preprocessing
    kind = getattr(cfg, "kind", None)
    if kind is None and hasattr(cfg, "to_dict"):
        kind = cfg.to_dict().get("kind")
    return str(kind or "")


def _model_grid(im: InferenceModel) -> str | None:
    from starlabels.preprocess.grids import get_grid

    g = getattr(im.preprocessing, "output_grid", None)
    if g is not None:
        return get_grid(g).name
    try:
        return get_grid(im.n_pixels).name
    except ValueError:
        return None


def _read_fits(unit: Unit, im: InferenceModel) -> tuple[dict[str, _Block], list[tuple[str, str]]]:
    """Read the FITS files of a unit into blocks ``raw`` (apStar) / ``pre`` (aspcapStar)."""
    from starlabels.io import read_apstar, read_aspcapstar
    from starlabels.preprocess import grids
    from starlabels.preprocess.masking import BAD_PIXEL_ERROR

    blocks: dict[str, _Block] = {}
    skipped: list[tuple[str, str]] = []
    for it in unit.items:  # one file at a time: this is I/O, the compute is batched per unit
        try:
            if it.kind == "apstar":
                s = read_apstar(it.path)
                if s.flux.shape != (grids.APSTAR_N_PIXELS,):
                    raise InputFileError(it.path, f"flux has shape {s.flux.shape}, expected (8575,)")
                b = blocks.setdefault("raw", _Block())
                b.flux.append(s.flux)
                b.error.append(s.error)
                b.bitmask.append(s.bitmask)
            else:
                if _model_kind(im) == "raw":
                    raise InputFileError(
                        it.path, "aspcapStar holds continuum-normalised flux; this model takes raw "
                                 "apStar flux"
                    )
                dst = _model_grid(im)
                if dst is None:
                    raise InputFileError(it.path, "the model's input grid is not an APOGEE grid")
                s = read_aspcapstar(it.path)
                flux = grids.convert(s.flux, s.grid, dst, fill=np.nan)
                err = grids.convert(s.error, s.grid, dst, fill=np.nan)
                bad = ~np.isfinite(flux) | ~np.isfinite(err) | (err <= 0)
                if bad.all():
                    pass  # kept: predict flags it INVALID_SPECTRUM
                else:
                    flux = np.where(bad, 1.0, flux)
                    err = np.where(bad, BAD_PIXEL_ERROR, err)
                b = blocks.setdefault("pre", _Block())
                b.flux.append(flux)
                b.error.append(err)
        except (StarlabelsError, OSError, ValueError) as exc:
            skipped.append((it.path, getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"))
            continue
        meta = s.meta
        b.meta.append({
            "APOGEE_ID": str(meta.get("APOGEE_ID", "")),
            "RA": float(meta.get("RA", np.nan)), "DEC": float(meta.get("DEC", np.nan)),
            "SNR": float(meta.get("SNR", np.nan)), "SOURCE": it.path,
        })
    return blocks, skipped


def _read_hdf5(it: InputItem, im: InferenceModel) -> tuple[dict[str, _Block], list[tuple[str, str]]]:
    from starlabels.data.hdf5 import SpectraDataset

    try:
        ds = SpectraDataset(it.path, rows=np.arange(it.start, it.stop))
        pre = ds.preprocessing
        if pre is None and ds.grid == "apstar":
            kind = "raw"
        elif pre is not None and ds.n_pixels == im.n_pixels and _same_preprocessing(pre, im):
            kind = "pre"
        else:
            raise InputFileError(
                it.path, f"dataset holds {'preprocessed' if pre is not None else 'raw'} spectra on "
                         f"grid {ds.grid!r} that this model cannot use (it takes raw apStar flux or "
                         f"input preprocessed exactly as in its config)"
            )
        batch = ds.read()
        n = len(batch)
        meta_cols = {}
        for name, key in (("apogee_id", "APOGEE_ID"), ("ra", "RA"), ("dec", "DEC"), ("snr", "SNR"),
                          ("source", "SOURCE_FILE")):
            meta_cols[key] = ds.meta(name) if name in ds.meta_names else None
        ds.close()
    except (StarlabelsError, OSError, ValueError, KeyError) as exc:
        return {}, [(f"{it.path}[{it.start}:{it.stop}]",
                     getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}")]
    b = _Block(flux=[batch.flux], error=[batch.error], bitmask=[batch.bitmask] if kind == "raw" else [])

    def col(key: str, default: Any) -> np.ndarray:
        v = meta_cols[key]
        return np.full(n, default) if v is None else v

    ids, ra, dec, snr = col("APOGEE_ID", ""), col("RA", np.nan), col("DEC", np.nan), col("SNR", np.nan)
    b.meta = [
        {"APOGEE_ID": str(ids[k]), "RA": float(ra[k]), "DEC": float(dec[k]), "SNR": float(snr[k]),
         "SOURCE": f"{it.path}[{int(r)}]"}
        for k, r in enumerate(batch.rows)
    ]
    return {kind: b}, []


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

    if unit.items and unit.items[0].kind == "hdf5":
        blocks, skipped = _read_hdf5(unit.items[0], im)
    else:
        blocks, skipped = _read_fits(unit, im)
    frames = []
    opts = dict(settings)
    seed = opts.pop("seed", 0)
    for i, (kind, b) in enumerate(sorted(blocks.items())):
        if not b.flux:
            continue
        flux = np.concatenate([np.atleast_2d(f) for f in b.flux])
        error = np.concatenate([np.atleast_2d(e) for e in b.error])
        bitmask = np.concatenate([np.atleast_2d(m) for m in b.bitmask]) if b.bitmask else None
        meta = {k: [m[k] for m in b.meta] for k in ("APOGEE_ID", "RA", "DEC", "SNR", "SOURCE")}
        pred = predict(
            im, flux, error, bitmask=bitmask, preprocessed=(kind == "pre"),
            seed=unit.seed(seed) + i, snr=np.asarray(meta["SNR"], np.float64), **opts,
        )
        meta["SNR"] = pred.snr
        frames.append(catalog_frame(pred, meta, im.name, im.version))
    if not frames:
        return None, skipped
    if len(frames) == 1:
        return frames[0], skipped
    # a unit mixing apStar and aspcapStar files: back to the unit's input order
    order = {it.path: i for i, it in enumerate(unit.items)}
    df = pd.concat(frames, ignore_index=True)
    df = df.iloc[np.argsort(df["SOURCE"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    return df, skipped


def catalog_columns(label_names: Sequence[str], parts: Iterable[str]) -> list[str]:
    """Column names in catalog order for these labels and computed parts."""
    parts = [p for p in PART_ORDER if p in set(parts)]
    cols = ["APOGEE_ID", "RA", "DEC", "SNR", "SOURCE"]
    for x in label_names:
        cols += [x, f"{x}_ERR", *(f"{x}_ERR_{p.upper()}" for p in parts)]
    return [*cols, "FLAG", "MODEL_NAME", "MODEL_VERSION"]


def catalog_frame(pred: Prediction, meta: dict[str, Any], model_name: str, model_version: str):
    """A pandas DataFrame of catalog rows from a :class:`Prediction` and per-row ``meta``
    (``APOGEE_ID``, ``RA``, ``DEC``, ``SNR``, ``SOURCE``, each length N)."""
    import pandas as pd

    n = len(pred)
    data: dict[str, Any] = {
        "APOGEE_ID": np.asarray(meta["APOGEE_ID"], dtype=str),
        "RA": np.asarray(meta["RA"], np.float64),
        "DEC": np.asarray(meta["DEC"], np.float64),
        "SNR": np.asarray(meta["SNR"], np.float64),
        "SOURCE": np.asarray(meta["SOURCE"], dtype=str),
    }
    errs = pred.errors()
    for k, x in enumerate(pred.label_names):
        data[x] = pred.mean[:, k]
        data[f"{x}_ERR"] = pred.std[:, k]
        for p in PART_ORDER:
            if p in errs:
                data[f"{x}_ERR_{p.upper()}"] = errs[p][:, k]
    data["FLAG"] = pred.flags.astype(np.int32)
    data["MODEL_NAME"] = np.full(n, model_name)
    data["MODEL_VERSION"] = np.full(n, model_version)
    return pd.DataFrame(data, columns=catalog_columns(pred.label_names, errs))


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
    for u in units:
        marker = pdir / f"{u.name}.json"
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
    if not keep_parts:
        shutil.rmtree(pdir, ignore_errors=True)
    return CatalogResult(path=out, n_rows=len(df), skipped=skipped, skipped_path=sp,
                         units_total=len(units))


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
    """FITS binary table with TUNITn for every unit — also for those (e.g. ``dex``) that astropy
    cannot express in the FITS unit standard, which are written as plain strings."""
    from astropy import units as u
    from astropy.io import fits
    from astropy.table import Table

    from starlabels.inference.flags import FLAG_BITS

    t = Table.from_pandas(df)
    raw_units: dict[str, str] = {}
    for c, s in units.items():
        if c not in t.colnames or not s:
            continue
        try:
            u.Unit(s).to_string("fits")
            t[c].unit = s
        except (ValueError, u.UnitsError):
            raw_units[c] = s
    hdu = fits.table_to_hdu(t)
    for i, c in enumerate(t.colnames, start=1):
        if c in raw_units:
            hdu.header[f"TUNIT{i}"] = raw_units[c]
    for k, v in meta.items():
        hdu.header[k[:8].upper()] = v
    for n, b in FLAG_BITS.items():
        hdu.header.add_comment(f"FLAG bit {b}: {n}")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)


def read_catalog(path: str | os.PathLike, fmt: str | None = None):
    """Read a catalog back as a pandas DataFrame (any of the three formats)."""
    import pandas as pd

    fmt = guess_format(path, fmt)
    if fmt == "csv":
        return pd.read_csv(path, keep_default_na=True, dtype={"APOGEE_ID": str, "SOURCE": str})
    if fmt == "parquet":
        return pd.read_parquet(path)
    from astropy.table import Table

    t = Table.read(path, format="fits", unit_parse_strict="silent")
    df = t.to_pandas()
    for c in df.columns:
        if df[c].dtype == object and len(df) and isinstance(df[c].iloc[0], bytes):
            df[c] = df[c].str.decode("utf-8")
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
) -> CatalogResult:
    """Predict every input and write the catalog ``out`` (single process). See the module docstring.

    ``model`` is a TrainedModel or a model folder; ``inputs`` files/directories/HDF5 datasets.
    Returns a :class:`CatalogResult`.
    """
    fmt = guess_format(out, format)
    im = resolve(model)
    settings = run_settings(uncertainty=uncertainty, n_samples=n_samples, seed=seed,
                            batch_size=batch_size, device=device, calibrated=calibrated)
    units, pending, skipped = prepare_run(im, inputs, out, settings, files_per_unit=files_per_unit,
                                          rows_per_unit=rows_per_unit, overwrite=overwrite)
    pdir = parts_dir(out)
    for u in progress(pending, desc="catalog", total=len(pending), unit="unit"):
        run_unit(im, u, pdir, settings)
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
    }


def catalog_meta(im: InferenceModel, settings: dict[str, Any]) -> dict[str, Any]:
    return {"MODEL": im.name, "MODELVER": im.version, "UNCERT": str(settings["uncertainty"]),
            "NSAMPLES": settings["n_samples"], "CALIB": settings["calibrated"]}
