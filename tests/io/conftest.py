"""Fixtures for the io tests: a local HTTP file server on 127.0.0.1 and small apStar inputs."""

from __future__ import annotations

import http.server
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from astropy.io import fits


@dataclass
class ServerState:
    """What the test server serves and how it misbehaves; ``requests`` logs (path, Range)."""

    files: dict[str, bytes] = field(default_factory=dict)
    fail_next: int = 0  # answer the next N requests with HTTP 500
    truncate_next: int = 0  # send only half of the body of the next N responses, then close
    ignore_range: bool = False  # answer Range requests with the full file (HTTP 200)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(state: ServerState) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection; EOF ends a short body

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            rng = self.headers.get("Range")
            with state.lock:
                state.requests.append((self.path, rng))
                fail = state.fail_next > 0
                if fail:
                    state.fail_next -= 1
            if fail:
                self.send_response(500, "Internal Server Error")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = state.files.get(urllib.parse.unquote(self.path))
            if data is None:
                self.send_response(404, "Not Found")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, body = 200, data
            m = re.fullmatch(r"bytes=(\d+)-", rng or "")
            if m and not state.ignore_range:
                start = int(m.group(1))
                if start >= len(data):
                    self.send_response(416, "Range Not Satisfiable")
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, body = 206, data[start:]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                start = len(data) - len(body)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            with state.lock:
                cut = state.truncate_next > 0
                if cut:
                    state.truncate_next -= 1
            self.wfile.write(body[: len(body) // 2] if cut else body)
            self.wfile.flush()

    return Handler


@pytest.fixture
def http_server(monkeypatch: pytest.MonkeyPatch):
    """A threaded HTTP server on 127.0.0.1 (random port) serving ``state.files`` by path."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = ServerState()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def star() -> dict:
    """A small but complete apStar input: combined flux/error/bitmask with a few NaNs, meta."""
    rng = np.random.default_rng(7)
    n = 8575
    flux = (1000 + 50 * rng.standard_normal(n)).astype(np.float32)
    error = (10 + rng.random(n)).astype(np.float32)
    bitmask = np.zeros(n, np.int32)
    bitmask[rng.choice(n, 40, replace=False)] = 1 << 12  # SIG_SKYLINE
    bitmask[100] = 1 | 4096
    flux[:5] = np.nan  # like the detector edges of DR17 files
    error[:5] = np.nan
    flux[3000] = np.nan  # flux NaN with a finite error
    error[4000] = np.inf
    meta = {"APOGEE_ID": "2M00000001+0000001", "RA": 12.5, "DEC": -3.25, "SNR": 95.5,
            "VHELIO": -12.75, "J": 11.0, "H": 10.5, "K": 10.25, "FIELD": "TEST_FLD"}
    return {"flux": flux, "error": error, "bitmask": bitmask, "meta": meta}


# ------------------------------------------------------------------------------------------------
# Files written from the SDSS data-model YAMLs (../shared/data/sdss-datamodel): every HDU, header
# card and column as the YAML describes it for a release, so the readers are tested on the
# authoritative layouts rather than on layouts we invented.
# ------------------------------------------------------------------------------------------------
_STRUCTURAL = {"SIMPLE", "BITPIX", "NAXIS", "EXTEND", "XTENSION", "PCOUNT", "GCOUNT", "TFIELDS",
               "CHECKSUM", "DATASUM", "BSCALE", "BZERO", "EXTNAME"}
_STRUCTURAL_PREFIX = re.compile(r"^(NAXIS\d+|TTYPE\d+|TFORM\d+|TDIM\d+|TUNIT\d+|TNULL\d+|TZERO\d+|TSCAL\d+)$")
_YAML_TYPE = re.compile(r"^(?P<base>[a-z]+)(?P<bits>\d*)(?:\[(?P<n>\d+)\])?$")
_FITS_CODE = {("int", "16"): "I", ("int", "32"): "J", ("int", "64"): "K", ("float", "32"): "E",
              ("float", "64"): "D", ("bool", ""): "L", ("uint", "8"): "B"}
_NUMPY = {"I": np.int16, "J": np.int32, "K": np.int64, "E": np.float32, "D": np.float64, "L": bool,
          "B": np.uint8}


class DataModel:
    """Builds FITS files from ``<name>.yaml`` of the SDSS data model.

    ``hdulist(name, release, rows={hdu: n}, values={hdu: {column: array}}, images={hdu: array})``:
    HDU0's cards come from the YAML with its example values; image HDUs get the YAML's shape and
    BITPIX (or the given array); tables get every YAML column with its YAML type, ``rows[hdu]``
    rows (default the YAML's NAXIS2) and zeros / empty strings unless ``values`` gives data.
    Array columns typed ``[0]`` in an empty example HDU take the length the same column has in a
    non-empty HDU of the same file (any release): NPIXELS of the HDU when that is what it was.
    """

    def __init__(self, folder):
        self.folder = folder
        self._cache: dict[str, dict] = {}

    def spec(self, name: str) -> dict:
        """The parsed YAML (cached; releases refer to each other through YAML anchors)."""
        if name not in self._cache:
            import yaml

            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # specFull.yaml has 131k lines
            self._cache[name] = yaml.load((self.folder / f"{name}.yaml").read_text(), Loader=loader)
        return self._cache[name]

    def hdus(self, name: str, release: str) -> list[dict]:
        hdus = self.spec(name)["releases"][release]["hdus"]
        return [hdus[k] for k in sorted(hdus, key=lambda k: int(k[3:]))]

    @staticmethod
    def cards(hdu: dict) -> dict:
        return {c["key"]: c["value"] for c in hdu.get("header", []) if c["key"]}

    def _array_lengths(self, name: str) -> dict[str, tuple[int, bool]]:
        """column → (length, is_per_pixel) from non-empty array types anywhere in the file's YAML."""
        out: dict[str, tuple[int, bool]] = {}
        for release in self.spec(name)["releases"]:
            for hdu in self.hdus(name, release):
                npix = self.cards(hdu).get("NPIXELS")
                for col in (hdu.get("columns") or {}).values():
                    m = _YAML_TYPE.match(col["type"])
                    if m and m.group("n") and int(m.group("n")) > 0:
                        n = int(m.group("n"))
                        out.setdefault(col["name"], (n, npix is not None and n == int(npix)))
        return out

    def _header(self, header, hdu: dict) -> None:
        for c in hdu.get("header", []):
            key, value, comment = c["key"] or "", c["value"], c.get("comment") or ""
            if key in _STRUCTURAL or _STRUCTURAL_PREFIX.match(key):
                continue
            if key in ("", "COMMENT", "HISTORY"):
                header.append((key, "" if value is None else str(value)), end=True)
            else:
                header.append((key, value, comment[:40]), end=True)

    def hdulist(self, name: str, release: str, rows: dict | None = None, values: dict | None = None,
                images: dict | None = None) -> fits.HDUList:
        rows, values, images = rows or {}, values or {}, images or {}
        lengths = self._array_lengths(name)
        out = []
        for i, hdu in enumerate(self.hdus(name, release)):
            cards = self.cards(hdu)
            if i == 0:
                h = fits.PrimaryHDU()
                self._header(h.header, hdu)
                out.append(h)
                continue
            if hdu.get("columns") is None and cards.get("XTENSION", "IMAGE") == "IMAGE":
                data = images.get(i)
                if data is None and int(cards.get("NAXIS", 0) or 0) > 0:
                    shape = tuple(int(cards[f"NAXIS{k}"]) for k in range(int(cards["NAXIS"]), 0, -1))
                    dtype = {8: np.uint8, 16: np.int16, 32: np.int32, 64: np.int64, -32: np.float32,
                             -64: np.float64}[int(cards["BITPIX"])]
                    data = np.zeros(shape, dtype)
                h = fits.ImageHDU(data)
            else:
                n_rows = int(rows.get(i, cards.get("NAXIS2", 0) or 0))
                given = values.get(i, {})
                columns = []
                for col in (hdu.get("columns") or {}).values():
                    m = _YAML_TYPE.match(col["type"])
                    assert m, col["type"]
                    base, bits, n = m.group("base"), m.group("bits"), m.group("n")
                    cname = col["name"]
                    if base == "char":
                        v = np.asarray(given.get(cname, [""] * n_rows)).astype(str)
                        width = max([int(n or 1), *(len(x) for x in v.tolist())])
                        columns.append(fits.Column(cname, f"{width}A", array=v))
                        continue
                    code = _FITS_CODE[(base, bits)]
                    if n is None:
                        v = np.asarray(given.get(cname, np.zeros(n_rows, _NUMPY[code])))
                        columns.append(fits.Column(cname, code, array=v))
                        continue
                    length = int(n)
                    if length == 0 and n_rows:
                        known, per_pixel = lengths.get(cname, (1, False))
                        length = int(cards["NPIXELS"]) if per_pixel and "NPIXELS" in cards else known
                    v = given.get(cname)
                    if v is None:
                        v = np.zeros((n_rows, length), _NUMPY[code])
                    v = np.asarray(v).reshape(n_rows, length)
                    columns.append(fits.Column(cname, f"{length}{code}", array=v if n_rows else None,
                                               dim=f"({length})"))
                h = fits.BinTableHDU.from_columns(columns, nrows=n_rows)
                if n_rows == 0:
                    h = fits.BinTableHDU(data=h.data[:0], header=h.header)
            if hdu.get("name") and hdu["name"] != "PRIMARY":
                h.header["EXTNAME"] = hdu["name"]
            self._header(h.header, hdu)
            out.append(h)
        hdul = fits.HDUList(out)
        for h in hdul:
            h.add_checksum()
        return hdul

    def write_mwm(self, name: str, release: str, path, *, n_apogee: int,
                  pixels: Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
                  ) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Write an ``name`` (mwmStar or mwmVisit) file of ``release`` to ``path`` with one
        BOSS/LCO row (HDU 2) and ``n_apogee`` APOGEE/APO rows (HDU 3); HDUs 1 and 4 stay empty.

        ``pixels(n_rows, n_pixels)`` gives each HDU's ``(flux, ivar, pixel_flags)`` (the caller's
        values and edge cases); row ``r`` has SNR ``r + 10.5``, TELESCOPE lco25m (HDU 2) or apo25m
        (HDU 3), OBJ ``2M00000001+0000001`` on the APOGEE rows and, in an mwmVisit, MJD
        ``60000 + r``. Returns ``{hdu: (flux, ivar, pixel_flags)}`` as written.
        """
        hdus = self.hdus(name, release)
        rows = {1: 0, 2: 1, 3: n_apogee, 4: 0}
        values, arrays = {}, {}
        for i in (2, 3):
            n_rows = rows[i]
            arrays[i] = pixels(n_rows, int(self.cards(hdus[i])["NPIXELS"]))
            flux, ivar, flags = arrays[i]
            values[i] = {"flux": flux, "ivar": ivar, "pixel_flags": flags,
                         "telescope": ["lco25m" if i == 2 else "apo25m"] * n_rows,
                         "snr": np.arange(n_rows, dtype=np.float32) + 10.5}
            if i == 3:
                values[i]["obj"] = ["2M00000001+0000001"] * n_rows
            if name == "mwmVisit":
                values[i]["mjd"] = np.arange(n_rows, dtype=np.int32) + 60000
        self.hdulist(name, release, rows=rows, values=values).writeto(path)
        return arrays


@pytest.fixture(scope="session")
def datamodel(shared_data) -> DataModel:
    """Builder of files in the SDSS data-model layouts (skips without ../shared/data)."""
    folder = shared_data / "sdss-datamodel"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return DataModel(folder)
