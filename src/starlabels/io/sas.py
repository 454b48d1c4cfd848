"""SDSS Science Archive Server (SAS) paths for APOGEE files, and a robust cached downloader.

Paths (relative to the SAS root, default ``https://data.sdss.org/sas``; ``{id}`` = APOGEE_ID):

DR14
  apStar      ``dr14/apogee/spectro/redux/r8/stars/{telescope}/{field}/apStar-r8-{id}.fits``
  aspcapStar  ``dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2/{field}/aspcapStar-r8-l31c.2-{id}.fits``
  allStar     ``dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2/allStar-l31c.2.fits``
DR16
  apStar      ``dr16/apogee/spectro/redux/r12/stars/{telescope}/{field}/apStar-r12-{id}.fits``
  aspcapStar  ``dr16/apogee/spectro/aspcap/r12/l33/{telescope}/{field}/aspcapStar-r12-{id}.fits``
  allStar     ``dr16/apogee/spectro/aspcap/r12/l33/allStar-r12-l33.fits``
DR17
  apStar      ``dr17/apogee/spectro/redux/dr17/stars/{telescope}/{field}/apStar-dr17-{id}.fits``
  aspcapStar  ``dr17/apogee/spectro/aspcap/dr17/synspec_rev1/{telescope}/{field}/``
              ``aspcapStar-dr17-{id}.fits``
  allStar     ``dr17/apogee/spectro/aspcap/dr17/synspec_rev1/allStar-dr17-synspec_rev1.fits``
              (``allStarLite-dr17-synspec_rev1.fits`` with ``lite=True``)

``{field}`` is the allStar ``FIELD`` (e.g. ``K04_083+13``) for DR16/17 and the numeric
``LOCATION_ID`` for DR14 (DR14 aspcapStar folders have no telescope level). Spectra from the
southern telescope (``lco25m``, DR16+) are named ``asStar-…`` instead of ``apStar-…``.

DR19 and DR20 (SDSS-V): mwmStar, mwmVisit, apStar on HEALPix paths, BOSS specFull/spec-lite and
the astraAllStar<Pipeline> tables; see :mod:`starlabels.io.sdss_v_paths`. :func:`file_path`
dispatches on the kind for every release.

The cache (argument ``cache``, else ``$STARLABELS_CACHE``, else ``~/.cache/starlabels``) mirrors
the SAS path; the base URL comes from ``base_url``, else ``$STARLABELS_SAS_URL``.
:func:`download` writes ``<file>.part`` and renames it only after the size (Content-Length /
Content-Range, optional ``expected_size``) and optional checksum are verified; it resumes a
partial ``.part`` with an HTTP Range request, retries connection errors, truncated bodies and
HTTP 5xx/408/429 with exponential backoff, and never contacts the server for a complete cached
file.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from starlabels import __version__
from starlabels.errors import InputFileError
from starlabels.io import sdss_v_paths as v5
from starlabels.utils import progress_enabled

try:  # advisory lock so two processes never append to the same .part (POSIX only)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_SAS_URL",
    "KINDS",
    "RELEASES",
    "SDSSV_KINDS",
    "TELESCOPES",
    "DownloadError",
    "Release",
    "allstar_path",
    "apstar_path",
    "aspcapstar_path",
    "cache_dir",
    "cache_path",
    "download",
    "fetch",
    "file_path",
    "sas_base_url",
    "sas_url",
]

DEFAULT_SAS_URL = "https://data.sdss.org/sas"
TELESCOPES: tuple[str, ...] = ("apo25m", "lco25m", "apo1m")
KINDS: tuple[str, ...] = ("apstar", "aspcapstar", "allstar", "mwmstar", "mwmvisit", "specfull", "speclite",
                          "astraallstar")
#: Kinds that exist only in the SDSS-V releases (DR19, DR20).
SDSSV_KINDS: tuple[str, ...] = ("mwmstar", "mwmvisit", "specfull", "speclite", "astraallstar")
_RETRY_HTTP = {408, 429}
_SAFE_PART = re.compile(r"^[A-Za-z0-9_.+\-]+$")
_HASH_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256"}


class DownloadError(InputFileError):
    """A download failed (HTTP error, retries exhausted, size or checksum mismatch).

    ``path`` is the URL; ``problem`` says what went wrong. Subclass of InputFileError, so
    callers handling bad input files catch it too.
    """


@dataclass(frozen=True)
class Release:
    """Where one APOGEE data release keeps its files on the SAS."""

    name: str
    apred: str  # reduction version in apStar names: r8, r12, dr17
    redux: str  # folder with stars/{telescope}/{field}/
    aspcap: str  # folder with the aspcapStar folders and the allStar file
    aspcap_prefix: str  # aspcapStar file-name prefix (before "-{APOGEE_ID}.fits")
    aspcap_by_telescope: bool  # aspcapStar folders are {telescope}/{field} (else {field})
    allstar: str
    allstar_lite: str | None
    telescopes: tuple[str, ...]


RELEASES: dict[str, Release] = {
    "dr14": Release(
        "dr14", "r8", "dr14/apogee/spectro/redux/r8", "dr14/apogee/spectro/redux/r8/stars/l31c/l31c.2",
        "aspcapStar-r8-l31c.2", False, "allStar-l31c.2.fits", None, ("apo25m", "apo1m"),
    ),
    "dr16": Release(
        "dr16", "r12", "dr16/apogee/spectro/redux/r12", "dr16/apogee/spectro/aspcap/r12/l33",
        "aspcapStar-r12", True, "allStar-r12-l33.fits", None, TELESCOPES,
    ),
    "dr17": Release(
        "dr17", "dr17", "dr17/apogee/spectro/redux/dr17",
        "dr17/apogee/spectro/aspcap/dr17/synspec_rev1", "aspcapStar-dr17", True,
        "allStar-dr17-synspec_rev1.fits", "allStarLite-dr17-synspec_rev1.fits", TELESCOPES,
    ),
}


# ----------------------------------------------------------------------------------------
# paths
# ----------------------------------------------------------------------------------------
def _release(release: str) -> Release:
    try:
        return RELEASES[str(release).lower()]
    except KeyError:
        raise ValueError(f"unknown APOGEE release {release!r}; known: {sorted(RELEASES)}") from None


def _check(rel: Release, telescope: str, field: str | int | None, apogee_id: str) -> tuple[str, str, str]:
    telescope = str(telescope).strip().lower()
    if telescope not in rel.telescopes:
        raise ValueError(f"telescope {telescope!r} not in {rel.name}: {list(rel.telescopes)}")
    if field is None or str(field).strip() == "":
        what = "LOCATION_ID" if rel.name == "dr14" else "FIELD"
        raise ValueError(f"{rel.name} spectra need the star's field ({what} in allStar)")
    field_s, apogee_id = str(field).strip(), str(apogee_id).strip()
    for name, value in (("field", field_s), ("APOGEE_ID", apogee_id)):
        if not _SAFE_PART.match(value) or value in (".", ".."):
            raise ValueError(f"invalid {name} {value!r}")
    return telescope, field_s, apogee_id


def apstar_path(
    apogee_id: str, *, release: str = "dr17", telescope: str = "apo25m", field: str | int | None = None
) -> str:
    """SAS path (relative, ``/``-separated) of a star's apStar file (asStar for lco25m)."""
    rel = _release(release)
    telescope, field_s, apogee_id = _check(rel, telescope, field, apogee_id)
    prefix = "asStar" if telescope == "lco25m" else "apStar"
    return f"{rel.redux}/stars/{telescope}/{field_s}/{prefix}-{rel.apred}-{apogee_id}.fits"


