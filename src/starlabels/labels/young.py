"""Young-star tools on predicted (Teff, log g) (APOGEE Net §4.1-4.2).

- :func:`in_young_polygon`: the simple selection of young low-mass stars in the Kiel diagram, the
  triangle with (Teff, log g) vertices (2200 K, 4.4), (4500 K, 3.9), (3200 K, 1.7) (§4.1).
- :func:`logg_age_bin`: log g as an age proxy, five bins: log g < 3.6 (< 1 Myr), 3.6-3.8
  (1-2 Myr), 3.8-4.0 (2-3 Myr), 4.0-4.2 (3-5 Myr), > 4.2 dex (> 5 Myr) (§4.2).

The vertices and edges are module constants so plots can draw them on Kiel diagrams.
"""

from __future__ import annotations

import numpy as np

from starlabels.constants import MISSING

#: Vertices (Teff in K, log g in dex) of the young-star selection triangle, in the paper's order.
YOUNG_POLYGON: tuple[tuple[float, float], ...] = ((2200.0, 4.4), (4500.0, 3.9), (3200.0, 1.7))

#: Interior edges (dex) of the log g age bins; bin i is EDGES[i-1] <= log g < EDGES[i].
LOGG_AGE_BIN_EDGES: tuple[float, ...] = (3.6, 3.8, 4.0, 4.2)
#: Age range of each bin as printed in the paper (index = bin number).
LOGG_AGE_BIN_LABELS: tuple[str, ...] = ("<1 Myr", "1-2 Myr", "2-3 Myr", "3-5 Myr", ">5 Myr")
#: Bin number returned for missing (NaN or -9999) log g.
NO_BIN = -1


def in_young_polygon(teff: np.ndarray, logg: np.ndarray) -> np.ndarray:
    """True where (Teff [K], log g [dex]) lies inside the young-star triangle :data:`YOUNG_POLYGON`.

    ``teff`` and ``logg`` broadcast against each other; the result has their broadcast shape.
    Missing values (NaN, -9999) give False. Points exactly on an edge count as inside.

    The test is done in scaled coordinates (Teff / 1000 K) so that matplotlib's path tolerance is
    comparable along both axes.
    """
    from matplotlib.path import Path

    t, g = np.broadcast_arrays(np.asarray(teff, dtype=float), np.asarray(logg, dtype=float))
    shape = t.shape
    verts = np.array(YOUNG_POLYGON, dtype=float)
    verts[:, 0] /= 1000.0
    pts = np.column_stack([t.reshape(-1) / 1000.0, g.reshape(-1)])
    ok = np.isfinite(pts).all(axis=1) & (t.reshape(-1) != MISSING) & (g.reshape(-1) != MISSING)
    inside = np.zeros(len(pts), dtype=bool)
    if ok.any():
        path = Path(verts)  # open path: contains_points closes it implicitly
        # a tiny positive/negative radius makes boundary points count regardless of orientation
        radius = 1e-9 if _signed_area(verts) > 0 else -1e-9
        inside[ok] = path.contains_points(pts[ok], radius=radius)
    return inside.reshape(shape)


def _signed_area(verts: np.ndarray) -> float:
    x, y = verts[:, 0], verts[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def logg_age_bin(logg: np.ndarray) -> np.ndarray:
    """Age bin (int, 0-4) of each log g (dex); :data:`NO_BIN` (-1) for NaN or -9999.

    Bin 0: log g < 3.6; 1: 3.6 <= log g < 3.8; 2: 3.8-4.0; 3: 4.0-4.2; 4: log g >= 4.2.
    The paper gives open bins; a value on an edge goes to the higher (older) bin.
    """
    g = np.asarray(logg, dtype=float)
    bins = np.searchsorted(np.asarray(LOGG_AGE_BIN_EDGES), g, side="right").astype(np.int64)
    bins[~np.isfinite(g) | (g == MISSING)] = NO_BIN
    return bins
