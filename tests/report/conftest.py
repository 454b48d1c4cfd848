"""Inputs for the report tests: a tiny saved model, a catalog, a reference table, an isochrone grid,
and the two reports built once per session through the CLI (files; embedded, no reference)."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

LABELS = ["TEFF", "LOGG", "FE_H", "MG_FE", "AL_FE"]
UNITS = ["K", "dex", "dex", "dex", "dex"]
#: A string that breaks HTML unless escaped.
ODD = '<script>alert("x")</script> & \'q\''
TITLE = "Report <b>of</b> & co"
N_STARS = 240
CALIBRATION = {"TEFF": 1.3, "MG_FE": 0.9}


@dataclass
class Inputs:
    model: Path
    catalog: Path
    reference: Path
    isochrones: Path


def make_catalog_and_reference(n: int = N_STARS, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A catalog with the DESIGN.md columns and a reference (shuffled, with holes) for it."""
    rng = np.random.default_rng(seed)
    teff = rng.uniform(3000, 5400, n)
    logg = np.clip(0.8 + (teff - 3600) / 1800 * 2.6 + rng.normal(0, 0.3, n), 0, 5)
    young = slice(0, 25)  # a few stars inside the young-star triangle
    teff[young] = rng.uniform(3000, 3800, 25)
    logg[young] = rng.uniform(3.5, 4.3, 25)
    true = np.c_[teff, logg, rng.normal(-0.2, 0.3, n), rng.normal(0.1, 0.1, n), rng.normal(0.0, 0.15, n)]
    snr = rng.uniform(15, 400, n)
    err = np.c_[2500 / snr + 10, 4 / snr + 0.01, 2 / snr + 0.005, 1.5 / snr + 0.01, 2 / snr + 0.02]
    err *= rng.uniform(0.8, 1.25, size=err.shape)
    pred = true + rng.normal(size=true.shape) * err + np.array([20.0, 0.0, 0.01, 0.0, -0.02])
    flag = np.zeros(n, np.int32)
    flag[snr < 30] |= 1 << 1  # LOW_SNR
    flag[5:9] |= 1 << 4  # LABEL_OUT_OF_RANGE
    flag[7] |= 1 << 3  # HIGH_UNCERTAINTY
    # an invalid spectrum: NaN labels and uncertainties
    pred[10] = np.nan
    err[10] = np.nan
    flag[10] |= 1
    cat: dict = {
        "APOGEE_ID": [f"2M{i:08d}+0000000" for i in range(n)],
        "RA": rng.uniform(0, 360, n), "DEC": rng.uniform(-30, 60, n), "SNR": snr,
        "SOURCE": [f"apStar-2M{i:08d}.fits" for i in range(n)],
    }
    for j, x in enumerate(LABELS):
        cat[x] = pred[:, j]
        cat[f"{x}_ERR"] = err[:, j]
        cat[f"{x}_ERR_EPISTEMIC"] = err[:, j] * 0.6
        cat[f"{x}_ERR_ALEATORIC"] = err[:, j] * 0.8
    cat["FLAG"] = flag
    cat["MODEL_NAME"] = ODD
    cat["MODEL_VERSION"] = "2025-01-01T00:00:00+00:00"
    catalog = pd.DataFrame(cat)
    # reference: shuffled rows, star 11 absent, one extra star, a MISSING value, a group column
    order = rng.permutation(n)
    order = order[order != 11]
    ref = pd.DataFrame({"APOGEE_ID": catalog["APOGEE_ID"].to_numpy()[order],
                        **{x: true[order, j] for j, x in enumerate(LABELS)}})
    ref["TEFF_ERR"] = 50.0
    ref["GROUP"] = np.where(ref["LOGG"] > 3.5, "dwarfs", "giants")
    ref.loc[3, "TEFF"] = -9999.0
    extra = pd.DataFrame({"APOGEE_ID": ["2M99999999+9999999"], **{x: [1.0] for x in LABELS},
                          "TEFF_ERR": [50.0], "GROUP": ["giants"]})
    return catalog, pd.concat([ref, extra], ignore_index=True)


def write_isochrone_grid(path: Path) -> Path:
    """A tiny PARSEC-like grid (columns MH, LOGAGE, LOGTE, LOGG, LABEL, MINI)."""
    from astropy.table import Table

    rows = []
    for mh in (-0.6, -0.2, 0.2):
        for age in (9.0, 9.6):
            t = np.linspace(5600, 3600, 25) - 150 * mh
            g = 4.5 - (5600 - t) / 1800 * 3.8
            mass = np.linspace(0.8, 1.4, 25)
            rows += [(mh, age, np.log10(ti), gi, 3.0, mi) for ti, gi, mi in zip(t, g, mass, strict=True)]
    Table(rows=rows, names=("MH", "LOGAGE", "LOGTE", "LOGG", "LABEL", "MINI")).write(path, overwrite=True)
    return path


