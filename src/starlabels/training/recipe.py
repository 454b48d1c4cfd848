"""APOGEE Net's whole training recipe (Olney et al. 2020, §3.3–3.4, Tables 1–3) in one run.

:func:`starlabels.evaluation.recipe_tables.run_recipe` (``starlabels recipe apogee-net CONFIG.toml``)
does what the paper did; this module documents the recipe's config (read by
:mod:`starlabels.training.recipe_config`), splits the data per group and runs the training part
(:func:`train_recipe`, steps 1–3), :mod:`starlabels.evaluation.recipe_tables` evaluates the model
and writes the tables (step 4):

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

:class:`RecipeConfig`, :func:`load_recipe` and :func:`recipe_from_dict` are re-exported here from
:mod:`starlabels.training.recipe_config`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.training.config import SplitConfig, StratifiedConfig, TrainConfig
from starlabels.training.recipe_config import LEARNING_SCALE, RecipeConfig, load_recipe, recipe_from_dict

if TYPE_CHECKING:  # pragma: no cover
    from starlabels.training.data_access import TrainingData

__all__ = ["SPLITS", "RecipeConfig", "RecipeTraining", "labelled_rows", "load_recipe", "plain_json",
           "recipe_from_dict", "recipe_split", "train_recipe"]

#: The three parts of a recipe's split, in order.
SPLITS = ("train", "dev", "test")


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
