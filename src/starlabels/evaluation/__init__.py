"""starlabels.evaluation: metrics, science checks and figures for predicted stellar labels.

- :mod:`~starlabels.evaluation.metrics` — residual statistics (median, σ_MAD) per label, group
  and bin; z-score calibration tables; APOGEE Net Tables 1–3. Built on
  :mod:`~starlabels.evaluation.columns` (column access, matching by star id),
  :mod:`~starlabels.evaluation.binned_statistics` (the grouped/binned engine),
  :mod:`~starlabels.evaluation.label_text` (display names) and
  :mod:`~starlabels.evaluation.table_format` (Markdown/CSV writers).
- :mod:`~starlabels.evaluation.diagnostics` — visit-vs-combined self-consistency, cluster
  homogeneity, the ∂label/∂flux sensitivity;
  :mod:`~starlabels.evaluation.element_windows` — Brackett lines and element windows.
- :mod:`~starlabels.evaluation.plots` — Kiel diagrams with isochrones, uncertainty vs SNR,
  predicted vs reference, binned residuals, the young-star selection, z-score histograms (the
  Kiel diagrams and the young-star selection from :mod:`~starlabels.evaluation.kiel_plots`);
  :mod:`~starlabels.evaluation.diagnostic_plots` — sensitivity and cluster figures;
  :mod:`~starlabels.evaluation.figure_style` — their shared style and saving.
- :mod:`~starlabels.evaluation.isochrones` — PARSEC isochrones from a FITS grid.
- :mod:`~starlabels.evaluation.report` — the HTML report (model card, metrics tables, figures)
  behind ``starlabels report`` (parts: ``report_inputs``, ``report_reference``,
  ``report_statistics``, ``report_figures``, ``report_html`` and the Jinja2 templates).

The most used functions are importable from here; submodules load on first use (plots imports
matplotlib, sensitivity imports torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "metrics": (
        "sigma_mad", "residual_table", "residuals_by_snr", "residuals_by_label_value",
        "zscore_table", "apogee_net_tables",
    ),
    "columns": ("match_reference",),
    "table_format": ("to_markdown", "write_table"),
    "diagnostics": (
        "self_consistency", "cluster_homogeneity", "cluster_summary", "sensitivity",
    ),
    "element_windows": ("BRACKETT_LINES", "load_element_windows", "element_window_mask"),
    "plots": (
        "plot_kiel", "plot_kiel_panels", "plot_uncertainty_vs_snr", "plot_pred_vs_ref",
        "plot_binned_residuals", "plot_young_selection", "plot_zscore_histograms",
    ),
    "diagnostic_plots": ("plot_sensitivity", "plot_cluster_homogeneity"),
    "figure_style": ("save_figure",),
    "isochrones": ("load_isochrones", "select_isochrones", "Isochrone"),
    "report": ("build_report", "ReportResult"),
    "report_inputs": ("read_model_card", "read_table", "ModelCard"),
}
_WHERE = {name: mod for mod, names in _EXPORTS.items() for name in names}
_SUBMODULES = set(_EXPORTS)

__all__ = sorted([*_WHERE, *_SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"starlabels.evaluation.{_WHERE[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"starlabels.evaluation.{name}")
    raise AttributeError(f"module 'starlabels.evaluation' has no attribute {name!r}")