def save_model(folder: Path) -> Path:
    """A tiny trained-model folder written by TrainedModel.save (odd strings in the provenance)."""
    import torch

    from starlabels.data.normalization import LabelScaler, SpectrumScaler
    from starlabels.models import BayesianCNN
    from starlabels.models.folder import TrainedModel

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = np.c_[rng.uniform(3000, 5500, 50), rng.uniform(0, 5, 50), rng.normal(-0.2, 0.3, 50),
                   rng.normal(0.1, 0.1, 50), rng.normal(0, 0.15, 50)]
    model = TrainedModel(
        network=BayesianCNN(len(LABELS), 64, filters=(2, 2), hidden=(8, 4)),
        label_names=LABELS, label_units=UNITS,
        label_scaler=LabelScaler(names=LABELS).fit(labels),
        spectrum_scaler=SpectrumScaler("none"),
        preprocessing={"kind": "continuum", "degree": 2, "reject_bits": [0, 1, 2, 12]},
        calibration=CALIBRATION,
        training={
            "data_files": [f"train {ODD}.h5", "dev.h5"],
            "sizes": {"train": 800, "dev": 100, "test": 100},
            "splits": {"method": "random", "seed": 7},
            "dates": {"started": "2025-01-01T00:00:00+00:00", "finished": "2025-01-01T03:00:00+00:00"},
            "optimiser": {"name": "adam", "lr": 0.001},
            "epochs": {"max": 10, "run": 8},
            "seed": 42,
        },
        history=[{"epoch": e, "train_loss": 2.0 / e, "dev_loss": 2.3 / e, "lr": 1e-3, "seconds": 1.0}
                 for e in range(1, 9)],
    )
    return model.save(folder)


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("report_inputs")
    catalog, ref = make_catalog_and_reference()
    catalog.to_parquet(root / "catalog.parquet", index=False)
    ref.to_csv(root / "reference.csv", index=False)
    return Inputs(model=save_model(root / "model"), catalog=root / "catalog.parquet",
                  reference=root / "reference.csv",
                  isochrones=write_isochrone_grid(root / "iso.fits"))


def run_cli(*args: str):
    from starlabels.cli.main import cli

    return CliRunner().invoke(cli, ["report", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="session")
def report_files(inputs, tmp_path_factory) -> Path:
    """Full report (reference, figures as files, the tiny isochrone grid) through the CLI."""
    out = tmp_path_factory.mktemp("report_files") / "out"
    res = run_cli(inputs.model, inputs.catalog, "--reference", inputs.reference, "-o", out,
                  "--isochrones", inputs.isochrones, "--title", TITLE)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "index.html" in res.output
    return out


@pytest.fixture(scope="session")
def report_embed(inputs, tmp_path_factory) -> Path:
    """Report without reference, figures embedded, no isochrones."""
    out = tmp_path_factory.mktemp("report_embed") / "out"
    res = run_cli(inputs.model, inputs.catalog, "-o", out, "--embed", "--no-isochrones")
    assert res.exit_code == 0, res.output
    return out


class PageParser(HTMLParser):
    """Tables with an id (headings from ``data-col``, cells as (data-value or text, text)),
    image sources, and the text of h1/title."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict] = {}
        self.images: list[str] = []
        self.text_of: dict[str, str] = {}
        self._stack: list[str | None] = []  # table ids (None for tables without one)
        self._cell: list | None = None
        self._tag: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._stack.append(a.get("id"))
            if a.get("id"):
                self.tables[a["id"]] = {"columns": [], "rows": []}
        elif self._stack and self._stack[-1]:
            t = self.tables[self._stack[-1]]
            if tag == "th":
                t["columns"].append(a.get("data-col"))
            elif tag == "tr":
                t["_row"] = []
            elif tag == "td":
                self._cell = [a.get("data-value"), ""]
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("h1", "title"):
            self._tag = tag
            self.text_of.setdefault(tag, "")

    def handle_endtag(self, tag):
        if tag == "table" and self._stack:
            self._stack.pop()
        elif self._stack and self._stack[-1]:
            t = self.tables[self._stack[-1]]
            if tag == "td" and self._cell is not None:
                value, text = self._cell
                t["_row"].append((value if value is not None else text.strip(), text.strip()))
                self._cell = None
            elif tag == "tr" and t.get("_row"):
                t["rows"].append(t.pop("_row"))
        if tag == self._tag:
            self._tag = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data
        if self._tag:
            self.text_of[self._tag] += data


def parse_page(path: Path) -> PageParser:
    p = PageParser()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    return p


def table_frame(page: PageParser, table_id: str, text: bool = False) -> pd.DataFrame:
    """A parsed table as a DataFrame of the data-values (or of the displayed text)."""
    t = page.tables[table_id]
    k = 1 if text else 0
    return pd.DataFrame([[c[k] for c in row] for row in t["rows"]], columns=t["columns"])


def png_not_blank(img: np.ndarray, min_std: float = 0.05) -> bool:
    """Pixel variance and some ink: a real figure, not an empty canvas."""
    gray = img[..., :3].mean(axis=2) if img.ndim == 3 else img
    if gray.max() > 1.5:
        gray = gray / 255.0
    return bool(gray.std() > min_std and (gray < 0.9).mean() > 0.01)


@pytest.fixture(scope="session")
def h() -> SimpleNamespace:
    """The helpers and constants above, for test modules (importlib mode cannot import conftest)."""
    return SimpleNamespace(
        LABELS=LABELS, UNITS=UNITS, ODD=ODD, TITLE=TITLE, N_STARS=N_STARS, CALIBRATION=CALIBRATION,
        make_catalog_and_reference=make_catalog_and_reference, write_isochrone_grid=write_isochrone_grid,
        run_cli=run_cli, parse_page=parse_page, table_frame=table_frame, png_not_blank=png_not_blank,
    )
