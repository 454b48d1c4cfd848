"""The Cannon's polynomial label vector: terms, design matrix and its label derivatives (torch).

Same terms, in the same order, as ``thecannon.vectorizer.PolynomialVectorizer(label_names, order)``
(Casey et al. 2016, ``annieslasso``): a constant, then for each degree d = 1…order the monomials
of ``itertools.combinations_with_replacement(labels, d)`` (for three labels a, b, c and order 2:
``1, a, b, c, a², ab, ac, b², bc, c²``). Labels enter scaled, x = (label − offset) / scale.

A term is a row of the (T, L) integer exponent matrix ``exponents`` (row 0 all zeros: the
constant).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations_with_replacement

import torch

__all__ = ["design_derivative", "design_matrix", "term_exponents", "term_mask", "term_names"]


def term_exponents(n_labels: int, order: int) -> torch.Tensor:
    """(T, L) int64 exponents of the polynomial terms, constant first (thecannon's order)."""
    if n_labels < 1:
        raise ValueError(f"need at least one label, got {n_labels}")
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    rows = [[0] * n_labels]
    for degree in range(1, order + 1):
        for combo in combinations_with_replacement(range(n_labels), degree):
            row = [0] * n_labels
            for i in combo:
                row[i] += 1
            rows.append(row)
    return torch.tensor(rows, dtype=torch.int64)


def term_names(label_names: Sequence[str], exponents: torch.Tensor) -> list[str]:
    """Human-readable terms, e.g. ``["1", "TEFF", "TEFF^2", "TEFF*LOGG"]``."""
    out = []
    for row in exponents.tolist():
        parts = [n if p == 1 else f"{n}^{p}" for n, p in zip(label_names, row, strict=True) if p]
        out.append("*".join(parts) or "1")
    return out


def design_matrix(x: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """Label vectors v(x): (N, L) scaled labels → (N, T), ``v_t = Π_l x_l^{e_tl}``."""
    e = exponents.to(x.device, x.dtype)
    return torch.prod(x[:, None, :] ** e[None], dim=-1)


def design_derivative(x: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """∂v_t/∂x_l: (N, L) → (N, T, L); ``e_tl x_l^{e_tl − 1} Π_{m≠l} x_m^{e_tm}`` (0 when e_tl = 0)."""
    L = exponents.shape[1]
    e = exponents.to(x.device)
    eye = torch.eye(L, dtype=e.dtype, device=x.device)
    reduced = (e[:, None, :] - eye[None]).clamp(min=0).to(x.dtype)  # (T, L, L): d/dx_l lowers e_tl
    prod = torch.prod(x[:, None, None, :] ** reduced[None], dim=-1)  # (N, T, L)
    return e.to(x.dtype)[None] * prod


def term_mask(label_mask: torch.Tensor, exponents: torch.Tensor) -> torch.Tensor:
    """Censoring: (L, P) bool "label l may shape pixel p" → (P, T) bool "term t is fitted at p"
    (a term is censored where any of its labels is; the constant never is)."""
    uses = (exponents > 0).to(label_mask.device)  # (T, L)
    blocked = (~label_mask).T.to(torch.float64) @ uses.T.to(torch.float64)  # (P, T) censored labels
    return blocked == 0
