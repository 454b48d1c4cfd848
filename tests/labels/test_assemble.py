"""Assembly of the training-label table: Payne region, precedence, errors, MISSING."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.labels import assemble_labels, mdwarf_labels
from starlabels.labels.assemble import DEFAULT_ERRORS, payne_usable


def spectro_table():
    # A: giant (4800 K, 2.5) -> payne; B: hot dwarf 5800 K -> payne; C: cool dwarf 3600 K, 4.7 ->
    # not trusted; D: cool giant 3900 K, 1.2 -> payne (log g < 3.5); E: 3700 K, 4.6 but also an
    # M dwarf; F: 4200 K, 4.5 -> payne, but F is also a YSO; G: exactly 4000 K and 3.5 -> not trusted.
    return Table({
        "APOGEE_ID": ["A", "B", "C", "D", "E", "F", "G"],
        "TEFF": [4800.0, 5800.0, 3600.0, 3900.0, 3700.0, 4200.0, 4000.0],
        "LOGG": [2.5, 4.4, 4.7, 1.2, 4.6, 4.5, 3.5],
        "FE_H": [-0.2, 0.1, 0.0, -1.0, 0.05, np.nan, 0.0],
        "TEFF_ERR": [50.0, np.nan, 30.0, 80.0, 30.0, 60.0, 10.0],
    })


def test_payne_region():
    np.testing.assert_array_equal(
        payne_usable([4800, 3600, 3900, 4000, 4000.1, np.nan, 3000], [2.5, 4.7, 1.2, 3.5, 4.9, 3.0, np.nan]),
        [True, False, True, False, True, True, False],
    )


def test_groups_precedence_errors_and_missing():
    md = {"APOGEE_ID": np.array(["E", "H"]), "teff": np.array([3550.0, 3300.0]),
          "logg": np.array([4.8, 4.9]), "fe_h": np.array([0.1, -0.3])}
    yso = pd.DataFrame({"APOGEE_ID": ["F", "I"], "TEFF": [3900.0, 3400.0], "LOGG": [3.9, 3.7],
                        "TEFF_ERR": [45.0, -9999.0]})
    out = assemble_labels(spectro_table(), md, yso)
    ids = list(out["APOGEE_ID"])
    # C and G dropped; order of first appearance among labelled rows (spectro, mdwarf, yso):
    # E's spectroscopic row is not trusted, so E first appears in the M-dwarf table
    assert ids == ["A", "B", "D", "F", "E", "H", "I"]
    row = {i: k for k, i in enumerate(ids)}
    grp = dict(zip(ids, out["group"], strict=True))
    assert grp == {"A": "payne", "B": "payne", "D": "payne", "E": "mdwarf", "F": "yso",
                   "H": "mdwarf", "I": "yso"}
    # E: M-dwarf labels win over the spectroscopic ones, all three labels from the same group
    e = out[row["E"]]
    assert (e["TEFF"], e["LOGG"], e["FE_H"]) == (3550.0, 4.8, 0.1)
    assert (e["TEFF_ERR"], e["LOGG_ERR"], e["FE_H_ERR"]) == (100.0, 0.1, 0.15)
    # F: YSO wins; no [Fe/H] -> MISSING with MISSING error (never the Payne value)
    f = out[row["F"]]
    assert (f["TEFF"], f["LOGG"], f["FE_H"], f["FE_H_ERR"]) == (3900.0, 3.9, MISSING, MISSING)
    assert f["TEFF_ERR"] == 45.0
    # I: YSO error -9999 -> default
    assert out[row["I"]]["TEFF_ERR"] == DEFAULT_ERRORS["yso"]["TEFF"]
    # Payne errors: given where finite, else the paper's typical 100 K / 0.1 / 0.03
    assert out[row["A"]]["TEFF_ERR"] == 50.0 and out[row["B"]]["TEFF_ERR"] == 100.0
    assert (out[row["A"]]["LOGG_ERR"], out[row["A"]]["FE_H_ERR"]) == (0.1, 0.03)
    assert out.meta["n_payne"] == 3 and out.meta["n_mdwarf"] == 2 and out.meta["n_yso"] == 2
    assert out.meta["n_overridden"] == 1  # F (E's spectroscopic labels were never used)
    assert out.meta["n_spectro_unused"] == 2  # C and G
    assert not np.isnan(np.asarray(out["FE_H"])).any()


def test_mdwarf_output_plugs_in_and_unlabelled_rows_are_ignored():
    cat = {"APOGEE_ID": np.array(["C", "X"]), "g": np.array([15.0, 15.0]),
           "r": np.array([13.6, 13.6]), "J": np.array([11.0, 11.0]), "H": np.array([10.4, 10.4]),
           "K": np.array([10.15, 10.15]), "parallax": np.array([20.0, 1.0]),
           "parallax_error": np.array([0.1, 0.1])}
    md = mdwarf_labels(cat, keep=["APOGEE_ID"])  # X: M_K = 10.15 - 10 = 0.15 -> not selected
    out = assemble_labels(spectro_table(), md, default_errors={"mdwarf": {"FE_H": 0.2}})
    c = out[list(out["APOGEE_ID"]).index("C")]
    assert c["group"] == "mdwarf"
    assert c["TEFF"] == pytest.approx(3582.44, abs=0.01) and c["FE_H_ERR"] == 0.2
    assert "X" not in list(out["APOGEE_ID"])


def test_duplicates_and_missing_id_column_raise():
    dup = {"APOGEE_ID": np.array(["A", "A"]), "TEFF": np.array([3500.0, 3600.0]),
           "LOGG": np.array([4.0, 4.0])}
    with pytest.raises(InputDataError, match="duplicated"):
        assemble_labels(yso=dup)
    with pytest.raises(InputDataError, match="no id column"):
        assemble_labels(spectro={"TEFF": np.array([5000.0]), "LOGG": np.array([3.0])})
    with pytest.raises(InputDataError, match="unknown group"):
        assemble_labels(spectro_table(), default_errors={"giants": {"TEFF": 1.0}})


def test_empty_input_gives_empty_table():
    out = assemble_labels()
    assert len(out) == 0 and "group" in out.colnames
