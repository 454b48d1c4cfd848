"""The report page as HTML: Jinja2 templates (``evaluation/templates/``, autoescaped) filled with
views of the tables, the model card and the figures.

Python here turns DataFrames and config values into small views (cell text to 4 significant
figures with the full value kept in ``data-value``, headings from :data:`COLUMN_TITLES`, long
tables and lists folded); the markup lives in the templates: ``report.html.j2`` (the page),
``model_card.html.j2`` (what a reader checks first, the full provenance folded in
``<details>``), ``macros.html.j2`` (tables, config values) and ``report.css``.

Every value from the inputs is escaped with :func:`html.escape` (quotes too) by the environment's
``finalize`` hook before autoescaping sees it; markup from the templates' macros passes as is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from starlabels.evaluation.label_text import label_display
from starlabels.evaluation.report_figures import FigureEntry
from starlabels.evaluation.report_inputs import ModelCard, grid_descriptions
from starlabels.evaluation.report_reference import Reference
from starlabels.evaluation.report_statistics import TableSection
from starlabels.evaluation.table_format import format_number
from starlabels.models.calibration_store import ALL_METHODS
from starlabels.units import label_unit

__all__ = ["COLUMN_TITLES", "FOLD_ROWS", "LIST_SHOWN", "TableView", "ValueNode", "model_card_view",
           "render_page", "table_view", "value_node"]

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



#: Tables longer than this are folded (click to open); the CSV copy is always complete.
FOLD_ROWS = 60
#: Values of a long list shown in the model card (the folder's config.json has them all).
LIST_SHOWN = 200
#: Order of the training-provenance entries (others follow in their own order).
TRAINING_ORDER = ("data_files", "files", "sizes", "splits", "dates", "epochs", "optimiser", "loss",
                  "batch_size", "patience", "seed", "device", "world_size")


def _escape(value: Any) -> Markup:
    """The environment's ``finalize``: text from the inputs escaped as :func:`html.escape` does
    (quotes as ``&quot;``/``&#x27;``); template markup (macro output) passes unchanged."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape(str(value), quote=True))


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("starlabels.evaluation", "templates"),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html", "j2"), default=False),
    finalize=_escape,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


# --------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------


@dataclass
class CellView:
    """One table cell: ``kind`` is ``"label"`` (a label name shown with its display name),
    ``"num"`` (right-aligned, full value in ``data-value``) or ``"text"``."""

    kind: str
    text: str
    value: str = ""
    display: str = ""


@dataclass
class HeadView:
    """One column heading: raw name (``data-col``), the heading shown, numeric alignment."""

    col: str
    title: str
    numeric: bool


@dataclass
class TableView:
    """A table ready for the ``data_table`` macro."""

    table_id: str
    head: list[HeadView]
    rows: list[list[CellView]]
    n_rows: int
    folded: bool


def _cell(col: str, v: Any, digits: int) -> CellView:
    if col == "label" and isinstance(v, str):
        return CellView("label", v, value=v, display=label_display(v, tex=False))
    if isinstance(v, bool | np.bool_) or v is None:
        return CellView("text", "" if v is None else str(v))
    if isinstance(v, int | np.integer):
        return CellView("num", str(int(v)), value=str(int(v)))
    if isinstance(v, float | np.floating):
        fv = float(v)
        text = format_number(fv, digits)
        if col in ("fraction", "frac_1sigma", "frac_2sigma") and math.isfinite(fv):
            text = f"{fv:.3f}"
        elif col in ("bin_lo", "bin_hi"):
            text = f"{fv:g}"
        return CellView("num", text, value=repr(fv))
    return CellView("text", str(v))


def table_view(
    df: pd.DataFrame,
    table_id: str,
    *,
    digits: int = 4,
    titles: Mapping[str, str] | None = None,
    columns: Sequence[str] | None = None,
) -> TableView:
    """A DataFrame as a table view: headings from :data:`COLUMN_TITLES` (``titles`` overrides; the
    raw column name in ``data-col``), numbers to ``digits`` significant figures with the full
    value in ``data-value``. ``columns`` picks the columns shown. Tables longer than
    :data:`FOLD_ROWS` are folded."""
    if columns is not None:
        df = df[[c for c in columns if c in df.columns]]
    titles = {**COLUMN_TITLES, **(titles or {})}
    head = [
        HeadView(str(c), str(titles.get(str(c), c)),
                 pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]))
        for c in df.columns
    ]
    rows = [[_cell(str(c), v, digits) for c, v in zip(df.columns, row, strict=True)]
            for row in df.itertuples(index=False, name=None)]
    return TableView(table_id, head, rows, len(df), len(df) > FOLD_ROWS)


# --------------------------------------------------------------------------------------------
# config values
# --------------------------------------------------------------------------------------------


