"""``starlabels recipe apogee-net``: split per group → train → stratified adaptation → Tables 1–3."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.constants import MISSING
from starlabels.data.splits import split_sizes
from starlabels.training.config import ConfigError
from starlabels.training.recipe import load_recipe, recipe_from_dict, recipe_split

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recipe_apogee_net.toml"
SPLITS = ("train", "dev", "test")
LABELS = ["TEFF", "LOGG", "FE_H"]
SHOWN = {"payne": "Payne", "mdwarf": "MStar", "yso": "YSO"}  # the paper's names (defaults)


def _dataset_arrays(path: Path):
    """Raw flux/error/bitmask, labels (NaN where missing) and groups of the whole file."""
    from starlabels.data.hdf5 import SpectraDataset

    with SpectraDataset(path) as ds:
        batch = ds.read()
        groups = np.asarray(ds.meta("group")).astype(str)
    labels = np.asarray(batch.labels, dtype=float)
    labels[labels == MISSING] = np.nan
    return batch, labels, groups


def _parse_markdown(path: Path) -> tuple[str, list[str], list[list[str]]]:
    """(caption, header, rows) of a one-table Markdown file with a caption line."""
    lines = path.read_text().splitlines()
    caption = lines[0]
    table = [ln for ln in lines[1:] if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in table]
    assert set(table[1]) <= set("|-: "), "second line is the separator"
    return caption, cells[0], cells[2:]


# ------------------------------------------------------------------------------------------------
# the end-to-end run


def test_tables_exist_in_both_formats_with_the_papers_layout(recipe_run):
    out = recipe_run.output
    for base in ("table1_normalisation", "table2_mse", "table3_scatter"):
        assert (out / f"{base}.md").is_file() and (out / f"{base}.csv").is_file()
    assert (out / "model" / "config.json").is_file() and (out / "model" / "weights.safetensors").is_file()

    groups = ["Full", "Payne", "MStar", "YSO"]  # all stars first, then the large and focus groups
    t2 = pd.read_csv(out / "table2_mse.csv")
    assert list(t2.columns) == ["group", "train", "dev", "test"]  # Table 2: groups × splits
    assert t2["group"].tolist() == groups
    t3 = pd.read_csv(out / "table3_scatter.csv")
    assert list(t3.columns) == ["group", "label", "unit", "train", "dev", "test"]
    assert list(zip(t3["group"], t3["label"], strict=True)) == [(g, n) for g in groups for n in LABELS]
    assert t3["unit"].tolist()[:3] == ["K", "dex", "dex"]
    t1 = pd.read_csv(out / "table1_normalisation.csv")
    assert t1["label"].tolist() == LABELS and list(t1.columns) == ["label", "unit", "mean", "std"]
    assert np.isfinite(t2[list(SPLITS)].to_numpy()).all() and np.isfinite(t3[list(SPLITS)].to_numpy()).all()

    # the Markdown tables hold the same rows and numbers (4 significant figures)
    caption, header, rows = _parse_markdown(out / "table2_mse.md")
    assert caption.startswith("Table 2.") and header == ["Group", "Train", "Dev", "Test"]
    assert [r[0] for r in rows] == groups
    np.testing.assert_allclose(np.array([r[1:] for r in rows], float), t2[list(SPLITS)], rtol=6e-4)
    caption, header, rows = _parse_markdown(out / "table3_scatter.md")
    assert caption.startswith("Table 3.") and header == ["Group", "Parameter", "Train", "Dev", "Test"]
    assert [r[1] for r in rows[:3]] == ["Teff (K)", "log g", "[Fe/H]"]
    np.testing.assert_allclose(np.array([r[2:] for r in rows], float), t3[list(SPLITS)], rtol=6e-4)
    caption, header, rows = _parse_markdown(out / "table1_normalisation.md")
    assert caption.startswith("Table 1.") and header == ["Parameter", "Mean", "Std"]
    # stdout shows the splits, the stages and Table 2
    assert "stratified adaptation: 2 rounds" in recipe_run.stdout
    assert "| Full " in recipe_run.stdout and "MStar (mdwarf): train" in recipe_run.stdout


def test_table_numbers_equal_metrics_of_the_saved_models_predictions(recipe_run):
    import starlabels

    out = recipe_run.output
    model = starlabels.load_model(out / "model")
    assert model.architecture == "apogee_net"
    assert model.preprocessing["kind"] == "raw"  # raw flux, default for apStar data
    assert model.preprocessing["scale"] == "median"  # [recipe] preset = "learning" (the default)
    batch, labels, groups = _dataset_arrays(recipe_run.dataset)
    pred = starlabels.predict(model, batch.flux, batch.error, bitmask=batch.bitmask, uncertainty=None).mean
    split = np.load(out / "model" / "splits.npz")
    std = model.label_scaler.std

    t1 = pd.read_csv(out / "table1_normalisation.csv")
    np.testing.assert_allclose(t1["mean"], model.label_scaler.mean, rtol=1e-12)
    np.testing.assert_allclose(t1["std"], std, rtol=1e-12)
    mean_train = np.nanmean(labels[split["train"]], axis=0)  # Table 1 = training-set statistics
    np.testing.assert_allclose(t1["mean"], mean_train, rtol=1e-5)

    t2 = pd.read_csv(out / "table2_mse.csv").set_index("group")
    t3 = pd.read_csv(out / "table3_scatter.csv").set_index(["group", "label"])
    members = {"Full": np.ones(len(groups), bool), **{SHOWN[g]: groups == g for g in SHOWN}}
    for name, member in members.items():
        for part in SPLITS:
            rows = split[part][member[split[part]]]
            res = pred[rows] - labels[rows]
            z2 = (res / std) ** 2
            assert t2.loc[name, part] == pytest.approx(np.nanmean(z2), rel=1e-5), (name, part)
            for j, lab in enumerate(LABELS):
                rms = np.sqrt(np.nanmean(res[:, j] ** 2))
                assert t3.loc[(name, lab), part] == pytest.approx(rms, rel=1e-5), (name, lab, part)

    # predictions.csv holds the same predictions for exactly the split rows
    p = pd.read_csv(out / "predictions.csv")
    all_rows = np.sort(np.concatenate([split[k] for k in SPLITS]))
    np.testing.assert_array_equal(p["ROW"], all_rows)
    np.testing.assert_allclose(p[LABELS].to_numpy(), pred[all_rows], rtol=1e-5)
    np.testing.assert_allclose(p[[f"{n}_REF" for n in LABELS]].to_numpy(), labels[all_rows], rtol=1e-6)
    for part in SPLITS:
        assert set(p.loc[p["SPLIT"] == part, "ROW"]) == set(split[part].tolist())


def test_splits_have_the_per_group_fractions(recipe_run):
    out = recipe_run.output
    split = np.load(out / "model" / "splits.npz")
    _, labels, groups = _dataset_arrays(recipe_run.dataset)
    usable = (groups != "") & np.isfinite(labels).any(axis=1)
    parts = [split[k] for k in SPLITS]
    all_rows = np.concatenate(parts)
    assert len(np.unique(all_rows)) == len(all_rows)  # disjoint
    np.testing.assert_array_equal(np.sort(all_rows), np.flatnonzero(usable))  # unusable rows left out
    for g, fr in recipe_run.fractions.items():
        n_g = int(np.count_nonzero(usable & (groups == g)))
        got = [int(np.count_nonzero(groups[p] == g)) for p in parts]
        assert got == split_sizes(n_g, fr).tolist(), g
    summary = json.loads((out / "recipe.json").read_text())
    assert summary["split"]["excluded"] == {"no_group": recipe_run.n_no_group,
                                            "no_labels": recipe_run.n_unlabelled}
    for g in recipe_run.fractions:
        assert summary["groups"][g]["rows"] == {k: int(np.count_nonzero(groups[split[k]] == g))
                                                for k in SPLITS}
    assert summary["split"]["fractions_used"]["mdwarf"] == [0.6, 0.2, 0.2]


def test_stratified_stage_ran_and_is_recorded(recipe_run):
    out = recipe_run.output
    config = json.loads((out / "model" / "config.json").read_text())
    strat = config["training"]["stratified"]
    assert strat["focus_groups"] == ["mdwarf", "yso"] and strat["large_group"] == "payne"
    assert [r["round"] for r in strat["rounds"]] == [1, 2]
    split = np.load(out / "model" / "splits.npz")
    _, _, groups = _dataset_arrays(recipe_run.dataset)
    train = groups[split["train"]]
    n_focus = int(np.isin(train, ["mdwarf", "yso"]).sum())
    n_draw = max(1, round(0.05 * int((train == "payne").sum())))
    assert all(r["n_train"] == n_focus + n_draw for r in strat["rounds"])  # focus + 5% of Payne
    assert set(strat["rounds"][0]["group_dev_loss"]) == {"payne", "mdwarf", "yso"}
    history = pd.read_csv(out / "model" / "history.csv")
    assert history["stage"].tolist() == ["main", "main", "adapt-1", "adapt-2"]
    assert np.isfinite(history["dev_loss"]).all()
    summary = json.loads((out / "recipe.json").read_text())
    assert summary["stratified"]["rounds"] == json.loads(json.dumps(strat["rounds"]))
    assert summary["main"]["epochs"] == 2


def test_resume_of_a_finished_run_reproduces_the_tables_and_a_rerun_is_refused(recipe_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(recipe_run.output, out)
    before = {f: (out / f).read_text() for f in ("table2_mse.csv", "table3_scatter.csv")}
    runner = CliRunner()
    res = runner.invoke(cli, ["recipe", "apogee-net", str(recipe_run.config), "-o", str(out)])
    assert res.exit_code != 0 and "--resume" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["recipe", "apogee-net", str(recipe_run.config), "-o", str(out), "--resume"])
    assert res.exit_code == 0, res.output + repr(res.exception)
    for f, text in before.items():
        pd.testing.assert_frame_equal(pd.read_csv(out / f), pd.read_csv(pd.io.common.StringIO(text)))


# ------------------------------------------------------------------------------------------------
# CLI and configuration


def test_help():
    runner = CliRunner()
    res = runner.invoke(cli, ["recipe", "--help"])
    assert res.exit_code == 0 and "apogee-net" in res.output
    res = runner.invoke(cli, ["recipe", "apogee-net", "--help"])
    assert res.exit_code == 0
    for word in ("CONFIG", "--output", "--resume", "--overwrite", "--device", "--epochs", "Tables"):
        assert word in res.output
    assert "recipe" in runner.invoke(cli, ["--help"]).output


def test_example_config_is_the_papers_recipe():
    cfg = load_recipe(EXAMPLE)
    t = cfg.train
    assert t.model.architecture == "apogee_net" and t.model.kwargs == {"dropout": 0.1}
    assert (t.optimiser.name, t.optimiser.learning_rate) == ("sgd", 0.001)
    assert (t.training.batch_size, t.training.patience, t.training.loss) == (128, 5, "mse")
    # the paper's hyperparameters, with the input settings that learn (tests/trust/test_recipe_defaults.py)
    assert t.preprocess == {"kind": "raw", "scale": "median"} and cfg.preset == "learning"
    assert cfg.split.method == "group"
    assert cfg.split.groups == {"payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2), "yso": (0.6, 0.2, 0.2)}
    assert cfg.stratified.focus_groups == ["mdwarf", "yso"] and cfg.stratified.large_group == "payne"
    assert cfg.stratified.fraction == 0.05
    assert cfg.group_column == "group" and cfg.model_folder == cfg.output / "model"
    assert cfg.output.is_absolute()


def test_empty_recipe_section_gives_the_papers_defaults(tmp_path):
    cfg = recipe_from_dict({"data": {"files": ["d.h5"], "label_names": ["TEFF"]}}, base_dir=tmp_path)
    assert cfg.split.groups == {"payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2), "yso": (0.6, 0.2, 0.2)}
    assert cfg.split.fractions == (0.8, 0.1, 0.1)
    assert (cfg.stratified.focus_groups, cfg.stratified.large_group) == (["mdwarf", "yso"], "payne")
    assert cfg.stratified.max_rounds == 20 and cfg.stratified.round_patience == 1
    assert [cfg.display_name(g) for g in ("payne", "mdwarf", "yso", "other")] == [
        "Payne", "MStar", "YSO", "other"]
    assert cfg.train.data.files == [str(tmp_path / "d.h5")]


@pytest.mark.parametrize(("extra", "message"), [
    ({"stratified": {"focus_groups": ["a"], "large_group": "b"}}, "remove the [stratified]"),
    ({"recipe": {"colour": 1}}, "[recipe]: unknown key(s) ['colour']"),
    ({"recipe": {"fractions": {"mdwarf": [0.5, 0.2, 0.2]}}}, "[recipe.fractions] mdwarf"),
    ({"recipe": {"default_fractions": [0.0, 0.5, 0.5]}}, "[recipe]: the train fraction"),
    ({"recipe": {"adaptation": {"fraction": 2.0}}}, "[recipe.adaptation] fraction"),
    ({"recipe": {"adaptation": {"rounds": 3}}}, "[recipe.adaptation]: unknown key(s) ['rounds']"),
    ({"recipe": {"large_group": "mdwarf"}}, "large_group must not be one of focus_groups"),
    ({"recipe": {"statistic": "mad"}}, "[recipe] statistic"),
    ({"recipe": {"group_names": {"mdwarf": "YSO"}}}, "the same name"),
])
def test_bad_recipe_sections_give_clear_errors(extra, message):
    raw = {"data": {"files": ["d.h5"], "label_names": ["TEFF"]}, **extra}
    with pytest.raises(ConfigError) as err:
        recipe_from_dict(raw)
    assert message in str(err.value)


def test_split_and_group_column_belong_in_the_recipe_section():
    data = {"files": ["d.h5"], "label_names": ["TEFF"]}
    with pytest.raises(ConfigError, match=r"remove the \[data.split\]"):
        recipe_from_dict({"data": {**data, "split": {"method": "random"}}})
    with pytest.raises(ConfigError, match="group_column"):
        recipe_from_dict({"data": {**data, "group_column": "kind"}})
    cfg = recipe_from_dict({"data": {**data, "group_column": "kind"}, "recipe": {"group_column": "kind"}})
    assert cfg.group_column == "kind"


def test_cli_errors_are_clean(recipe_run, tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\n")
    res = runner.invoke(cli, ["recipe", "apogee-net", str(bad)])
    assert res.exit_code != 0 and "not a valid TOML" in res.output and "Traceback" not in res.output
    # a focus group absent from the data fails before any training
    cfg = recipe_run.write_config(tmp_path, recipe_run.dataset, name="absent.toml")
    cfg.write_text(cfg.read_text().replace('focus_groups = ["mdwarf", "yso"]',
                                           'focus_groups = ["mdwarf", "binary"]'))
    res = runner.invoke(cli, ["recipe", "apogee-net", str(cfg), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "['binary'] have no training rows" in res.output
    assert not (tmp_path / "o" / "model" / "checkpoint.pt").exists()
    res = runner.invoke(cli, ["recipe", "apogee-net", str(cfg), "--resume", "--overwrite"])
    assert res.exit_code != 0 and "exclude each other" in res.output


def test_recipe_split_leaves_out_rows_without_group_or_labels():
    rng = np.random.default_rng(0)
    groups = np.array(["payne"] * 50 + ["yso"] * 20 + [""] * 3)
    labels = rng.normal(size=(73, 2))
    labels[:4] = MISSING
    labels[50, 0] = np.nan  # one label missing: still usable
    from starlabels.training.config import SplitConfig

    cfg = SplitConfig(method="group", groups={"yso": (0.5, 0.25, 0.25)}, fractions=(0.8, 0.1, 0.1))
    rows, info = recipe_split(groups, labels, cfg, seed=1)
    assert info["excluded"] == {"no_group": 3, "no_labels": 4}
    payne = [int((groups[rows[k]] == "payne").sum()) for k in SPLITS]
    assert payne == split_sizes(46, (0.8, 0.1, 0.1)).tolist()
    assert [int((groups[rows[k]] == "yso").sum()) for k in SPLITS] == [10, 5, 5]
    assert 50 in np.concatenate(list(rows.values()))
    again, _ = recipe_split(groups, labels, cfg, seed=1)
    assert all(np.array_equal(rows[k], again[k]) for k in SPLITS)  # deterministic
