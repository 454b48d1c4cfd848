"""SDSS Science Archive Server (SAS): a robust cached downloader (paths: :mod:`.sas_paths`, re-exported here).

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
from pathlib import Path
from typing import Any, BinaryIO

from starlabels import __version__
from starlabels.errors import InputFileError
from starlabels.io.sas_paths import (
    KINDS,
    RELEASES,
    SDSSV_KINDS,
    TELESCOPES,
    Release,
    allstar_path,
    apstar_path,
    aspcapstar_path,
    file_path,
)
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
_RETRY_HTTP = {408, 429}
_HASH_BY_LEN = {32: "md5", 40: "sha1", 64: "sha256"}


class DownloadError(InputFileError):
    """A download failed (HTTP error, retries exhausted, size or checksum mismatch).

    ``path`` is the URL; ``problem`` says what went wrong. Subclass of InputFileError, so
    callers handling bad input files catch it too.
    """


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