def aspcapstar_path(
    apogee_id: str, *, release: str = "dr17", telescope: str = "apo25m", field: str | int | None = None
) -> str:
    """SAS path of a star's aspcapStar file (DR14: ``field`` is the LOCATION_ID folder)."""
    rel = _release(release)
    telescope, field_s, apogee_id = _check(rel, telescope, field, apogee_id)
    folder = f"{rel.aspcap}/{telescope}/{field_s}" if rel.aspcap_by_telescope else f"{rel.aspcap}/{field_s}"
    return f"{folder}/{rel.aspcap_prefix}-{apogee_id}.fits"


def allstar_path(release: str = "dr17", *, lite: bool = False) -> str:
    """SAS path of the release's allStar catalogue (``lite``: DR17 allStarLite)."""
    rel = _release(release)
    if lite:
        if rel.allstar_lite is None:
            raise ValueError(f"{rel.name} has no allStarLite file")
        return f"{rel.aspcap}/{rel.allstar_lite}"
    return f"{rel.aspcap}/{rel.allstar}"


def file_path(kind: str, identifier: str | int | None = None, *, release: str = "dr17",
              telescope: str = "apo25m", field: str | int | None = None, lite: bool = False,
              healpix: int | str | None = None, v_astra: str | None = None, apred: str | None = None,
              run2d: str | None = None, mjd: int | str | None = None, pipeline: str | None = None) -> str:
    """SAS path of ``kind`` for any release.

    DR14–DR17: ``"apstar"``, ``"aspcapstar"`` (``identifier`` = APOGEE_ID, ``telescope``, ``field``),
    ``"allstar"`` (``lite``). DR19/DR20: ``"apstar"`` (``identifier`` = APOGEE object name,
    ``healpix``, ``telescope``, ``apred``), ``"mwmstar"``/``"mwmvisit"`` (``identifier`` = SDSS_ID,
    ``v_astra``), ``"specfull"``/``"speclite"`` (``identifier`` = CATALOGID, ``field``, ``mjd``,
    ``run2d``), ``"astraallstar"`` (``pipeline``, e.g. ``"ASPCAP"``; ``v_astra``).
    """
    kind = kind.lower()
    if kind not in KINDS:
        raise ValueError(f"unknown file kind {kind!r}; known: {list(KINDS)}")
    sdss_v = str(release).lower() in v5.SDSSV_RELEASES
    if kind in SDSSV_KINDS and not sdss_v:
        raise ValueError(f"{kind} files exist in the SDSS-V releases {sorted(v5.SDSSV_RELEASES)}, "
                         f"not in {release!r}")
    if kind == "astraallstar":
        if not pipeline:
            raise ValueError("astraallstar needs a pipeline (e.g. ASPCAP, BossNet)")
        return v5.astra_allstar_path(pipeline, release=release, v_astra=v_astra)
    if kind == "allstar":
        if sdss_v:
            raise ValueError(f"{release} has no allStar file; use astraallstar with a pipeline")
        return allstar_path(release, lite=lite)
    if identifier is None or str(identifier).strip() == "":
        what = {"mwmstar": "an SDSS_ID", "mwmvisit": "an SDSS_ID", "specfull": "a CATALOGID",
                "speclite": "a CATALOGID"}.get(kind, "an APOGEE_ID")
        raise ValueError(f"{kind} needs {what}")
    if kind in ("mwmstar", "mwmvisit"):
        return v5.mwm_path(identifier, kind=kind[3:], release=release, v_astra=v_astra)
    if kind in ("specfull", "speclite"):
        if field is None or mjd is None:
            raise ValueError(f"{kind} needs the field and mjd of the coadd")
        return v5.boss_spec_path(identifier, field=field, mjd=mjd, release=release, run2d=run2d,
                                 lite=kind == "speclite")
    if kind == "apstar" and sdss_v:
        if healpix is None:
            raise ValueError(f"{release} apStar files are on HEALPix paths: give the star's healpix")
        return v5.sdss_v_apstar_path(str(identifier), healpix=healpix, telescope=telescope, release=release,
                                     apred=apred)
    if kind == "aspcapstar" and sdss_v:
        raise ValueError(f"{release} has no aspcapStar files; use astraallstar (ASPCAP) for labels")
    build = apstar_path if kind == "apstar" else aspcapstar_path
    return build(str(identifier), release=release, telescope=telescope, field=field)


