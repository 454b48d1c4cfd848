"""Science checks of a trained model (astroNN §4.2–4.4).

- :func:`self_consistency` — predictions from individual visits against those from the combined
  spectrum of the same star, in SNR bins (astroNN §4.2, Table 2, Fig. 11);
- :func:`cluster_homogeneity` — each label's spread within star clusters next to the mean
  reported uncertainty (§4.3, Figs. 12–13);
- :func:`sensitivity` — the Jacobian ∂label/∂flux averaged over subsets of stars, by autograd
  over whole batches (§4.4, Figs. 14–15; the Jacobian is :mod:`starlabels.inference.jacobian`'s,
  the one the delta method uses), annotated with
  :func:`~starlabels.evaluation.element_windows.element_window_mask` and
  :data:`~starlabels.evaluation.element_windows.BRACKETT_LINES`.

Tables are tidy :class:`pandas.DataFrame` objects that :mod:`starlabels.evaluation.metrics`
writes as Markdown or CSV; :mod:`starlabels.evaluation.plots` draws the figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from starlabels.errors import InputDataError
from starlabels.evaluation.binned_statistics import grouped_stats
from starlabels.evaluation.columns import (
    TableLike,
    clean_missing,
    get_column,
    has_column,
    ids_of,
    is_table,
    label_matrix,
    per_star_vector,
    table_columns,
    uncertainty_matrix,
)
from starlabels.evaluation.metrics import DEFAULT_SNR_BINS, residual_table
from starlabels.units import label_unit

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------------------------
# self-consistency at low SNR (astroNN §4.2)
# --------------------------------------------------------------------------------------------


@dataclass
class SelfConsistency:
    """Visit-vs-combined comparison.

    ``summary``: label, unit, n, median, sigma_mad of visit − combined (astroNN Table 2), and
    ``mae_at_snr`` — the median |Δ| interpolated at ``snr_ref`` (Fig. 11's annotation).
    ``by_snr``: :func:`~starlabels.evaluation.metrics.residual_table` in visit-SNR bins;
    ``median_abs`` is the curve of Fig. 11.
    ``differences``: (n_visits, L) visit − combined in label units (NaN when unmatched).
    ``matched``: (n_visits,) True where the visit's star has a combined prediction.
    """

    summary: pd.DataFrame
    by_snr: pd.DataFrame
    differences: np.ndarray
    matched: np.ndarray
    label_names: list[str]
    snr_ref: float

    @property
    def n_unmatched(self) -> int:
        return int((~self.matched).sum())


def interpolate_binned(table: pd.DataFrame, label: str, x: float, column: str = "median_abs") -> float:
    """Linear interpolation of a binned ``column`` at ``x`` along ``by_median`` for one label
    (non-empty bins only; NaN outside their range)."""
    rows = table[(table["label"] == label) & (table["n"] > 0)]
    if "group" in rows:
        rows = rows[rows["group"] == rows["group"].iloc[0]] if len(rows) else rows
    xs, ys = rows["by_median"].to_numpy(float), rows[column].to_numpy(float)
    ok = np.isfinite(xs) & np.isfinite(ys)
    if ok.sum() == 0:
        return float("nan")
    order = np.argsort(xs[ok])
    return float(np.interp(x, xs[ok][order], ys[ok][order], left=np.nan, right=np.nan))


def self_consistency(
    visits: TableLike | np.ndarray,
    combined: TableLike | np.ndarray,
    labels: Sequence[str] | str | None = None,
    *,
    visit_ids: Sequence[str] | np.ndarray | None = None,
    combined_ids: Sequence[str] | np.ndarray | None = None,
    visit_snr: np.ndarray | str = "SNR",
    id_column: str = "APOGEE_ID",
    snr_bins: Sequence[float] = DEFAULT_SNR_BINS,
    visit_err: TableLike | np.ndarray | Literal["columns"] | None = None,
    snr_ref: float = 50.0,
) -> SelfConsistency:
    """Predictions from individual visits vs from the combined spectrum of the same star.

    Parameters
    ----------
    visits
        (n_visits, L) predictions from single visits, or a catalog table (one row per visit).
    combined
        (n_stars, L) predictions from the combined spectra, or a catalog table.
    visit_ids, combined_ids
        Star id of each row; default: the ``id_column`` of the tables. Ids in ``combined`` must
        be unique; visits of stars absent from it are left out (counted in ``n_unmatched``).
    visit_snr
        (n_visits,) SNR of each visit, or a column of ``visits`` (default ``"SNR"``).
    snr_bins
        Visit-SNR bin edges for ``by_snr``.
    visit_err
        Visit uncertainties ((n_visits, L), or ``"columns"`` for ``X_ERR`` of ``visits``): adds
        ``median_err`` to ``by_snr`` (the error bars of astroNN Fig. 11).
    """
    V, names = label_matrix(visits, labels, what="visit predictions")
    C, _ = label_matrix(combined, names if is_table(combined) else (labels or names),
                        what="combined predictions")
    if C.shape[1] != V.shape[1]:
        raise InputDataError(f"visit ({V.shape[1]}) and combined ({C.shape[1]}) label counts differ")
    v_ids = ids_of(visits if visit_ids is None else visit_ids, id_column)
    c_ids = ids_of(combined if combined_ids is None else combined_ids, id_column)
    if v_ids.shape[0] != V.shape[0] or c_ids.shape[0] != C.shape[0]:
        raise InputDataError("need one star id per row of visits and of combined predictions")
    index = pd.Index(c_ids)
    if not index.is_unique:
        raise InputDataError(f"combined predictions have duplicate star ids, e.g. "
                             f"{index[index.duplicated()].unique()[:5].tolist()}")
    pos = index.get_indexer(v_ids)
    matched = pos >= 0
    C_aligned = np.full_like(V, np.nan)
    C_aligned[matched] = C[pos[matched]]
    snr = np.asarray(per_star_vector(visit_snr, V.shape[0], "visit_snr", visits), dtype=float)
    err = uncertainty_matrix(visit_err, visits, names, V.shape[0])
    by_snr = residual_table(V, C_aligned, names, err=err, by=snr, bins=snr_bins)
    summary = residual_table(V, C_aligned, names)[["label", "unit", "n", "median", "sigma_mad"]]
    summary["mae_at_snr"] = [interpolate_binned(by_snr, x, snr_ref) for x in names]
    return SelfConsistency(summary, by_snr, V - C_aligned, matched, names, float(snr_ref))


# --------------------------------------------------------------------------------------------
# cluster homogeneity (astroNN §4.3)
# --------------------------------------------------------------------------------------------


def _membership(
    members: Mapping[str, str] | pd.Series | TableLike, id_column: str, cluster_column: str
) -> pd.Series:
    """Membership as a Series: stripped star id → cluster name."""
    if isinstance(members, pd.Series):
        ids, clusters = members.index.to_numpy(), members.to_numpy()
    elif is_table(members) and has_column(members, id_column):
        if not has_column(members, cluster_column):
            raise InputDataError(f"member table needs a {cluster_column!r} column; has "
                                 f"{table_columns(members)}")
        ids = get_column(members, id_column, dtype=None)
        clusters = get_column(members, cluster_column, dtype=None)
    elif isinstance(members, Mapping):
        ids, clusters = np.array(list(members.keys())), np.array(list(members.values()))
    else:
        raise InputDataError("members must map star id → cluster name (dict, Series or table)")
    ids = ids_of(np.asarray(ids))
    clusters = np.char.strip(np.asarray(clusters).astype(str))
    s = pd.Series(clusters, index=ids)
    if not s.index.is_unique:
        raise InputDataError("a star is listed twice in the member list; give one cluster per star")
    return s


def cluster_homogeneity(
    catalog: TableLike | np.ndarray,
    members: Mapping[str, str] | pd.Series | TableLike,
    labels: Sequence[str] | str | None = None,
    *,
    ids: Sequence[str] | np.ndarray | None = None,
    err: TableLike | np.ndarray | Literal["columns"] | None = "columns",
    id_column: str = "APOGEE_ID",
    cluster_column: str = "CLUSTER",
    min_members: int = 2,
) -> pd.DataFrame:
    """Spread of each label within each cluster next to the mean reported uncertainty.

    Parameters
    ----------
    catalog
        Predictions: a catalog table (with ``id_column`` and, for ``err="columns"``, ``X_ERR``
        columns) or an (N, L) array with ``ids``.
    members
        Star id → cluster name: a dict, a Series, or a table with ``id_column`` and
        ``cluster_column``. Stars of the catalog not listed are ignored.
    err
        Reported uncertainties ((N, L) array, error table, ``"columns"``, or None).
    min_members
        Clusters with fewer valid members for a label get NaN spreads.

    Returns
    -------
    DataFrame with ``cluster, label, unit, n, mean, median, std, std_err, sigma_mad,
    mean_err, spread_ratio``: ``std`` (ddof=1) and ``sigma_mad`` are the spreads in label units,
    ``std_err = std / sqrt(2 (n − 1))`` their Gaussian uncertainty, ``mean_err`` the mean
    reported uncertainty of the members and ``spread_ratio = std / mean_err`` (≈ 1 when the
    uncertainties account for the spread of a chemically homogeneous cluster).
    """
    X, names = label_matrix(catalog, labels, what="catalog")
    n = X.shape[0]
    star_ids = ids_of(catalog if ids is None else ids, id_column)
    if star_ids.shape[0] != n:
        raise InputDataError(f"need {n} star ids, got {star_ids.shape[0]}")
    if isinstance(err, str) and err == "columns" and not (
        is_table(catalog) and all(has_column(catalog, f"{x}_ERR") for x in names)
    ):
        err = None
    E = uncertainty_matrix(err, catalog, names, n)
    membership = _membership(members, id_column, cluster_column)
    cluster_of = membership.reindex(star_ids).to_numpy()
    in_any = pd.notna(cluster_of)
    codes, cluster_names = pd.factorize(pd.Series(cluster_of[in_any]), sort=True)
    full_codes = np.full(n, -1, dtype=np.int64)
    full_codes[in_any] = codes
    nc = len(cluster_names)
    if nc == 0:
        raise InputDataError("no star of the catalog is in the member list (check the id format)")
    frames = []
    for j, name in enumerate(names):
        st = grouped_stats(X[:, j], full_codes, nc)
        good = st["n"].to_numpy() >= max(min_members, 2)
        std = np.where(good, st["std"].to_numpy(), np.nan)
        smad = np.where(good, st["sigma_mad"].to_numpy(), np.nan)
        with np.errstate(all="ignore"):
            std_err = std / np.sqrt(2.0 * (st["n"].to_numpy() - 1))
        if E is not None:
            ok = np.isfinite(X[:, j])
            mean_err = grouped_stats(np.where(ok, E[:, j], np.nan), full_codes, nc)["mean"].to_numpy()
        else:
            mean_err = np.full(nc, np.nan)
        with np.errstate(all="ignore"):
            ratio = std / mean_err
        frames.append(pd.DataFrame({
            "cluster": [str(c) for c in cluster_names], "label": name, "unit": label_unit(name),
            "n": st["n"].to_numpy(), "mean": st["mean"].to_numpy(), "median": st["median"].to_numpy(),
            "std": std, "std_err": std_err, "sigma_mad": smad, "mean_err": mean_err,
            "spread_ratio": ratio,
        }))
    out = pd.concat(frames, ignore_index=True)
    order = {c: i for i, c in enumerate(cluster_names)}
    return out.sort_values("cluster", key=lambda c: c.map(order), kind="stable").reset_index(drop=True)


def cluster_summary(table: pd.DataFrame, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per cluster, the mean over ``labels`` (default: all) of the spread and of the reported
    uncertainty — astroNN's "overall level of chemical homogeneity" (e.g. 0.030 ± 0.029 dex for
    abundances; pass only labels sharing a unit)."""
    t = table if labels is None else table[table["label"].isin(list(labels))]
    g = t.groupby("cluster", sort=False)
    return pd.DataFrame({
        "cluster": list(g.groups),
        "n_labels": g["std"].count().to_numpy(),
        "mean_std": g["std"].mean().to_numpy(),
        "std_of_std": g["std"].std(ddof=1).to_numpy(),
        "mean_sigma_mad": g["sigma_mad"].mean().to_numpy(),
        "mean_err": g["mean_err"].mean().to_numpy(),
    })


# --------------------------------------------------------------------------------------------
# sensitivity ∂label/∂flux (astroNN §4.4)
# --------------------------------------------------------------------------------------------


@dataclass
class Sensitivity:
    """Mean Jacobian of network outputs with respect to the input spectrum.

    ``jacobian``: (n_subsets, n_labels, n_pixels) mean ∂label/∂flux over the stars of each
    subset — per unit of the network input, in standardised label units unless ``label_scale``
    / ``input_scale`` were given (then label units per unit of flux).
    ``wavelength``: (n_pixels,) Å when known (an APOGEE grid, or given).
    """

    jacobian: np.ndarray
    subsets: list[str]
    n_stars: np.ndarray
    label_names: list[str]
    wavelength: np.ndarray | None = None
    units: str = "standardised label per unit input"
    meta: dict[str, Any] = field(default_factory=dict)

    def curve(self, label: str | int, subset: str | int = 0) -> np.ndarray:
        """(n_pixels,) mean derivative of one label for one subset."""
        j = self.label_names.index(label) if isinstance(label, str) else int(label)
        s = self.subsets.index(subset) if isinstance(subset, str) else int(subset)
        return self.jacobian[s, j]


def sensitivity(
    model: torch.nn.Module,
    flux: np.ndarray | torch.Tensor,
    *,
    subsets: Mapping[str, np.ndarray] | None = None,
    labels: Sequence[int] | Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
    label_scale: Sequence[float] | np.ndarray | None = None,
    input_scale: Sequence[float] | np.ndarray | None = None,
    wavelength: np.ndarray | None = None,
    batch_size: int = 256,
    device: str | None = None,
    through_stopgrad: bool = True,
) -> Sensitivity:
    """Mean ∂label/∂flux over chosen stars, by autograd over whole batches (astroNN §4.4).

    Parameters
    ----------
    model
        A network taking (B, 1, P) float32 and returning ``(mean, log_var)`` with ``mean``
        (B, n_outputs) (DESIGN.md). It runs in eval mode (dropout off; its mode is restored);
        StopGrad layers pass gradients when ``through_stopgrad``. Each output must depend only on
        its own star's input (true for eval-mode networks), so the gradient of the batch sum of
        one output gives every star's derivative at once: one backward pass per label and batch.
    flux
        (N, P) or (N, 1, P) network input (already preprocessed and scaled as the network sees it).
    subsets
        Name → (N,) bool mask; the Jacobian is averaged over each subset's stars (e.g.
        ``{"[Fe/H] < -1.5": feh < -1.5, "[Fe/H] > 0.4": feh > 0.4}``). Default: all stars.
    labels
        Output indices (or names, with ``label_names``) to differentiate; default all outputs.
    label_names
        Names of all network outputs (default ``output_i``).
    label_scale
        (n_outputs,) std of each label (``LabelScaler``): multiplies the derivatives to give
        physical label units.
    input_scale
        (P,) scale that divided the flux before the network (``SpectrumScaler`` std): the
        derivatives are divided by it to refer to the unscaled flux.
    wavelength
        (P,) Å; default the APOGEE grid with P pixels when there is one.
    batch_size, device
        Stars per forward/backward pass, and where the batches go (default: the device of the
        model's parameters; the model itself is not moved).

    Returns
    -------
    :class:`Sensitivity` with ``jacobian`` (n_subsets, n_labels, P).
    """
    import torch

    from starlabels.inference.jacobian import iter_label_gradients, jacobian_mode
    from starlabels.utils import get_device

    x_all = torch.as_tensor(np.asarray(flux) if not torch.is_tensor(flux) else flux)
    if x_all.ndim == 2:
        x_all = x_all[:, None, :]
    if x_all.ndim != 3 or x_all.shape[1] != 1:
        raise InputDataError(f"flux must be (N, P) or (N, 1, P), got {tuple(x_all.shape)}")
    n, _, p = x_all.shape
    if subsets is None:
        subsets = {"all": np.ones(n, dtype=bool)}
    masks = np.stack([np.asarray(v, dtype=bool).reshape(-1) for v in subsets.values()])
    if masks.shape[1] != n:
        raise InputDataError(f"subset masks must have {n} entries, got {masks.shape[1]}")
    counts = masks.sum(axis=1)
    if np.any(counts == 0):
        empty = [k for k, c in zip(subsets, counts, strict=True) if c == 0]
        raise InputDataError(f"subsets with no stars: {empty}")
    params = list(model.parameters())
    model_device = params[0].device if params else get_device(None)
    dev = model_device if device is None else torch.device(device)
    model_dtype = params[0].dtype if params else torch.float32
    used = np.flatnonzero(masks.any(axis=0))
    acc: torch.Tensor | None = None
    out_idx: list[int] = []
    all_names: list[str] = []
    with jacobian_mode(model, through_stopgrad=through_stopgrad):
        for start in range(0, used.size, batch_size):
            rows = used[start:start + batch_size]
            xb = x_all[torch.as_tensor(rows)].to(dev, model_dtype).detach().requires_grad_(True)
            out = model(xb)
            mean = out[0] if isinstance(out, tuple | list) else out
            if mean.ndim != 2:
                raise InputDataError(f"network mean must be (B, n_outputs), got {tuple(mean.shape)}")
            if acc is None:
                all_names = list(label_names) if label_names is not None else [
                    f"output_{i}" for i in range(mean.shape[1])]
                if len(all_names) != mean.shape[1]:
                    raise InputDataError(f"{len(all_names)} label names for {mean.shape[1]} outputs")
                out_idx = _label_indices(labels, all_names)
                acc = torch.zeros(masks.shape[0], len(out_idx), p, dtype=torch.float64, device=dev)
            w = torch.as_tensor(masks[:, rows], dtype=torch.float64, device=dev)  # (S, B)
            for k, g in enumerate(iter_label_gradients(mean, xb, out_idx)):  # g: (B, 1, P)
                acc[:, k] += w @ g[:, 0, :].to(torch.float64)
    assert acc is not None
    jac = (acc / torch.as_tensor(counts, dtype=torch.float64, device=dev)[:, None, None]).cpu().numpy()
    units = "standardised label per unit input"
    if label_scale is not None:
        scale = np.asarray(label_scale, dtype=float).reshape(-1)
        if scale.shape[0] != len(all_names):
            raise InputDataError(f"label_scale needs {len(all_names)} values, got {scale.shape[0]}")
        jac = jac * scale[out_idx][None, :, None]
        units = "label units per unit input"
    if input_scale is not None:
        s = np.asarray(input_scale, dtype=float).reshape(-1)
        if s.shape[0] != p:
            raise InputDataError(f"input_scale needs {p} values, got {s.shape[0]}")
        with np.errstate(divide="ignore", invalid="ignore"):
            jac = np.where(s > 0, jac / s, 0.0)
        units = units.replace("unit input", "unit flux")
    if wavelength is None:
        from starlabels.preprocess.grids import get_grid

        try:
            wavelength = get_grid(p).wavelength
        except ValueError:
            wavelength = None
    elif np.asarray(wavelength).shape != (p,):
        raise InputDataError(f"wavelength must have shape ({p},)")
    return Sensitivity(jac, [str(k) for k in subsets], counts, [all_names[j] for j in out_idx],
                       None if wavelength is None else np.asarray(wavelength, dtype=float), units)


def _label_indices(labels: Sequence[int] | Sequence[str] | None, names: list[str]) -> list[int]:
    if labels is None:
        return list(range(len(names)))
    out = []
    for lab in labels:
        if isinstance(lab, str):
            if lab not in names:
                raise InputDataError(f"label {lab!r} not among network outputs {names}")
            out.append(names.index(lab))
        else:
            if not 0 <= int(lab) < len(names):
                raise InputDataError(f"output index {lab} out of range 0..{len(names) - 1}")
            out.append(int(lab))
    return out


def per_star_values(catalog: TableLike, name: str) -> np.ndarray:
    """A float column with MISSING → NaN (convenience for building subset masks)."""
    return clean_missing(get_column(catalog, name))
