"""The report in a real browser: headless Chromium renders index.html to a screenshot (not blank,
text and colour on it) and to a PDF, whose embedded images show that every figure loaded (a
figure that fails to load is drawn as a 14×16 broken-image icon instead).

Skipped when Chromium is not installed (Debian: ``apt-get install chromium``; ``.ci/run`` installs
it in CI); the package never depends on it. The screenshot of the full report is kept in the
test's temporary folder, and copied to the path in ``STARLABELS_REPORT_SCREENSHOT`` when that is set
(docs/report/screenshot.png was taken so).
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium() -> str:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium is not installed (no /usr/bin/chromium, chromium or "
                "chromium-browser on PATH); install it with 'apt-get install chromium' to run this test")


def render(browser: str, page: Path, tmp: Path) -> tuple[np.ndarray, bytes]:
    """Screenshot (1200×2000) and PDF of ``page`` in one Chromium run."""
    shot, pdf = tmp / "shot.png", tmp / "page.pdf"
    cmd = [browser, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--screenshot={shot}",
           f"--print-to-pdf={pdf}", "--no-pdf-header-footer", "--window-size=1200,2000",
           page.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
    assert shot.is_file() and pdf.is_file(), f"Chromium failed ({proc.returncode}): {proc.stderr[-2000:]}"
    return imread(shot), pdf.read_bytes()


def pdf_image_sizes(pdf: bytes, min_width: int = 64) -> list[tuple[int, int]]:
    """(width, height) in pixels of the image XObjects of a PDF wider than ``min_width``:
    Chromium embeds each loaded image at its own resolution."""
    sizes = []
    for obj in re.findall(rb"<<[^<>]*?/Subtype\s*/Image[^<>]*?>>", pdf):
        w = re.search(rb"/Width\s+(\d+)", obj)
        hh = re.search(rb"/Height\s+(\d+)", obj)
        if w and hh and int(w.group(1)) > min_width:
            sizes.append((int(w.group(1)), int(hh.group(1))))
    return sorted(sizes)


def png_sizes(images: list[np.ndarray]) -> list[tuple[int, int]]:
    return sorted((img.shape[1], img.shape[0]) for img in images)


def assert_page_rendered(img: np.ndarray) -> None:
    assert img.shape[0] >= 1900 and img.shape[1] >= 1150
    rgb = img[..., :3]
    gray = rgb.mean(axis=2)
    assert gray.std() > 0.05  # not a blank page
    assert (gray < 0.5).mean() > 0.005  # dark text was drawn
    assert (gray > 0.95).mean() > 0.5  # on a white page
    colours = np.unique((rgb * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # anti-aliased text, table bands, the accent colour


def test_report_with_figure_files_renders_and_every_image_loads(chromium, report_files, h, tmp_path):
    srcs = h.parse_page(report_files / "index.html").images
    assert len(srcs) >= 10
    img, pdf = render(chromium, report_files / "index.html", tmp_path)
    assert_page_rendered(img)
    keep = os.environ.get("STARLABELS_REPORT_SCREENSHOT")
    if keep:
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp_path / "shot.png", keep)
    # each figure is in the PDF at its own pixel size (so it loaded; a missing file would be a
    # 14×16 broken-image icon, below min_width)
    assert pdf_image_sizes(pdf) == png_sizes([imread(report_files / s) for s in srcs])


def test_embedded_report_renders_with_its_images(chromium, report_embed, h, tmp_path):
    srcs = h.parse_page(report_embed / "index.html").images
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    img, pdf = render(chromium, report_embed / "index.html", tmp_path)
    assert_page_rendered(img)
    figures = [imread(io.BytesIO(base64.b64decode(s.split(",", 1)[1])), format="png") for s in srcs]
    assert pdf_image_sizes(pdf) == png_sizes(figures)
