"""APOGEE Net's recipe, step 4: evaluate the trained model and write the paper's Tables 1–3.

:func:`run_recipe` (``starlabels recipe apogee-net CONFIG.toml``) runs the whole recipe: the
training part (:func:`starlabels.training.recipe.train_recipe`: per-group split, training,
stratified adaptation) and then :func:`evaluate_recipe`: the saved model predicts every row of the
three splits (:func:`starlabels.predict`, point estimates, :func:`predict_rows`) and
:func:`starlabels.evaluation.metrics.apogee_net_tables` makes the tables, written by
:func:`write_tables` as Markdown and CSV, with ``predictions.csv`` and ``recipe.json`` beside them
(layout and config format: :mod:`starlabels.training.recipe`).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.training.recipe import SPLITS, RecipeConfig, plain_json, train_recipe

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from starlabels.evaluation.metrics import ApogeeNetTables
    from starlabels.training.config import StratifiedConfig
    from starlabels.training.data_access import TrainingData

__all__ = ["PREDICTIONS_FILE", "SUMMARY_FILE", "TABLE_FILES", "RecipeResult", "evaluate_recipe",
           "predict_rows", "run_recipe", "write_tables"]

#: Base names of the table files (``.md`` and ``.csv`` each).
TABLE_FILES = {"table1": "table1_normalisation", "table2": "table2_mse", "table3": "table3_scatter"}
PREDICTIONS_FILE = "predictions.csv"
SUMMARY_FILE = "recipe.json"
#: Spectra read from the dataset and predicted per step during evaluation.
EVAL_BLOCK = 2048



@dataclass
class RecipeResult:
    """What :func:`run_recipe` produced."""

    output: Path
    model_folder: Path
    tables: Any  # ApogeeNetTables (display group names)
    files: dict[str, Path]
    summary: dict[str, Any]



def run_recipe(
    cfg: RecipeConfig, *, resume: bool = False, distributed: Any = None
) -> RecipeResult | None:
    """Split, train, adapt, evaluate and write the tables (see :mod:`starlabels.training.recipe`).

    ``resume`` continues an interrupted run from ``<output>/model/checkpoint.pt`` (a finished one
    is re-evaluated). Under DistributedDataParallel (``distributed``) every rank trains and rank 0
    evaluates and writes; other ranks return None.
    """
    trained = train_recipe(cfg, resume=resume, distributed=distributed)
    if not trained.is_main:
        return None
    return evaluate_recipe(trained.cfg, trained.data, trained.split, extra=trained.extra)


def predict_rows(
    model: Any, data: TrainingData, rows: np.ndarray, *, device: str | None = None,
    block: int = EVAL_BLOCK,
) -> np.ndarray:
    """(n, L) point predictions (physical units) of ``model`` for ``rows`` of ``data``.

    Spectra are read ``block`` rows at a time and passed to :func:`starlabels.predict` — raw
    apStar-grid spectra through the model's own preprocessing, already-preprocessed ones
    (``data.preprocessing`` set, or a model without preprocessing) as network input. Rows whose
    spectrum is unusable get NaN.
    """
    from starlabels.inference.predict import predict
    from starlabels.utils import progress

    rows = np.asarray(rows, dtype=np.int64)
    preprocessed = data.preprocessing is not None or model.preprocessing is None
    out = np.full((len(rows), len(model.label_names)), np.nan)
    for a in progress(range(0, len(rows), block), desc="evaluate", unit="block"):
        flux, error, bitmask = data.read(rows[a:a + block])
        pred = predict(model, flux, error, bitmask=None if preprocessed else bitmask,
                       preprocessed=preprocessed, device=device, uncertainty=None)
        out[a:a + len(flux)] = pred.mean
    return out


def _ordered_groups(present: Sequence[str], s: StratifiedConfig) -> list[str]:
    """Table order: the large group, the focus groups, then any others (sorted)."""
    first = [g for g in [s.large_group, *s.focus_groups] if g in present]
    return first + sorted(g for g in present if g not in first)


def evaluate_recipe(
    cfg: RecipeConfig, data: TrainingData, split: Mapping[str, np.ndarray],
    extra: Mapping[str, Any] | None = None,
) -> RecipeResult:
    """Predict the split rows with the saved model, make Tables 1–3 and write every output file."""
    import pandas as pd

    from starlabels.evaluation.metrics import apogee_net_tables
    from starlabels.models.folder import load_model

    assert data.groups is not None
    model = load_model(cfg.model_folder)
    parts = [(name, np.asarray(split[name], dtype=np.int64)) for name in SPLITS]
    rows = np.concatenate([r for _, r in parts])
    split_vec = np.concatenate([np.full(len(r), name) for name, r in parts])
    groups = data.groups[rows]
    order = _ordered_groups(sorted(set(groups.tolist())), cfg.stratified)
    rank = {g: i for i, g in enumerate(order)}
    # rows sorted by (group in table order, row): the tables list groups in order of appearance
    perm = np.lexsort((rows, np.array([rank[g] for g in groups], dtype=np.int64)))
    rows, split_vec, groups = rows[perm], split_vec[perm], groups[perm]
    idx = np.argsort(rows, kind="stable")  # predict in file order (sequential reads)
    pred = np.empty((len(rows), len(model.label_names)))
    pred[idx] = predict_rows(model, data, rows[idx], device=cfg.train.training.torch_device)
    ref = np.asarray(data.labels[rows], dtype=np.float64)
    ref[(ref == MISSING) | ~np.isfinite(ref)] = np.nan
    names = list(model.label_names)
    scaler = model.label_scaler
    shown = np.array([cfg.display_name(g) for g in groups], dtype=object)
    tables = apogee_net_tables(
        pred, ref, names, split=split_vec, groups=shown, label_mean=scaler.mean,
        label_std=scaler.std, full_name=cfg.full_name, statistic=cfg.statistic,  # type: ignore[arg-type]
    )
    out = cfg.output
    out.mkdir(parents=True, exist_ok=True)
    files = write_tables(tables, out, names, list(model.label_units))

    pred_table = pd.DataFrame({"ROW": rows})
    ids = _meta_column(data, "apogee_id")
    if ids is not None:
        pred_table["APOGEE_ID"] = ids[rows]
    pred_table["GROUP"] = groups
    pred_table["SPLIT"] = split_vec
    for j, n in enumerate(names):
        pred_table[n] = pred[:, j]
    for j, n in enumerate(names):
        pred_table[f"{n}_REF"] = ref[:, j]
    pred_table = pred_table.sort_values("ROW", kind="stable")
    files["predictions"] = out / PREDICTIONS_FILE
    pred_table.to_csv(files["predictions"], index=False)

    summary = {
        "recipe": "apogee_net",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "config": cfg.source,
        "recipe_config": cfg.to_dict(),
        "model": str(cfg.model_folder),
        "labels": names,
        "groups": {g: {"name": cfg.display_name(g),
                       "rows": {p: int(np.count_nonzero((groups == g) & (split_vec == p))) for p in SPLITS}}
                   for g in order},
        **dict(extra or {}),
        "statistic": cfg.statistic,
        "table2": _records(tables.table2()),
        "files": {k: str(v) for k, v in files.items()},
    }
    files["summary"] = out / SUMMARY_FILE
    summary["files"]["summary"] = str(files["summary"])
    files["summary"].write_text(json.dumps(plain_json(summary), indent=2) + "\n", encoding="utf-8")
    return RecipeResult(output=out, model_folder=cfg.model_folder, tables=tables, files=files,
                        summary=summary)


def _meta_column(data: TrainingData, name: str) -> np.ndarray | None:
    """A meta column over all of ``data``'s files (str), or None when a file lacks it."""
    from starlabels.data.hdf5 import SpectraDataset

    if not data.files:
        return None
    cols = []
    for path in data.files:
        ds = SpectraDataset(path)
        try:
            if name not in ds.meta_names:
                return None
            v = np.asarray(ds.meta(name))
            cols.append(np.char.decode(v, "utf-8") if v.dtype.kind == "S" else v.astype(str))
        finally:
            ds.close()
    return np.concatenate(cols)


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------

