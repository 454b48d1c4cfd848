"""The recipe run shared by the tests: a small simulated three-group survey on the full apStar
grid, and one ``starlabels recipe apogee-net`` run on it through click's CliRunner."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

LABELS = ["TEFF", "LOGG", "FE_H"]
#: survey population → recipe group (the simulator's names are not the paper's)
GROUPS = {"giants": "payne", "cool_dwarfs": "mdwarf", "dwarfs": "yso"}
FRACTIONS = {"payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2), "yso": (0.6, 0.2, 0.2)}
#: rows appended to the survey that the recipe must leave out
N_UNLABELLED = 3
N_NO_GROUP = 2


@dataclass
class RecipeRun:
    """The shared run: its config, dataset, output folder and stdout, plus the helpers below."""

    config: Path
    dataset: Path
    output: Path
    stdout: str
    labels: tuple[str, ...] = tuple(LABELS)
    fractions: dict = dataclasses.field(default_factory=lambda: dict(FRACTIONS))
    n_unlabelled: int = N_UNLABELLED
    n_no_group: int = N_NO_GROUP

    @staticmethod
    def write_config(folder: Path, dataset: Path, recipe: str = "", name: str = "recipe.toml") -> Path:
        return write_config(folder, dataset, recipe, name)


def write_dataset(path: Path, n_stars: int = 80, seed: int = 1) -> Path:
    """A simulated survey (payne/mdwarf/yso groups), plus unlabelled and group-less rows."""
    from starlabels.data.hdf5 import DatasetWriter
    from starlabels.data.survey import GeneratorSource, SurveyConfig, SurveySimulator

    cfg = SurveyConfig(n_stars=n_stars, seed=seed,
                       population={"giants": 0.6, "dwarfs": 0.2, "cool_dwarfs": 0.2})
    survey = SurveySimulator(GeneratorSource.default(seed), cfg).simulate()
    keep = [survey.label_names.index(n) for n in LABELS]
    survey = dataclasses.replace(
        survey, group=np.array([GROUPS[g] for g in survey.group]),
        labels=survey.labels[:, keep], label_errors=survey.label_errors[:, keep],
        true_labels=survey.true_labels[:, keep], label_names=tuple(LABELS),
    )
    survey.write_hdf5(path)
    extra = N_UNLABELLED + N_NO_GROUP
    with DatasetWriter(path, survey.flux.shape[1], "apstar", LABELS) as w:
        w.append(survey.flux[:extra], survey.error[:extra], survey.bitmask[:extra],
                 labels=np.vstack([np.full((N_UNLABELLED, 3), np.nan), survey.labels[:N_NO_GROUP]]),
                 meta={"group": ["payne"] * N_UNLABELLED + [""] * N_NO_GROUP,
                       "apogee_id": [f"EXTRA{i}" for i in range(extra)]})
    return path


CONFIG = """
[data]
files = ["{dataset}"]
label_names = ["TEFF", "LOGG", "FE_H"]
chunk_rows = 32
buffer_chunks = 2

[model]
architecture = "apogee_net"

[optimiser]
name = "adam"
learning_rate = 0.0005
scheduler = "none"

[training]
loss = "mse"
epochs = 2
patience = 2
batch_size = 32
seed = 4
device = "cpu"

[output]
folder = "not_used"

[recipe]
focus_groups = ["mdwarf", "yso"]
large_group = "payne"
{recipe}
[recipe.fractions]
payne = [0.8, 0.1, 0.1]
mdwarf = [0.6, 0.2, 0.2]
yso = [0.6, 0.2, 0.2]

[recipe.adaptation]
fraction = 0.05
max_rounds = 2
round_patience = 2
epochs = 1
"""


def write_config(folder: Path, dataset: Path, recipe: str = "", name: str = "recipe.toml") -> Path:
    path = folder / name
    path.write_text(CONFIG.format(dataset=dataset, recipe=recipe))
    return path


@pytest.fixture(scope="session")
def recipe_run(tmp_path_factory) -> RecipeRun:
    """The recipe run once on the simulated survey (≈ 10 s on one CPU thread)."""
    from starlabels.cli.main import cli

    folder = tmp_path_factory.mktemp("recipe")
    dataset = write_dataset(folder / "survey.h5")
    config = write_config(folder, dataset)
    output = folder / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = CliRunner().invoke(cli, ["recipe", "apogee-net", str(config), "-o", str(output)])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output + repr(res.exception)
    return RecipeRun(config=config, dataset=dataset, output=output, stdout=res.output)
