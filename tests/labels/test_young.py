"""Young-star polygon and log g age bins (paper §4)."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.labels import LOGG_AGE_BIN_EDGES, YOUNG_POLYGON, in_young_polygon, logg_age_bin
from starlabels.labels.young import NO_BIN


def test_constants_are_the_papers():
    assert YOUNG_POLYGON == ((2200.0, 4.4), (4500.0, 3.9), (3200.0, 1.7))
    assert LOGG_AGE_BIN_EDGES == (3.6, 3.8, 4.0, 4.2)


def _edge_logg(t1, g1, t2, g2, teff):
    """log g on the straight edge (t1, g1)-(t2, g2) at ``teff`` (linear interpolation by hand)."""
    return g1 + (g2 - g1) * (teff - t1) / (t2 - t1)


def test_points_near_each_edge_fall_on_the_right_side():
    # Upper edge (2200, 4.4)-(4500, 3.9): at 3350 K, log g = 4.4 - 0.5 * 1150/2300 = 4.15.
    assert _edge_logg(2200, 4.4, 4500, 3.9, 3350) == pytest.approx(4.15)
    # Left edge (2200, 4.4)-(3200, 1.7): at 2700 K, log g = 4.4 - 2.7 * 500/1000 = 3.05;
    # inside lies to the right (hotter), i.e. points above the line at fixed Teff are outside.
    assert _edge_logg(2200, 4.4, 3200, 1.7, 2700) == pytest.approx(3.05)
    # Right edge (4500, 3.9)-(3200, 1.7): at 3850 K, log g = 3.9 - 2.2 * 650/1300 = 2.8.
    assert _edge_logg(4500, 3.9, 3200, 1.7, 3850) == pytest.approx(2.8)
    teff = np.array([3350, 3350, 2700, 2700, 3850, 3850, 3350, 2700, 3850])
    logg = np.array([4.14, 4.16, 3.00, 3.10, 2.85, 2.75, 4.15, 3.05, 2.8])
    # 2700 K: inside needs log g >= 3.05 on the left edge and below the upper edge (4.29);
    # the last three points lie exactly on the edges and count as inside
    np.testing.assert_array_equal(
        in_young_polygon(teff, logg), [True, False, False, True, True, False, True, True, True]
    )


def test_typical_objects():
    teff = np.array([3400.0, 4800.0, 3500.0, 3300.0, 6000.0])
    logg = np.array([3.8, 2.5, 4.8, 1.5, 4.4])  # young M star, giant, M dwarf, too low, G dwarf
    np.testing.assert_array_equal(in_young_polygon(teff, logg), [True, False, False, False, False])


def test_vertices_count_as_inside_missing_as_outside_and_shapes_broadcast():
    t = np.array([v[0] for v in YOUNG_POLYGON])
    g = np.array([v[1] for v in YOUNG_POLYGON])
    assert in_young_polygon(t, g).all()
    assert not in_young_polygon(np.array([np.nan, -9999.0, 3400.0]), np.array([3.8, 3.8, -9999.0])).any()
    grid = in_young_polygon(np.array([[3400.0], [6000.0]]), np.array([3.8, 4.6]))
    assert grid.shape == (2, 2)
    np.testing.assert_array_equal(grid, [[True, False], [False, False]])


def test_logg_age_bins():
    g = np.array([3.0, 3.59, 3.6, 3.7, 3.8, 3.95, 4.0, 4.19, 4.2, 5.0, np.nan, -9999.0])
    np.testing.assert_array_equal(logg_age_bin(g), [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, NO_BIN, NO_BIN])
    assert logg_age_bin(np.full((2, 3), 3.9)).shape == (2, 3)
