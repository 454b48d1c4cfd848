"""APOGEE Net's whole training recipe (Olney et al. 2020, §3.3–3.4, Tables 1–3) in one run.

:func:`starlabels.evaluation.recipe_tables.run_recipe` (``starlabels recipe apogee-net CONFIG.toml``)
does what the paper did; this module reads the recipe's config, splits the data per group and runs
the training part (:func:`train_recipe`, steps 1–3), :mod:`starlabels.evaluation.recipe_tables`
evaluates the model and writes the tables (step 4):

1. **split per group** — each value of the dataset's group column (``meta/group``: ``payne``,
   ``mdwarf``, ``yso``) is split into train/dev/test with its own fractions
   (:func:`starlabels.data.splits.group_split`; the paper: 80/10/10 for the Payne stars, 60/20/20
   for the M dwarfs and YSOs). Rows with an empty group value or without any label are left out
   of every split (and counted in the summary);
2. **train on everything** — APOGEE Net on the raw apStar flux (bad pixels repaired, errors
   capped: ``[preprocess] kind = "raw"``, the default here for raw apStar-grid datasets) with
   early stopping on the dev loss (:class:`starlabels.training.trainer.Trainer`);
3. **stratified adaptation** — rounds of training on the focus groups plus a fresh random 5% of
   the large group until the focus groups stop improving
   (:func:`starlabels.training.stratified.adapt`);
4. **evaluation** — the saved model predicts every row of the three splits
   (:func:`starlabels.predict`, point estimates) and
   :func:`starlabels.evaluation.metrics.apogee_net_tables` makes the paper's tables, in its layout:

   - Table 1 (``table1_normalisation``): label, unit, mean, std — the training-set
     standardisation (the model's label scaler);
   - Table 2 (``table2_mse``): one row per group (``Full`` = every star first), one column per
     split (train, dev, test): the combined standardised MSE, the mean over all valid
     (star, label) entries of ((prediction − label)/std)²;
   - Table 3 (``table3_scatter``): one row per (group, label), one column per split: the scatter
     between labels and predictions in the label's units (RMS by default, ``statistic``).

   Each table is written as Markdown (``.md``, 4 significant figures) and CSV (``.csv``, full
   precision).

Output folder (``[output] folder`` or ``-o``)::

    OUT/
      model/                     the TrainedModel folder (config.json, weights.safetensors,
                                 history.csv with a ``stage`` column, splits.npz, checkpoint.pt)
      table1_normalisation.{md,csv}
      table2_mse.{md,csv}
      table3_scatter.{md,csv}
      predictions.csv            ROW, APOGEE_ID (when the dataset has it), GROUP, SPLIT, each label's
                                 prediction (<LABEL>) and training label (<LABEL>_REF)
      recipe.json                rows per group and split, excluded rows, main stage,
                                 adaptation rounds, table files

Configuration
-------------
The file is a training config (:mod:`starlabels.training.config`: ``[data]``, ``[model]``,
``[preprocess]``, ``[optimiser]``, ``[training]``, ``[output]``; read by the same loader) plus a
``[recipe]`` section. The split and the adaptation are set *only* in ``[recipe]``, so ``[data]
group_column`` (unless equal), ``[data.split]`` and ``[stratified]`` are refused. Every
``[recipe]`` key is optional; the defaults are the paper's, except ``preset``::

    [recipe]
    preset = "learning"                    # or "paper": see "Presets" below
    group_column = "group"                 # meta/<name> holding each row's group
    default_fractions = [0.8, 0.1, 0.1]    # train/dev/test of groups not in [recipe.fractions]
    focus_groups = ["mdwarf", "yso"]       # adapted to in the stratified stage
    large_group = "payne"                  # subsampled each adaptation round
    split_seed = 0                         # default: [training] seed
    full_name = "Full"                     # the all-stars row of Tables 2 and 3
    statistic = "rms"                      # Table 3 scatter: "rms", "std" or "sigma_mad"

    [recipe.fractions]                     # per-group train/dev/test (replaces the default table)
    payne = [0.8, 0.1, 0.1]
    mdwarf = [0.6, 0.2, 0.2]
    yso = [0.6, 0.2, 0.2]

    [recipe.adaptation]                    # starlabels.training.stratified.adapt settings
    fraction = 0.05                        # of the large group's training rows, fresh each round
    max_rounds = 20
    round_patience = 1                     # rounds without focus-group improvement before stopping
    epochs = 30                            # maximum epochs per round (default: [training] epochs)
    criterion = "balanced"                 # "balanced", "focus" or "dev" (see adapt)
    large_tolerance = 0.2                  # optional guard on the large group's dev loss

    [recipe.group_names]                   # names shown in the tables (default below)
    payne = "Payne"
    mdwarf = "MStar"
    yso = "YSO"

Presets
-------
``preset = "learning"`` (the default) fills in, wherever the config leaves them out, the settings
that learn: ``[model] spectrum_scaling = "standardised"``, ``[model] init = "kaiming"`` and
``[preprocess] scale = "median"`` for the raw-flux preprocessing (also when ``[preprocess]`` is
absent). ``preset = "paper"`` keeps the paper's exact settings (raw flux unscaled, no input
scaling, torch's default init); with them APOGEE Net's output barely depends on its input within
a CPU budget and it predicts about one value for every star (bench/results/accuracy.md). Keys the
config gives are used as given under either preset.

``[output] folder`` is the recipe's output folder (the model goes to ``<folder>/model``);
relative paths are relative to the config file. When ``[preprocess]`` is absent and the
dataset holds raw apStar-grid spectra, the paper's raw-flux preprocessing (``kind = "raw"``) is
used; a dataset that is already preprocessed is used as stored. ``examples/recipe_apogee_net.toml``
is a complete file with the paper's hyperparameters (SGD, learning rate 0.001, dropout 0.1,
batch size 128, early-stopping patience 5, MSE loss).

From catalogs to the recipe's dataset
-------------------------------------
The recipe needs one or more starlabels HDF5 datasets whose rows carry labels and a group
(``meta/group``). Two ways to get there:

* **one ingest per group** — ``starlabels ingest`` writes the value of ``--group`` into every row
  it adds; give it the spectra and the label catalogue of one group at a time, into one file per
  group, and list all of them in ``[data] files``::

      starlabels labels mdwarf allstar_photometry.fits -o mdwarf_labels.fits
      starlabels ingest payne_spectra/  -o data/payne.h5  --labels payne.fits         --group payne
      starlabels ingest mdwarf_spectra/ -o data/mdwarf.h5 --labels mdwarf_labels.fits --group mdwarf
      starlabels ingest yso_spectra/    -o data/yso.h5    --labels yso_labels.fits    --group yso

* **the assemble module** — :func:`starlabels.labels.assemble_labels` merges the Payne,
  M-dwarf and YSO label tables with the paper's precedence (yso > mdwarf > payne; Payne labels
  only where Teff > 4000 K or log g < 3.5) into one table with a ``group`` column; write one
  catalogue per group and ingest each as above::

      from astropy.table import Table
      from starlabels.labels import assemble_labels

      t = assemble_labels(spectro=Table.read("payne.fits"), mdwarf=Table.read("mdwarf_labels.fits"),
                          yso=Table.read("yso_labels.fits"))
      for g in ("payne", "mdwarf", "yso"):
          t[t["group"] == g].write(f"labels_{g}.fits", overwrite=True)
      # then: starlabels ingest spectra/ -o data/<g>.h5 --labels labels_<g>.fits --group <g>

  Ingesting a whole spectra folder per group also adds the stars that group does not label; they
  get MISSING labels and the recipe leaves them out of every split (``recipe.json`` counts them),
  so the result is the same, only the files are larger.

Kept as one module because the config, its checks and the per-group split it implies are read
together as one unit (~500 lines, a quarter of them this user documentation of the format).
"""


