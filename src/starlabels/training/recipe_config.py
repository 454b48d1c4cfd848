"""A recipe's TOML file read and checked: :class:`RecipeConfig`, :func:`recipe_from_dict`,
:func:`load_recipe`.

The format (a training config plus a ``[recipe]`` section, its presets and defaults) is documented
in :mod:`starlabels.training.recipe`, the recipe's user documentation; this module parses it. The
training sections go through :func:`starlabels.training.config.config_from_dict` (the same loader
as ``starlabels train``), with ``[data] group_column``, ``[data.split]`` and ``[stratified]`` made
from ``[recipe]``; errors name ``[recipe]`` keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlabels.training.config import SplitConfig, StratifiedConfig, TrainConfig, config_from_dict
from starlabels.training.config_files import read_toml
from starlabels.training.errors import ConfigError

__all__ = ["ADAPTATION_KEYS", "DEFAULT_FRACTIONS", "DEFAULT_GROUP_NAMES", "LEARNING_MODEL", "LEARNING_SCALE",
           "MODEL_SUBFOLDER", "PRESETS", "RECIPE_KEYS", "STATISTICS", "RecipeConfig", "load_recipe",
           "recipe_from_dict"]

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
    """Build a :class:`RecipeConfig` from parsed TOML (format in :mod:`starlabels.training.recipe`).

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
    """Read a recipe TOML file (format in :mod:`starlabels.training.recipe`); errors as
    :func:`~starlabels.training.config_files.read_toml`."""
    cfg = read_toml(path, recipe_from_dict, what="recipe config")
    cfg.source = cfg.train.source = str(Path(path).resolve())
    return cfg
