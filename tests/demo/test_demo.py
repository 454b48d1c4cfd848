"""``starlabels demo``: the --quick run through the CLI writes every promised file, its printed
accuracy table matches metrics recomputed from the written catalog and truth, and it is seeded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.demo import MIN_DEV, QUICK, DemoConfig, accuracy_table
from starlabels.errors import InputDataError
from starlabels.inference.catalog import read_catalog

PARTS = ("EPISTEMIC", "ALEATORIC", "COVERAGE")  # the trainer fits the label coverage (issue 19)


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(cli, ["demo", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "out"
    return out, _run(["--quick", "-o", str(out), "--seed", "3"])


def _label_names(folder: Path) -> list[str]:
    return json.loads((folder / "model" / "config.json").read_text())["labels"]["names"]


def test_help_lists_the_options():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0
    for opt in ("--output", "--n-train", "--n-test", "--epochs", "--seed", "--emulator", "--quick",
                "--n-samples", "--format"):
        assert opt in result.output
    top = CliRunner().invoke(cli, ["--help"])
    assert "demo" in top.output


def test_quick_run_writes_every_file(quick):
    out, text = quick
    for name in ("catalog.fits", "truth.csv", "kiel.png", "pred_vs_true.png", "accuracy.md",
                 "summary.json", "model/config.json", "model/weights.safetensors", "model/history.csv"):
        assert (out / name).is_file(), name
    # the status lines name each step and the output paths
    for k in range(1, 6):
        assert f"[{k}/5]" in text
    for name in ("catalog.fits", "truth.csv", "kiel.png", "pred_vs_true.png", "model/"):
        assert str(out / name) in text
    assert re.search(r"Done in .* wall, .* CPU", text)


def test_catalog_has_the_catalog_columns_and_rows(quick):
    out, _ = quick
    names = _label_names(out)
    assert names[:3] == ["TEFF", "LOGG", "FE_H"]
    cat = read_catalog(out / "catalog.fits")
    truth = pd.read_csv(out / "truth.csv", dtype={"APOGEE_ID": str})
    assert len(cat) == len(truth) == QUICK["n_test"]
    expected = ["APOGEE_ID", "RA", "DEC", "SNR", "SOURCE"]
    for x in names:
        expected += [x, f"{x}_ERR", *(f"{x}_ERR_{p}" for p in PARTS)]
    expected += ["DOMAIN_SHIFT", "FLAG", "MODEL_NAME", "MODEL_VERSION"]
    assert list(cat.columns) == expected
    assert list(cat["APOGEE_ID"]) == list(truth["APOGEE_ID"])
    assert cat["APOGEE_ID"].is_unique
    for x in names:
        assert np.all(np.isfinite(cat[x])) and np.all(cat[f"{x}_ERR"] > 0)
        # total σ² is the sum of the calibrated parts
        parts = sum(cat[f"{x}_ERR_{p}"].to_numpy() ** 2 for p in PARTS)
        np.testing.assert_allclose(cat[f"{x}_ERR"] ** 2, parts, rtol=1e-4)
    # the FITS table carries units; the MC-dropout σ are calibrated (no UNCALIBRATED bit 5)
    from astropy.table import Table

    t = Table.read(out / "catalog.fits", unit_parse_strict="silent")
    assert str(t["TEFF"].unit) == "K" and str(t["TEFF_ERR"].unit) == "K"
    assert not np.any(cat["FLAG"].to_numpy() & (1 << 5))


def test_model_folder_is_loadable_and_calibrated(quick):
    import starlabels

    out, _ = quick
    model = starlabels.load_model(out / "model")
    assert model.architecture == "bcnn"
    assert set(model.calibration["methods"]["mc_dropout"]["scales"]) == set(model.label_names)
    assert model.preprocess_config().kind == "continuum"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sizes"]["test"] == QUICK["n_test"]
    assert summary["sizes"]["train"] + summary["sizes"]["dev"] == QUICK["n_train"]


@pytest.mark.parametrize("name", ["kiel.png", "pred_vs_true.png"])
def test_figures_are_not_blank(quick, name):
    from matplotlib.image import imread

    out, _ = quick
    img = imread(out / name)
    assert img.shape[0] > 400 and img.shape[1] > 600
    rgb = img[..., :3]
    inked = np.any(rgb < 0.9, axis=-1).mean()  # fraction of pixels that are not (near) white
    assert 0.02 < inked < 0.9
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # colour map, text, points


def _printed_table(text: str) -> dict[str, list[str]]:
    """label (plain text) -> [unit, N, median, sigma_mad, z_sigma_mad] from the printed table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0] not in ("label",) and not cells[0].startswith("-"):
            rows[cells[0]] = cells[1:]
    return rows