from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.training.config import (
    ConfigError,
    SplitConfig,
    StratifiedConfig,
    TrainConfig,
    config_from_dict,
    read_toml,
)

if TYPE_CHECKING:  # pragma: no cover
    from starlabels.training.data_access import TrainingData

#: The paper's per-group train/dev/test fractions (§3: 80/10/10 Payne, 60/20/20 M dwarfs and YSOs).
DEFAULT_FRACTIONS: dict[str, tuple[float, float, float]] = {
    "payne": (0.8, 0.1, 0.1), "mdwarf": (0.6, 0.2, 0.2), "yso": (0.6, 0.2, 0.2),
}
#: Group names as printed in the paper's tables.
DEFAULT_GROUP_NAMES: dict[str, str] = {"payne": "Payne", "mdwarf": "MStar", "yso": "YSO"}
#: Keys of ``[recipe]`` (tables ``fractions``, ``adaptation`` and ``group_names`` included).
RECIPE_KEYS = ("group_column", "default_fractions", "focus_groups", "large_group", "split_seed",
               "full_name", "statistic", "fractions", "adaptation", "group_names", "preset")
#: ``[recipe] preset``: "learning" (the default) fills in the settings that learn wherever the
#: config leaves them out; "paper" keeps Olney et al.'s exact settings (raw flux, no input
#: scaling, torch's default init), with which the network predicts about one value for every star.
PRESETS = ("learning", "paper")
#: What ``preset = "learning"`` sets when the config does not: ``[model]`` keys, and
#: ``[preprocess] scale`` for the raw-flux preprocessing (measured: bench/results/accuracy.md).
LEARNING_MODEL = {"spectrum_scaling": "standardised", "init": "kaiming"}
LEARNING_SCALE = "median"
#: ``[recipe.adaptation]`` keys: the StratifiedConfig fields other than the groups.
ADAPTATION_KEYS = ("fraction", "max_rounds", "round_patience", "epochs", "criterion", "large_tolerance")
STATISTICS = ("rms", "std", "sigma_mad")
MODEL_SUBFOLDER = "model"
SPLITS = ("train", "dev", "test")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass
class RecipeConfig:
    """A recipe run: the training config (with the group split and the adaptation filled in from
    ``[recipe]``) and the evaluation settings. Build it with :func:`load_recipe`."""

    train: TrainConfig
    group_names: dict[str, str] = field(default_factory=dict)
    full_name: str = "Full"
    statistic: str = "rms"
    source: str | None = None
    preset: str = "learning"

    @property
    def split(self) -> SplitConfig:
        """Per-group fractions (``method="group"``) and seed."""
        return self.train.data.split

    @property
    def stratified(self) -> StratifiedConfig:
        """Adaptation settings (focus groups, large group, fraction, rounds, ...)."""
        assert self.train.stratified is not None
        return self.train.stratified

    @property
    def group_column(self) -> str:
        assert self.train.data.group_column is not None
        return self.train.data.group_column

    @property
    def output(self) -> Path:
        """The recipe's output folder."""
        return Path(self.train.output.folder)

    @property
    def model_folder(self) -> Path:
        """Where the trained model is written: ``<output>/model``."""
        return self.output / MODEL_SUBFOLDER

    def display_name(self, group: str) -> str:
        """A group's name in the tables."""
        return self.group_names.get(group, DEFAULT_GROUP_NAMES.get(group, group))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (stored in ``recipe.json`` and the model's provenance)."""
        return {"train": self.train.to_dict(), "group_names": dict(self.group_names),
                "full_name": self.full_name, "statistic": self.statistic, "source": self.source,
                "preset": self.preset}


def _table(values: Any, where: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table, got {type(values).__name__}")
    return dict(values)


def _reword(exc: ConfigError) -> str:
    """A message of the training-config classes in terms of ``[recipe]``."""
    msg = str(exc)
    for old, new in (("[data.split.groups]", "[recipe.fractions]"), ("[data.split]", "[recipe]"),
                     ("[stratified]", "[recipe.adaptation]")):
        msg = msg.replace(old, new)
    return msg


def recipe_from_dict(raw: Mapping[str, Any], base_dir: str | Path | None = None) -> RecipeConfig:
    """Build a :class:`RecipeConfig` from parsed TOML (format in the module docstring).

    The training sections go through :func:`starlabels.training.config.config_from_dict`, with
    ``[data] group_column``, ``[data.split]`` and ``[stratified]`` made from ``[recipe]``.
    Raises :class:`~starlabels.training.config.ConfigError` naming the section and key.
    """
    raw = dict(raw)
    recipe = _table(raw.pop("recipe", {}), "[recipe]")
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise ConfigError(f"[recipe]: unknown key(s) {unknown}; known: {sorted(RECIPE_KEYS)}")
    if "stratified" in raw:
        raise ConfigError("the recipe sets the adaptation in [recipe] / [recipe.adaptation]; "
                          "remove the [stratified] section")
    data = _table(raw.get("data", {}), "[data]")
    if "split" in data:
        raise ConfigError("the recipe splits per group as set in [recipe] / [recipe.fractions]; "
                          "remove the [data.split] section")
    group_column = str(recipe.get("group_column", "group"))
    if data.get("group_column") not in (None, group_column):
        raise ConfigError(f"[data] group_column {data['group_column']!r} differs from [recipe] "
                          f"group_column {group_column!r}; set it in [recipe] only")

    fractions = _table(recipe.get("fractions", DEFAULT_FRACTIONS), "[recipe.fractions]")
    split_raw: dict[str, Any] = {"method": "group", "groups": fractions,
                                 "fractions": recipe.get("default_fractions", (0.8, 0.1, 0.1)),
                                 "seed": recipe.get("split_seed")}
    adaptation = _table(recipe.get("adaptation", {}), "[recipe.adaptation]")
    unknown = sorted(set(adaptation) - set(ADAPTATION_KEYS))
    if unknown:
        raise ConfigError(f"[recipe.adaptation]: unknown key(s) {unknown}; known: {list(ADAPTATION_KEYS)}")
    strat_raw = {"focus_groups": list(recipe.get("focus_groups", ["mdwarf", "yso"])),
                 "large_group": str(recipe.get("large_group", "payne")), **adaptation}
    try:  # validate here so errors name [recipe]
        SplitConfig(**split_raw)
        StratifiedConfig(**strat_raw)
    except ConfigError as exc:
        raise ConfigError(_reword(exc)) from None
    except TypeError as exc:
        raise ConfigError(f"[recipe]: {exc}") from None

    group_names = {str(k): str(v) for k, v in _table(recipe.get("group_names", {}),
                                                     "[recipe.group_names]").items()}
    statistic = str(recipe.get("statistic", "rms"))
    if statistic not in STATISTICS:
        raise ConfigError(f"[recipe] statistic must be one of {STATISTICS}, got {statistic!r}")
    full_name = str(recipe.get("full_name", "Full"))
    shown = [full_name] + [group_names.get(g, DEFAULT_GROUP_NAMES.get(g, g)) for g in
                           {*fractions, *strat_raw["focus_groups"], strat_raw["large_group"]}]
    if len(set(shown)) != len(shown):
        raise ConfigError(f"[recipe] group_names / full_name give two groups the same name: {shown}")

    preset = str(recipe.get("preset", "learning"))
    if preset not in PRESETS:
        raise ConfigError(f"[recipe] preset must be one of {PRESETS}, got {preset!r}")
    if preset == "learning":  # explicit keys win; only what the config leaves out is filled in
        raw["model"] = {**LEARNING_MODEL, **_table(raw.get("model", {}), "[model]")}
        prep = raw.get("preprocess")
        if isinstance(prep, dict) and prep.get("kind", "continuum") == "raw":
            raw["preprocess"] = {"scale": LEARNING_SCALE, **prep}

    data = {**data, "group_column": group_column, "split": split_raw}
    train = config_from_dict({**raw, "data": data, "stratified": strat_raw}, base_dir=base_dir)
    return RecipeConfig(train=train, group_names=group_names, full_name=full_name, statistic=statistic,
                        preset=preset)


def load_recipe(path: str | Path) -> RecipeConfig:
    """Read a recipe TOML file (format in this module's docstring); errors as
    :func:`~starlabels.training.config.read_toml`."""
    cfg = read_toml(path, recipe_from_dict, what="recipe config")
    cfg.source = cfg.train.source = str(Path(path).resolve())
    return cfg


# --------------------------------------------------------------------------------------------
# splitting
# --------------------------------------------------------------------------------------------


def labelled_rows(labels: np.ndarray) -> np.ndarray:
    """(N,) True where a row has at least one label (not MISSING, not NaN)."""
    lab = np.asarray(labels, dtype=np.float64)
    return ((lab != MISSING) & np.isfinite(lab)).any(axis=1)


def recipe_split(
    groups: np.ndarray, labels: np.ndarray, split: SplitConfig, seed: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-group train/dev/test rows of the usable rows, and a description.

    Usable rows have a non-empty group and at least one label; the others are in no split. The
    usable rows are split with :func:`starlabels.data.splits.group_split` (fractions per group,
    ``split.fractions`` for groups not listed, seed ``split.seed`` or ``seed``).
    """
    from starlabels.data.splits import group_split

    groups = np.asarray(groups).astype(str)
    has_group = groups != ""
    has_label = labelled_rows(labels)
    usable = np.flatnonzero(has_group & has_label)
    seed = int(split.seed if split.seed is not None else seed)
    parts = group_split(groups[usable], split.groups, default=split.fractions, seed=seed)
    rows = {name: usable[p].astype(np.int64) for name, p in zip(SPLITS, parts, strict=True)}
    names = sorted(set(groups[usable].tolist()))
    info = {
        "method": "group", "groups": {k: list(v) for k, v in split.groups.items()},
        "default": list(split.fractions), "seed": seed,
        "fractions_used": {g: list(split.groups.get(g, split.fractions)) for g in names},
        "group_sizes": {part: {g: int(np.count_nonzero(groups[r] == g)) for g in names}
                        for part, r in rows.items()},
        "excluded": {"no_group": int(np.count_nonzero(~has_group)),
                     "no_labels": int(np.count_nonzero(has_group & ~has_label))},
    }
    return rows, info


def _check_groups(split: Mapping[str, np.ndarray], groups: np.ndarray, s: StratifiedConfig) -> None:
    """Fail before training when the adaptation could not run on this split."""
    from starlabels.training.errors import TrainingError

    train = set(groups[split["train"]].tolist())
    dev = set(groups[split["dev"]].tolist())
    missing = [g for g in [*s.focus_groups, s.large_group] if g not in train]
    if missing:
        raise TrainingError(f"group(s) {missing} have no training rows; the dataset's groups with "
                            f"training rows: {sorted(train)} (check [recipe] focus_groups/large_group "
                            "and the dataset's group column)")
    no_dev = [g for g in s.focus_groups if g not in dev]
    if no_dev:
        raise TrainingError(f"focus group(s) {no_dev} have no dev rows; give them more rows or a "
                            "larger dev fraction in [recipe.fractions]")


# --------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------


@dataclass
class RecipeTraining:
    """What :func:`train_recipe` produced: the config with the preprocessing it trained with, the
    data and split, the facts for ``recipe.json`` (``extra``), and whether this is the reporting
    rank."""

    cfg: RecipeConfig
    data: TrainingData
    split: dict[str, np.ndarray]
    extra: dict[str, Any]
    is_main: bool


def _preprocess_for(cfg: TrainConfig, data: TrainingData, preset: str = "learning") -> dict[str, Any] | None:
    """The [preprocess] to train with: the config's, else the raw-flux repair for raw spectra on a
    built-in instrument grid (apStar, BOSS, …), median-scaled unless ``preset`` is "paper"."""
    if cfg.preprocess is not None:
        return cfg.preprocess
    prep = _raw_preprocess_for(data)
    if prep is not None and preset == "learning":
        prep = {**prep, "scale": LEARNING_SCALE}
    return prep


def _raw_preprocess_for(data: TrainingData) -> dict[str, Any] | None:
    if data.preprocessing is None and data.grid is not None:
        from starlabels.core import find_grid

        hit = find_grid(data.grid)  # raw spectra on an instrument's grid: its raw-flux repair
        if hit is not None:
            inst, name = hit
            if inst.name == "apogee" and inst.grid.same_as(data.grid):
                return {"kind": "raw"}  # as before grids were data (same config.json)
            return {"kind": "raw", "instrument": inst.name, "input_grid": name}
    return None


def train_recipe(cfg: RecipeConfig, *, resume: bool = False, distributed: Any = None) -> RecipeTraining:
    """Split, train and adapt (steps 1–3 of the module docstring); the model is saved to
    ``cfg.model_folder``.

    ``resume`` continues an interrupted run from ``<output>/model/checkpoint.pt``. Under
    DistributedDataParallel (``distributed``) every rank trains; rank 0 writes.
    """
    from starlabels.models import build_network
    from starlabels.preprocess.pipeline import PreprocessConfig
    from starlabels.training.data_access import TrainingData
    from starlabels.training.from_config import network_kwargs
    from starlabels.training.stratified import adapt
    from starlabels.training.trainer import Trainer
    from starlabels.utils import seeded

    tc = cfg.train
    seed = int(tc.training.seed)
    data = TrainingData.from_hdf5(tc.data.files, tc.data.label_names, group_column=cfg.group_column)
    assert data.groups is not None
    split, info = recipe_split(data.groups, data.labels, cfg.split, seed)
    _check_groups(split, data.groups, cfg.stratified)

    tc = dataclasses.replace(tc, preprocess=_preprocess_for(tc, data, cfg.preset))
    cfg = dataclasses.replace(cfg, train=tc)
    preprocess = None if tc.preprocess is None else PreprocessConfig.from_dict(dict(tc.preprocess))
    # the network's input length: as stored, or what the preprocessing makes of raw spectra
    n_in = data.n_pixels if data.preprocessing is not None or preprocess is None else preprocess.n_pixels
    with seeded(seed):  # the initial weights: seeded, without touching the caller's random states
        kwargs = network_kwargs(tc.model.architecture,
                                {"n_labels": len(tc.data.label_names), "n_pixels": n_in, **tc.model.kwargs},
                                data, preprocess)
        network = build_network(tc.model.architecture, **kwargs)
        if tc.model.init == "kaiming":
            from starlabels.models.init import kaiming_init

            kaiming_init(network)
    provenance = {"config": plain_json(tc.to_dict()),
                  "recipe": {"name": "apogee_net", "source": cfg.source,
                             "group_names": {g: cfg.display_name(g) for g in info["fractions_used"]}}}
    trainer = Trainer(
        network, data, split, optimiser=tc.optimiser, training=tc.training, preprocess=preprocess,
        spectrum_scaling=tc.model.spectrum_scaling, folder=cfg.model_folder, resume=resume,
        overwrite=tc.output.overwrite, chunk_rows=tc.data.chunk_rows,
        buffer_chunks=tc.data.buffer_chunks, shuffle=tc.data.shuffle, split_info=info,
        provenance=provenance, distributed=distributed,
    )
    main = trainer.run_stage("main", trainer.split["train"])
    s = cfg.stratified
    adaptation = adapt(trainer, s.focus_groups, s.large_group, fraction=s.fraction,
                       max_rounds=s.max_rounds, round_patience=s.round_patience, epochs=s.epochs,
                       criterion=s.criterion, large_tolerance=s.large_tolerance,
                       min_delta=tc.training.min_delta)
    trainer.finish()
    return RecipeTraining(cfg=cfg, data=data, split=trainer.split, is_main=trainer.is_main, extra={
        "split": info, "main": dataclasses.asdict(main), "stratified": adaptation,
        "epochs_run": int(trainer.state["global_epoch"]),
    })


def plain_json(obj: Any) -> Any:
    """Plain JSON values of ``obj``, recursively: numpy scalars/arrays converted, non-finite floats
    as None, other objects as their ``str()`` (the recipe's provenance and ``recipe.json``)."""
    if isinstance(obj, Mapping):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return plain_json(obj.tolist())
    if isinstance(obj, np.generic):
        return plain_json(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str | int | bool) or obj is None:
        return obj
    return str(obj)
