"""``starlabels fit``: labels of apStar spectra by fitting a Payne-format emulator (no training set)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("fit")
@click.argument("emulator", type=click.Path(exists=True))
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Catalog file (.fits, .csv or .parquet).")
@click.option("--labels", "labels", default=None,
              help="Comma-separated label names of the emulator, in its order "
                   "(e.g. TEFF,LOGG,FE_H,ALPHA_M). Required for an emulator .npz.")
@click.option("--fit-mask", type=click.Path(exists=True, dir_okay=False), default=None,
              help="The Payne's fit mask .npz (bool, True = pixel left out), e.g. payne_fit_mask_7214.npz.")
@click.option("--continuum-degree", type=int, default=4, show_default=True,
              help="Chebyshev degree of the continuum per detector (2 is enough for normalised spectra).")
@click.option("--starts", type=int, default=4, show_default=True, help="Starting points per spectrum.")
@click.option("--rv-range", type=float, default=60.0, show_default=True,
              help="Radial velocities scanned: ±this many km/s.")
@click.option("--rv-step", type=float, default=2.0, show_default=True, help="Scan step in km/s.")
@click.option("--clip-sigma", type=float, default=5.0, show_default=True,
              help="Refit without pixels this many σ off the first fit; 0 = no clipping.")
@click.option("--save-model", type=click.Path(file_okay=False), default=None,
              help="Where to write the Payne model folder (emulator + fit settings); default "
                   "OUTPUT's name + '.payne'. Its name is the catalog's MODEL_NAME.")
@click.option("--format", "fmt", type=click.Choice(["fits", "csv", "parquet"]), default=None,
              help="Catalog format (default: from the output's extension).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Spectra fitted together.")
@click.option("--device", default=None, help="Torch device (default: cpu).")
@click.option("--no-calibration", is_flag=True, help="Report uncalibrated uncertainties.")
@click.option("--overwrite", is_flag=True, help="Discard the parts of an earlier, different run.")
def command(emulator, inputs, out, labels, fit_mask, continuum_degree, starts, rv_range, rv_step,
            clip_sigma, save_model, fmt, batch_size, device, no_calibration, overwrite) -> None:
    """Fit the spectra INPUT... (apStar files, directories, HDF5 datasets) with EMULATOR — a
    Payne-format emulator .npz, or a Payne model folder written by an earlier run — and write the
    catalog OUTPUT: labels with Jacobian σ (column X_ERR_JACOBIAN), one fit per spectrum
    (labels, radial velocity, continuum per detector; bitmask-flagged and fit-mask pixels left out).

    An interrupted run, started again with the same arguments, resumes where it stopped.
    """
    import numpy as np

    from starlabels.errors import StarlabelsError
    from starlabels.inference.catalog import run_catalog
    from starlabels.models.payne_fit import PayneModel, payne_model

    try:
        if Path(emulator).is_dir():
            model = PayneModel.load(emulator)
            folder = Path(emulator)
        else:
            if not labels:
                raise click.UsageError("--labels is required with an emulator .npz")
            names = [x.strip() for x in labels.split(",") if x.strip()]
            model = payne_model(
                emulator, names, fit_mask=fit_mask, continuum_degree=continuum_degree,
                n_starts=starts, rv_grid=np.arange(-rv_range, rv_range + rv_step / 2, rv_step),
                clip_sigma=clip_sigma or None, batch_size=batch_size,
            )
            folder = Path(save_model) if save_model else Path(str(out) + ".payne")
            model.save(folder)
        res = run_catalog(folder, inputs, out, format=fmt, batch_size=batch_size, device=device,
                          calibrated=not no_calibration, overwrite=overwrite)
    except StarlabelsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{res.written()}; model folder {folder}")
