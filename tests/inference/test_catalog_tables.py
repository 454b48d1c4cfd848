"""Catalog FITS files: units of the FITS standard as TUNITn, others (dex) where astropy and people find
them, written and read without a single warning."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
from astropy import units as astropy_units
from astropy.io import fits
from astropy.table import QTable, Table

from starlabels.inference.catalog_tables import read_catalog, write_table

LONG = "FE_H_ERR_ALEATORIC_AND_SOME_MORE_WORDS"  # its serialized-column line runs over one FITS card


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "APOGEE_ID": ["2M1", "2M2", ""],
        "RA": [1.5, 2.5, 3.5],
        "TEFF": [5000.0, 4210.5, np.nan],
        "FE_H": [0.125, -0.5, np.nan],
        LONG: [0.01, 0.02, np.nan],
        "WEIRD": [1.0, 2.0, 3.0],
        "FLAG": np.array([0, 1, 4], np.int32),
    })


def _write(path):
    write_table(_frame(), path, "fits", ["TEFF", "FE_H", "WEIRD"], ["K", "dex", "not-a-unit"],
                meta={"MODEL": "m", "NSAMPLES": None, "calibrated": True})


def test_writing_and_reading_a_dex_column_raises_no_warning(tmp_path):
    out = tmp_path / "cat.fits"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _write(out)
        table = Table.read(out)
    assert [str(w.message) for w in caught] == []
    assert table["FE_H"].unit == astropy_units.dex and table[LONG].unit == astropy_units.dex
    assert table["TEFF"].unit == astropy_units.K and table["RA"].unit == astropy_units.deg
    assert table["WEIRD"].unit is None and table["FLAG"].unit is None
    assert table.meta["MODEL"] == "m" and table.meta["CALIBRAT"] is True


def test_fits_header_holds_tunit_for_fits_units_and_a_ttype_comment_for_others(tmp_path):
    out = tmp_path / "cat.fits"
    _write(out)
    header = fits.getheader(out, 1)
    cards = {header[f"TTYPE{i}"]: i for i in range(1, header["TFIELDS"] + 1)}
    tunit = {name: header.get(f"TUNIT{i}") for name, i in cards.items()}
    assert tunit == {"APOGEE_ID": None, "RA": "deg", "TEFF": "K", "FE_H": None, LONG: None, "WEIRD": None,
                     "FLAG": None}
    comments = {name: header.comments[f"TTYPE{i}"] for name, i in cards.items()}
    assert comments["FE_H"] == "[dex]" and comments[LONG] == "[dex]" and comments["WEIRD"] == "[not-a-unit]"
    assert comments["TEFF"] == "" and comments["RA"] == ""
    # every COMMENT card fits a card (72 characters); the FLAG bits are listed first
    assert all(len(c) <= 72 for c in header["COMMENT"])
    assert header["COMMENT"][0] == "FLAG bit 0: INVALID_SPECTRUM"


def test_values_round_trip_through_fits_and_as_quantities(tmp_path):
    out = tmp_path / "cat.fits"
    _write(out)
    pd.testing.assert_frame_equal(read_catalog(out), _frame(), check_dtype=False)
    qtable = QTable.read(out)
    np.testing.assert_array_equal(qtable["FE_H"].to_value(astropy_units.dex), [0.125, -0.5, np.nan])
    np.testing.assert_array_equal(qtable["TEFF"].to_value(astropy_units.K), [5000.0, 4210.5, np.nan])
    assert qtable[LONG].unit == astropy_units.dex
    np.testing.assert_array_equal(qtable["FLAG"], [0, 1, 4])


def test_writing_touches_no_warnings_filter(tmp_path, monkeypatch):
    """The filter list is process-wide (a catalog writer runs in a thread beside others): our code
    neither swaps it (``catch_warnings``) nor adds to it. (astropy and pandas do, inside their calls.)"""
    calls = []

    def spy(name, real):
        def called(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.split(".")[0] == "starlabels":
                calls.append(f"{caller}: warnings.{name}")
            return real(*args, **kwargs)
        return called

    for name in ("catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"):
        monkeypatch.setattr(warnings, name, spy(name, getattr(warnings, name)))
    _write(tmp_path / "cat.fits")
    assert calls == []
