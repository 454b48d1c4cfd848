"""Issue 19: every relative path of a training config is relative to the config file's folder
(never the working directory), and a missing file's error says where it looked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from starlabels.cli.main import cli
from starlabels.training.config import ConfigError, load_config

BASE = """
[data]
files = ["data/train.h5"]
label_names = ["TEFF", "LOGG", "FE_H", "MG_FE"]
[output]
folder = "out/model"
"""


def _write(folder: Path, extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.toml"
    path.write_text(BASE + extra)
    return path


def test_every_file_key_is_relative_to_the_config_not_the_working_directory(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "configs"
    (cfg_dir / "ref").mkdir(parents=True)
    np.savez(cfg_dir / "ref" / "windows.npz", windows=np.ones((1, 10), bool), elements=np.array(["Mg"]))
    np.save(cfg_dir / "ref" / "mask.npy", np.ones(10, bool))
    path = _write(cfg_dir, '[model]\narchitecture = "bcnn_censored"\n'
                  '[model.kwargs]\nwindows = "ref/windows.npz"\n'
                  '[preprocess]\nkind = "continuum"\ncontinuum_mask = "ref/mask.npy"\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(path)
    assert cfg.data.files == [str(cfg_dir / "data" / "train.h5")]
    assert cfg.output.folder == str(cfg_dir / "out" / "model")
    assert cfg.model.kwargs["windows"] == str(cfg_dir / "ref" / "windows.npz")
    assert cfg.preprocess["continuum_mask"] == str(cfg_dir / "ref" / "mask.npy")


def test_cannon_censors_follow_the_same_rule(tmp_path, monkeypatch):
    np.save(tmp_path / "fe.npy", np.ones(10, bool))
    path = _write(tmp_path, '[model]\nname = "cannon"\n[model.kwargs]\ncensors = { FE_H = "fe.npy" }\n')
    monkeypatch.chdir("/")
    assert load_config(path).model.kwargs["censors"] == {"FE_H": str(tmp_path / "fe.npy")}
    path = _write(tmp_path, '[model]\nname = "cannon"\n[model.kwargs]\ncensors = { FE_H = "nope.npy" }\n')
    with pytest.raises(ConfigError, match=r"censors.FE_H 'nope.npy': no such file") as err:
        load_config(path)
    assert str(tmp_path / "nope.npy") in str(err.value)


def test_bare_names_fall_back_to_reference_files_and_instrument_windows(tmp_path, monkeypatch):
    ref = tmp_path / "refdir"
    ref.mkdir()
    np.save(ref / "my_mask.npy", np.ones(10, bool))
    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(ref))
    path = _write(tmp_path / "c", '[model]\narchitecture = "bcnn_censored"\n'
                  '[model.kwargs]\nwindows = "dr14"\n'
                  '[preprocess]\nkind = "continuum"\ncontinuum_mask = "my_mask.npy"\n')
    cfg = load_config(path)
    assert cfg.model.kwargs["windows"] == "dr14"  # the instrument's windows, by name
    assert cfg.preprocess["continuum_mask"] == str(ref / "my_mask.npy")


def test_a_missing_file_names_the_key_and_every_place_it_looked(tmp_path, monkeypatch):
    ref = tmp_path / "refdir"
    ref.mkdir()
    monkeypatch.setenv("STARLABELS_REFERENCE_DIR", str(ref))
    path = _write(tmp_path / "c", '[model]\narchitecture = "bcnn_censored"\n'
                  '[model.kwargs]\nwindows = "windows.npz"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(str(path))  # the config file
    assert "[model.kwargs] windows 'windows.npz': no such file" in msg
    assert str(tmp_path / "c" / "windows.npz") in msg and str(ref / "windows.npz") in msg
    assert "relative to the config file's folder" in msg


def test_train_names_the_resolved_data_path(tmp_path, monkeypatch):
    path = _write(tmp_path / "c", "")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["train", str(path), "--epochs", "1"])
    assert res.exit_code != 0
    assert str(tmp_path / "c" / "data" / "train.h5") in res.output and "does not exist" in res.output
