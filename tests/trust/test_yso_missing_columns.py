"""yso-predict inputs: absent radius/log_l/band columns are set to their limits, as the help says."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.errors import InputDataError
from starlabels.labels import yso


def test_absent_columns_are_the_limits():
    features = ["G", "BP", "radius", "log_l", "distance"]
    limits = {"G": 19.0, "BP": 20.5}
    full = {"G": np.array([15.0, 16.0]), "BP": np.array([17.0, 18.0]),
            "radius": np.array([2.0, 3.0]), "log_l": np.array([0.5, 0.7]),
            "distance": np.array([400.0, 500.0])}
    without = {k: full[k] for k in ("G", "distance")}
    x = yso.observed_inputs(without, features, limits)
    np.testing.assert_array_equal(x, [[15.0, 20.5, yso.RADIUS_MIN, yso.LOG_L_MIN, 400.0],
                                      [16.0, 20.5, yso.RADIUS_MIN, yso.LOG_L_MIN, 500.0]])
    nan_cols = {**without, **{k: np.full(2, np.nan) for k in ("BP", "radius", "log_l")}}
    np.testing.assert_array_equal(x, yso.observed_inputs(nan_cols, features, limits))
    given = yso.observed_inputs(full, features, limits)
    np.testing.assert_array_equal(given[:, 2:4], [[2.0, 0.5], [3.0, 0.7]])


def test_g_and_distance_stay_required():
    with pytest.raises(InputDataError, match="'distance'"):
        yso.observed_inputs({"G": np.ones(2)}, ["G", "distance"], {"G": 19.0})
    with pytest.raises(InputDataError, match="'G'"):
        yso.observed_inputs({"distance": np.ones(2)}, ["G", "distance"], {"G": 19.0})
