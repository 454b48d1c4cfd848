"""Training configuration: dataclasses and the TOML file read by ``starlabels train``.

A training run is described by one TOML file. Every relative path in it — ``[data] files``,
``[output] folder``, ``[model.kwargs] windows`` / ``censor_windows`` / ``censors``,
``[preprocess] continuum_mask`` — is relative to the folder holding the file, never to the working
directory (the rule is :func:`starlabels.training.config_files.resolve_config_file`). A file key
that names no file there may name a reference file by its bare file name
(found in ``$STARLABELS_REFERENCE_DIR`` or the download cache, see
:func:`starlabels.core.find_reference`) or, for element windows, an instrument's windows
(``"dr14"``); otherwise loading fails with an error listing every place it looked.

Every section and key is optional except ``[data] files`` and ``[data] label_names``; unknown keys
are an error (typos should not pass silently).

.. code-block:: toml

    [data]
    files = ["train.h5"]                 # one or more starlabels HDF5 datasets (same grid)
    label_names = ["TEFF", "LOGG", "FE_H"]
    group_column = "group"               # meta/<name> holding each row's group (optional)
    chunk_rows = 1024                    # rows read from the file at once when streaming
    buffer_chunks = 4                    # chunks shuffled together (memory ~ chunk_rows × buffer_chunks)
    shuffle = "auto"                     # "chunks" (stream), "full" (random access) or "auto"

    [data.split]
    method = "random"                    # "random", or "group" (per-group fractions below)
    fractions = [0.8, 0.1, 0.1]          # train, dev, test
    seed = 0                             # defaults to [training] seed
    [data.split.groups]                  # method = "group": fractions per group value
    payne = [0.8, 0.1, 0.1]
    mdwarf = [0.6, 0.2, 0.2]
    yso = [0.6, 0.2, 0.2]

    [model]
    architecture = "bcnn"                # name for starlabels.models.build_network
    spectrum_scaling = "centred"         # "centred" (per-pixel mean, astroNN), "standardised" or "none"
    init = "default"                     # "default" (torch) or "kaiming" (He-normal; see models.init)
    [model.kwargs]                       # passed to the network (n_labels/n_pixels are filled in)
    dropout = 0.3

    [preprocess]                         # starlabels.preprocess.pipeline.PreprocessConfig.from_dict
    kind = "continuum"                   # omit the section when the files are already preprocessed
    degree = 2

    [optimiser]
    name = "adam"                        # "adam" or "sgd"
    learning_rate = 1e-3
    weight_decay = 0.0
    momentum = 0.0                       # sgd only
    scheduler = "plateau"                # ReduceLROnPlateau on the dev loss, "one_cycle" or "none"
    lr_factor = 0.5
    lr_patience = 2
    min_lr = 1e-6

    [training]
    loss = "robust"                      # "mse", "mae" (masked) or "robust" (needs a variance head)
    epochs = 100                         # maximum number of epochs
    patience = 5                         # early stopping on the dev loss
    batch_size = 64
    seed = 0
    device = "auto"                      # "auto" (cuda when present), "cpu", "cuda", "cuda:1", ...
    dev_mc_samples = 0                   # > 0: dev loss with dropout on, mean over this many passes
    [training.augment]                   # optional noise augmentation (starlabels.data.augment)
    snr = [15, 400]                      # target SNR, log-uniform; noisier spectra are left as they are
    fraction = 0.8                       # share of each batch's rows degraded
    dev = true                           # dev loss on one fixed degraded copy of the dev rows

    [stratified]                         # optional: APOGEE Net §3.4 adaptation after training
    focus_groups = ["mdwarf", "yso"]
    large_group = "payne"
    fraction = 0.05
    max_rounds = 20
    round_patience = 1                   # stop after this many rounds without focus improvement
    epochs = 30                          # maximum epochs per round (default: [training] epochs)
    criterion = "balanced"               # per-round early stopping: "balanced", "focus" or "dev"
    large_tolerance = 0.2                # optional: large group's dev loss may rise at most 20%

    [output]
    folder = "models/bcnn"               # the TrainedModel folder (checkpoint.pt lives there too)
    overwrite = false

The Cannon instead of a network (``[model] name = "cannon"``; :class:`starlabels.CannonModel`):

.. code-block:: toml

    [model]
    name = "cannon"                      # default "network": the [model] architecture
    [model.kwargs]                       # CannonModel arguments, all optional
    order = 2                            # polynomial order of the label model (quadratic)
    regularisation = 0.0                 # L1 strength Λ (Casey et al. 2016; "regularization" is read too)
    n_starts = 5                         # test-step starting points (median + k-means medians)
    censors = { FE_H = "fe_h_pixels.npy" }   # (P,) bool .npy per label: True = may shape the pixel
    censor_windows = "aspcap_element_windows_dr14_7514.npz"   # or: element labels (MG_FE, ...) only
                                         # in their element's windows (TEFF, LOGG, FE_H, M_H, ALPHA_M
                                         # everywhere; Casey et al. 2016); censors entries win

    [preprocess]                         # must give continuum-normalised flux (kind = "continuum"),
    kind = "continuum"                   # or omit it for files already preprocessed that way

The Cannon trains on the train split's rows that have every label (MISSING rows are dropped),
calibrates its inverse-Fisher σ on the dev split's complete rows (when there are ≥ 5), and saves
its model folder to ``[output] folder``; ``[optimiser]``, ``[stratified]`` and the loop keys of
``[training]`` do not apply (``seed`` and ``device`` do).

:func:`load_config` returns a :class:`TrainConfig`; each section is a dataclass that can also be
built directly in Python (``TrainingConfig(epochs=3)``) and passed to
:class:`starlabels.training.trainer.Trainer`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from starlabels.constants import SPECTRUM_MODE_ALIASES, SPECTRUM_MODES
from starlabels.training.config_files import element_window_names, read_toml, resolve_config_file
from starlabels.training.errors import ConfigError

OPTIMISERS = ("adam", "sgd")
LOSSES = ("mse", "mae", "robust")
SCHEDULERS = ("plateau", "one_cycle", "none")
SHUFFLES = ("auto", "chunks", "full")
SPLIT_METHODS = ("random", "group")


def _check_fractions(fr: Any, where: str) -> tuple[float, float, float]:
    try:
        out = tuple(float(f) for f in fr)
    except TypeError:
        raise ConfigError(f"{where}: fractions must be a list of 3 numbers, got {fr!r}") from None
    if len(out) != 3 or any(f < 0 for f in out) or not math.isclose(sum(out), 1.0, abs_tol=1e-6):
        raise ConfigError(f"{where}: fractions must be 3 non-negative numbers summing to 1, got {fr!r}")
    if out[0] == 0:
        raise ConfigError(f"{where}: the train fraction must be > 0, got {fr!r}")
    return out  # type: ignore[return-value]


@dataclass
class SplitConfig:
    """How rows are divided into train/dev/test.

    ``method="random"`` uses ``fractions`` for all rows; ``method="group"`` uses ``groups``
    (group value → fractions) and ``fractions`` for groups not listed. ``seed=None`` uses the
    training seed.
    """

    method: str = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    groups: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.method not in SPLIT_METHODS:
            raise ConfigError(f"[data.split] method must be one of {SPLIT_METHODS}, got {self.method!r}")
        self.fractions = _check_fractions(self.fractions, "[data.split]")
        self.groups = {
            str(k): _check_fractions(v, f"[data.split.groups] {k}") for k, v in self.groups.items()
        }
        if self.method == "group" and not self.groups:
            raise ConfigError("[data.split] method = 'group' needs a [data.split.groups] table")


@dataclass
class DataConfig:
    """Where the training spectra are and how they are read (see the module docstring)."""

    files: list[str] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)
    group_column: str | None = None
    chunk_rows: int = 1024
    buffer_chunks: int = 4
    shuffle: str = "auto"
    split: SplitConfig = field(default_factory=SplitConfig)

    def __post_init__(self) -> None:
        if isinstance(self.split, dict):
            self.split = _build(SplitConfig, self.split, "[data.split]")
        if isinstance(self.files, str):
            self.files = [self.files]
        self.files = [str(f) for f in self.files]
        self.label_names = [str(n).upper() for n in self.label_names]
        if len(set(self.label_names)) != len(self.label_names):
            raise ConfigError(f"[data] label_names has duplicates: {self.label_names}")
        if self.chunk_rows < 1 or self.buffer_chunks < 1:
            raise ConfigError("[data] chunk_rows and buffer_chunks must be >= 1")
        if self.shuffle not in SHUFFLES:
            raise ConfigError(f"[data] shuffle must be one of {SHUFFLES}, got {self.shuffle!r}")
        if self.split.method == "group" and not self.group_column:
            raise ConfigError("[data.split] method = 'group' needs [data] group_column")


#: Label methods ``[model] name`` selects (``"network"``: the ``architecture``).
MODEL_NAMES = ("network", "cannon")
#: ``[model.kwargs]`` keys of ``name = "cannon"``.
CANNON_KWARGS = ("order", "regularisation", "n_starts", "censors", "censor_windows")
#: Older spellings of ``[model.kwargs]`` Cannon keys, read as the new key.
CANNON_KWARG_ALIASES = {"regularization": "regularisation"}


@dataclass
class ModelConfig:
    """Network architecture (a ``starlabels.models.build_network`` name) and its kwargs — or, with
    ``name = "cannon"``, The Cannon and its :class:`~starlabels.models.cannon.CannonModel` kwargs."""

    architecture: str = "apogee_net"
    kwargs: dict[str, Any] = field(default_factory=dict)
    spectrum_scaling: str = "none"
    init: str = "default"
    name: str = "network"

    def __post_init__(self) -> None:
        self.name = str(self.name).lower()
        if self.name not in MODEL_NAMES:
            raise ConfigError(f"[model] name must be one of {MODEL_NAMES}, got {self.name!r}")
        if self.name == "cannon":
            for old, new in CANNON_KWARG_ALIASES.items():
                if old in self.kwargs:
                    if new in self.kwargs:
                        raise ConfigError(f"[model.kwargs] gives both {new!r} and its older spelling {old!r}")
                    self.kwargs = {(new if k == old else k): v for k, v in self.kwargs.items()}
            unknown = sorted(set(self.kwargs) - set(CANNON_KWARGS))
            if unknown:
                raise ConfigError(
                    f"[model.kwargs] unknown Cannon key(s) {unknown}; known: {list(CANNON_KWARGS)}"
                )
            censors = self.kwargs.get("censors", {})
            if not isinstance(censors, dict) or not all(isinstance(v, str) for v in censors.values()):
                raise ConfigError("[model.kwargs] censors must be a table {label = \"mask.npy\"}")
        if self.init not in ("default", "kaiming"):
            raise ConfigError(f"[model] init must be 'default' or 'kaiming', got {self.init!r}")
        # the older spelling "centered" is read as "centred" (and written back that way)
        self.spectrum_scaling = SPECTRUM_MODE_ALIASES.get(self.spectrum_scaling, self.spectrum_scaling)
        if self.spectrum_scaling not in SPECTRUM_MODES:
            raise ConfigError(
                "[model] spectrum_scaling must be 'none', 'centred' or 'standardised', "
                f"got {self.spectrum_scaling!r}"
            )


@dataclass
class OptimiserConfig:
    """Optimiser and learning-rate schedule.

    ``learning_rate`` and ``min_lr`` are per step; ``weight_decay`` is the L2 coefficient (coupled,
    as ``torch.optim.Adam``/``SGD``); ``lr_factor``/``lr_patience`` drive ReduceLROnPlateau on the
    dev loss (``scheduler="plateau"``). ``scheduler="one_cycle"`` steps a one-cycle schedule
    (warm-up to ``learning_rate``, then cosine annealing) after every batch over the whole run —
    for a single training stage, as the YSO network uses it.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.0
    scheduler: str = "plateau"
    lr_factor: float = 0.5
    lr_patience: int = 2
    min_lr: float = 1e-6

    def __post_init__(self) -> None:
        self.name = self.name.lower()
        if self.name not in OPTIMISERS:
            raise ConfigError(f"[optimiser] name must be one of {OPTIMISERS}, got {self.name!r}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"[optimiser] scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        if not self.learning_rate > 0:
            raise ConfigError(f"[optimiser] learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise ConfigError("[optimiser] weight_decay and momentum must be >= 0")
        if not 0 < self.lr_factor < 1:
            raise ConfigError(f"[optimiser] lr_factor must be in (0, 1), got {self.lr_factor}")


@dataclass
class TrainingConfig:
    """Loop settings: loss name, epochs (maximum), early-stopping patience, batch size, seed, device.

    ``augment``: noise augmentation of the training batches, ``{"snr": [lo, hi], "fraction": p,
    "dev": bool}`` (:class:`starlabels.data.augment.NoiseAugmentation`; ``dev`` also scores the
    dev loss on one fixed degraded copy of the dev rows), or None. ``dev_mc_samples`` > 0 computes
    the dev loss with dropout on (the mean loss over that many passes with fixed masks), as a
    Monte-Carlo-dropout network is used at prediction time; 0 runs it in eval mode.
    """

    loss: str = "mse"
    epochs: int = 100
    patience: int = 5
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    min_delta: float = 0.0
    augment: dict[str, Any] | None = None
    dev_mc_samples: int = 0

    def __post_init__(self) -> None:
        self.loss = self.loss.lower()
        if self.loss not in LOSSES:
            raise ConfigError(f"[training] loss must be one of {LOSSES}, got {self.loss!r}")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ConfigError("[training] epochs, patience and batch_size must be >= 1")
        if self.dev_mc_samples < 0:
            raise ConfigError("[training] dev_mc_samples must be >= 0")
        if self.augment is not None:
            try:
                self.augment = self.noise_augmentation().to_dict()  # type: ignore[union-attr]
            except (TypeError, KeyError, ValueError) as exc:
                raise ConfigError(f"[training.augment] {exc}") from None

    def noise_augmentation(self) -> Any:
        """The :class:`~starlabels.data.augment.NoiseAugmentation` of ``augment`` (or None)."""
        from starlabels.data.augment import NoiseAugmentation

        return NoiseAugmentation.from_value(None if self.augment is None else dict(self.augment))

    @property
    def torch_device(self) -> str | None:
        """``None`` for "auto" (cuda when present), else the device string."""
        return None if self.device in ("auto", "", None) else self.device


@dataclass
class StratifiedConfig:
    """APOGEE Net §3.4 adaptation: focus groups + a fresh ``fraction`` of the large group per round."""

    focus_groups: list[str] = field(default_factory=list)
    large_group: str = ""
    fraction: float = 0.05
    max_rounds: int = 20
    round_patience: int = 1
    epochs: int | None = None
    criterion: str = "balanced"
    large_tolerance: float | None = None

    def __post_init__(self) -> None:
        self.focus_groups = [str(g) for g in self.focus_groups]
        if self.criterion not in ("balanced", "focus", "dev"):
            raise ConfigError(
                f"[stratified] criterion must be 'balanced', 'focus' or 'dev', got {self.criterion!r}"
            )
        if self.large_tolerance is not None and not self.large_tolerance >= 0:
            raise ConfigError(f"[stratified] large_tolerance must be >= 0, got {self.large_tolerance}")
        if not self.focus_groups or not self.large_group:
            raise ConfigError("[stratified] needs focus_groups and large_group")
        if self.large_group in self.focus_groups:
            raise ConfigError("[stratified] large_group must not be one of focus_groups")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"[stratified] fraction must be in (0, 1], got {self.fraction}")
        if self.max_rounds < 1 or self.round_patience < 1:
            raise ConfigError("[stratified] max_rounds and round_patience must be >= 1")


@dataclass
class OutputConfig:
    """Where the trained-model folder (and its ``checkpoint.pt``) is written."""

    folder: str = "model"
    overwrite: bool = False


@dataclass
class TrainConfig:
    """A whole training run, as read from TOML by :func:`load_config`."""

    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    preprocess: dict[str, Any] | None = None
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    stratified: StratifiedConfig | None = None
    output: OutputConfig = field(default_factory=OutputConfig)
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable copy (stored in the model's training provenance)."""
        return asdict(self)

    def override(
        self,
        *,
        device: str | None = None,
        epochs: int | None = None,
        output: str | None = None,
        overwrite: bool = False,
    ) -> None:
        """Apply command-line overrides in place (None leaves the TOML value)."""
        if device is not None:
            self.training = dataclasses.replace(self.training, device=device)
        if epochs is not None:
            self.training = dataclasses.replace(self.training, epochs=epochs)
        if output is not None:
            self.output = dataclasses.replace(self.output, folder=output)
        if overwrite:
            self.output = dataclasses.replace(self.output, overwrite=True)


def _build(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a table, got {type(values).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
    try:
        return cls(**values)
    except TypeError as exc:  # pragma: no cover - defensive (wrong types)
        raise ConfigError(f"{where}: {exc}") from None


def config_from_dict(raw: dict[str, Any], base_dir: str | Path | None = None) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed TOML; relative paths are taken from ``base_dir``."""
    sections = {"data", "model", "preprocess", "optimiser", "training", "stratified", "output"}
    unknown = sorted(set(raw) - sections)
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}; known: {sorted(sections)}")
    if "data" not in raw:
        raise ConfigError("the [data] section is required")
    data = _build(DataConfig, raw["data"], "[data]")
    if not data.files:
        raise ConfigError("[data] files must list at least one HDF5 dataset")
    if not data.label_names:
        raise ConfigError("[data] label_names must list at least one label")
    base = Path(base_dir) if base_dir is not None else None
    if base is not None:
        data.files = [str(p if Path(p).is_absolute() else (base / p)) for p in data.files]
    output = _build(OutputConfig, raw.get("output", {}), "[output]")
    if base is not None and not Path(output.folder).is_absolute():
        output.folder = str(base / output.folder)
    preprocess = raw.get("preprocess")
    if preprocess is not None and not isinstance(preprocess, dict):
        raise ConfigError("[preprocess] must be a table")
    stratified = raw.get("stratified")
    cfg = TrainConfig(
        data=data,
        model=_build(ModelConfig, raw.get("model", {}), "[model]"),
        preprocess=dict(preprocess) if preprocess else None,
        optimiser=_build(OptimiserConfig, raw.get("optimiser", {}), "[optimiser]"),
        training=_build(TrainingConfig, raw.get("training", {}), "[training]"),
        stratified=None if stratified is None else _build(StratifiedConfig, stratified, "[stratified]"),
        output=output,
    )
    if base is not None:
        _resolve_file_keys(cfg, base)
    kind = (cfg.preprocess or {}).get("kind", "continuum")
    if cfg.model.name == "cannon" and kind != "continuum":
        raise ConfigError(
            "[model] name = 'cannon' needs continuum-normalised flux: [preprocess] kind = 'continuum'"
        )
    if cfg.stratified is not None and cfg.model.name == "cannon":
        raise ConfigError("[stratified] applies to networks, not to [model] name = 'cannon'")
    if cfg.stratified is not None and not cfg.data.group_column:
        raise ConfigError("[stratified] needs [data] group_column")
    if cfg.training.loss == "robust" and cfg.model.architecture.lower().replace("-", "_") == "apogee_net":
        raise ConfigError("loss 'robust' needs a network with a variance head; apogee_net has none")
    return cfg


#: ``[model.kwargs]`` keys holding one file (element windows) that may also name a reference file
#: (:func:`starlabels.core.find_reference`) or an instrument's windows ("dr14").
_REFERENCE_KWARGS = ("windows", "censor_windows")


def _resolve_file_keys(cfg: TrainConfig, base: Path) -> None:
    """Resolve every file key of ``[model.kwargs]`` and ``[preprocess]`` by :func:`resolve_config_file`."""
    kwargs = cfg.model.kwargs
    for key in _REFERENCE_KWARGS:
        if isinstance(kwargs.get(key), str):
            kwargs[key] = resolve_config_file(kwargs[key], base, f"[model.kwargs] {key}",
                                              names=element_window_names())
    if isinstance(kwargs.get("censors"), dict):
        kwargs["censors"] = {str(k): resolve_config_file(str(v), base, f"[model.kwargs] censors.{k}",
                                                         reference=False)
                             for k, v in kwargs["censors"].items()}
    if cfg.preprocess is not None and isinstance(cfg.preprocess.get("continuum_mask"), str):
        cfg.preprocess["continuum_mask"] = resolve_config_file(
            cfg.preprocess["continuum_mask"], base, "[preprocess] continuum_mask")


def load_config(path: str | Path) -> TrainConfig:
    """Read a training TOML file (format in this module's docstring); errors as :func:`read_toml`."""
    cfg = read_toml(path, config_from_dict)
    cfg.source = str(Path(path).resolve())
    return cfg
