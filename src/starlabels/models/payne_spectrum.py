"""The Payne's forward model of an observed spectrum, with its Jacobian, batched in torch.

An observed spectrum on the emulator's P pixels is modelled as

    model[n, p] = continuum[n, p] · emulator(s[n])(λ_p · D(v[n]))

- ``s`` (N, L): The Payne's scaled labels, ``(labels − x_min)/(x_max − x_min) − 0.5``;
- ``v`` (N,): radial velocity in km/s, positive = receding; ``D(v) = sqrt((1 − v/c)/(1 + v/c))``
  as The Payne's ``utils.doppler_shift`` (the rest-frame model is linearly interpolated in ln λ,
  within each segment, onto λ·D);
- ``continuum`` = Σ_k c[n, seg, k] · T_k(x_p) per segment, T_k Chebyshev polynomials of the first
  kind and x ∈ [−1, 1] running linearly over the segment's pixels (as The Payne's
  ``get_apogee_continuum``).

The parameter vector is θ = [s (L), v (1), c (n_segments · (degree + 1))]. Everything here works on
any grid: the wavelengths and segments are arrays/slices given by the caller.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from starlabels.data.emulator import PayneEmulator
from starlabels.errors import InputDataError

C_KM_S = 299792.458


def emulator_and_jacobian(
    emulator: PayneEmulator, s: torch.Tensor, jacobian: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Emulator flux (N, P) and (when ``jacobian``) its derivative with respect to the scaled
    labels (N, P, L), else None.

    ``s``: (N, L) scaled labels (see module doc), of the emulator's dtype.
    Every layout of :class:`~starlabels.data.emulator.PayneEmulator` is differentiated analytically
    (per-pixel with two hidden layers: the chain rule through both sigmoid layers, contracted
    output-first so no (N, P, H, L) tensor is formed).
    """
    w = emulator.weights
    if emulator.layout == "per_pixel":
        w0 = w["w_array_0"]
        a = torch.sigmoid(torch.einsum("phl,nl->nph", w0, s) + w["b_array_0"])
        flux = torch.einsum("ph,nph->np", w["w_array_1"], a) + w["b_array_1"]
        if not jacobian:
            return flux, None
        jac = torch.einsum("nph,phl->npl", w["w_array_1"] * a * (1.0 - a), w0)
        return flux, jac
    if emulator.layout == "per_pixel_2":
        w0, w1, w2 = w["w_array_0"], w["w_array_1"], w["w_array_2"]
        a1 = torch.sigmoid(torch.einsum("pil,nl->npi", w0, s) + w["b_array_0"])      # (N, P, H1)
        a2 = torch.sigmoid(torch.einsum("pji,npi->npj", w1, a1) + w["b_array_1"])    # (N, P, H2)
        flux = torch.einsum("pj,npj->np", w2, a2) + w["b_array_2"]
        if not jacobian:
            return flux, None
        g2 = w2 * a2 * (1.0 - a2)                                   # ∂flux/∂z2 (N, P, H2)
        g1 = torch.einsum("npj,pji->npi", g2, w1) * a1 * (1.0 - a1)  # ∂flux/∂z1 (N, P, H1)
        return flux, torch.einsum("npi,pil->npl", g1, w0)
    if emulator.layout == "dense":
        slope = 0.01
        z1 = s @ w["w_array_0"].T + w["b_array_0"]
        a1 = torch.nn.functional.leaky_relu(z1, slope)
        z2 = a1 @ w["w_array_1"].T + w["b_array_1"]
        a2 = torch.nn.functional.leaky_relu(z2, slope)
        flux = a2 @ w["w_array_2"].T + w["b_array_2"]
        if not jacobian:
            return flux, None
        g1 = torch.where(z1 > 0, 1.0, slope).to(s.dtype)
        g2 = torch.where(z2 > 0, 1.0, slope).to(s.dtype)
        da1 = g1[:, :, None] * w["w_array_0"]                         # (N, H1, L)
        da2 = g2[:, :, None] * torch.einsum("jh,nhl->njl", w["w_array_1"], da1)
        jac = torch.einsum("ph,nhl->npl", w["w_array_2"], da2)
        return flux, jac
    raise InputDataError(f"unknown emulator layout {emulator.layout!r}")


