"""``starlabels download`` end to end against a local HTTP server serving real-layout files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.io import read_allstar, read_apstar, sas, write_apstar


@pytest.fixture
def sas_env(http_server, tmp_path, monkeypatch, star):
    """Server with two DR17 apStar files (written by write_apstar) and a small allStar CSV."""
    ids = {"2M00000001+0000001": ("apo25m", "FLD_A"), "2M00000002-0000002": ("lco25m", "FLD_B")}
    for i, (apogee_id, (tel, fld)) in enumerate(ids.items()):
        f = tmp_path / f"src{i}.fits"
        write_apstar(f, star["flux"] * (i + 1), star["error"], star["bitmask"],
                     dict(star["meta"], APOGEE_ID=apogee_id))
        rel = sas.apstar_path(apogee_id, release="dr17", telescope=tel, field=fld)
        http_server.files["/sas/" + rel] = f.read_bytes()
    allstar = pd.DataFrame({"APOGEE_ID": list(ids), "TELESCOPE": [t for t, _ in ids.values()],
                            "FIELD": [f for _, f in ids.values()], "TEFF": [4000.0, 5000.0]})
    allstar.to_csv(tmp_path / "allStar.csv", index=False)
    Table.from_pandas(allstar).write(tmp_path / "allStarLite.fits")
    lite = sas.allstar_path("dr17", lite=True)
    http_server.files["/sas/" + lite] = (tmp_path / "allStarLite.fits").read_bytes()
    monkeypatch.setenv("STARLABELS_SAS_URL", http_server.url + "/sas")
    monkeypatch.setenv("STARLABELS_CACHE", str(tmp_path / "cache"))
    return http_server, ids, tmp_path


def test_help():
    result = CliRunner().invoke(cli, ["download", "--help"])
    assert result.exit_code == 0
    for word in ("apstar|aspcapstar|allstar", "--release", "--telescope", "--field", "--cache"):
        assert word in result.output


def test_download_apstar_and_read_it(sas_env, star):
    server, _, tmp_path = sas_env
    cache = tmp_path / "explicit-cache"
    result = CliRunner().invoke(cli, ["download", "apstar", "--release", "dr17", "--telescope", "apo25m",
                                      "--field", "FLD_A", "--cache", str(cache), "2M00000001+0000001"])
    assert result.exit_code == 0, result.output
    local = result.output.strip().splitlines()[-1]
    expected = cache / sas.apstar_path("2M00000001+0000001", field="FLD_A")
    assert local == str(expected)
    s = read_apstar(local)
    np.testing.assert_array_equal(s.flux, star["flux"])
    assert s.meta["APOGEE_ID"] == "2M00000001+0000001"
    # second run: served from the cache, no new request
    n = len(server.requests)
    again = CliRunner().invoke(cli, ["download", "apstar", "--field", "FLD_A", "--cache", str(cache),
                                     "2M00000001+0000001"])
    assert again.exit_code == 0 and len(server.requests) == n


def test_download_from_allstar_table(sas_env, star):
    _, _, tmp_path = sas_env
    result = CliRunner().invoke(cli, ["download", "apstar", "--from-allstar", str(tmp_path / "allStar.csv")])
    assert result.exit_code == 0, result.output
    paths = result.output.strip().splitlines()
    assert len(paths) == 2 and "/lco25m/FLD_B/asStar-dr17-2M00000002-0000002.fits" in paths[1]
    np.testing.assert_array_equal(read_apstar(paths[1]).flux, star["flux"] * 2)


def test_download_allstar_lite(sas_env):
    result = CliRunner().invoke(cli, ["download", "allstar", "--lite"])
    assert result.exit_code == 0, result.output
    t = read_allstar(result.output.strip(), labels=("TEFF",))
    assert t.labels[:, 0].tolist() == [4000.0, 5000.0]


def test_usage_errors_and_failures(sas_env):
    runner = CliRunner()
    no_field = runner.invoke(cli, ["download", "apstar", "2M00000001+0000001"])
    assert no_field.exit_code == 2 and "FIELD" in no_field.output
    no_ids = runner.invoke(cli, ["download", "aspcapstar", "--field", "X"])
    assert no_ids.exit_code == 2
    missing = runner.invoke(cli, ["download", "apstar", "--field", "FLD_A", "--retries", "0",
                                  "2M00000001+0000001", "2M99999999+9999999"])
    assert missing.exit_code == 1
    assert "HTTP 404" in missing.output and "1 of 2 download(s) failed" in missing.output
    assert len([ln for ln in missing.output.splitlines() if ln.endswith(".fits")]) == 1


def test_dry_run_makes_no_request(sas_env):
    server, _, _ = sas_env
    result = CliRunner().invoke(cli, ["download", "aspcapstar", "--release", "dr16", "--field", "N7789",
                                      "2M00000001+0000001", "--dry-run"])
    assert result.exit_code == 0 and server.requests == []
    assert result.output.startswith(
        f"{server.url}/sas/dr16/apogee/spectro/aspcap/r12/l33/apo25m/N7789/aspcapStar-r12-2M00000001+0000001.fits"
    )
