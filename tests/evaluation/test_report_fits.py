"""``starlabels report`` on a Payne model folder: the fitted spectra of catalog stars as figures
(evaluation.report_fits), on a tiny emulator and simulated apStar files."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.evaluation.report_fits import add_fit_figures
from starlabels.inference.catalog import read_catalog, run_catalog
from starlabels.io.apstar_writer import write_apstar

from ..models.test_payne_fit_cli import COLUMNS, apstar_model, spectra


class Collector:
    """Stands in for the report's figure collector: records what is added and skipped."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str, str]] = []
        self.skipped: list[tuple[str, str]] = []

    def add(self, key, title, caption, fig) -> None:
        self.added.append((key, title, caption))

    def skip(self, title, reason) -> None:
        self.skipped.append((title, reason))


def make_inputs(tmp_path: Path):
    model = apstar_model()
    folder = model.save(tmp_path / "tinypayne")
    flux, error, bitmask = spectra(model, 3, 0)
    bitmask[:, COLUMNS[40:60]] = 1  # BADPIX: shown as masked
    ids = [f"2M0000000{i}+0000000" for i in range(3)]
    files = [write_apstar(tmp_path / "in" / f"apStar-x-{ids[i]}.fits", flux[i], error[i], bitmask[i],
                          {"APOGEE_ID": ids[i], "RA": 1.0, "DEC": 2.0}) for i in range(3)]
    run_catalog(folder, files, tmp_path / "cat.csv")
    cat = read_catalog(tmp_path / "cat.csv").sort_values("APOGEE_ID").reset_index(drop=True)
    return model, folder, cat, (flux, error, bitmask), ids


def test_report_of_a_payne_model_shows_fitted_spectra(tmp_path):
    model, folder, cat, (flux, error, bitmask), ids = make_inputs(tmp_path)
    cat.loc[0, "SOURCE"] = str(tmp_path / "in" / "gone.fits")  # an unreadable row is listed, not drawn
    cat_path = tmp_path / "cat_edit.csv"
    cat.to_csv(cat_path, index=False)
    out = tmp_path / "report"
    res = CliRunner().invoke(cli, ["report", str(folder), str(cat_path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    page = (out / "index.html").read_text(encoding="utf-8")
    for k in (1, 2):
        assert f"Fitted spectra (Payne) {k} of 2: {ids[k]}" in page
        png = out / "figures" / f"payne_fit_{k}.png"
        assert png.is_file() and png.stat().st_size > 10_000
        assert f'src="figures/payne_fit_{k}.png"' in page
    assert not (out / "figures" / "payne_fit_3.png").exists()
    assert "gone.fits" in page and "is not a readable file" in page
    # the figures show PayneModel.fit of those spectra: RV, χ² and masked-pixel count agree
    ref = model.fit(flux[1:], error[1:], bitmask[1:])
    for k in (0, 1):
        assert f"RV {ref.rv[k]:.2f} ± {ref.rv_err[k]:.2f} km/s" in page
        assert f"reduced χ² {ref.reduced_chi2[k]:.2f}" in page
        n_masked = int(np.sum(~np.isfinite(ref.error[k])))
        assert n_masked >= 20
        assert f"grey: {n_masked} of {model.emulator.n_pixels} pixels masked" in page


def test_at_most_max_fits_and_only_for_payne_models(tmp_path):
    _, folder, cat, _, ids = make_inputs(tmp_path)
    card = SimpleNamespace(config={"method": "payne"}, folder=folder)
    figs = Collector()
    add_fit_figures(figs, card, cat, tmp_path / "cat.csv", max_fits=1)
    assert [t for _, t, _ in figs.added] == [f"Fitted spectra (Payne) 1 of 1: {ids[0]}"]
    assert figs.skipped == []
    # a relative SOURCE is found beside the catalog
    rel = cat.assign(SOURCE=[str(Path(s).relative_to(tmp_path)) for s in cat["SOURCE"]])
    figs = Collector()
    add_fit_figures(figs, card, rel, tmp_path / "cat.csv", max_fits=2)
    assert len(figs.added) == 2
    # other model kinds: nothing added, nothing skipped
    figs = Collector()
    add_fit_figures(figs, SimpleNamespace(config={"method": "bcnn"}, folder=folder), cat,
                    tmp_path / "cat.csv")
    assert figs.added == [] and figs.skipped == []
    # unreadable SOURCEs: the first max_fits reasons, one summary line, at most 10·max_fits rows tried
    missing = pd.concat([cat.iloc[:1]] * 30, ignore_index=True).assign(SOURCE="nowhere.fits")
    figs = Collector()
    add_fit_figures(figs, card, missing, tmp_path / "cat.csv", max_fits=2)
    assert figs.added == []
    assert [t for t, _ in figs.skipped] == [f"Fitted spectra (Payne): {ids[0]}"] * 2 + [
        "Fitted spectra (Payne): 18 more rows", "Fitted spectra (Payne)"]
    # no SOURCE column: one reason
    figs = Collector()
    add_fit_figures(figs, card, pd.DataFrame({"TEFF": [5000.0]}), tmp_path / "cat.csv")
    assert figs.added == [] and "no SOURCE column" in figs.skipped[0][1]
