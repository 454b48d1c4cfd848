"""A report users can read: one self-contained HTML page for a trained model and its catalog.

:func:`build_report` (the ``starlabels report`` command) writes ``DIR/index.html`` with

1. the **model card** from the model folder's ``config.json`` (read directly): first what a
   reader checks — method, labels and units, training-set size, instrument and grid, uncertainty
   method, calibration z-widths before → after, label-coverage and domain-shift status, warnings —
   then the label normalisation and calibration tables, with the full provenance (architecture
   settings, preprocessing, spectrum scaling, data files, splits, dates, …) folded below; the
   training curve from ``history.csv`` is among the figures;
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

The work is split by responsibility: :mod:`~starlabels.evaluation.report_inputs` reads the tables
and the model card, :mod:`~starlabels.evaluation.report_reference` aligns the reference labels,
:mod:`~starlabels.evaluation.report_statistics` computes the tables,
:mod:`~starlabels.evaluation.report_figures` draws the figures and
:mod:`~starlabels.evaluation.report_html` renders the Jinja2 templates in
``evaluation/templates/``; this module puts them together.

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

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from starlabels.errors import InputFileError
from starlabels.evaluation.report_figures import FigureCollector, FigureEntry, make_figures
from starlabels.evaluation.report_html import model_card_view, render_page
from starlabels.evaluation.report_inputs import ModelCard, read_model_card, read_table
from starlabels.evaluation.report_reference import load_reference, resolve_id_column, resolve_labels
from starlabels.evaluation.report_statistics import accuracy_sections, summary_tables
from starlabels.evaluation.table_format import write_table
from starlabels.units import label_unit

__all__ = [
    "DEFAULT_ISOCHRONE_AGES",
    "ModelCard",
    "ReportResult",
    "build_report",
    "read_model_card",
    "read_table",
]

#: Default isochrone age (log10 yr; 4 Gyr) drawn on the Kiel diagrams.
DEFAULT_ISOCHRONE_AGES: tuple[float, ...] = (9.6,)


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
        PARSEC grid path; ``None`` uses :func:`starlabels.evaluation.isochrones.default_isochrone_path`
        (``$STARLABELS_ISOCHRONES``, else ``parsec_photometry_grid.fits.gz`` via
        ``$STARLABELS_REFERENCE_DIR`` or the download cache; skipped with a note when
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
    labels = resolve_labels(card, cat, catalog_path, notes)
    units = {x: card.label_units.get(x, label_unit(x)) for x in labels}
    id_column = resolve_id_column(id_column, cat, reference)
    ref = load_reference(cat, catalog_path, reference, labels, id_column, group_column, notes)

    if out.exists() and not out.is_dir():
        raise InputFileError(out, "exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    fig_dir = out / "figures"
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            old.unlink()

    tables: dict[str, pd.DataFrame] = {}
    summary = summary_tables(cat, labels, units, id_column)
    tables.update({f"summary_{k}": v for k, v in summary.items()})

    skipped: list[tuple[str, str]] = []
    accuracy = accuracy_sections(cat, labels, units, ref, tables, skipped)

    figs = FigureCollector(out, embed)
    if figures:
        make_figures(figs, card, cat, labels, ref, isochrones, isochrone_ages, notes)
        from starlabels.evaluation.report_fits import add_fit_figures  # Payne models only (issue 15)

        add_fit_figures(figs, card, cat, catalog_path)
    else:
        figs.skip("Figures", "left out on request (figures=False / --no-figures)")
    if fig_dir.is_dir() and not any(fig_dir.iterdir()):
        fig_dir.rmdir()

    card_view = model_card_view(card, labels, tables)  # adds model_labels / calibration tables

    table_dir = out / "tables"
    table_dir.mkdir(exist_ok=True)
    for old in table_dir.glob("*.csv"):
        old.unlink()
    for name, df in tables.items():
        write_table(df, table_dir / f"{name}.csv")

    page = render_page(
        title=title or f"starlabels report: {card.name}",
        card=card,
        card_view=card_view,
        catalog=cat,
        catalog_path=catalog_path,
        labels=labels,
        reference=ref,
        summary=summary,
        accuracy=accuracy,
        figures=figs.entries,
        skipped=skipped + figs.skipped,
        notes=notes,
    )
    path = out / "index.html"
    tmp = out / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return ReportResult(
        path=path, figures=figs.entries, skipped=skipped + figs.skipped, tables=tables, notes=notes
    )
