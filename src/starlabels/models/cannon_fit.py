"""The Cannon's numerics in torch, batched: the training step over pixels, the test step over spectra.

Definitions follow ``thecannon`` (``annieslasso`` 0.2, ``fitting.py``/``model.py``) exactly:

Training, per pixel p (all pixels at once):
    θ_p = argmin Σ_n ivar_np (v_n·θ − f_np)² + Λ Σ_{t≥1} |θ_t|   (the constant θ_0 not penalised;
    ivar *without* the scatter, as ``fit_pixel_fixed_scatter``), solved exactly: the normal
    equations for Λ = 0, cyclic coordinate descent with soft thresholding for Λ > 0 (the exact L1
    minimiser; ``thecannon`` runs L-BFGS-B on it). Censored terms are fixed at 0.
    s²_p: the scatter that makes the median over the training stars of
    r²·ivar/(1 + ivar·s²) equal to 1 (``_scatter_objective_function``; 0 when the median is
    already ≤ 1), found by bisection on a bracket from the order statistics.
    A pixel whose Σ_n ivar_np < N (``thecannon``'s "no pixel information") gets θ = (1, 0, …),
    s² = inf (it is then unused by the test step).

Test, per spectrum (all spectra × starting points at once):
    Levenberg–Marquardt on χ²(x) = Σ_p w_p (v(x)·θ_p − f_p)², w = ivar/(1 + ivar·s²), in scaled
    labels x, from every starting point; the lowest χ² is kept. The label covariance is the
    inverse Fisher matrix (JᵀWJ)⁻¹ at the solution (``leastsq``'s ``cov_x``).
"""

from __future__ import annotations

import torch

from starlabels.models.cannon_terms import design_derivative, design_matrix


