"""Training TOML configs: the shipped example parses, bad values are reported by section and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from starlabels.errors import InputFileError
from starlabels.training.config import (
    ConfigError,
    OptimiserConfig,
    SplitConfig,
    TrainingConfig,
    config_from_dict,
    load_config,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_bcnn.toml"


def test_example_config_parses_and_resolves_paths():
    cfg = load_config(EXAMPLE)
    assert cfg.data.label_names == ["TEFF", "LOGG", "FE_H", "MG_FE"]
    assert cfg.data.files == [str(EXAMPLE.parent / "data" / "train.h5")]
    assert cfg.output.folder == str(EXAMPLE.parent / "models" / "bcnn")
    assert cfg.data.split.method == "group"
    assert cfg.data.split.groups["dwarfs"] == (0.6, 0.2, 0.2)
    assert cfg.model.architecture == "bcnn" and cfg.model.kwargs == {"dropout": 0.3}
    assert cfg.preprocess == {"kind": "continuum", "degree": 2}
    assert cfg.training.loss == "robust" and cfg.training.patience == 5
    assert cfg.training.torch_device is None  # "auto"
    assert cfg.stratified is not None and cfg.stratified.focus_groups == ["dwarfs", "cool_dwarfs"]
    assert cfg.to_dict()["optimiser"]["learning_rate"] == 0.001


def test_defaults_follow_the_papers():
    t = TrainingConfig()
    assert t.patience == 5 and t.loss == "mse"
    assert OptimiserConfig().name == "adam"
    assert SplitConfig().fractions == (0.8, 0.1, 0.1)


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"], "epochs": 3}},
         r"\[data\].*unknown key.*epochs"),
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"]}, "trainig": {}}, "unknown section"),
        ({"data": {"files": [], "label_names": ["TEFF"]}}, "at least one HDF5"),
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"]}, "optimiser": {"name": "rmsprop"}},
         r"\[optimiser\] name"),
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"]}, "training": {"loss": "huber"}},
         r"\[training\] loss"),
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"], "split": {"fractions": [0.5, 0.2]}}},
         "3 non-negative numbers"),
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"], "split": {"method": "group",
                                                                           "groups": {"a": [1, 0, 0]}}}},
         "group_column"),
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"]}, "training": {"loss": "robust"},
          "model": {"architecture": "apogee_net"}}, "variance head"),
        ({"data": {"files": ["a.h5"], "label_names": ["TEFF"]},
          "stratified": {"focus_groups": ["m"], "large_group": "p"}}, "group_column"),
    ],
)
def test_bad_configs_raise_config_error(raw, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(InputFileError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nfiles = 3")
    with pytest.raises(InputFileError, match="not a valid TOML"):
        load_config(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[data]\nfiles = ["x.h5"]\nlabel_names = ["teff"]\n[training]\nbatch_size = 0\n')
    with pytest.raises(ConfigError, match=r"wrong\.toml.*batch_size"):
        load_config(wrong)


def test_reading_a_config_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, starlabels.training.config; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_cannon_regularization_key_is_read_as_regularisation():
    data = {"files": ["a.h5"], "label_names": ["TEFF"]}
    cfg = config_from_dict({"data": data, "model": {"name": "cannon", "kwargs": {"regularization": 0.5}}})
    assert cfg.model.kwargs == {"regularisation": 0.5}
    cfg = config_from_dict({"data": data, "model": {"name": "cannon", "kwargs": {"regularisation": 0.25}}})
    assert cfg.model.kwargs == {"regularisation": 0.25}
    with pytest.raises(ConfigError, match="both 'regularisation' and its older spelling"):
        config_from_dict({"data": data, "model": {"name": "cannon",
                                                  "kwargs": {"regularisation": 1.0, "regularization": 1.0}}})
