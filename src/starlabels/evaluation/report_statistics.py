"""The report's numbers: catalog summary tables (counts, flag fractions, label ranges and median
uncertainties) and, against a reference, the accuracy tables of
:mod:`starlabels.evaluation.metrics` (residuals per label, group and SNR bin; z-score widths),
each with the text that explains it on the page. No HTML here: :mod:`report_html` renders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from starlabels.evaluation import metrics as label_metrics
from starlabels.evaluation.columns import get_column, ids_of, label_matrix
from starlabels.evaluation.report_reference import Reference, error_matrix
from starlabels.evaluation.table_format import format_number
from starlabels.statistics import nanmedian_rows
from starlabels.units import label_unit

__all__ = ["PARTS", "TableSection", "accuracy_sections", "summary_tables"]

#: Uncertainty parts of the catalog, in catalog order.
PARTS: tuple[str, ...] = ("EPISTEMIC", "ALEATORIC", "NOISE", "DELTA")


@dataclass
class TableSection:
    """One accuracy table on the page: heading (``title``, ``anchor``), the plain-text ``intro``
    explaining it, the table (``None``/empty: "Nothing to show"), its HTML id, the name of its CSV
    copy in ``tables/``, and the columns shown (``None``: all)."""

    title: str
    anchor: str
    intro: str
    table: pd.DataFrame | None
    table_id: str
    csv: str
    columns: Sequence[str] | None = None


def summary_tables(
    catalog: pd.DataFrame, labels: Sequence[str], units: Mapping[str, str], id_column: str
) -> dict[str, pd.DataFrame]:
    """Counts, flag fractions and label ranges of the catalog alone: ``{"counts", "labels"}`` and
    ``"flags"`` when the catalog has a FLAG column (one row per documented bit, other bits, any)."""
    from starlabels.inference.flags import FLAG_BITS, FLAG_DESCRIPTIONS

    n = len(catalog)
    P, _ = label_matrix(catalog, list(labels))
    rows: list[tuple[str, Any]] = [("stars (rows)", n)]
    if id_column in catalog.columns:
        rows.append(
            (f"distinct {id_column}", int(pd.Series(ids_of(catalog, id_column)).nunique()))
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
        snr = get_column(catalog, "SNR")
        if np.isfinite(snr).any():
            rows.append(("median SNR", float(np.nanmedian(snr))))
            rows.append(
                (
                    "SNR range",
                    f"{format_number(float(np.nanmin(snr)))} – "
                    f"{format_number(float(np.nanmax(snr)))}",
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
    E = error_matrix(catalog, labels)
    lrows = []
    for j, x in enumerate(labels):
        v = P[:, j][np.isfinite(P[:, j])]
        row: dict[str, Any] = {
            "label": x,
            "unit": units.get(x, label_unit(x)),
            "n": int(v.size),
        }
        q = np.percentile(v, [0, 1, 50, 99, 100]) if v.size else [np.nan] * 5
        row.update(dict(zip(("min", "p1", "median", "p99", "max"), map(float, q), strict=True)))
        row["median_err"] = float(np.nanmedian(E[:, j])) if np.isfinite(E[:, j]).any() else np.nan
        for part in PARTS:
            c = f"{x}_ERR_{part}"
            if c in catalog.columns:  # NaN without numpy's all-NaN warning when none is present
                column = np.asarray(get_column(catalog, c))
                row[f"median_err_{part.lower()}"] = float(nanmedian_rows(column[None, :])[0])
        lrows.append(row)
    out["labels"] = pd.DataFrame(lrows)
    return out



#: The accuracy tables, in page order (skipped with a reason when there is no reference).
ACCURACY_TITLES = ("Residuals per label", "Residuals per group", "Residuals per SNR bin", "z-score widths")


def accuracy_sections(
    cat: pd.DataFrame,
    labels: list[str],
    units: Mapping[str, str],
    ref: Reference | None,
    tables: dict[str, pd.DataFrame],
    skipped: list[tuple[str, str]],
) -> list[TableSection]:
    """The accuracy tables against the reference ``ref`` (none when ``ref`` is ``None``).

    Adds each table to ``tables`` (name → DataFrame, written as CSV) and what cannot be shown to
    ``skipped`` as (title, reason).
    """
    if ref is None:
        for t in ACCURACY_TITLES:
            skipped.append((t, "no reference labels (pass --reference)"))
        return []
    P, _ = label_matrix(cat, labels)
    use = [j for j, x in enumerate(labels) if x in ref.columns]
    names = [labels[j] for j in use]
    P, R = P[:, use], ref.R[:, use]
    E = error_matrix(cat, names)
    err = E if np.isfinite(E).any(axis=0).all() else None
    u = {x: units[x] for x in names}
    out = []
    resid = label_metrics.residual_table(P, R, names, err=err, units=u)
    tables["residuals"] = resid
    out.append(TableSection(
        "Residuals per label", "residuals",
        "Δ = predicted − reference, in label units; σ_MAD = 1.4826 · median|Δ − median Δ|"
        + ("; median σ is the median reported uncertainty of the same stars." if err is not None else "."),
        resid, "table-residuals", "residuals",
    ))
    if ref.groups is not None:
        grp = label_metrics.residual_table(P, R, names, err=err, units=u, groups=ref.groups)
        grp = grp[grp["n"] > 0].reset_index(drop=True)
        tables["residuals_by_group"] = grp
        out.append(TableSection(
            "Residuals per group", "groups",
            f"The same statistics per group (column {ref.group_column}); “all” is the whole "
            "sample; groups without a matched star are left out.",
            grp, "table-groups", "residuals_by_group",
        ))
    else:
        skipped.append(("Residuals per group", "no GROUP column in the reference or the catalog"))
    if "SNR" in cat.columns and np.isfinite(get_column(cat, "SNR")).any():
        by_snr = label_metrics.residuals_by_snr(P, R, names, snr=get_column(cat, "SNR"), err=err, units=u)
        by_snr = by_snr[by_snr["n"] > 0].reset_index(drop=True)
        tables["residuals_by_snr"] = by_snr
        out.append(TableSection(
            "Residuals per SNR bin", "snr",
            "Residual statistics in bins of SNR (non-empty bins only; mean, std and RMS are in the "
            "CSV file).",
            by_snr, "table-snr", "residuals_by_snr",
            columns=["label", "unit", "bin_lo", "bin_hi", "by_median", "n", "median", "sigma_mad",
                     "median_abs", "median_err"],
        ))
    else:
        skipped.append(("Residuals per SNR bin", "the catalog has no SNR values"))
    zcols = [j for j in range(len(names)) if np.isfinite(E[:, j]).any()]
    if zcols:
        zn = [names[j] for j in zcols]
        Er = None if ref.E is None else ref.E[:, [labels.index(x) for x in zn]]
        zt = label_metrics.zscore_table(P[:, zcols], R[:, zcols], zn, pred_err=E[:, zcols], ref_err=Er)
        tables["zscores"] = zt
        with_ref = (
            "σ_ref from the reference's uncertainty columns " + ", ".join(ref.err_columns.values())
            if Er is not None
            else "the reference has no uncertainties (σ_ref = 0)"
        )
        out.append(TableSection(
            "z-score widths (calibration check)", "zscores",
            f"z = (predicted − reference)/√(σ² + σ_ref²), {with_ref}. Calibrated Gaussian "
            f"uncertainties give σ_MAD(z) ≈ std z ≈ 1 and {label_metrics.GAUSS_1SIGMA:.3f} / "
            f"{label_metrics.GAUSS_2SIGMA:.3f} of the stars within |z| ≤ 1 / 2.",
            zt, "table-zscores", "zscores",
        ))
    else:
        skipped.append(("z-score widths", "the catalog has no uncertainties (X_ERR)"))
    return out