def sas_base_url(base_url: str | None = None) -> str:
    """The SAS root URL: ``base_url``, else ``$STARLABELS_SAS_URL``, else the public SAS."""
    url = base_url or os.environ.get("STARLABELS_SAS_URL") or DEFAULT_SAS_URL
    return url.rstrip("/")


def sas_url(path: str, base_url: str | None = None) -> str:
    """Full URL of a SAS-relative ``path`` (characters outside ``/+-._~`` percent-encoded)."""
    return f"{sas_base_url(base_url)}/{urllib.parse.quote(path.lstrip('/'), safe='/+-._~')}"


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache root: ``cache``, else ``$STARLABELS_CACHE``, else ``~/.cache/starlabels``."""
    root = cache or os.environ.get("STARLABELS_CACHE") or Path.home() / ".cache" / "starlabels"
    return Path(root).expanduser()


def _is_url(s: str) -> bool:
    return urllib.parse.urlsplit(s).scheme in ("http", "https")


def _relative(url_or_path: str, base_url: str | None) -> tuple[str, str]:
    """(url, cache-relative path) for a SAS path or a URL (URLs outside the SAS root are
    cached under ``<host>/<path>``)."""
    if not _is_url(url_or_path):
        rel = url_or_path.lstrip("/")
        return sas_url(rel, base_url), rel
    url = url_or_path
    base = sas_base_url(base_url) + "/"
    if url.startswith(base):
        rel = urllib.parse.unquote(url[len(base):])
    else:
        parts = urllib.parse.urlsplit(url)
        rel = f"{parts.netloc.replace(':', '_')}/{urllib.parse.unquote(parts.path).lstrip('/')}"
    return url, rel


def cache_path(url_or_path: str, cache: str | os.PathLike[str] | None = None,
               base_url: str | None = None) -> Path:
    """Where :func:`download` keeps ``url_or_path``: the cache root + the SAS-relative path."""
    _, rel = _relative(url_or_path, base_url)
    parts = [p for p in rel.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"cannot cache {url_or_path!r}: no usable file path")
    return cache_dir(cache).joinpath(*parts)


# ----------------------------------------------------------------------------------------
# download
# ----------------------------------------------------------------------------------------
class _RetryError(Exception):
    """A transient failure: try again (resuming what is in the .part file)."""


def _parse_checksum(checksum: str | tuple[str, str] | None) -> tuple[str, str] | None:
    if checksum is None:
        return None
    if isinstance(checksum, tuple):
        algo, digest = checksum
    elif ":" in checksum:
        algo, digest = checksum.split(":", 1)
    else:
        digest = checksum
        algo = _HASH_BY_LEN.get(len(checksum.strip()), "")
        if not algo:
            raise ValueError(f"cannot tell the hash type of checksum {checksum!r}; use 'sha256:<hex>'")
    algo, digest = algo.strip().lower(), digest.strip().lower()
    if algo not in ("md5", "sha1", "sha256"):
        raise ValueError(f"unsupported checksum type {algo!r} (md5, sha1, sha256)")
    return algo, digest


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verify(path: Path, size: int | None, checksum: tuple[str, str] | None) -> str | None:
    """None when ``path`` has the expected size and checksum, else the problem."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"size mismatch: {actual} bytes, expected {size}"
    if checksum is not None:
        got = _digest(path, checksum[0])
        if got != checksum[1]:
            return f"{checksum[0]} mismatch: got {got}, expected {checksum[1]}"
    return None


