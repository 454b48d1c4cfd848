"""The demo's accuracy table (:mod:`starlabels.demo`): median and σ_MAD of the residuals and the
width of the z-scores per label, and its Markdown form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["accuracy_table", "format_accuracy_table"]


def accuracy_table(catalog: Any, truth: Any, labels: Sequence[str]) -> Any:
    """Per-label accuracy of a catalog against the true labels (row-aligned tables).

    Returns a pandas DataFrame with columns ``label``, ``unit``, ``n``, ``median`` and
    ``sigma_mad`` of the residuals predicted − true (label units), and ``z_sigma_mad``, σ_MAD of
    z = (predicted − true)/σ with σ the catalog's ``X_ERR`` column (1 for calibrated errors).
    Computed with :func:`starlabels.evaluation.metrics.residual_table` and
    :func:`~starlabels.evaluation.metrics.zscore_table`.
    """
    import pandas as pd

    from starlabels.evaluation.metrics import residual_table, zscore_table

    labels = list(labels)
    res = residual_table(catalog, truth, labels)
    z = zscore_table(catalog, truth, labels, pred_err="columns")
    return pd.DataFrame({
        "label": res["label"].to_numpy(), "unit": res["unit"].to_numpy(), "n": res["n"].to_numpy(),
        "median": res["median"].to_numpy(), "sigma_mad": res["sigma_mad"].to_numpy(),
        "z_sigma_mad": z["z_sigma_mad"].to_numpy(),
    })


def _decimals(scale: float) -> int:
    """Decimals that show ``scale`` to 3 significant figures (0 for scales ≥ 100)."""
    if not (np.isfinite(scale) and scale > 0):
        return 3
    return int(max(0, 2 - np.floor(np.log10(scale))))


def format_accuracy_table(table: Any) -> str:
    """The accuracy table as Markdown, columns ``label | unit | N | median Δ | σ_MAD(Δ) | σ_MAD(z)``.

    Per row, the median and σ_MAD of the residuals get the decimals that show σ_MAD to 3
    significant figures (e.g. ``+15.0``/``71.4`` K, ``-0.0201``/``0.0473`` dex); z widths get 2.
    """
    from starlabels.evaluation.label_text import label_display

    head = ["label", "unit", "N", "median Δ", "σ_MAD(Δ)", "σ_MAD(z)"]
    rows = []
    for r in table.itertuples(index=False):
        d = _decimals(float(r.sigma_mad))
        rows.append([label_display(str(r.label), tex=False), str(r.unit), str(int(r.n)),
                     f"{float(r.median):+.{d}f}", f"{float(r.sigma_mad):.{d}f}",
                     f"{float(r.z_sigma_mad):.2f}"])
    widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(head)]
    right = [False, False, True, True, True, True]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2)
                         for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)]) + "\n"
