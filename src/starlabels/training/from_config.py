"""A training described by a :class:`~starlabels.training.config.TrainConfig` (the TOML of
``starlabels train``): open the data, split it, build the network and the
:class:`~starlabels.training.trainer.Trainer`, and run it (with stratified adaptation when
configured).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from starlabels.training.config import TrainConfig
from starlabels.training.data_access import TrainingData
from starlabels.training.errors import TrainingError
from starlabels.training.trainer import Trainer
from starlabels.utils import seeded

__all__ = ["make_split", "network_kwargs", "train_from_config", "trainer_from_config"]


def make_split(data: TrainingData, cfg: Any, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``({"train", "dev", "test"} rows, description)`` from a :class:`SplitConfig`."""
    from starlabels.data.splits import group_split, random_split

    seed = int(cfg.seed if cfg.seed is not None else seed)
    if cfg.method == "random":
        parts = random_split(data.n_rows, cfg.fractions, seed=seed)
        info = {"method": "random", "fractions": list(cfg.fractions), "seed": seed}
    else:
        if data.groups is None:
            raise TrainingError("a group split needs a group column in the data")
        parts = group_split(data.groups, cfg.groups, default=cfg.fractions, seed=seed)
        info = {"method": "group", "groups": {k: list(v) for k, v in cfg.groups.items()},
                "default": list(cfg.fractions), "seed": seed}
    split = dict(zip(("train", "dev", "test"), parts, strict=True))
    if data.groups is not None:
        info["group_sizes"] = {
            part: {str(g): int(c) for g, c in zip(*np.unique(data.groups[rows], return_counts=True),
                                                   strict=True)}
            for part, rows in split.items()
        }
    return split, info


def network_kwargs(architecture: str, kwargs: dict[str, Any], data: TrainingData, preprocess: Any) -> dict:
    """``kwargs`` for :func:`~starlabels.models.build_network`, with a censored network's element
    ``windows`` (a file, or the name of the instrument's windows such as ``"dr14"``) moved onto the
    grid of the network input (the preprocessing's output grid, or the data's)."""
    if str(architecture).lower().replace("-", "_") != "bcnn_censored" or "windows" not in kwargs:
        return kwargs
    from starlabels.core import find_grid
    from starlabels.models.censored_windows import windows_on_grid

    stored = data.preprocessing
    if stored is not None:
        from starlabels.preprocess.pipeline import PreprocessConfig

        preprocess = PreprocessConfig.from_dict(dict(stored))
    grid = preprocess.output_grid if preprocess is not None else data.grid
    if grid is None:
        return kwargs
    if preprocess is not None:
        instrument = preprocess.instrument
    else:
        hit = find_grid(grid)
        instrument = hit[0].name if hit is not None else "apogee"
    w, names = windows_on_grid(kwargs["windows"], kwargs.get("element_names"), grid, instrument)
    from starlabels.models.censored_windows import check_element_labels

    check_element_labels(names, data.label_names, int(kwargs.get("n_main_labels", 3)))
    return {**kwargs, "windows": w, "element_names": names}


def trainer_from_config(
    cfg: TrainConfig, *, resume: bool = False, distributed: Any = None,
    callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
) -> Trainer:
    """Open the data, split it, build the network and return a ready :class:`Trainer`."""
    from starlabels.models import build_network
    from starlabels.preprocess.pipeline import PreprocessConfig

    seed = int(cfg.training.seed)
    data = TrainingData.from_hdf5(cfg.data.files, cfg.data.label_names, group_column=cfg.data.group_column)
    split, info = make_split(data, cfg.data.split, seed)
    preprocess = None if cfg.preprocess is None else PreprocessConfig.from_dict(cfg.preprocess)
    if data.preprocessing is not None:
        n_in = data.n_pixels
    elif preprocess is not None:
        n_in = preprocess.n_pixels
    else:
        n_in = data.n_pixels
    kwargs = network_kwargs(cfg.model.architecture, {"n_labels": len(cfg.data.label_names), "n_pixels": n_in,
                                                     **cfg.model.kwargs}, data, preprocess)
    with seeded(seed):  # the initial weights: seeded, without touching the caller's random states
        network = build_network(cfg.model.architecture, **kwargs)
        if cfg.model.init == "kaiming":
            from starlabels.models.init import kaiming_init

            kaiming_init(network)
    return Trainer(
        network, data, split, optimiser=cfg.optimiser, training=cfg.training, preprocess=preprocess,
        spectrum_scaling=cfg.model.spectrum_scaling,
        folder=cfg.output.folder, resume=resume, overwrite=cfg.output.overwrite,
        chunk_rows=cfg.data.chunk_rows, buffer_chunks=cfg.data.buffer_chunks, shuffle=cfg.data.shuffle,
        split_info=info, provenance={"config": json.loads(json.dumps(cfg.to_dict(), default=str))},
        distributed=distributed, callbacks=callbacks,
    )


def train_from_config(
    cfg: TrainConfig, *, resume: bool = False, distributed: Any = None,
    callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
) -> Any:
    """Run a whole TOML-described training (+ stratified adaptation when configured);
    ``callbacks(trainer, history_row)`` run after every epoch (e.g. the CLI's epoch line)."""
    trainer = trainer_from_config(cfg, resume=resume, distributed=distributed, callbacks=callbacks)
    if cfg.stratified is not None:  # a bad [stratified] section fails now, not after training
        from starlabels.training.stratified import check_groups

        check_groups(trainer, cfg.stratified.focus_groups, cfg.stratified.large_group)
    trainer.run_stage("main", trainer.split["train"])
    if cfg.stratified is not None:
        from starlabels.training.stratified import adapt

        s = cfg.stratified
        adapt(trainer, s.focus_groups, s.large_group, fraction=s.fraction, max_rounds=s.max_rounds,
              round_patience=s.round_patience, epochs=s.epochs, criterion=s.criterion,
              large_tolerance=s.large_tolerance)
    return trainer.finish()
