"""DR19/DR20 SAS paths (checked against the data model's example locations) and ``starlabels download``
of SDSS-V files from a local server on 127.0.0.1."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from starlabels.cli import download as download_cli
from starlabels.cli.main import cli
from starlabels.io import Spectrum, read_spectra, sas, write_mwm_star
from starlabels.io import sdss_v_paths as v5

BOSS_WAVE = 10.0 ** (3.5523 + 1e-4 * np.arange(4648))
ROOTS = {"MWM_ASTRA": "spectro/astra", "APOGEE_REDUX": "spectro/apogee/redux",
         "BOSS_SPECTRO_REDUX": "spectro/boss/redux"}


def _example(datamodel, name, release):
    spec = datamodel.spec(name)["releases"][release]
    return f"{release.lower()}/{ROOTS[spec['environment']]}/{spec['example']}"


def test_paths_match_the_data_model_examples(datamodel):
    assert v5.mwm_path(103020000, release="dr19") == _example(datamodel, "mwmStar", "DR19")
    assert v5.mwm_path(99560000, release="dr20") == _example(datamodel, "mwmStar", "DR20")
    assert v5.mwm_path(103020000, kind="visit", release="dr19") == _example(datamodel, "mwmVisit", "DR19")
    assert v5.mwm_path(99560000, kind="visit", release="dr20") == _example(datamodel, "mwmVisit", "DR20")
    assert v5.sdss_v_apstar_path("2M13593121+6335074", healpix=10105, release="dr19", starver=59380) == \
        _example(datamodel, "apStar", "DR19")
    for release in ("DR19", "DR20"):
        assert v5.boss_spec_path(27021598150202075, field=112360, mjd=60000, release=release.lower()) == \
            _example(datamodel, "specFull", release)
    assert v5.astra_allstar_path("aspcap", release="dr19") == \
        _example(datamodel, "astraAllStarASPCAP", "DR19")
    assert v5.astra_allstar_path("BossNet", release="dr20") == \
        _example(datamodel, "astraAllStarBossNet", "DR20")


def test_path_rules_without_shared_data():
    # two folder levels from the SDSS_ID: (id // 100) % 100 and id % 100
    assert v5.sdss_id_group(123456789) == "67/89" and v5.sdss_id_group(5) == "00/05"
    assert v5.mwm_path(123456789, release="dr20") == \
        "dr20/spectro/astra/0.8.1/spectra/star/67/89/mwmStar-0.8.1-123456789.fits"
    # plate-era run2d: field unpadded, folder with a p suffix; DR20 groups fields by thousands
    assert v5.boss_spec_path(1, field=15000, mjd=59000, release="dr19", run2d="v6_0_4", lite=True) == \
        "dr19/spectro/boss/redux/v6_0_4/spectra/lite/15000p/59000/spec-15000-59000-1.fits"
    assert v5.boss_spec_path(1, field=2, mjd=3, release="dr20") == \
        "dr20/spectro/boss/redux/v6_2_1/spectra/daily/full/000XXX/000002/3/spec-000002-3-1.fits"
    with pytest.raises(ValueError, match="need apred"):
        v5.sdss_v_apstar_path("2M1", healpix=1, release="dr20")
    assert "/1.4/stars/lco25m/12/12345/apStar-1.4-lco25m-2M1.fits" in v5.sdss_v_apstar_path(
        "2M1", healpix=12345, telescope="lco25m", release="dr20", apred="1.4")
    # dispatch through sas.file_path, and what each release lacks
    assert sas.file_path("mwmvisit", 7, release="dr19").endswith("visit/00/07/mwmVisit-0.6.0-7.fits")
    assert sas.file_path("astraallstar", release="dr20", pipeline="thepayne").endswith(
        "astraAllStarThePayne-0.8.1.fits.gz")
    with pytest.raises(ValueError, match="exist in the SDSS-V releases"):
        sas.file_path("mwmstar", 1, release="dr17")
    with pytest.raises(ValueError, match="no allStar file"):
        sas.file_path("allstar", release="dr19")
    with pytest.raises(ValueError, match="HEALPix"):
        sas.file_path("apstar", "2M1", release="dr19")
    with pytest.raises(ValueError, match="field and mjd"):
        sas.file_path("specfull", 1, release="dr19")
    with pytest.raises(ValueError, match="invalid obj"):
        v5.sdss_v_apstar_path("../x", healpix=1, release="dr19")
    assert set(download_cli.KINDS) == set(sas.KINDS)


def test_download_mwmstar_and_read_it(http_server, tmp_path, monkeypatch):
    spectra = [Spectrum("boss", BOSS_WAVE, np.full(4648, 2.0), np.ones(4648), np.zeros(4648, int), {})]
    for sdss_id in (103020000, 99560000):
        f = write_mwm_star(tmp_path / f"{sdss_id}.fits", spectra, {"SDSS_ID": sdss_id}, layout="dr20")
        http_server.files["/sas/" + v5.mwm_path(sdss_id, release="dr20")] = f.read_bytes()
    monkeypatch.setenv("STARLABELS_SAS_URL", http_server.url + "/sas")
    cache = tmp_path / "cache"
    result = CliRunner().invoke(cli, ["download", "mwmstar", "--release", "dr20", "--cache", str(cache),
                                      "103020000", "99560000"])
    assert result.exit_code == 0, result.output
    paths = result.output.strip().splitlines()
    assert paths == [str(cache / v5.mwm_path(i, release="dr20")) for i in (103020000, 99560000)]
    assert [read_spectra(p)[0].meta["SDSS_ID"] for p in paths] == [103020000, 99560000]
    dry = CliRunner().invoke(cli, ["download", "astraallstar", "--release", "dr19", "--pipeline", "ASPCAP",
                                   "--dry-run"])
    assert dry.exit_code == 0 and "/sas/dr19/spectro/astra/0.6.0/summary/astraAllStarASPCAP-0.6.0.fits.gz" \
        in dry.output
    bad = CliRunner().invoke(cli, ["download", "mwmstar", "--release", "dr17", "1"])
    assert bad.exit_code == 2 and "SDSS-V releases" in bad.output
    missing = CliRunner().invoke(cli, ["download", "mwmvisit", "--release", "dr20", "--cache", str(cache),
                                       "5"])
    assert missing.exit_code == 1 and "HTTP 404" in missing.output
