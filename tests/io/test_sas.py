"""SAS path building and the downloader, against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import os

import pytest

from starlabels.io import sas

DATA = bytes(range(256)) * 400 + b"tail"  # 102,404 bytes
REL = "dr17/apogee/spectro/redux/dr17/stars/apo25m/K04_083+13/apStar-dr17-2M19485057+5005279.fits"


# --- paths --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("release", "telescope", "field", "apstar", "aspcap"),
    [
        ("dr14", "apo25m", 4102,
         "dr14/apogee/spectro/redux/r8/stars/apo25m/4102/apStar-r8-2M00001+0001.fits",
         "dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2/4102/aspcapStar-r8-l31c.2-2M00001+0001.fits"),
        ("dr16", "apo25m", "N7789",
         "dr16/apogee/spectro/redux/r12/stars/apo25m/N7789/apStar-r12-2M00001+0001.fits",
         "dr16/apogee/spectro/aspcap/r12/l33/apo25m/N7789/aspcapStar-r12-2M00001+0001.fits"),
        ("dr16", "lco25m", "293-37-C",
         "dr16/apogee/spectro/redux/r12/stars/lco25m/293-37-C/asStar-r12-2M00001+0001.fits",
         "dr16/apogee/spectro/aspcap/r12/l33/lco25m/293-37-C/aspcapStar-r12-2M00001+0001.fits"),
        ("dr17", "apo25m", "K04_083+13",
         "dr17/apogee/spectro/redux/dr17/stars/apo25m/K04_083+13/apStar-dr17-2M00001+0001.fits",
         "dr17/apogee/spectro/aspcap/dr17/synspec_rev1/apo25m/K04_083+13/aspcapStar-dr17-2M00001+0001.fits"),
        ("DR17", "lco25m", "293-37-C",
         "dr17/apogee/spectro/redux/dr17/stars/lco25m/293-37-C/asStar-dr17-2M00001+0001.fits",
         "dr17/apogee/spectro/aspcap/dr17/synspec_rev1/lco25m/293-37-C/aspcapStar-dr17-2M00001+0001.fits"),
    ],
)
def test_spectrum_paths(release, telescope, field, apstar, aspcap):
    kw = {"release": release, "telescope": telescope, "field": field}
    assert sas.apstar_path("2M00001+0001", **kw) == apstar
    assert sas.aspcapstar_path("2M00001+0001", **kw) == aspcap
    assert sas.file_path("apstar", "2M00001+0001", **kw) == apstar


def test_allstar_paths():
    assert sas.allstar_path("dr14") == "dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2/allStar-l31c.2.fits"
    assert sas.allstar_path("dr16") == "dr16/apogee/spectro/aspcap/r12/l33/allStar-r12-l33.fits"
    assert sas.allstar_path() == "dr17/apogee/spectro/aspcap/dr17/synspec_rev1/allStar-dr17-synspec_rev1.fits"
    assert sas.allstar_path("dr17", lite=True).endswith("/synspec_rev1/allStarLite-dr17-synspec_rev1.fits")
    with pytest.raises(ValueError, match="no allStarLite"):
        sas.allstar_path("dr14", lite=True)


def test_path_arguments_are_checked():
    with pytest.raises(ValueError, match="unknown APOGEE release"):
        sas.apstar_path("2M1", release="dr12", field="x")
    with pytest.raises(ValueError, match="telescope 'lco25m' not in dr14"):
        sas.apstar_path("2M1", release="dr14", telescope="lco25m", field=1)
    with pytest.raises(ValueError, match="LOCATION_ID"):
        sas.apstar_path("2M1", release="dr14")
    with pytest.raises(ValueError, match="invalid field"):
        sas.apstar_path("2M1", field="../../etc")
    with pytest.raises(ValueError, match="invalid APOGEE_ID"):
        sas.aspcapstar_path("a/b", field="F")
    with pytest.raises(ValueError, match="needs an APOGEE_ID"):
        sas.file_path("apstar", None, field="F")


def test_urls_and_cache_locations(tmp_path, monkeypatch):
    monkeypatch.delenv("STARLABELS_SAS_URL", raising=False)
    monkeypatch.delenv("STARLABELS_CACHE", raising=False)
    assert sas.sas_url(REL) == f"https://data.sdss.org/sas/{REL}"
    assert sas.cache_dir() == sas.Path.home() / ".cache" / "starlabels"
    monkeypatch.setenv("STARLABELS_SAS_URL", "http://mirror.example/sas/")
    monkeypatch.setenv("STARLABELS_CACHE", str(tmp_path / "env-cache"))
    assert sas.sas_url("a b/c.fits") == "http://mirror.example/sas/a%20b/c.fits"
    assert sas.sas_url("x", base_url="http://other/") == "http://other/x"
    assert sas.cache_path(REL) == tmp_path / "env-cache" / REL
    assert sas.cache_path(REL, cache=tmp_path / "c") == tmp_path / "c" / REL
    # a full URL under the SAS root maps to the same cache file as its relative path
    assert sas.cache_path(f"http://mirror.example/sas/{REL}") == sas.cache_path(REL)
    assert sas.cache_path("https://elsewhere.org:8080/f/x.fits", cache=tmp_path) == (
        tmp_path / "elsewhere.org_8080" / "f" / "x.fits")


# --- downloads ----------------------------------------------------------------------------
@pytest.fixture
def served(http_server):
    http_server.files["/sas/" + REL] = DATA
    return http_server


def _get(served, tmp_path, **kw):
    kw.setdefault("backoff", 0.0)
    return sas.download(REL, base_url=served.url + "/sas", cache=tmp_path / "cache", **kw)


def test_fresh_download_then_cache_hit(served, tmp_path):
    sha = hashlib.sha256(DATA).hexdigest()
    path = _get(served, tmp_path, checksum=f"sha256:{sha}", expected_size=len(DATA))
    assert path == tmp_path / "cache" / REL
    assert path.read_bytes() == DATA
    assert served.requests == [("/sas/" + REL, None)]
    assert not path.with_name(path.name + ".part").exists()
    again = _get(served, tmp_path, checksum=sha)  # bare hex digest: type from its length
    assert again == path and len(served.requests) == 1  # no request for a cached file


def test_resume_from_partial_part_file(served, tmp_path):
    final = tmp_path / "cache" / REL
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(DATA[:40_000])
    path = _get(served, tmp_path, checksum="md5:" + hashlib.md5(DATA).hexdigest())
    assert served.requests == [("/sas/" + REL, "bytes=40000-")]
    assert path.read_bytes() == DATA


def test_complete_part_file_is_finished_without_body(served, tmp_path):
    final = tmp_path / "cache" / REL
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(DATA)  # crashed just before the rename
    assert _get(served, tmp_path).read_bytes() == DATA
    assert served.requests == [("/sas/" + REL, f"bytes={len(DATA)}-")]  # answered 416


def test_server_ignoring_range_restarts_cleanly(served, tmp_path):
    served.ignore_range = True
    final = tmp_path / "cache" / REL
    final.parent.mkdir(parents=True)
    final.with_name(final.name + ".part").write_bytes(b"x" * 1000)
    assert _get(served, tmp_path).read_bytes() == DATA  # full body replaced the stale bytes


def test_retry_after_server_error(served, tmp_path):
    served.fail_next = 2
    assert _get(served, tmp_path, retries=3).read_bytes() == DATA
    assert len(served.requests) == 3


def test_truncated_response_is_resumed(served, tmp_path):
    served.truncate_next = 1
    path = _get(served, tmp_path, retries=2)
    assert path.read_bytes() == DATA
    assert served.requests == [("/sas/" + REL, None), ("/sas/" + REL, f"bytes={len(DATA) // 2}-")]


def test_retries_exhausted_keeps_part_for_later(served, tmp_path):
    served.truncate_next = 10
    with pytest.raises(sas.DownloadError, match="gave up after 3 attempt") as e:
        _get(served, tmp_path, retries=2)
    assert e.value.path.startswith(served.url)
    final = tmp_path / "cache" / REL
    assert not final.exists()
    part = final.with_name(final.name + ".part")
    assert 0 < part.stat().st_size < len(DATA) and DATA.startswith(part.read_bytes())
    kept = part.stat().st_size
    served.truncate_next = 0
    assert _get(served, tmp_path).read_bytes() == DATA  # a later call resumes
    assert served.requests[-1] == ("/sas/" + REL, f"bytes={kept}-")
    assert not part.exists()


def test_size_mismatch_leaves_no_file(served, tmp_path):
    with pytest.raises(sas.DownloadError, match=f"size mismatch: server has {len(DATA)} bytes, expected 99"):
        _get(served, tmp_path, expected_size=99)
    final = tmp_path / "cache" / REL
    assert not final.exists() and not final.with_name(final.name + ".part").exists()


def test_checksum_mismatch_leaves_no_file(served, tmp_path):
    with pytest.raises(sas.DownloadError, match="sha256 mismatch"):
        _get(served, tmp_path, checksum="sha256:" + "0" * 64)
    final = tmp_path / "cache" / REL
    assert not final.exists() and not final.with_name(final.name + ".part").exists()


def test_corrupt_cached_file_is_replaced(served, tmp_path):
    final = tmp_path / "cache" / REL
    final.parent.mkdir(parents=True)
    final.write_bytes(b"corrupt")
    assert _get(served, tmp_path).read_bytes() == b"corrupt"  # nothing to check against: kept
    assert served.requests == []
    path = _get(served, tmp_path, expected_size=len(DATA))
    assert path.read_bytes() == DATA and len(served.requests) == 1


def test_http_404_fails_at_once(http_server, tmp_path):
    with pytest.raises(sas.DownloadError, match="HTTP 404") as e:
        sas.download(http_server.url + "/missing.fits", cache=tmp_path, retries=5, backoff=0.0)
    assert len(http_server.requests) == 1
    assert e.value.path == http_server.url + "/missing.fits"
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_download_to_explicit_destination(served, tmp_path):
    dest = tmp_path / "out" / "star.fits"
    got = sas.download(f"{served.url}/sas/{REL}", dest, backoff=0.0)
    assert got == dest and dest.read_bytes() == DATA
    assert sorted(os.listdir(dest.parent)) == ["star.fits"]


def test_fetch_builds_path_and_downloads(served, tmp_path):
    path = sas.fetch("apstar", "2M19485057+5005279", release="dr17", telescope="apo25m",
                     field="K04_083+13", base_url=served.url + "/sas", cache=tmp_path)
    assert path.read_bytes() == DATA and path == tmp_path / REL


def test_bad_checksum_specification():
    with pytest.raises(ValueError, match="hash type"):
        sas.download("x", checksum="abc")
    with pytest.raises(ValueError, match="unsupported checksum"):
        sas.download("x", checksum="crc32:00")
