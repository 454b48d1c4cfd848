"""Labels from SDSS-V astraAllStar tables (written from the data-model YAMLs) and read_label_table's
allStar / astraAllStar detection by content."""

from __future__ import annotations

import numpy as np
import pytest

from starlabels.constants import MISSING
from starlabels.errors import InputFileError
from starlabels.io.astra import is_astra_table, read_astra_allstar, read_label_table

ROWS = {  # six APOGEE results for five stars: star 1 seen from APO and LCO
    "sdss_id": np.array([1, 1, 2, 3, 4, 5]),
    "sdss4_apogee_id": ["2M01", "2M01", "2M02", "", "2M04", "2M05"],
    "telescope": ["apo25m", "lco25m", "apo25m", "apo25m", "lco25m", "apo25m"],
    "snr": np.array([50, 80, 30, 40, 60, 70], np.float32),
    "teff": np.array([4500, 4510, 5000, 5100, 4800, np.nan], np.float32),
    "e_teff": np.array([10, 12, 20, 25, 15, 30], np.float32),
    "logg": np.array([2.5, 2.6, 4.4, 4.2, 3.0, 2.0], np.float32),
    "e_logg": np.full(6, 0.05, np.float32),
    "fe_h": np.array([-0.1, -0.2, 0.0, 0.1, -0.5, 0.2], np.float32),
    "e_fe_h": np.full(6, 0.02, np.float32),
    "fe_h_flags": np.array([0, 0, 0, 0, 8, 0]),
    "mg_h": np.array([0.1, 0.0, 0.05, 0.2, -0.3, 0.3], np.float32),
    "e_mg_h": np.full(6, 0.03, np.float32),
    "flag_bad": np.array([False, False, False, True, False, False]),
    "flag_warn": np.array([False, True, False, False, False, False]),
    "result_flags": np.array([0, 4, 0, 1, 0, 0]),
    "spectrum_flags": np.array([0, 0, 2, 0, 0, 0]),
}


@pytest.fixture
def aspcap_dr20(tmp_path, datamodel):
    path = tmp_path / "astraAllStarASPCAP-0.8.1.fits"
    datamodel.hdulist("astraAllStarASPCAP", "DR20", rows={1: 0, 2: 6}, values={2: ROWS}).writeto(path)
    return path


def test_astra_aspcap_quality_cuts_and_key(aspcap_dr20):
    assert is_astra_table(aspcap_dr20)
    t = read_label_table(aspcap_dr20, labels=("TEFF", "LOGG", "FE_H", "MG_FE"))
    assert t.key_column == "SDSS_ID" and t.meta["HDU"] == "HDU2"
    # star 3 dropped (flag_bad), star 1 keeps its LCO row (higher snr), file order otherwise
    np.testing.assert_array_equal(t.key, [1, 2, 4, 5])
    assert t.meta["N_DROPPED_FLAG_BAD"] == 1 and t.meta["N_DUPLICATES"] == 1 and t.meta["N_ROWS"] == 6
    np.testing.assert_array_equal(t.columns["TELESCOPE"], ["lco25m", "apo25m", "lco25m", "apo25m"])
    np.testing.assert_array_equal(t.apogee_id, ["2M01", "2M02", "2M04", "2M05"])
    f32 = lambda x: float(np.float32(x))  # noqa: E731 - the file stores float32
    np.testing.assert_array_equal(t.labels[:, 0], [f32(4510), f32(5000), f32(4800), MISSING])  # NaN → MISSING
    assert t.labels[2, 2] == MISSING and t.label_errors[2, 2] == MISSING  # fe_h_flags ≠ 0
    assert t.meta["N_MASKED_BY_LABEL_FLAGS"] == {"FE_H": 1}
    # [Mg/Fe] = [Mg/H] − [Fe/H], errors in quadrature; MISSING where fe_h is flagged
    np.testing.assert_allclose(t.labels[[0, 1, 3], 3], [f32(0.0) - f32(-0.2), f32(0.05) - f32(0.0),
                                                        f32(0.3) - f32(0.2)], rtol=1e-12)
    np.testing.assert_allclose(t.label_errors[0, 3], np.hypot(f32(0.03), f32(0.02)), rtol=1e-12)
    assert t.labels[2, 3] == MISSING and t.meta["DERIVED_LABELS"] == ["MG_FE"]
    # the pipeline's flags are kept
    np.testing.assert_array_equal(t.columns["FLAG_WARN"], [True, False, False, False])
    np.testing.assert_array_equal(t.aspcapflag, [4, 0, 0, 0])
    np.testing.assert_array_equal(t.starflag, [0, 2, 0, 0])
    np.testing.assert_array_equal(t.columns["FE_H_FLAGS"], [0, 0, 8, 0])
    np.testing.assert_array_equal(t.lookup([5, "2", 3, 99]), [3, 1, -1, -1])


