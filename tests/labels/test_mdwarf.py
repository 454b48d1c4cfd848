"""M-dwarf photometric labels: relations checked against hand arithmetic, cuts, flags, bad input."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from astropy.table import MaskedColumn, Table

from starlabels.errors import InputDataError
from starlabels.labels import mdwarf_labels
from starlabels.labels.mdwarf import NO_LABEL_BITS, MDwarfFlag, describe_flag

# Reference star: g=15.00, r=13.60, J=11.00, H=10.40, K=10.15, parallax 20 +- 0.1 mas.
# Colours: g-K = 4.85, J-K = 0.85, r-J = 2.60, J-H = 0.60.
#
# Hejazi [Fe/H] = -14.259 + 0.0519*4.85 + 29.5926*0.85 - 0.0529*4.85^2 - 17.6762*0.85^2
#                 + 0.7032*4.85*0.85
#   = -14.259 + 0.251715 + 25.15371 - 1.24434025 - 12.7710545 + 2.898942 = 0.02997225
REF_FEH = 0.02997225
# Mann Teff/3500 = 2.151 - 1.092*2.6 + 0.3767*2.6^2 - 0.06292*2.6^3 + 0.003950*2.6^4
#                  + 0.1697*0.6 - 0.03106*0.6^2
#   = 2.151 - 2.8392 + 2.546492 - 1.10588192 + 0.18050552 + 0.10182 - 0.0111816 = 1.0235544
REF_TEFF = 3500 * 1.0235544  # = 3582.4404 K
# Veyette log g = 7.912 - 0.1880*0.02997225 - 1.334e-3*3582.4404 + 1.313e-7*3582.4404^2
#   = 7.912 - 0.00563478 - 4.77897549 + 1.68508777 = 4.81247750
REF_LOGG = 4.8124775
# M_K = 10.15 + 5*log10(20/100) = 10.15 - 3.49485 = 6.65515
REF_MK = 6.65515


def star(**kw):
    base = dict(g=15.00, r=13.60, J=11.00, H=10.40, K=10.15, parallax=20.0, parallax_error=0.1)
    base.update(kw)
    return base


def catalog(*stars):
    keys = list(stars[0])
    return {k: np.array([s[k] for s in stars]) for k in keys}


def test_relations_match_hand_computation():
    out = mdwarf_labels(catalog(star()))
    assert out["flag"][0] == 0
    assert out["fe_h"][0] == pytest.approx(REF_FEH, abs=1e-6)
    assert out["teff"][0] == pytest.approx(REF_TEFF, abs=0.01)
    assert out["logg"][0] == pytest.approx(REF_LOGG, abs=1e-5)
    assert out["abs_k"][0] == pytest.approx(REF_MK, abs=1e-5)


def test_input_kinds_give_identical_tables():
    stars = [star(), star(g=16.0, K=10.5), star(parallax=-1.0)]
    d = catalog(*stars)
    outs = [mdwarf_labels(x) for x in (d, Table(d), pd.DataFrame(d))]
    for o in outs[1:]:
        for c in ("teff", "logg", "fe_h", "flag"):
            np.testing.assert_array_equal(np.asarray(o[c]), np.asarray(outs[0][c]))


@pytest.mark.parametrize(
    ("change", "bit"),
    [
        # J-K = 11.21 - 10.15 = 1.06 >= 1.05
        ({"J": 11.21, "H": 10.61}, MDwarfFlag.CUT_J_K),
        # J-K = 10.84 - 10.15 = 0.69 <= 0.7
        ({"J": 10.84, "H": 10.24}, MDwarfFlag.CUT_J_K),
        # g-K = 18.65 - 10.15 = 8.50 >= 8.46
        ({"g": 18.65}, MDwarfFlag.CUT_G_K),
        # g-K = 13.50 - 10.15 = 3.35 <= 3.37
        ({"g": 13.50}, MDwarfFlag.CUT_G_K),
        # M_K = 10.15 + 5 log10(2/100) = 1.655 < 5 (parallax/sigma = 20 still fine)
        ({"parallax": 2.0}, MDwarfFlag.CUT_ABS_K),
        # M_K = 10.15 + 5 log10(200/100) = 11.655 > 10
        ({"parallax": 200.0}, MDwarfFlag.CUT_ABS_K),
        # parallax/sigma = 20/10 = 2 <= 3
        ({"parallax_error": 10.0}, MDwarfFlag.CUT_PARALLAX_SNR),
        # parallax/sigma = 20/(20/3) = 3 exactly: not > 3
        ({"parallax_error": 20.0 / 3.0}, MDwarfFlag.CUT_PARALLAX_SNR),
    ],
)
def test_each_cut_sets_its_own_bit_and_removes_the_label(change, bit):
    out = mdwarf_labels(catalog(star(), star(**change)))
    assert out["flag"][0] == 0
    assert out["flag"][1] == int(bit), describe_flag(out["flag"][1])
    assert np.isnan([out["teff"][1], out["logg"][1], out["fe_h"][1]]).all()
    assert out.meta["flag_counts"][bit.name] == 1
    assert out.meta["n_labelled"] == 1


def test_star_forming_fields_are_excluded_by_prefix():
    d = catalog(*[star()] * 6)
    d["field"] = np.array(["ORIONB-A", "Pleiades-E", "IC348", "NGC2264", "120+18", ""])
    out = mdwarf_labels(d)
    sf = int(MDwarfFlag.STAR_FORMING_FIELD)
    np.testing.assert_array_equal(np.asarray(out["flag"]), [sf, sf, sf, sf, 0, 0])
    # a user list replaces the default; () excludes nothing
    out = mdwarf_labels(d, exclude_fields=["120+18"])
    np.testing.assert_array_equal(np.asarray(out["flag"]), [0, 0, 0, 0, sf, 0])
    out = mdwarf_labels(d, exclude_fields=())
    assert (np.asarray(out["flag"]) == 0).all()


def test_bad_input_is_flagged_counted_and_logged(caplog):
    t = Table(catalog(*[star()] * 8))
    t["g"] = MaskedColumn(t["g"], mask=[False, True, False, False, False, False, False, False])
    t["r"][2] = np.nan
    t["J"][3] = -9999.0
    t["H"][4] = 99.99  # placeholder magnitude
    t["parallax"][5] = -0.5
    t["parallax"][6] = 0.0
    t["parallax_error"][7] = 0.0
    with caplog.at_level(logging.INFO, logger="starlabels.labels.mdwarf"):
        out = mdwarf_labels(t)
    flags = np.asarray(out["flag"])
    assert flags[0] == 0
    assert (flags[1:5] & MDwarfFlag.BAD_PHOTOMETRY).all()
    assert (flags[5:8] & MDwarfFlag.BAD_PARALLAX).all()
    assert np.isnan(np.asarray(out["teff"])[1:]).all()
    assert np.isfinite(out["teff"][0])
    counts = out.meta["flag_counts"]
    assert counts["BAD_PHOTOMETRY"] == 4 and counts["BAD_PARALLAX"] == 3
    assert out.meta["n_input"] == 8 and out.meta["n_labelled"] == 1
    assert "1 of 8 stars labelled" in caplog.text and "BAD_PHOTOMETRY=4" in caplog.text


def test_out_of_validity_relations_keep_the_label_and_set_their_bit():
    stars = [
        # J-K = 11.18 - 10.15 = 1.03: selected (< 1.05) but outside Hejazi's 0.71-1.01
        star(J=11.18, H=10.58, r=13.78),
        # r-J = 1.6: Teff/3500 = 2.151 - 1.7472 + 0.964352 - 0.25772032 + 0.02588672 + 0.10182
        #   - 0.0111816 = 1.2269568 -> 4294.35 K > 4100: outside Mann and Veyette
        star(r=12.60),
        # r-J = 4.0: Teff/3500 = 2.151 - 4.368 + 6.0272 - 4.02688 + 1.0112 + 0.10182 - 0.0111816
        #   = 0.8851584 -> 3098.05 K: inside Mann (> 2700), outside Veyette (< 3200)
        star(r=15.00),
        # M_K = 9.9 (parallax = 100 * 10**((9.9 - 10.15)/5) = 89.1251 mas): selected, outside Mann
        star(parallax=100 * 10 ** ((9.9 - 10.15) / 5)),
    ]
    out = mdwarf_labels(catalog(*stars))
    F = MDwarfFlag
    expected = [F.HEJAZI_RANGE, F.MANN_RANGE | F.VEYETTE_RANGE, F.VEYETTE_RANGE, F.MANN_RANGE]
    np.testing.assert_array_equal(np.asarray(out["flag"]), [int(e) for e in expected])
    assert np.isfinite(np.asarray(out["teff"])).all()
    assert out["teff"][1] == pytest.approx(3500 * 1.2269568, abs=0.01)
    assert out["teff"][2] == pytest.approx(3500 * 0.8851584, abs=0.01)
    # Veyette at 4294.35 K, [Fe/H] 0.02997225:
    # 7.912 - 0.00563478 - 1.334e-3*4294.3488 + 1.313e-7*4294.3488^2 = 7.912 - 0.00563478
    #   - 5.72866130 + 2.42135758 = 4.59906150
    assert out["logg"][1] == pytest.approx(4.5990615, abs=1e-5)
    assert out["abs_k"][3] == pytest.approx(9.9, abs=1e-9)
    assert not (np.asarray(out["flag"]) & int(NO_LABEL_BITS)).any()


def test_column_mapping_keep_and_missing_column():
    d = catalog(star(), star())
    d["ks_m"] = d.pop("K")
    d["APOGEE_ID"] = np.array(["2M0001", "2M0002"])
    out = mdwarf_labels(d, columns={"K": "ks_m"}, keep=["APOGEE_ID"])
    assert list(out.colnames[:1]) == ["APOGEE_ID"]
    assert out["fe_h"][1] == pytest.approx(REF_FEH, abs=1e-6)
    with pytest.raises(InputDataError, match="no column 'K'"):
        mdwarf_labels(d)


def test_vectorised_over_a_large_catalog_matches_single_rows():
    rng = np.random.default_rng(3)
    n = 20_000
    K = rng.uniform(8, 12, n)
    d = {
        "K": K, "J": K + rng.uniform(0.6, 1.1, n), "g": K + rng.uniform(3.2, 8.6, n),
        "parallax": rng.uniform(1, 100, n), "parallax_error": rng.uniform(0.05, 2, n),
    }
    d["H"] = d["J"] - rng.uniform(0.5, 0.7, n)
    d["r"] = d["J"] + rng.uniform(1.5, 4.5, n)
    out = mdwarf_labels(d)
    labelled = np.isfinite(np.asarray(out["teff"]))
    assert 0 < labelled.sum() < n
    i = int(np.flatnonzero(labelled)[0])
    one = mdwarf_labels({k: v[i: i + 1] for k, v in d.items()})
    assert one["teff"][0] == out["teff"][i] and one["flag"][0] == out["flag"][i]
    # the selection, recomputed directly
    mk = d["K"] + 5 * np.log10(d["parallax"] / 100)
    sel = ((d["J"] - K > 0.7) & (d["J"] - K < 1.05) & (d["g"] - K > 3.37) & (d["g"] - K < 8.46)
           & (mk > 5) & (mk < 10) & (d["parallax"] / d["parallax_error"] > 3))
    np.testing.assert_array_equal(labelled, sel)
    assert math.isclose(out.meta["n_labelled"], sel.sum())