def _close(printed: str, value: float) -> bool:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - value) <= 0.5 * 10.0**-decimals + 1e-9


def test_printed_table_matches_metrics_recomputed_from_the_files(quick):
    out, text = quick
    names = _label_names(out)
    cat = read_catalog(out / "catalog.fits")
    truth = pd.read_csv(out / "truth.csv", dtype={"APOGEE_ID": str})
    display = {"TEFF": "Teff", "LOGG": "log g", "FE_H": "[Fe/H]"}
    rows = _printed_table(text)
    assert len(rows) == len(names)
    for x in names:
        key = display.get(x, f"[{x.split('_')[0].capitalize()}/Fe]")
        unit, n, med, smad, zw = rows[key]
        r = cat[x].to_numpy(float) - truth[x].to_numpy(float)  # computed here with numpy alone
        m = np.median(r)
        z = r / cat[f"{x}_ERR"].to_numpy(float)
        assert unit == ("K" if x == "TEFF" else "dex")
        assert int(n) == len(r)
        assert _close(med, m), (x, med, m)
        assert _close(smad, 1.4826 * np.median(np.abs(r - m))), x
        assert _close(zw, 1.4826 * np.median(np.abs(z - np.median(z)))), x
    # the same table is in accuracy.md
    assert _printed_table((out / "accuracy.md").read_text()) == rows


def test_accuracy_table_uses_the_catalog_errors():
    cat = pd.DataFrame({"TEFF": [5000.0, 5100, 4900, 5050], "TEFF_ERR": [50.0, 50, 100, 25]})
    truth = pd.DataFrame({"TEFF": [4950.0, 5100, 5000, 5000]})
    t = accuracy_table(cat, truth, ["TEFF"])
    r = np.array([50.0, 0, -100, 50])
    assert t.loc[0, "median"] == pytest.approx(25.0)
    assert t.loc[0, "sigma_mad"] == pytest.approx(1.4826 * np.median(np.abs(r - 25.0)))
    z = r / np.array([50.0, 50, 100, 25])
    assert t.loc[0, "z_sigma_mad"] == pytest.approx(1.4826 * np.median(np.abs(z - np.median(z))))


def test_same_seed_same_catalog_other_seed_other_catalog(quick, tmp_path):
    out, _ = quick
    _run(["--quick", "-o", str(tmp_path / "again"), "--seed", "3"])
    first = read_catalog(out / "catalog.fits")
    again = read_catalog(tmp_path / "again" / "catalog.fits")
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert (out / "truth.csv").read_bytes() == (tmp_path / "again" / "truth.csv").read_bytes()

    _run(["--quick", "-o", str(tmp_path / "other"), "--seed", "4", "--n-train", "60", "--n-test", "10",
          "--epochs", "1", "--format", "csv"])
    other = read_catalog(tmp_path / "other" / "catalog.csv")
    assert len(other) == 10
    assert not np.isin(other["TEFF"].to_numpy(), first["TEFF"].to_numpy()).any()


def test_bad_settings_are_clear_errors(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--n-train", "10", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--n-train" in result.output
    result = CliRunner().invoke(cli, ["demo", "--emulator", str(tmp_path / "none.npz")])
    assert result.exit_code == 2 and "--emulator" in result.output
    with pytest.raises(InputDataError, match="dev set"):
        DemoConfig(n_train=30)
    assert DemoConfig(n_train=40).n_dev == MIN_DEV and DemoConfig(n_train=4000).n_dev == 320
    with pytest.raises(InputDataError, match="catalog_format"):
        DemoConfig(catalog_format="parquet")


@pytest.mark.shared_data
def test_quick_run_with_the_payne_emulator(shared_data, tmp_path):
    emulator = shared_data / "emulators" / "payne_kurucz_4label.npz"
    text = _run(["--quick", "-o", str(tmp_path / "emu"), "--emulator", str(emulator)])
    assert "emulator" in text and re.search(r"selected from \d+ training spectra", text)
    cat = read_catalog(tmp_path / "emu" / "catalog.fits")
    assert _label_names(tmp_path / "emu") == ["TEFF", "LOGG", "FE_H", "ALPHA_M"]
    assert len(cat) == QUICK["n_test"] and np.all(np.isfinite(cat["ALPHA_M_ERR"]))
