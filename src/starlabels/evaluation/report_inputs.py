"""Reading the report's inputs: catalog and reference tables (FITS, CSV, Parquet, or a simulated
HDF5 dataset's truth) and the model card of a model folder (``config.json``, ``history.csv``),
read as JSON and CSV without building the network (the format versions it knows come from
:data:`starlabels.models.folder_io.READABLE_FORMAT_VERSIONS`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from starlabels.errors import InputFileError
from starlabels.models.calibration_store import ALL_METHODS
from starlabels.units import label_unit

__all__ = ["TABLE_FORMATS", "ModelCard", "grid_descriptions", "read_model_card",
           "read_table"]

#: Suffixes of readable tables and their format.
TABLE_FORMATS: dict[str, str] = {
    ".fits": "fits", ".fit": "fits", ".fits.gz": "fits", ".fit.gz": "fits",
    ".csv": "csv", ".csv.gz": "csv", ".parquet": "parquet", ".pq": "parquet",
}
#: How the card names the calibration entry that applies to every uncertainty method
#: (stored under :data:`starlabels.models.calibration_store.ALL_METHODS`).
ALL_METHODS_NAME = "all"


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

        # a foreign file's unknown units become UnrecognizedUnit quietly (no warnings filter to change)
        t = Table.read(p, format="fits", unit_parse_strict="silent")
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
        out = {n: label_unit(n) for n in names}
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
                    shown = ALL_METHODS_NAME if method == ALL_METHODS else str(method)
                    row: dict[str, Any] = {"label": str(label), "method": shown,
                                           "scale": _num(scale)}
                    for key, col in (("sigma_mad_before", "z_sigma_mad_before"),
                                     ("sigma_mad_after", "z_sigma_mad_after"), ("n_dev", "n_dev"),
                                     ("sigma_reference", "sigma_reference")):
                        val = entry.get(key)
                        if isinstance(val, Mapping) and label in val:
                            row[col] = _num(val[label])
                    rows.append(row)
        else:
            rows = [{"label": str(k), "method": ALL_METHODS_NAME, "scale": _num(v)} for k, v in cal.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)]
        return pd.DataFrame(rows) if rows else None


def _num(x: Any) -> float:
    """``float(x)``, NaN for what is not a number."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def grid_descriptions(cfg: Mapping[str, Any]) -> list[str]:
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
    from starlabels.models.folder_io import READABLE_FORMAT_VERSIONS  # lazily: it imports torch

    card = ModelCard(folder=folder, config=cfg)
    version = cfg.get("format_version")
    if version not in READABLE_FORMAT_VERSIONS:
        card.notes.append(
            f"config.json has format_version {version!r}; this starlabels knows "
            f"{', '.join(map(str, READABLE_FORMAT_VERSIONS))}, so the card shows what it can read"
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