@contextlib.contextmanager
def _locked(part: Path) -> Iterator[BinaryIO]:
    """The .part file opened for appending, exclusively locked (POSIX) while in use."""
    part.parent.mkdir(parents=True, exist_ok=True)
    fh = open(part, "ab")  # noqa: SIM115 - closed in finally
    try:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield fh
    finally:
        fh.close()


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(start, total) from a Content-Range header ``bytes a-b/total`` or ``bytes */total``."""
    m = re.match(r"bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _transfer(url: str, fh: BinaryIO, *, timeout: float, chunk_size: int, desc: str,
              expected_size: int | None) -> int | None:
    """One HTTP attempt appending to ``fh`` (resuming from its size). Returns the total size
    the server announced (None when unknown). Raises _RetryError for transient failures."""
    have = fh.seek(0, os.SEEK_END)
    headers = {"User-Agent": f"starlabels/{__version__} (+python urllib)"}
    if have:
        headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have:  # nothing left to send, or our .part is bogus
            _, total = _content_range(e.headers.get("Content-Range") if e.headers else None)
            if total == have:
                return total
            fh.truncate(0)
            raise _RetryError(f"server refused to resume at byte {have} (HTTP 416); restarting") from None
        if e.code >= 500 or e.code in _RETRY_HTTP:
            raise _RetryError(f"HTTP {e.code} {e.reason}") from None
        raise DownloadError(url, f"HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _RetryError(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None

    with resp:
        length_h = resp.headers.get("Content-Length")
        length = int(length_h) if length_h and length_h.isdigit() else None
        if resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != have:
                fh.truncate(0)
                raise _RetryError(f"server resumed at byte {start}, asked for {have}; restarting")
        else:  # 200: the whole file, whatever we asked for
            if have:
                fh.truncate(0)
                have = 0
            total = length
        if total is not None and expected_size is not None and total != expected_size:
            raise DownloadError(url, f"size mismatch: server has {total} bytes, expected {expected_size}")
        from tqdm.auto import tqdm

        got = 0
        with tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=desc, disable=not progress_enabled(), leave=False, dynamic_ncols=True) as bar:
            try:
                while chunk := resp.read(chunk_size):
                    fh.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as e:  # reset, timeout, IncompleteRead
                fh.flush()
                raise _RetryError(f"connection lost after {have + got} bytes ({type(e).__name__})") from None
            finally:
                fh.flush()
        if length is not None and got < length:
            raise _RetryError(f"connection closed after {have + got} of {have + length} bytes")
        os.fsync(fh.fileno())
    return total


def download(
    url_or_path: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    base_url: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    expected_size: int | None = None,
    checksum: str | tuple[str, str] | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    chunk_size: int = 1 << 20,
    force: bool = False,
) -> Path:
    """Download a SAS path or URL into the cache (or ``dest``) and return the local path.

    Args:
        url_or_path: ``http(s)://…`` URL or a SAS-relative path (see :func:`apstar_path`).
        dest: explicit output file (default: :func:`cache_path`).
        base_url: SAS root for relative paths (default ``$STARLABELS_SAS_URL`` or the public SAS).
        cache: cache root (default ``$STARLABELS_CACHE`` or ``~/.cache/starlabels``).
        expected_size: bytes the file must have (checked against the server's size before
            downloading and against the file after).
        checksum: ``"md5:<hex>"``, ``"sha1:<hex>"``, ``"sha256:<hex>"``, ``(algo, hex)`` or a
            bare hex digest (type from its length).
        retries: further attempts after connection errors, truncated bodies and HTTP
            5xx/408/429; attempt k waits ``backoff · 2**(k-1)`` s. Each attempt resumes.
        timeout: socket timeout per attempt, s.
        chunk_size: bytes per read.
        force: download even when a verified cached copy exists.

    Returns:
        The local file. An existing file that passes the size/checksum checks is returned
        without any request; one that fails them is replaced (only once the new copy is
        verified).

    Raises:
        DownloadError: HTTP 4xx, retries exhausted (the ``.part`` is kept for a later resume),
            or size/checksum mismatch (the ``.part`` is deleted, no final file is written).
    """
    url, _ = _relative(url_or_path, base_url)
    final = Path(dest) if dest is not None else cache_path(url_or_path, cache, base_url)
    digest = _parse_checksum(checksum)
    if final.is_file() and not force and _verify(final, expected_size, digest) is None:
        return final
    part = final.with_name(final.name + ".part")
    with _locked(part) as fh:
        # another process may have finished while we waited for the lock
        if final.is_file() and not force and _verify(final, expected_size, digest) is None:
            if fh.seek(0, os.SEEK_END) == 0:
                with contextlib.suppress(OSError):
                    part.unlink()
            return final
        attempt = 0
        while True:
            try:
                total = _transfer(url, fh, timeout=timeout, chunk_size=chunk_size,
                                  desc=final.name, expected_size=expected_size)
                break
            except _RetryError as e:
                attempt += 1
                if attempt > retries:
                    raise DownloadError(
                        url, f"gave up after {attempt} attempt(s): {e}; partial data kept in {part}"
                    ) from None
                time.sleep(backoff * 2 ** (attempt - 1))
            except DownloadError:
                if fh.seek(0, os.SEEK_END) == 0:  # leave no empty .part behind
                    with contextlib.suppress(OSError):
                        part.unlink()
                raise
        problem = _verify(part, expected_size if expected_size is not None else total, digest)
        if problem is not None:
            with contextlib.suppress(OSError):
                part.unlink()
            raise DownloadError(url, f"{problem}; nothing written to {final}")
        if fcntl is None:  # pragma: no cover - Windows cannot rename an open file
            fh.close()
        os.replace(part, final)
    return final


def fetch(
    kind: str,
    identifier: str | int | None = None,
    *,
    release: str = "dr17",
    telescope: str = "apo25m",
    field: str | int | None = None,
    lite: bool = False,
    healpix: int | str | None = None,
    v_astra: str | None = None,
    apred: str | None = None,
    run2d: str | None = None,
    mjd: int | str | None = None,
    pipeline: str | None = None,
    **download_kwargs: Any,
) -> Path:
    """Build the SAS path of ``kind`` (see :func:`file_path`) and :func:`download` it."""
    path = file_path(kind, identifier, release=release, telescope=telescope, field=field, lite=lite,
                     healpix=healpix, v_astra=v_astra, apred=apred, run2d=run2d, mjd=mjd, pipeline=pipeline)
    return download(path, **download_kwargs)