def normal_equations(
    design: torch.Tensor, flux: torch.Tensor, ivar: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``A_p = Dᵀ diag(ivar_p) D`` (P, T, T) and ``b_p = Dᵀ (ivar_p f_p)`` (P, T).

    ``design`` (N, T), ``flux``/``ivar`` (N, P). Two matrix products: A = ivarᵀ (D ⊗ D) with the
    per-star outer products D_n D_nᵀ flattened to (N, T²), and b = (ivar·f)ᵀ D."""
    N, T = design.shape
    outer = (design[:, :, None] * design[:, None, :]).reshape(N, T * T)
    A = (ivar.T @ outer).reshape(-1, T, T)
    b = (ivar * flux).T @ design
    return A, b


def solve_theta(
    A: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    regularisation: torch.Tensor | float = 0.0,
    *,
    tol: float = 1e-12,
    max_sweeps: int = 10_000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """θ (P, T) minimising θᵀAθ − 2bᵀθ + Λ_p Σ_{t≥1}|θ_t| per pixel, with ``mask`` (P, T) False
    terms fixed at 0. Returns (θ, converged (P,) bool).

    Λ = 0: one batched linear solve (pseudo-inverse where singular). Λ > 0: cyclic coordinate
    descent from the Λ = 0 solution until no coefficient moves by more than ``tol`` × (1 + max|θ|).
    """
    P, T = b.shape
    if mask is None:
        mask = torch.ones((P, T), dtype=torch.bool, device=b.device)
    m = mask.to(A.dtype)
    eye = torch.eye(T, dtype=A.dtype, device=A.device)
    Am = A * m[:, :, None] * m[:, None, :] + eye * (1 - m)[:, None, :]
    bm = b * m
    theta, info = torch.linalg.solve_ex(Am, bm[..., None])
    theta = theta[..., 0]
    bad = (info != 0) | ~torch.isfinite(theta).all(dim=1)
    if bad.any():
        theta[bad] = (torch.linalg.pinv(Am[bad]) @ bm[bad][..., None])[..., 0]
    converged = torch.isfinite(theta).all(dim=1)
    lam = torch.as_tensor(regularisation, dtype=A.dtype, device=A.device).expand(P)
    if not bool((lam > 0).any()):
        return theta * m, converged
    half = (0.5 * lam)[:, None]
    converged = torch.zeros(P, dtype=torch.bool, device=A.device)
    active = torch.arange(P, device=A.device)
    sweeps = 0
    while active.numel() and sweeps < int(max_sweeps):
        Aa, ba, ma, ha, th = Am[active], bm[active], mask[active], half[active], theta[active]
        diag = torch.diagonal(Aa, dim1=1, dim2=2)  # > 0 on fitted terms
        for _ in range(20):  # cyclic coordinate descent with soft thresholding
            old = th.clone()
            for j in range(T):
                c = ba[:, j] - (Aa[:, j, :] * th).sum(dim=1) + diag[:, j] * th[:, j]
                if j > 0:
                    c = torch.sign(c) * torch.clamp(c.abs() - ha[:, 0], min=0.0)
                th[:, j] = torch.where(ma[:, j], c / diag[:, j], torch.zeros_like(c))
            sweeps += 1
        done = (th - old).abs().amax(dim=1) <= tol * (1.0 + th.abs().amax(dim=1))
        # exact polish: on the support S and signs s found so far, θ_S = A_SS⁻¹ (b_S − Λ/2 s_S);
        # it is the L1 minimiser when the signs hold and |b_j − (Aθ)_j| ≤ Λ/2 off the support
        sign = torch.sign(th)
        sign[:, 0] = 0.0  # θ_0 is not penalised
        S = (th != 0) & ma
        S[:, 0] = ma[:, 0]
        Sf = S.to(A.dtype)
        As = Aa * Sf[:, :, None] * Sf[:, None, :] + eye * (1 - Sf)[:, None, :]
        bs = (ba - ha * sign) * Sf
        tp, info = torch.linalg.solve_ex(As, bs[..., None])
        tp = tp[..., 0] * Sf
        resid = ba - (Aa @ tp[..., None])[..., 0]
        slack = 1e-9 * (1.0 + resid.abs().amax(dim=1, keepdim=True) + ha)
        off = ma & ~S
        off[:, 0] = False
        kkt = (info == 0) & torch.isfinite(tp).all(dim=1)
        kkt &= ((torch.sign(tp) == sign) | ~S | (torch.arange(T, device=A.device) == 0)).all(dim=1)
        kkt &= (~off | (resid.abs() <= ha + slack)).all(dim=1)
        th = torch.where(kkt[:, None], tp, th)
        broken = ~torch.isfinite(th).all(dim=1)  # no data for a fitted term: never converges
        theta[active] = th
        converged[active] = (kkt | done) & ~broken
        active = active[~(kkt | done | broken)]
    return theta, converged
    return theta, converged


def _median_rows(values: torch.Tensor) -> torch.Tensor:
    """numpy-style median along dim 0 (the mean of the two middle values for an even count)."""
    n = values.shape[0]
    if n % 2:
        return torch.kthvalue(values, (n + 1) // 2, dim=0).values
    lo = torch.kthvalue(values, n // 2, dim=0).values
    hi = torch.kthvalue(values, n // 2 + 1, dim=0).values
    return 0.5 * (lo + hi)


def fit_scatter(residual_sq: torch.Tensor, ivar: torch.Tensor, *, iterations: int = 60) -> torch.Tensor:
    """s² (P,) with median_n r²·ivar/(1 + ivar·s²) = 1 (0 where the median is ≤ 1 at s² = 0).

    ``residual_sq``, ``ivar``: (N, P). With t_n = r²_n − 1/ivar_n (h_n = r²·ivar/(1 + ivar·s²)
    ≥ 1 exactly when s² ≤ t_n), the root is the (N+1)/2-th largest t for odd N; for even N it lies
    between the N/2-th and the N/2+1-th largest t, found by bisection."""
    N, P = ivar.shape
    chi = residual_sq * ivar
    s2 = torch.zeros(P, dtype=ivar.dtype, device=ivar.device)
    need = _median_rows(chi) > 1.0
    if not bool(need.any()):
        return s2
    r2, iv = residual_sq[:, need], ivar[:, need]
    with torch.no_grad():
        tiny = torch.finfo(iv.dtype).tiny
        t = torch.where(iv > 0, r2 - 1.0 / iv.clamp(min=tiny), torch.full_like(r2, -1.0))
    ts = torch.sort(t, dim=0, descending=True).values
    if N % 2:
        s2[need] = ts[(N - 1) // 2].clamp(min=0.0)
        return s2
    hi = ts[N // 2 - 1]  # k-th largest t (k = N/2): the median is ≤ 1 there
    lo = ts[N // 2]  # (k+1)-th largest: the median is ≥ 1 there
    # between them the k stars with t ≥ hi have h > 1 and the others h < 1, so the median is
    # (min over the first set + max over the others) / 2: no sorting inside the bisection
    top = t >= hi[None]
    lo, hi = lo.clamp(min=0.0), hi.clamp(min=0.0)
    h_num = r2 * iv
    # only stars whose h can be the smallest of the first set (h(hi) ≤ min h(lo)) or the largest
    # of the others (h(lo) ≥ max h(hi)) anywhere in [lo, hi] matter: bisect on those alone
    inf = torch.full_like(h_num, float("inf"))
    h_lo, h_hi = h_num / (1.0 + iv * lo[None]), h_num / (1.0 + iv * hi[None])
    cand = (top & (h_hi <= torch.where(top, h_lo, inf).amin(dim=0)[None])) | (
        ~top & (h_lo >= torch.where(top, -inf, h_hi).amax(dim=0)[None]))
    k = int(cand.sum(dim=0).max())
    if 0 < k < N // 4:
        pick = torch.topk(cand.to(torch.int8), k, dim=0).indices  # (k, P): candidates first
        keep = torch.gather(cand, 0, pick)
        h_num = torch.where(keep, torch.gather(h_num, 0, pick), torch.zeros((), dtype=h_num.dtype))
        iv = torch.gather(iv, 0, pick)
        top = keep & torch.gather(top, 0, pick)
        # padding rows (not candidates) are h = 0 outside the first set: never the largest there

    def g(s: torch.Tensor) -> torch.Tensor:
        h = h_num / (1.0 + iv * s[None])
        smallest_top = torch.where(top, h, torch.full_like(h, float("inf"))).amin(dim=0)
        largest_rest = torch.where(top, torch.full_like(h, -float("inf")), h).amax(dim=0)
        return 0.5 * (smallest_top + largest_rest) - 1.0

    for _ in range(int(iterations)):
        if bool(((hi - lo) <= 1e-15 * hi).all()):
            break
        mid = 0.5 * (lo + hi)
        above = g(mid) > 0
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    s2[need] = 0.5 * (lo + hi)
    return s2


def adjusted_ivar(ivar: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """ivar/(1 + ivar·s²) (N, P) for ivar (N, P), s² (P,); 0 where s² is inf or ivar is 0."""
    out = ivar / (1.0 + ivar * s2[None])
    return torch.where(torch.isfinite(out) & (ivar > 0), out, torch.zeros_like(out))


def test_step(
    flux: torch.Tensor,
    weight: torch.Tensor,
    theta: torch.Tensor,
    exponents: torch.Tensor,
    starts: torch.Tensor,
    *,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Levenberg–Marquardt fits of scaled labels, batched over spectra and starting points.

    ``flux``, ``weight`` (N, P) (weight = adjusted ivar, 0 = unused pixel), ``theta`` (P, T),
    ``starts`` (N, K, L) scaled starting labels. Returns the best of the K fits per spectrum:
    x (N, L) scaled labels, Fisher matrix JᵀWJ (N, L, L) in scaled labels, χ² (N,) and
    converged (N,) bool (the last accepted step lowered χ² by ≤ ``tol`` relative or moved x by
    ≤ 1e-12, or no step lowers χ² at the largest damping: a minimum to machine precision).

    The model is linear in the label vector v(x), so with G = Θᵀ W Θ (T, T) and c = Θᵀ W f (T,)
    per spectrum (one matrix product over the pixels, made once) every iteration costs O(T²)
    whatever the pixel count: χ² = vᵀGv − 2vᵀc + fᵀWf, JᵀWJ = ∂vᵀ G ∂v, JᵀW r = ∂vᵀ (Gv − c).
    The returned χ² is recomputed from the pixels.
    """
    N, K, L = starts.shape
    T = theta.shape[1]
    outer = (theta[:, :, None] * theta[:, None, :]).reshape(-1, T * T)  # (P, T²)
    G = (weight @ outer).reshape(N, T, T)
    c = (weight * flux) @ theta  # (N, T)
    ff = (weight * flux * flux).sum(dim=1)  # (N,)
    spec = torch.arange(N, device=flux.device).repeat_interleave(K)  # problem → spectrum
    x = starts.reshape(N * K, L).clone()
    B = x.shape[0]

    def pieces(xb: torch.Tensor, sb: torch.Tensor, jac: bool = True):
        v = design_matrix(xb, exponents)  # (b, T)
        Gv = (G[sb] @ v[..., None])[..., 0]
        chi2 = (v * Gv).sum(dim=1) - 2 * (v * c[sb]).sum(dim=1) + ff[sb]
        if not jac:
            return chi2, None, None
        dv = design_derivative(xb, exponents)  # (b, T, L)
        jtj = dv.transpose(1, 2) @ G[sb] @ dv
        grad = (dv.transpose(1, 2) @ (Gv - c[sb])[..., None])[..., 0]
        return chi2, jtj, grad

    lam = torch.full((B,), 1e-3, dtype=x.dtype, device=x.device)
    done = torch.zeros(B, dtype=torch.bool, device=x.device)
    converged = torch.zeros(B, dtype=torch.bool, device=x.device)
    chi2, jtj, grad = pieces(x, spec)
    eye = torch.eye(L, dtype=x.dtype, device=x.device)
    for _ in range(int(max_iter)):
        idx = torch.nonzero(~done).squeeze(1)
        if idx.numel() == 0:
            break
        d = torch.diagonal(jtj[idx], dim1=1, dim2=2).clamp(min=1e-300)
        A = jtj[idx] + lam[idx, None, None] * torch.diag_embed(d) + 1e-300 * eye
        step, info = torch.linalg.solve_ex(A, -grad[idx][..., None])
        step = step[..., 0]
        xn = x[idx] + step
        cn, jn, gn = pieces(xn, spec[idx])
        ok = (info == 0) & torch.isfinite(cn) & (cn <= chi2[idx])
        rel = (chi2[idx] - cn) / chi2[idx].abs().clamp(min=1e-300)
        acc = idx[ok]
        x[acc], chi2[acc], jtj[acc], grad[acc] = xn[ok], cn[ok], jn[ok], gn[ok]
        lam[idx] = torch.where(ok, lam[idx] * 0.1, lam[idx] * 10.0).clamp(1e-12, 1e12)
        tiny = step.abs().amax(dim=1) <= 1e-12 * (1 + x[idx].abs().amax(dim=1))
        stuck = ~ok & (lam[idx] >= 1e12)  # no step lowers χ², even a vanishing one: a minimum
        newly = (ok & ((rel <= tol) | tiny)) | stuck
        converged[idx] = converged[idx] | newly
        done[idx] = done[idx] | newly
    chi2 = chi2.reshape(N, K)
    best = torch.nan_to_num(chi2, nan=float("inf")).argmin(dim=1)
    rows = torch.arange(N, device=x.device) * K + best
    xb = x[rows]
    exact = (weight * (design_matrix(xb, exponents) @ theta.T - flux) ** 2).sum(dim=1)
    return xb, jtj[rows], exact, converged[rows]
