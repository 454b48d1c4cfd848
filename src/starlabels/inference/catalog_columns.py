"""Catalog rows: the column names in catalog order and a pandas frame of rows from a Prediction.

Columns (docs/DESIGN.md, "Catalog columns"): the identity columns of
:data:`~starlabels.inference.catalog_inputs.ID_COLUMNS` (``SDSS_ID``, ``APOGEE_ID``, ``TELESCOPE``,
``HDU``, ``RA``, ``DEC``, ``SNR``, ``SOURCE``), then for each label ``X``: ``X``, ``X_ERR`` and the
computed σ parts ``X_ERR_<PART>`` in :data:`PART_ORDER`, then ``DOMAIN_SHIFT``, ``FLAG``,
``MODEL_NAME`` and ``MODEL_VERSION``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from starlabels.inference.catalog_inputs import ID_COLUMNS
from starlabels.inference.prediction import Prediction

__all__ = ["OPTIONAL_ID_COLUMNS", "PART_ORDER", "catalog_columns", "catalog_frame"]

#: Part names in catalog order and their column suffixes.
#: variance parts written as ``<LABEL>_ERR_<PART>`` columns (networks; "fisher": The Cannon;
#: "jacobian": a Payne fit)
PART_ORDER: tuple[str, ...] = ("epistemic", "aleatoric", "noise", "delta", "fisher", "jacobian", "floor",
                               "coverage")

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