def segments_from(
    segments: Sequence[slice | tuple[float, float] | tuple[int, int]] | None,
    wavelength: np.ndarray,
) -> list[tuple[int, int]]:
    """Segments as half-open pixel ranges ``[(start, stop), …]`` covering the emulator grid.

    ``segments`` may hold slices / integer pairs (pixel index ranges of the emulator grid) or float
    pairs (wavelength ranges in Å, inclusive). ``None``: split the grid where consecutive
    wavelengths jump by more than 5 × the median log-spacing (the detector gaps).
    """
    lam = np.asarray(wavelength, dtype=np.float64)
    n = lam.size
    if segments is None:
        step = np.diff(np.log(lam))
        cuts = np.flatnonzero(step > 5.0 * np.median(step)) + 1
        edges = [0, *cuts.tolist(), n]
        return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]
    out = []
    for seg in segments:
        if isinstance(seg, slice):
            a, b, _ = seg.indices(n)
        elif all(isinstance(x, (int, np.integer)) for x in seg):
            a, b = int(seg[0]), int(seg[1])
        else:
            lo, hi = float(seg[0]), float(seg[1])
            inside = np.flatnonzero((lam >= lo) & (lam <= hi))
            if inside.size == 0:
                raise InputDataError(f"segment {lo}–{hi} Å holds no pixel of the emulator grid")
            a, b = int(inside[0]), int(inside[-1]) + 1
        if not 0 <= a < b <= n:
            raise InputDataError(f"segment {seg} is not a non-empty range inside 0–{n}")
        out.append((a, b))
    return out