@dataclass
class ValueNode:
    """A config value for the ``value`` macro: ``kind`` is ``map`` (``rows`` of (key, node)),
    ``list`` (``items``), ``lines`` (``items`` of text), ``folded`` (``count`` values, ``text``),
    ``text``, ``none``, ``empty_map`` or ``empty_list``."""

    kind: str
    text: str = ""
    rows: list[tuple[str, ValueNode]] = field(default_factory=list)
    items: list[Any] = field(default_factory=list)
    count: int = 0
    css: str = "kv"


def _scalar_text(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def value_node(v: Any, order: Sequence[str] = ()) -> ValueNode:
    """A config value as a node: mappings as key/value tables (keys in ``order`` first), lists of
    scalars as text (folded beyond 12 values or 400 characters, at most :data:`LIST_SHOWN` shown),
    other lists numbered."""
    if isinstance(v, Mapping):
        if not v:
            return ValueNode("empty_map")
        keys = [k for k in order if k in v] + [k for k in v if k not in order]
        return ValueNode("map", rows=[(str(k), value_node(v[k])) for k in keys])
    if isinstance(v, list | tuple):
        if not v:
            return ValueNode("empty_list")
        if all(not isinstance(x, Mapping | list | tuple) for x in v):
            text = ", ".join(_scalar_text(x) for x in v)
            if len(v) > 12 or len(text) > 400:
                shown = ", ".join(_scalar_text(x) for x in v[:LIST_SHOWN])
                more = f", … ({len(v) - LIST_SHOWN} more)" if len(v) > LIST_SHOWN else ""
                return ValueNode("folded", text=shown + more, count=len(v))
            return ValueNode("text", text=text)
        return ValueNode("list", items=[value_node(x) for x in v])
    if v is None:
        return ValueNode("none")
    return ValueNode("text", text=_scalar_text(v))


def _lines(lines: Sequence[str]) -> ValueNode:
    return ValueNode("lines", items=list(lines))


# --------------------------------------------------------------------------------------------
# the model card
# --------------------------------------------------------------------------------------------


def _text(text: str) -> ValueNode:
    return ValueNode("text", text=text)


def _method_text(card: ModelCard) -> str:
    method = card.config.get("method")
    if method:
        return f"{method} (fitted model)" if not card.architecture else f"{method}: {card.architecture}"
    return f"{card.architecture} network" if card.architecture else "not recorded"


def _training_size_text(training: Any) -> str:
    sizes = training.get("sizes") if isinstance(training, Mapping) else None
    if not isinstance(sizes, Mapping) or "train" not in sizes:
        return "not recorded"
    others = [f"{k} {_scalar_text(v)}" for k, v in sizes.items() if k != "train"]
    return f"{_scalar_text(sizes['train'])} stars" + (f" (and {', '.join(others)})" if others else "")


def _uncertainty_text(card: ModelCard) -> str:
    cal = card.section("calibration")
    if not isinstance(cal, Mapping) or not cal:
        return "the model's own σ, not calibrated on a dev set"
    methods = cal.get("methods")
    every = "every method, calibrated with one scale per label"
    if isinstance(cal.get("method"), str) and cal["method"] != ALL_METHODS:
        return f"{cal['method']}, calibrated"
    if isinstance(methods, Mapping) and set(methods) - {ALL_METHODS}:
        return ", ".join(str(m) for m in methods if m != ALL_METHODS) + ", calibrated"
    return every


def _calibration_change(cal: pd.DataFrame | None) -> ValueNode:
    """σ_MAD(z) before → after per label (and method), or the scales where no widths are recorded."""
    if cal is None:
        return _text("not calibrated")
    several = cal["method"].nunique() > 1
    lines = []
    for row in cal.to_dict("records"):
        name = f"{label_display(row['label'], tex=False)}" + (f" ({row['method']})" if several else "")
        before, after = row.get("z_sigma_mad_before"), row.get("z_sigma_mad_after")
        if before is not None and after is not None and np.isfinite([before, after]).all():
            lines.append(f"{name}: {before:.3f} → {after:.3f} (scale {format_number(row['scale'])})")
        else:
            lines.append(f"{name}: scale {format_number(row['scale'])} (z-widths not recorded)")
    return _lines(lines)


def _fitted_file_text(folder: Path, file_name: str, what: str) -> str:
    if (folder / file_name).is_file():
        return f"fitted ({file_name} in the model folder)"
    return f"not fitted: predictions carry no {what}"


def model_card_view(card: ModelCard, labels_shown: Sequence[str], tables: dict[str, pd.DataFrame]
                    ) -> dict[str, Any]:
    """The model card for ``model_card.html.j2``: first what a reader checks (method, labels and
    units, training-set size, instrument and grid, uncertainty method, calibration z-widths before
    → after, label coverage and domain-shift status, warnings), then the labels and calibration
    tables, then the full provenance (folded). Adds ``model_labels`` and ``calibration`` to
    ``tables``."""
    from starlabels.inference.domain_shift import DOMAIN_SHIFT_FILE
    from starlabels.inference.label_coverage import COVERAGE_FILE

    cfg = card.config
    norm = card.label_normalisation()
    units = card.label_units
    names = card.label_names or list(labels_shown)
    lab = pd.DataFrame({
        "label": names,
        "unit": [units.get(n, label_unit(n)) for n in names],
        "mean_label": [norm.get(n, (np.nan, np.nan))[0] for n in names],
        "std_label": [norm.get(n, (np.nan, np.nan))[1] for n in names],
    })
    tables["model_labels"] = lab
    cal = card.calibration_table()
    if cal is not None:
        tables["calibration"] = cal
    grids = grid_descriptions(cfg)
    folder = card.folder
    check: list[tuple[str, ValueNode]] = [
        ("method", _text(_method_text(card))),
        ("labels and units", _text(", ".join(f"{n} ({units.get(n, label_unit(n)) or 'no unit'})"
                                             for n in names) or "not recorded")),
        ("training set", _text(_training_size_text(cfg.get("training")))),
        ("instrument and grid", _lines(grids) if grids else _text("not recorded")),
        ("uncertainty", _text(_uncertainty_text(card))),
        ("calibration σ_MAD(z) before → after", _calibration_change(cal)),
        ("label coverage", _text(_fitted_file_text(folder, COVERAGE_FILE, "coverage part"))),
        ("domain shift", _text(_fitted_file_text(folder, DOMAIN_SHIFT_FILE, "DOMAIN_SHIFT score"))),
        ("warnings", _lines(card.notes) if card.notes else _text("none")),
    ]
    overview = {
        "model folder": str(card.folder),
        "architecture": card.architecture or "not recorded",
        "created": cfg.get("created", "not recorded"),
        "starlabels version": cfg.get("starlabels_version", "not recorded"),
        "format version": cfg.get("format_version", "not recorded"),
    }
    pre = cfg.get("preprocessing")
    if "preprocessing" not in cfg:
        preprocessing = None
    elif pre is None:
        preprocessing = ValueNode("none")
    elif isinstance(pre, Mapping):
        # the input grid is described under "instrument and grid", not listed
        preprocessing = value_node({k: v for k, v in pre.items() if k != "input_grid"})
    else:
        preprocessing = value_node(pre)
    spectra = cfg["normalisation"].get("spectra") if isinstance(cfg.get("normalisation"), Mapping) else None
    raw_cal = cfg.get("calibration")
    extra = None
    if isinstance(raw_cal, Mapping) and "methods" in raw_cal:
        rest = {k: v for k, v in raw_cal.items()
                if k not in ("methods", "format") and isinstance(v, Mapping | list)}
        extra = value_node(rest) if rest else None
    training = cfg.get("training")
    return {
        "check": check,
        "labels_table": table_view(lab, "table-model-labels", digits=6),
        "normalised": bool(norm),
        "calibration_table": None if cal is None else table_view(cal, "table-calibration"),
        "calibration_extra": extra,
        "n_epochs": None if card.history is None else len(card.history),
        "overview": value_node(overview),
        "architecture_settings": value_node(card.architecture_kwargs) if card.architecture_kwargs else None,
        "preprocessing": preprocessing,
        "spectrum_scaling": value_node(spectra) if isinstance(spectra, Mapping) else None,
        "training": (value_node(training, TRAINING_ORDER)
                     if isinstance(training, Mapping) and training else None),
    }


# --------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------


def render_page(
    *,
    title: str,
    card: ModelCard,
    card_view: Mapping[str, Any],
    catalog: pd.DataFrame,
    catalog_path: Path,
    labels: Sequence[str],
    reference: Reference | None,
    summary: Mapping[str, pd.DataFrame],
    accuracy: Sequence[TableSection],
    figures: Sequence[FigureEntry],
    skipped: Sequence[tuple[str, str]],
    notes: Sequence[str],
) -> str:
    """The whole page (``report.html.j2``) as a string."""
    from starlabels import __version__

    return _ENVIRONMENT.get_template("report.html.j2").render(
        title=title,
        version=__version__,
        written=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        catalog_path=str(catalog_path),
        n_stars=len(catalog),
        labels=list(labels),
        model_folder=str(card.folder),
        reference=reference,
        notes=list(notes),
        card=card_view,
        summary={
            "counts": table_view(summary["counts"], "table-counts"),
            "flags": table_view(summary["flags"], "table-flags") if "flags" in summary else None,
            "labels": table_view(summary["labels"], "table-labels", titles={"median": "median"}),
        },
        accuracy=[
            {"title": s.title, "anchor": s.anchor, "intro": s.intro, "csv": s.csv,
             "table": None if s.table is None or s.table.empty
             else table_view(s.table, s.table_id, columns=s.columns)}
            for s in accuracy
        ],
        figures=list(figures),
        skipped=list(skipped),
    )
