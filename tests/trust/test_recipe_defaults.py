"""Issue 19: the recipe's defaults are the settings that learn (median-scaled raw flux,
standardised input, kaiming init); the paper's exact settings stay available as
``[recipe] preset = "paper"`` and are labelled as such in the example."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib

from starlabels.core import get
from starlabels.training.config import ConfigError
from starlabels.training.recipe import _preprocess_for, load_recipe, recipe_from_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "recipe_apogee_net.toml"
DATA = {"files": ["d.h5"], "label_names": ["TEFF"]}


def test_example_defaults_to_the_settings_that_learn():
    cfg = load_recipe(EXAMPLE)
    m = cfg.train.model
    assert (m.spectrum_scaling, m.init) == ("standardised", "kaiming")
    assert cfg.train.preprocess == {"kind": "raw", "scale": "median"}
    assert cfg.preset == "learning"


def test_example_labels_the_papers_exact_settings():
    text = EXAMPLE.read_text()
    assert "THE PAPER'S EXACT SETTINGS" in text
    block = text[text.index("THE PAPER'S EXACT SETTINGS"):text.index("[model]\n")]
    assert 'preset = "paper"' in block
    assert re.search(r'spectrum_scaling = "none"', block) and re.search(r'init = "default"', block)
    # the paper block, applied as it says, loads as the paper's settings
    raw = tomllib.loads(text)
    raw["recipe"]["preset"] = "paper"
    raw["model"].update(spectrum_scaling="none", init="default")
    del raw["preprocess"]["scale"]
    cfg = recipe_from_dict(raw, base_dir=EXAMPLE.parent)
    assert (cfg.train.model.spectrum_scaling, cfg.train.model.init) == ("none", "default")
    assert cfg.train.preprocess == {"kind": "raw"} and cfg.preset == "paper"


def test_omitted_keys_get_the_learning_settings_and_paper_preset_keeps_the_papers():
    learn = recipe_from_dict({"data": DATA, "model": {"architecture": "apogee_net"},
                              "preprocess": {"kind": "raw"}})
    assert (learn.train.model.spectrum_scaling, learn.train.model.init) == ("standardised", "kaiming")
    assert learn.train.preprocess == {"kind": "raw", "scale": "median"}
    paper = recipe_from_dict({"data": DATA, "model": {"architecture": "apogee_net"},
                              "preprocess": {"kind": "raw"}, "recipe": {"preset": "paper"}})
    assert (paper.train.model.spectrum_scaling, paper.train.model.init) == ("none", "default")
    assert paper.train.preprocess == {"kind": "raw"}


def test_explicit_keys_win_over_the_preset():
    cfg = recipe_from_dict({"data": DATA, "model": {"spectrum_scaling": "centred", "init": "default"},
                            "preprocess": {"kind": "continuum"}})
    assert (cfg.train.model.spectrum_scaling, cfg.train.model.init) == ("centred", "default")
    assert cfg.train.preprocess == {"kind": "continuum"}  # scale is for raw flux only


def test_absent_preprocess_on_raw_apstar_data_is_median_scaled_unless_paper():
    data = SimpleNamespace(preprocessing=None, grid=get("apogee").grid)
    cfg = recipe_from_dict({"data": DATA}).train
    assert _preprocess_for(cfg, data, "learning") == {"kind": "raw", "scale": "median"}
    assert _preprocess_for(cfg, data, "paper") == {"kind": "raw"}


def test_unknown_preset_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"\[recipe\] preset must be one of"):
        recipe_from_dict({"data": DATA, "recipe": {"preset": "fast"}})