@dataclass
class SpectrumModel:
    """Emulator + wavelengths + segments: evaluates ``model(θ)`` and ``∂model/∂θ`` for N spectra.

    ``wavelength`` (P,) Å of the emulator's pixels; ``segments`` half-open pixel ranges (see
    :func:`segments_from`); ``degree`` of the continuum polynomial per segment.
    """

    emulator: PayneEmulator
    wavelength: np.ndarray
    segments: list[tuple[int, int]]
    degree: int = 2
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        lam = np.asarray(self.wavelength, dtype=np.float64)
        if lam.shape != (self.emulator.n_pixels,):
            raise InputDataError(
                f"wavelength has shape {lam.shape}; the emulator has {self.emulator.n_pixels} pixels"
            )
        emu = self.emulator
        if any(v.dtype != self.dtype or v.device != torch.device(self.device)
               for v in emu.weights.values()):
            weights = {k: v.to(device=self.device, dtype=self.dtype) for k, v in emu.weights.items()}
            self.emulator = PayneEmulator(weights, emu.layout, emu.label_names, emu.path, self.dtype)
        self.loglam = torch.as_tensor(np.log(lam), dtype=self.dtype, device=self.device)
        basis = np.zeros((lam.size, self.n_continuum))
        for i, (a, b) in enumerate(self.segments):
            x = np.linspace(-1.0, 1.0, b - a) if b - a > 1 else np.zeros(1)
            k0 = i * (self.degree + 1)
            basis[a:b, k0:k0 + self.degree + 1] = np.polynomial.chebyshev.chebvander(x, self.degree)
        self.basis = torch.as_tensor(basis, dtype=self.dtype, device=self.device)   # (P, K_c)

    @property
    def n_labels(self) -> int:
        return self.emulator.n_labels

    @property
    def n_continuum(self) -> int:
        return len(self.segments) * (self.degree + 1)

    @property
    def n_params(self) -> int:
        return self.n_labels + 1 + self.n_continuum

    def shift_weights(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Interpolation of the rest-frame model onto λ·D(v): ``(lo (N, P) index, t (N, P) weight
        of lo + 1, dt/dv (N, P))``; linear in ln λ, clamped inside each segment."""
        beta = v / C_KM_S
        lnd = 0.5 * (torch.log1p(-beta) - torch.log1p(beta))                 # (N,)
        dlnd_dv = -1.0 / (C_KM_S * (1.0 - beta**2))
        los, ts, dts = [], [], []
        for a, b in self.segments:
            x = self.loglam[a:b]
            u = x[None, :] + lnd[:, None]                                     # (N, n)
            if b - a < 2:
                zeros = torch.zeros_like(u)
                los.append(torch.full_like(u, a, dtype=torch.long))
                ts.append(zeros)
                dts.append(zeros)
                continue
            hi = torch.searchsorted(x, u.contiguous()).clamp(1, b - a - 1)
            lo = hi - 1
            width = x[hi] - x[lo]
            t_raw = (u - x[lo]) / width
            inside = (t_raw >= 0) & (t_raw <= 1)
            t = t_raw.clamp(0.0, 1.0)
            dt = torch.where(inside, dlnd_dv[:, None] / width, torch.zeros_like(t))
            los.append(lo + a)
            ts.append(t)
            dts.append(dt)
        return torch.cat(los, 1), torch.cat(ts, 1), torch.cat(dts, 1)

    def split(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """θ (N, K) → (s (N, L), v (N,), c (N, K_c))."""
        n_lab = self.n_labels
        return theta[:, :n_lab], theta[:, n_lab], theta[:, n_lab + 1:]

    def rest_frame(self, s: torch.Tensor, jacobian: bool = True):
        """Emulator flux (N, P) and, when asked, its label Jacobian (N, P, L) at scaled labels s."""
        return emulator_and_jacobian(self.emulator, s, jacobian)

    def shifted(self, flux: torch.Tensor, v: torch.Tensor, jac: torch.Tensor | None = None):
        """Doppler-shift ``flux`` (N, P) (and ``jac`` (N, P, L)) by ``v`` (N,) km/s; returns
        ``(shifted flux, shifted jac or None, ∂shifted/∂v (N, P))``."""
        lo, t, dt = self.shift_weights(v)
        f_lo = torch.gather(flux, 1, lo)
        f_hi = torch.gather(flux, 1, lo + 1)
        out = f_lo + t * (f_hi - f_lo)
        dv = dt * (f_hi - f_lo)
        out_jac = None
        if jac is not None:
            idx = lo[:, :, None].expand(-1, -1, jac.shape[2])
            j_lo = torch.gather(jac, 1, idx)
            j_hi = torch.gather(jac, 1, idx + 1)
            out_jac = j_lo + t[:, :, None] * (j_hi - j_lo)
        return out, out_jac, dv

    def __call__(self, theta: torch.Tensor, jacobian: bool = True):
        """``model`` (N, P) at θ (N, K) and, when ``jacobian``, ``∂model/∂θ`` (N, P, K)."""
        s, v, c = self.split(theta)
        flux, jac_s = self.rest_frame(s, jacobian)
        shifted, jac_shift, dv = self.shifted(flux, v, jac_s)
        cont = c @ self.basis.T                                               # (N, P)
        model = cont * shifted
        if not jacobian:
            return model, None
        jac = torch.cat(
            [cont[:, :, None] * jac_shift, (cont * dv)[:, :, None],
             shifted[:, :, None] * self.basis[None]],
            dim=2,
        )
        return model, jac

    def continuum_fit(self, shifted: torch.Tensor, flux: torch.Tensor, weight: torch.Tensor
                      ) -> torch.Tensor:
        """Least-squares continuum coefficients (N, K_c) for fixed rest-frame model ``shifted``
        (N, P), data ``flux`` (N, P) and weights 1/σ² ``weight`` (N, P) (0 = unused pixel)."""
        design = shifted[:, :, None] * self.basis[None]                      # (N, P, K_c)
        wd = weight[:, :, None] * design
        normal = design.transpose(1, 2) @ wd                                  # (N, K_c, K_c)
        rhs = (wd * flux[:, :, None]).sum(1)
        return solve_guarded(normal, rhs)


def solve_guarded(normal: torch.Tensor, rhs: torch.Tensor, fixed: torch.Tensor | None = None
                  ) -> torch.Tensor:
    """Solve ``normal x = rhs`` (N, K, K)·(N, K) where parameters with no information (a zero
    diagonal, e.g. the continuum of a fully masked segment) or marked ``fixed`` (N, K) bool are
    held at 0."""
    diag = torch.diagonal(normal, dim1=1, dim2=2)
    dead = diag <= diag.amax(1, keepdim=True) * 1e-14
    if fixed is not None:
        dead = dead | fixed
    eye = torch.diag_embed(dead.to(normal.dtype))
    keep = (~dead).to(normal.dtype)
    a = normal * keep[:, :, None] * keep[:, None, :] + eye
    x = torch.linalg.solve(a, (rhs * keep)[..., None])[..., 0]
    return x * keep
