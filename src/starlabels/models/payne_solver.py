"""Batched Levenberg–Marquardt fits of Payne spectrum models (:mod:`starlabels.models.payne_spectrum`).

Every spectrum is fitted from several starting points at once (one batch of N × S rows, no Python
loop over spectra): a coarse radial-velocity scan with the continuum solved linearly at each
trial velocity, then Levenberg–Marquardt on all parameters (labels, velocity, continuum) with
the labels held inside the emulator's box. The start with the lowest χ² is kept; its covariance is
the inverse of JᵀΣ⁻¹J at the optimum (as ``scipy.optimize.curve_fit(absolute_sigma=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from starlabels.errors import InputDataError
from starlabels.models.payne_spectrum import SpectrumModel, solve_guarded


@dataclass
class FitOptions:
    """Settings of one fit.

    ``starts``: (S, L) scaled starting labels (The Payne's s ∈ [−0.5, 0.5]); ``rv_grid``: trial
    velocities in km/s scanned before the descent (None → start at 0); ``rv_margin``: how far (km/s)
    the descent may leave the scanned range; ``label_bounds``: scaled-label box (The Payne: ±0.5);
    ``max_iter`` LM iterations; ``tol``: stop when an accepted step lowers χ² by less than
    ``tol · (1 + χ²)``; ``refine_rv``: half-width (km/s) of the fine velocity rescan at the
    fitted labels, followed by a second descent where it finds a lower χ² (0 = none).
    """

    starts: np.ndarray
    rv_grid: np.ndarray | None = None
    rv_margin: float = 10.0
    label_bounds: tuple[float, float] = (-0.5, 0.5)
    max_iter: int = 100
    tol: float = 1e-8
    refine_rv: float = 6.0


@dataclass
class FitResult:
    """Per spectrum (N rows): ``theta`` (N, K) best parameters [s, v, c]; ``covariance`` (N, K, K);
    ``chi2`` (N,); ``n_pixels`` (N,) pixels used; ``converged`` (N,) bool; ``n_iter`` (N,);
    ``start`` (N,) index of the winning start; ``model`` (N, P) best-fit spectrum and
    ``continuum`` (N, P) its continuum (for plots)."""

    theta: np.ndarray
    covariance: np.ndarray
    chi2: np.ndarray
    n_pixels: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    start: np.ndarray
    model: np.ndarray
    continuum: np.ndarray

    @property
    def dof(self) -> np.ndarray:
        return self.n_pixels - self.theta.shape[1]

    @property
    def reduced_chi2(self) -> np.ndarray:
        return self.chi2 / np.maximum(self.dof, 1)


def fit_spectra(
    spectrum_model: SpectrumModel, flux: np.ndarray, error: np.ndarray, options: FitOptions,
    theta0: np.ndarray | None = None,
) -> FitResult:
    """Fit N spectra (N, P) on the emulator grid; ``error`` inf/NaN/≤0 or flux NaN = unused pixel.

    ``theta0`` (N, K): one start per spectrum (e.g. an earlier fit) instead of ``options.starts``
    and the velocity scan. Rows with no usable pixel come back with NaN parameters and
    ``converged = False``.
    """
    sm = spectrum_model
    dt, dev = sm.dtype, sm.device
    y = torch.as_tensor(np.asarray(flux, dtype=np.float64), dtype=dt, device=dev)
    e = torch.as_tensor(np.asarray(error, dtype=np.float64), dtype=dt, device=dev)
    if y.ndim != 2 or y.shape != e.shape or y.shape[1] != sm.emulator.n_pixels:
        raise InputDataError(
            f"flux/error must both be (N, {sm.emulator.n_pixels}); got {tuple(y.shape)}, {tuple(e.shape)}"
        )
    good = torch.isfinite(y) & torch.isfinite(e) & (e > 0)
    weight = torch.where(good, 1.0 / torch.where(good, e, 1.0) ** 2, 0.0)
    y = torch.where(good, y, 0.0)
    n_spec = y.shape[0]
    n_pix = good.sum(1)

    if theta0 is not None:
        start = torch.as_tensor(np.asarray(theta0, dtype=np.float64), dtype=dt, device=dev)
        if start.shape != (n_spec, sm.n_params):
            raise InputDataError(f"theta0 must be ({n_spec}, {sm.n_params}), got {tuple(start.shape)}")
        return _descend(sm, start, y, weight, n_pix, 1, options, options.rv_margin)
    starts = torch.as_tensor(np.atleast_2d(options.starts), dtype=dt, device=dev)
    n_start = starts.shape[0]
    if starts.shape[1] != sm.n_labels:
        raise InputDataError(f"starts have {starts.shape[1]} labels, the emulator {sm.n_labels}")
    rows_y = y.repeat_interleave(n_start, 0)
    rows_w = weight.repeat_interleave(n_start, 0)
    s0 = starts.repeat(n_spec, 1)

    v0, v_lo, v_hi = _scan_velocity(sm, s0, rows_y, rows_w, options)
    flux0, _ = sm.rest_frame(s0, jacobian=False)
    shifted0, _, _ = sm.shifted(flux0, v0)
    c0 = sm.continuum_fit(shifted0, rows_y, rows_w)
    theta = torch.cat([s0, v0[:, None], c0], 1)
    result = _descend(sm, theta, y, weight, n_pix, n_start, options, (v_lo, v_hi))
    if options.refine_rv > 0:
        result = _refine_velocity(sm, result, y, weight, n_pix, options)
    return result


def _refine_velocity(sm: SpectrumModel, result: FitResult, y, weight, n_pix,
                     options: FitOptions) -> FitResult:
    """Rescan the velocity finely (±``refine_rv`` km/s, steps of a tenth of that) at the fitted
    labels and descend again where that finds a lower χ²: linear interpolation makes χ²(v) kinked
    at whole-pixel shifts, and labels can compensate a wrong velocity in a local minimum."""
    theta = torch.as_tensor(result.theta, dtype=sm.dtype, device=y.device)
    ok = torch.isfinite(theta).all(1)
    if not bool(ok.any()):
        return result
    idx = torch.nonzero(ok).flatten()
    s, v, _ = sm.split(theta[idx])
    flux, _ = sm.rest_frame(s, jacobian=False)
    yy, ww = y[idx], weight[idx]
    chi2_fit = torch.as_tensor(result.chi2, dtype=sm.dtype, device=y.device)[idx]
    best_chi2, best_v = chi2_fit.clone(), v.clone()
    best_c = theta[idx, sm.n_labels + 1:].clone()
    for dv in np.linspace(-options.refine_rv, options.refine_rv, 21):
        vv = v + float(dv)
        c, chi2 = _continuum_chi2(sm, flux, vv, yy, ww)
        better = chi2 < best_chi2
        best_chi2 = torch.where(better, chi2, best_chi2)
        best_v = torch.where(better, vv, best_v)
        best_c = torch.where(better[:, None], c, best_c)
    redo = best_chi2 < chi2_fit * (1.0 - 1e-9) - 1e-12
    if not bool(redo.any()):
        return result
    rows = idx[redo]
    start = torch.cat([s[redo], best_v[redo, None], best_c[redo]], 1)
    again = _descend(sm, start, y[rows], weight[rows], n_pix[rows], 1, options, options.rv_margin)
    keep = again.chi2 < result.chi2[rows.cpu().numpy()]
    take = rows.cpu().numpy()[keep]
    for k in FitResult.__dataclass_fields__:
        if k != "start":
            getattr(result, k)[take] = getattr(again, k)[keep]
    return result


def _descend(sm: SpectrumModel, theta, y, weight, n_pix, n_start: int, options: FitOptions,
             rv_bounds) -> FitResult:
    """LM from ``theta`` (N·S, K); keep the best of each spectrum's S starts."""
    dev = theta.device
    n_spec = y.shape[0]
    rows_y = y.repeat_interleave(n_start, 0)
    rows_w = weight.repeat_interleave(n_start, 0)
    lo = torch.full_like(theta, -torch.inf)
    hi = torch.full_like(theta, torch.inf)
    lo[:, :sm.n_labels], hi[:, :sm.n_labels] = options.label_bounds
    if isinstance(rv_bounds, tuple):
        lo[:, sm.n_labels], hi[:, sm.n_labels] = rv_bounds
    else:  # a margin around each start's velocity
        v = theta[:, sm.n_labels]
        lo[:, sm.n_labels], hi[:, sm.n_labels] = v - rv_bounds, v + rv_bounds
    theta = torch.minimum(torch.maximum(theta, lo), hi)

    theta, chi2, normal, converged, n_iter = _levenberg_marquardt(
        sm, theta, rows_y, rows_w, lo, hi, options
    )

    chi2 = chi2.view(n_spec, n_start)
    chi2 = torch.where(torch.isfinite(chi2), chi2, torch.inf)
    best = chi2.argmin(1)
    pick = torch.arange(n_spec, device=dev) * n_start + best
    theta, normal = theta[pick], normal[pick]
    cov = _inverse_guarded(normal)
    model, _ = sm(theta, jacobian=False)
    _, _, c = sm.split(theta)
    cont = c @ sm.basis.T

    dead = n_pix == 0
    out_theta = theta.cpu().numpy()
    out_theta[dead.cpu().numpy()] = np.nan
    return FitResult(
        theta=out_theta,
        covariance=cov.cpu().numpy(),
        chi2=chi2.gather(1, best[:, None])[:, 0].cpu().numpy(),
        n_pixels=n_pix.cpu().numpy(),
        converged=(converged[pick] & ~dead).cpu().numpy(),
        n_iter=n_iter[pick].cpu().numpy(),
        start=best.cpu().numpy(),
        model=model.cpu().numpy(),
        continuum=cont.cpu().numpy(),
    )


def _chi2(sm: SpectrumModel, theta, y, w):
    model, _ = sm(theta, jacobian=False)
    return (w * (y - model) ** 2).sum(1)


def _continuum_chi2(sm: SpectrumModel, flux, velocity, y, w):
    """Continuum coefficients (rows, n_basis) fitted to ``y`` with the rest-frame model ``flux``
    shifted to ``velocity`` (rows,) km/s, and the weighted χ² (rows,) of that fit."""
    shifted, _, _ = sm.shifted(flux, velocity)
    c = sm.continuum_fit(shifted, y, w)
    return c, (w * (y - (c @ sm.basis.T) * shifted) ** 2).sum(1)


def _scan_velocity(sm: SpectrumModel, s0, y, w, options: FitOptions):
    """Best trial velocity per row (continuum solved linearly at each), and the velocity bounds."""
    rows = s0.shape[0]
    if options.rv_grid is None or len(options.rv_grid) == 0:
        zero = torch.zeros(rows, dtype=sm.dtype, device=s0.device)
        return zero, -options.rv_margin, options.rv_margin
    grid = torch.as_tensor(np.asarray(options.rv_grid, dtype=np.float64), dtype=sm.dtype,
                           device=s0.device)
    flux, _ = sm.rest_frame(s0, jacobian=False)
    best_chi2 = torch.full((rows,), torch.inf, dtype=sm.dtype, device=s0.device)
    best_v = torch.zeros(rows, dtype=sm.dtype, device=s0.device)
    for v in grid:
        vv = v.expand(rows)
        _, chi2 = _continuum_chi2(sm, flux, vv, y, w)
        better = chi2 < best_chi2
        best_chi2 = torch.where(better, chi2, best_chi2)
        best_v = torch.where(better, vv, best_v)
    return best_v, float(grid.min()) - options.rv_margin, float(grid.max()) + options.rv_margin


def _normal_equations(sm: SpectrumModel, theta, y, w):
    model, jac = sm(theta)
    r = y - model
    wj = w[:, :, None] * jac
    normal = jac.transpose(1, 2) @ wj
    grad = (wj * r[:, :, None]).sum(1)
    return normal, grad, (w * r**2).sum(1)


def _levenberg_marquardt(sm: SpectrumModel, theta, y, w, lo, hi, options: FitOptions):
    """Damped Gauss–Newton on all rows at once; rows leave the active set when converged."""
    rows = theta.shape[0]
    dev = theta.device
    normal, grad, chi2 = _normal_equations(sm, theta, y, w)
    lam = torch.full((rows,), 1e-3, dtype=theta.dtype, device=dev)
    active = torch.isfinite(chi2) & (w.sum(1) > 0)
    converged = torch.zeros(rows, dtype=torch.bool, device=dev)
    n_iter = torch.zeros(rows, dtype=torch.long, device=dev)
    for _ in range(options.max_iter):
        idx = torch.nonzero(active).flatten()
        if idx.numel() == 0:
            break
        n_iter[idx] += 1
        a = normal[idx]
        damped = a + torch.diag_embed(lam[idx, None] * torch.diagonal(a, dim1=1, dim2=2))
        step = solve_guarded(damped, grad[idx])
        # a parameter on a bound whose step leaves the box is held there (active set)
        blocked = ((theta[idx] <= lo[idx]) & (step < 0)) | ((theta[idx] >= hi[idx]) & (step > 0))
        if blocked.any():
            step = solve_guarded(damped, grad[idx], blocked)
        trial = torch.minimum(torch.maximum(theta[idx] + step, lo[idx]), hi[idx])
        trial_chi2 = _chi2(sm, trial, y[idx], w[idx])
        ok = torch.isfinite(trial_chi2) & (trial_chi2 < chi2[idx])
        acc = idx[ok]
        if acc.numel():
            gain = chi2[acc] - trial_chi2[ok]
            theta[acc] = trial[ok]
            normal[acc], grad[acc], chi2[acc] = _normal_equations(sm, theta[acc], y[acc], w[acc])
            done = gain < options.tol * (1.0 + chi2[acc])
            converged[acc[done]] = True
            active[acc[done]] = False
            lam[acc] = (lam[acc] / 10.0).clamp_min(1e-12)
        rej = idx[~ok]
        if rej.numel():
            lam[rej] = lam[rej] * 10.0
            stuck = lam[rej] > 1e12  # no downhill step at any damping: a (bounded) minimum
            converged[rej[stuck]] = True
            active[rej[stuck]] = False
    return theta, chi2, normal, converged, n_iter


def _inverse_guarded(normal: torch.Tensor) -> torch.Tensor:
    """Inverse of JᵀΣ⁻¹J (N, K, K); parameters without information get NaN variance."""
    diag = torch.diagonal(normal, dim1=1, dim2=2)
    dead = diag <= diag.amax(1, keepdim=True) * 1e-14
    keep = (~dead).to(normal.dtype)
    a = normal * keep[:, :, None] * keep[:, None, :] + torch.diag_embed(dead.to(normal.dtype))
    try:
        inv = torch.linalg.inv(a)
    except torch.linalg.LinAlgError:
        inv = torch.linalg.pinv(a)
    inv = torch.where((keep[:, :, None] * keep[:, None, :]) > 0, inv, torch.nan)
    return torch.where(torch.isfinite(inv), inv, torch.nan)