_SPLIT_TITLES = {"train": "Train", "dev": "Dev", "test": "Test"}


def _paper_label(name: str, unit: str) -> str:
    from starlabels.evaluation.label_text import label_display

    text = label_display(name, tex=False)
    return f"{text} ({unit})" if unit and unit != "dex" else text


def write_tables(
    tables: ApogeeNetTables, folder: str | Path, label_names: Sequence[str],
    label_units: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Write Tables 1–3 as Markdown and CSV into ``folder``; returns ``{"table2_md": path, ...}``.

    CSV (full precision): ``table1_normalisation.csv`` (label, unit, mean, std),
    ``table2_mse.csv`` (group, train, dev, test), ``table3_scatter.csv`` (group, label, unit,
    train, dev, test). Markdown: the same rows with a caption, labels as in the paper
    (``Teff (K)``, ``log g``, ``[Fe/H]``) and 4 significant figures.
    """
    from starlabels.evaluation.table_format import to_markdown, write_table

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    units = dict(zip(label_names, label_units or [""] * len(label_names), strict=True))
    t1 = tables.standardisation.copy()
    t2 = tables.table2()
    t3 = tables.table3()
    wide = {"table1": t1, "table2": t2, "table3": t3}
    captions = {
        "table1": "Table 1. Normalisation values of the labels (training set)",
        "table2": "Table 2. Combined standardised MSE loss",
        "table3": f"Table 3. Typical scatter ({tables.statistic}) between the input labels and the "
                  "predictions for each parameter in each group",
    }
    md_frames = {
        "table1": t1.assign(label=[_paper_label(n, units.get(n, u)) for n, u in zip(t1["label"], t1["unit"],
                                                                                      strict=True)])
        .drop(columns="unit").rename(columns={"label": "Parameter", "mean": "Mean", "std": "Std"}),
        "table2": t2.rename(columns={"group": "Group", **_SPLIT_TITLES}),
        "table3": t3.assign(label=[_paper_label(n, u) for n, u in zip(t3["label"], t3["unit"], strict=True)])
        .drop(columns="unit").rename(columns={"group": "Group", "label": "Parameter", **_SPLIT_TITLES}),
    }
    paths: dict[str, Path] = {}
    for key, base in TABLE_FILES.items():
        paths[f"{key}_csv"] = write_table(wide[key], folder / f"{base}.csv")
        md = folder / f"{base}.md"
        md.write_text(f"{captions[key]}\n\n{to_markdown(md_frames[key])}", encoding="utf-8")
        paths[f"{key}_md"] = md
    return paths


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in r.items()} for r in df.to_dict(orient="records")]

