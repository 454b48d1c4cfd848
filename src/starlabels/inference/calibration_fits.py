"""The per-label fits of the uncertainty calibration (:mod:`starlabels.inference.calibration`).

Every fit is judged by σ_MAD of the normalised residuals z = resid/σ over equal-count regime bins
(by SNR, or the model's own regime variable): Σ_bins log²σ_MAD(z_bin) + log²σ_MAD(z_all), so every
bin, from the noisiest to the cleanest, is unit-normal at once. Plain numpy on (n,) arrays of one
label: ``resid`` = prediction − true label, variances in label units².
"""

from __future__ import annotations

from typing import Any

import numpy as np

from starlabels.statistics import sigma_mad

__all__ = ["binned_objective", "fit_label", "fit_power", "fit_two_parts", "regime_bins", "regime_objective"]


def regime_bins(order: np.ndarray, n_rows: int, bins: int) -> list[np.ndarray]:
    """Index arrays of up to ``bins`` equal-count bins of the rows sorted by ``order`` (at least
    20 rows a bin; none when one bin would do)."""
    n_bins = int(max(1, min(bins, n_rows // 20)))
    return np.array_split(np.argsort(order, kind="stable"), n_bins) if n_bins > 1 else []


def binned_objective(resid: np.ndarray, var: np.ndarray, bins: list[np.ndarray]) -> np.ndarray:
    """Objective per candidate: Σ_bins log²σ_MAD(z_bin) + log²σ_MAD(z_all).

    ``resid`` (n,), ``var`` (G, n) calibrated variances of G candidates, ``bins`` index arrays."""
    z = resid[None, :] / np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.log(sigma_mad(z, axis=1, ignore_nan=False)) ** 2
        for idx in bins:
            total = total + np.log(sigma_mad(z[:, idx], axis=1, ignore_nan=False)) ** 2
    return np.where(np.isfinite(total), total, np.inf)


def fit_two_parts(
    resid: np.ndarray, v1: np.ndarray, v2: np.ndarray, order: np.ndarray, *, bins: int = 5,
    allow_zero_second: bool = False,
) -> tuple[float, float]:
    """(a, b) minimising the binned σ_MAD objective of z = resid / √(a² v1 + b² v2).

    ``order`` (n,) sorts the rows into ``bins`` equal-count bins (the regime that should be
    calibrated separately: the second part's share, or σ). A logarithmic grid of 41 × 41
    candidates around the single-factor solution, refined three times around the best;
    ``allow_zero_second`` adds b = 0 (no floor) to every grid. Both factors are finally multiplied
    by one common factor that makes σ_MAD of all the z-scores exactly 1.
    """
    resid, v1, v2 = (np.asarray(x, np.float64) for x in (resid, v1, v2))
    bins_of_rows = regime_bins(order, len(resid), bins)
    s0 = sigma_mad(resid / np.sqrt(v1 + v2))
    a0 = s0
    b0 = s0 * np.sqrt(np.median(v1 + v2) / max(float(np.median(v2)), 1e-300))
    log_a, log_b, half = np.log(a0), np.log(b0), np.log(100.0)
    best = (np.inf, a0, b0)
    for _ in range(4):
        grid_a = np.exp(np.linspace(log_a - half, log_a + half, 41))
        grid_b = np.exp(np.linspace(log_b - half, log_b + half, 41))
        if allow_zero_second:
            grid_b = np.concatenate([[0.0], grid_b])
        cand_a, cand_b = (m.ravel() for m in np.meshgrid(grid_a, grid_b, indexing="ij"))
        var = cand_a[:, None] ** 2 * v1[None, :] + cand_b[:, None] ** 2 * v2[None, :]
        obj = binned_objective(resid, var, bins_of_rows)
        i = int(np.argmin(obj))
        if obj[i] < best[0]:
            best = (float(obj[i]), float(cand_a[i]), float(cand_b[i]))
        log_a = np.log(best[1])
        log_b = np.log(best[2]) if best[2] > 0 else log_b
        half = half * 8 / 40  # the next grid spans ±4 steps of this one (step = 2·half/40)
    a, b = best[1], best[2]
    # the bins fix the ratio of the two factors; one common factor makes σ_MAD(z_all) = 1 exactly
    c = sigma_mad(resid / np.sqrt(a * a * v1 + b * b * v2))
    return a * c, b * c


def fit_power(
    resid: np.ndarray, sigma: np.ndarray, order: np.ndarray, *, bins: int = 5
) -> tuple[float, float]:
    """(s, γ) of σ → s·m·(σ/m)^γ (m = median σ) minimising the binned σ_MAD objective; s makes
    σ_MAD of all the z-scores 1. γ on a grid of 0–4 in steps of 0.05, refined to 0.005."""
    resid, sigma = np.asarray(resid, np.float64), np.asarray(sigma, np.float64)
    m = float(np.median(sigma))
    u = sigma / m
    bins_of_rows = regime_bins(order, len(resid), bins)
    best_g = 1.0
    for grid in (np.arange(0.0, 4.0001, 0.05), None):
        if grid is None:
            grid = np.arange(best_g - 0.05, best_g + 0.0501, 0.005)
        base = m * u[None, :] ** grid[:, None]  # (G, n) σ before the common factor
        c = sigma_mad(resid[None, :] / base, axis=1, ignore_nan=False)
        obj = binned_objective(resid, (base * c[:, None]) ** 2, bins_of_rows)
        best_g = float(grid[int(np.argmin(obj))])
    sc = sigma_mad(resid / (m * u**best_g))
    return sc, best_g


def regime_objective(resid: np.ndarray, var: np.ndarray, order: np.ndarray, bins: int) -> float:
    """The binned objective of one calibrated variance ``var`` (n,), bins by ``order`` (n,)."""
    return float(binned_objective(resid, var[None, :], regime_bins(order, len(resid), bins))[0])


def fit_label(
    model: str, resid: np.ndarray, parts: dict[str, np.ndarray], order: np.ndarray | None, bins: int
) -> tuple[dict[str, Any], np.ndarray]:
    """One label's calibration with ``model`` (``"scale"``, ``"parts"``, ``"floor"`` or
    ``"power"``): (params, calibrated variance (n,)). ``resid`` (n,) prediction − label,
    ``parts`` the (n,) variance parts, ``order`` the SNR (or None: each model's own regime
    variable). ``params``: ``scale`` and, by model, ``parts`` ({part: factor}), ``floor`` (label
    units) or ``power`` and ``pivot``."""
    v = sum(parts.values())
    sigma = np.sqrt(v)
    if model == "scale":
        sc = sigma_mad(resid / sigma)
        return {"scale": sc}, v * sc * sc
    if model == "parts":
        (p1, v1), (p2, v2) = parts.items()
        a, b = fit_two_parts(resid, v1, v2, v2 / (v1 + v2) if order is None else order, bins=bins)
        return {"scale": 1.0, "parts": {p1: a, p2: b}}, a * a * v1 + b * b * v2
    if model == "floor":
        unit = float(np.median(v))  # the floor in units of the median σ: a well-scaled grid
        a, b = fit_two_parts(resid, v, np.full_like(v, unit), v if order is None else order, bins=bins,
                             allow_zero_second=True)
        f = b * np.sqrt(unit)
        return {"scale": a, "floor": f}, a * a * v + f * f
    sc, g = fit_power(resid, sigma, sigma if order is None else order, bins=bins)
    m = float(np.median(sigma))
    return {"scale": sc, "power": g, "pivot": m}, (sc * m * (sigma / m) ** g) ** 2
