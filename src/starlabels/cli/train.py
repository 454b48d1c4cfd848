"""``starlabels train CONFIG.toml``: train a label network — or The Cannon — described by a TOML file.

The file has the sections ``[data]`` (HDF5 dataset path(s), label names, group column, streaming
and ``[data.split]``), ``[model]`` (architecture + ``[model.kwargs]``, spectrum scaling),
``[preprocess]`` (a :class:`~starlabels.preprocess.pipeline.PreprocessConfig`; omit it for
already-preprocessed files), ``[optimiser]`` (adam/sgd, learning rate, weight decay, plateau
schedule), ``[training]`` (loss, epochs, patience, batch size, seed, device), optional
``[stratified]`` (APOGEE Net §3.4 adaptation) and ``[output]`` (the model folder). Relative paths
are relative to the config file. Example (all keys: ``starlabels.training.config``; a complete
file: ``examples/train_bcnn.toml``)::

    [data]
    files = ["train.h5"]
    label_names = ["TEFF", "LOGG", "FE_H"]
    group_column = "group"
    [data.split]
    method = "group"
    [data.split.groups]
    payne = [0.8, 0.1, 0.1]
    mdwarf = [0.6, 0.2, 0.2]
    yso = [0.6, 0.2, 0.2]

    [model]
    architecture = "apogee_net"
    [model.kwargs]
    dropout = 0.1

    [preprocess]
    kind = "raw"

    [optimiser]
    name = "sgd"
    learning_rate = 0.001

    [training]
    loss = "mse"
    epochs = 100
    patience = 5
    batch_size = 128
    seed = 0

    [output]
    folder = "models/apogee_net"

With ``[model] name = "cannon"`` the run trains :class:`starlabels.CannonModel` instead (keys
``order``, ``regularisation``, ``n_starts``, ``censors`` in ``[model.kwargs]``; ``[preprocess]``
must be continuum normalisation; see :mod:`starlabels.training.config`), calibrates its σ on the
dev split and writes its model folder; ``--resume`` and ``--epochs`` do not apply.

The run writes the model folder (``config.json``, ``weights.safetensors``, ``history.csv``,
``splits.npz``) and ``checkpoint.pt`` after every epoch; ``--resume`` continues an interrupted
run from it (and reproduces the uninterrupted result). Under ``torchrun`` (``WORLD_SIZE`` > 1)
the command trains with DistributedDataParallel, one rank per process.
"""

from __future__ import annotations

import click


@click.command("train", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--resume", is_flag=True, help="Continue from the output folder's checkpoint.pt.")
@click.option("--overwrite", is_flag=True, help="Start afresh even if the output folder holds a model.")
@click.option("--device", default=None, help="Override [training] device (cpu, cuda, cuda:1, auto).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override [training] epochs.")
@click.option("--output", "output", type=click.Path(file_okay=False), default=None,
              help="Override [output] folder.")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Override [data] files: HDF5 dataset(s) to train on (repeat for several; relative "
                   "to the working directory).")
def command(config: str, resume: bool, overwrite: bool, device: str | None, epochs: int | None,
            output: str | None, data: tuple[str, ...]) -> None:
    """Train a network (or The Cannon) on HDF5 spectra as described by CONFIG (a TOML file).

    Sections: [data] (files, label_names, group_column, [data.split]), [model] (architecture,
    [model.kwargs]; name = "cannon" for The Cannon with order, regularisation, n_starts, censors),
    [preprocess], [optimiser], [training] (loss, epochs, patience, batch_size, seed, device),
    [stratified] (optional) and [output] (folder). See `examples/train_bcnn.toml` and the
    docstring of starlabels.training.config for every key.
    """
    from starlabels.errors import StarlabelsError
    from starlabels.training.config import load_config
    from starlabels.training.distributed import exit_quietly_unless_main_rank, run_summary

    try:
        if resume and overwrite:
            raise click.UsageError("--resume and --overwrite exclude each other")
        cfg = load_config(config)
        if data:
            import dataclasses
            from pathlib import Path

            cfg.data = dataclasses.replace(cfg.data, files=[str(Path(p).resolve()) for p in data])
        if cfg.model.name == "cannon":
            if resume or epochs is not None:
                raise click.UsageError("--resume and --epochs do not apply to The Cannon")
            cfg.override(device=device, output=output, overwrite=overwrite)
            _train_cannon(cfg)
            return
        cfg.override(device=device, epochs=epochs, output=output, overwrite=overwrite)
        model = _run(cfg, resume)
    except (StarlabelsError, FileExistsError) as exc:
        exit_quietly_unless_main_rank()  # under torchrun every rank fails alike: rank 0 says why, once
        raise click.ClickException(str(exc)) from None
    if model is None:  # a non-zero rank of a distributed run
        return
    click.echo(run_summary(model, cfg.output.folder))


def _train_cannon(cfg) -> None:
    import numpy as np

    from starlabels.inference.calibration import report
    from starlabels.training.cannon import train_cannon_from_config

    model = train_cannon_from_config(cfg)
    t = model.training
    click.echo(
        f"trained The Cannon (order {model.order}, {model.n_terms} terms, regularisation "
        f"{model.regularisation if np.ndim(model.regularisation) == 0 else 'per pixel'}) on "
        f"{model.n_train_} spectra with every label (train split {t['sizes']['train']}) and "
        f"{model.n_pixels} pixels ({int(model.pixel_used_.sum())} used) in {model.train_seconds_:.1f} s"
    )
    if model.last_calibration is not None:
        click.echo(report(model.last_calibration))
    else:
        click.echo("not calibrated: fewer than 5 dev rows with every label")
    click.echo(f"model saved to {cfg.output.folder}")


def _run(cfg, resume: bool):
    """The trained model, in this process or as a rank of a torchrun job (None on ranks > 0)."""
    import functools

    from starlabels.training.distributed import run_as_launched
    from starlabels.training.from_config import train_from_config

    return run_as_launched(functools.partial(train_from_config, cfg, resume=resume, callbacks=[_epoch_line]),
                           device=cfg.training.torch_device)


def _epoch_line(trainer, row) -> None:
    """One line per epoch (rank 0 only): stage, epoch, train and dev loss, learning rate."""
    if not getattr(trainer, "is_main", True):
        return
    click.echo(f"{row.get('stage', 'main')} epoch {row['epoch']:3d}: train loss {row['train_loss']:.4f}  "
               f"dev loss {row['dev_loss']:.4f}  lr {row['lr']:.2e}  "
               f"({row.get('seconds', float('nan')):.1f} s)")
