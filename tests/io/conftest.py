"""Fixtures for the io tests: a local HTTP file server on 127.0.0.1 and small apStar inputs."""

from __future__ import annotations

import http.server
import re
import threading
import urllib.parse
from dataclasses import dataclass, field

import numpy as np
import pytest


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