def test_astra_cuts_can_be_changed(aspcap_dr20):
    t = read_astra_allstar(aspcap_dr20, labels=("TEFF",), drop_flag_bad=False, unique=False,
                           telescope="apo25m", min_snr=35)
    np.testing.assert_array_equal(t.key, [1, 3, 5])  # APO rows with snr ≥ 35, flag_bad kept
    assert t.meta["N_DROPPED_TELESCOPE"] == 2 and t.meta["N_DROPPED_SNR"] == 1
    t = read_astra_allstar(aspcap_dr20, labels=("TEFF",), drop_flag_warn=True)
    np.testing.assert_array_equal(t.key, [1, 2, 4, 5])
    assert t.columns["TELESCOPE"][0] == "apo25m"  # the LCO row had flag_warn
    with pytest.raises(InputFileError, match=r"no column for label 'V_MACRO'.*teff"):
        read_astra_allstar(aspcap_dr20, labels=("V_MACRO",))
    assert len(read_astra_allstar(aspcap_dr20, hdu="boss")) == 0  # the (empty) BOSS results, as asked
    with pytest.raises(InputFileError, match="HDU 7 is not a table"):
        read_astra_allstar(aspcap_dr20, hdu=7)


def test_bossnet_boss_hdu(tmp_path, datamodel):
    path = tmp_path / "astraAllStarBossNet.fits"
    values = {1: {k: ROWS[k] for k in ("sdss_id", "telescope", "snr", "teff", "e_teff", "logg", "fe_h",
                                       "flag_bad", "result_flags")}}
    datamodel.hdulist("astraAllStarBossNet", "DR20", rows={1: 6, 2: 0}, values=values).writeto(path)
    t = read_label_table(path, labels=("TEFF", "LOGG", "FE_H"))
    assert t.meta["HDU"] == "HDU1" and t.key_column == "SDSS_ID"
    np.testing.assert_array_equal(t.key, [1, 2, 4, 5])
    np.testing.assert_array_equal(t.labels[:, 1], ROWS["logg"][[1, 2, 4, 5]])
    np.testing.assert_array_equal(t.label_errors[:, 0], ROWS["e_teff"][[1, 2, 4, 5]])


def test_label_table_tells_allstar_from_astra(tmp_path, datamodel):
    path = tmp_path / "allStar-dr17.fits"
    values = {1: {"APOGEE_ID": ["2M1", "2M2"], "TEFF": np.array([4000.0, 5000.0], np.float32),
                  "LOGG": np.array([1.0, 2.0], np.float32), "FE_H": np.array([0.0, -1.0], np.float32)}}
    datamodel.hdulist("allStar", "DR17", rows={1: 2}, values=values).writeto(path)
    assert not is_astra_table(path)
    t = read_label_table(path)
    assert t.key_column == "APOGEE_ID" and list(t.key) == ["2M1", "2M2"]
    np.testing.assert_array_equal(t.labels, [[4000, 1, 0], [5000, 2, -1]])
    with pytest.raises(InputFileError, match="apply to astraAllStar tables"):
        read_label_table(path, min_snr=10)


def test_astra_csv_without_shared_data(tmp_path):
    path = tmp_path / "astra.csv"
    path.write_text("sdss_id,teff,e_teff,logg,fe_h,flag_bad,snr\n7,4000,10,1.5,-0.3,False,20\n"
                    "8,5000,20,4.5,0.1,True,30\n7,4100,10,1.6,-0.2,False,40\n")
    t = read_label_table(path, labels=("TEFF", "LOGG", "FE_H"))
    assert t.key_column == "SDSS_ID"
    np.testing.assert_array_equal(t.key, [7])
    np.testing.assert_array_equal(t.labels, [[4100, 1.6, -0.2]])  # the snr-40 row
    assert t.label_errors[0, 1] == MISSING  # no e_logg column
