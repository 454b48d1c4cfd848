"""Pixel masks the built-in generator knows exactly: continuum pixels and element windows over a
label box (:class:`GeneratorMasks`, a mixin of :class:`starlabels.data.synthetic.SyntheticGenerator`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from starlabels.core import Grid
from starlabels.data.line_lists import THETA0
from starlabels.errors import InputDataError

__all__ = ["LOGG0", "GeneratorMasks"]

LOGG0 = 2.5


class GeneratorMasks:
    """Label-box masks of a generator. Needs the generator's ``default_ranges``, ``label_names``,
    ``lines``, ``species``, ``elements``, ``instrument``, ``grid``, ``_detector`` and ``_absorb``."""

    @property
    def label_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) (L,) arrays: the label range the generator is meant for (:attr:`default_ranges`)."""
        return self._box(None)

    def _box(self, ranges: Mapping[str, tuple[float, float]] | None) -> tuple[np.ndarray, np.ndarray]:
        r = dict(self.default_ranges)
        r.update(ranges or {})
        lo = [r["TEFF"][0], r["LOGG"][0], r["FE_H"][0]]
        hi = [r["TEFF"][1], r["LOGG"][1], r["FE_H"][1]]
        for name in self.label_names[3:]:
            a, b = r.get(name, r["X_FE"])
            lo.append(a)
            hi.append(b)
        return np.array(lo), np.array(hi)

    def _max_depth(self, select: np.ndarray, ranges: Mapping[str, tuple[float, float]] | None) -> np.ndarray:
        """(P,) upper bound of 1 − normalised flux over the label box, from the lines ``select``."""
        lo, hi = self._box(ranges)
        ln = self.lines
        # log τ is linear in log g and [X/H] and linear (or, for hydrogen in the optical, concave
        # quadratic) in θ: its maximum over the box is at a corner or at the parabola's vertex
        theta = 5040.0 / np.array([hi[0], lo[0]])
        a, q = ln["teff_coef"], ln["teff_coef2"]
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(q < 0, THETA0 - a / (2 * np.where(q < 0, q, -1.0)), theta[0])
        cand = np.column_stack([np.broadcast_to(theta, (len(a), 2)), np.clip(vertex, theta[0], theta[1])])
        dth = np.max(a[:, None] * (cand - THETA0) + q[:, None] * (cand - THETA0) ** 2, axis=1)
        dg = np.max(ln["logg_coef"][:, None] * (np.array([lo[1], hi[1]])[None, :] - LOGG0), axis=1)
        xh_max = np.zeros(len(self.species))
        xh_max[1] = hi[2]
        xh_max[2:] = hi[3:] + hi[2]
        xh = np.where(ln["species"] == 0, 0.0, xh_max[ln["species"]])
        tau = 10.0 ** (ln["log_strength"] + xh + dth + dg)
        wing_max = ln["wing_weight"] * 10.0 ** np.max(
            ln["wing_logg_coef"][:, None] * (np.array([lo[1], hi[1]])[None, :] - LOGG0), axis=1)
        tau = np.where(select, tau, 0.0)
        # the bound on τ per line may come from different corners: still an upper bound
        return 1.0 - self._absorb(tau[None, :], (tau * wing_max)[None, :])[0]

    def _on_grid(self, array: np.ndarray, grid: str | Grid | None) -> np.ndarray:
        """Native-grid columns of ``array`` (…, P) taken at the pixels of ``grid`` (None: the
        segment grid, gaps deleted — APOGEE's 7514-pixel ASPCAP grid; a name of the instrument's
        grids; or a Grid that is a subset of the native grid)."""
        if grid is None:
            target = self.grid.segment_grid()
        elif isinstance(grid, Grid):
            target = grid
        else:
            try:
                target = self.instrument.get_grid(grid)
            except ValueError as exc:
                raise InputDataError(str(exc)) from None
        pos = target.positions_in(self.grid)
        if pos is None:
            raise InputDataError(
                f"grid {target.describe()} is not a subset of {self.instrument.name}'s grid "
                f"{self.grid.describe()}"
            )
        return array[..., pos]

    def continuum_pixels(
        self, grid: str | Grid | None = None, threshold: float = 1e-3,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> np.ndarray:
        """(P,) bool on ``grid`` (default: the segment grid, for APOGEE the 7514-pixel ASPCAP grid,
        also by name ``"aspcap"``): pixels no line makes deeper than ``threshold`` anywhere in the
        label box ``ranges`` (``{"TEFF": (lo, hi), "LOGG": …, "FE_H": …, "X_FE" or "<X>_FE": …}``,
        default :attr:`default_ranges`); pixels without data (gaps) are never continuum."""
        depth = self._max_depth(np.ones(len(self.lines), bool), ranges)
        mask = (depth < threshold) & self._detector
        return self._on_grid(mask, grid)

    def element_windows(
        self, grid: str | Grid | None = None, threshold: float = 0.01,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> tuple[tuple[str, ...], np.ndarray]:
        """Each element's line pixels: ``(names, windows)``, ``windows`` (E, P) bool on ``grid``
        (as :meth:`continuum_pixels`).

        ``names`` are element symbols, upper case: ``"FE"`` then :attr:`elements` (label
        ``FE_H`` for ``"FE"``, ``<X>_FE`` otherwise). A pixel is in an element's window where
        that element's lines alone can absorb more than ``threshold`` in the label box.
        """
        names = ("FE", *self.elements)
        sp = self.lines["species"]
        rows = [self._max_depth(sp == self.species.index(e), ranges) > threshold for e in names]
        win = np.array(rows) & self._detector[None, :]
        return names, self._on_grid(win, grid)
