"""``starlabels predict``: a label catalog for spectrum files (any format, by content), folders or HDF5
datasets."""

from __future__ import annotations

import click

from starlabels.inference.catalog_inputs import FILES_PER_UNIT, ROWS_PER_UNIT
from starlabels.inference.flags import describe as _describe_flags


@click.command(
    "predict",
    epilog="FLAG bits:\n\n" + "\n\n".join(_describe_flags().splitlines()),
)
@click.argument("model", type=click.Path(file_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", "out", required=True, type=click.Path(dir_okay=False),
              help="Catalog file (.fits, .csv or .parquet).")
@click.option("--uncertainty", type=click.Choice(["model", "none", "mc_dropout", "noise", "delta"]),
              default="model", show_default=True,
              help="Uncertainty method. model: the one the model was calibrated for (MC dropout for "
                   "the BCNN, noise realisations for APOGEE Net); none: point estimates, no σ.")
@click.option("--n-samples", type=int, default=100, show_default=True,
              help="MC-dropout passes / noise realisations per spectrum.")
@click.option("--format", "fmt", type=click.Choice(["fits", "csv", "parquet"]), default=None,
              help="Catalog format (default: from the output's extension).")
@click.option("--workers", type=int, default=None,
              help="Run on a local Dask cluster with this many worker processes.")
@click.option("--scheduler", default=None, help="Address of a running Dask scheduler (tcp://host:8786).")
@click.option("--threads-per-worker", type=int, default=1, show_default=True,
              help="Dask threads and torch intra-op threads of each worker (the torch setting is "
                   "given back to the workers of an existing cluster at the end).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="Torch CPU threads of this process without --workers/--scheduler (0: torch's "
                   "default). The float32 sums depend on it: the catalog is bit-identical to a Dask "
                   "run's with the same --threads-per-worker, and agrees to float32 rounding otherwise.")
@click.option("--batch-size", type=int, default=256, show_default=True, help="Rows per forward pass.")
@click.option("--device", default=None, help="Torch device (default: cuda when available, else cpu).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of dropout masks / noise.")
@click.option("--no-calibration", is_flag=True, help="Report uncalibrated uncertainties.")
@click.option("--files-per-unit", type=int, default=FILES_PER_UNIT, show_default=True,
              help="FITS files per unit of work (the grain of resuming and distribution).")
@click.option("--rows-per-unit", type=int, default=ROWS_PER_UNIT, show_default=True,
              help="HDF5 rows per unit of work.")
@click.option("--resample", type=click.Choice(["linear", "flux-conserving"]), default=None,
              help="Resample spectra on another grid onto the model's (default: skip them, listed "
                   "with file and HDU in OUT.skipped.tsv).")
@click.option("--overwrite", is_flag=True, help="Discard the parts of an earlier, different run.")
@click.option("--keep-parts", is_flag=True, help="Keep OUT.parts/ after assembling the catalog.")
def command(model, inputs, out, uncertainty, n_samples, fmt, workers, scheduler, threads_per_worker,
            threads, batch_size, device, seed, no_calibration, files_per_unit, rows_per_unit, resample,
            overwrite, keep_parts) -> None:
    """Predict labels for INPUT... (spectrum files of any format — mwmStar/mwmVisit, apStar,
    aspcapStar, apVisit, BOSS spec, tables —, folders scanned by content, HDF5 datasets) with the
    model folder MODEL and write the catalog OUT (keyed on SDSS_ID when the files have it, with the
    TELESCOPE and HDU each row came from).

    An interrupted run, started again with the same arguments, resumes where it stopped.
    Unreadable inputs, and spectra on another grid than the model's without --resample, are listed
    in OUT.skipped.tsv, never fatal.
    """
    from starlabels.errors import StarlabelsError

    if threads and (workers or scheduler):
        raise click.UsageError("--threads sets this process's torch threads; with --workers or "
                               "--scheduler the workers compute: use --threads-per-worker")
    if threads:
        import torch

        torch.set_num_threads(threads)  # process-wide: the CLI owns its process
    if uncertainty == "model":
        from starlabels.inference.predict import default_uncertainty

        try:
            chosen = default_uncertainty(model)
        except StarlabelsError as exc:
            raise click.ClickException(str(exc)) from exc
        uncertainty = chosen or "none"
        click.echo(f"uncertainty: {uncertainty} (the model's own method; --uncertainty none for point "
                   f"estimates without σ)", err=True)
    kwargs = dict(
        format=fmt, uncertainty=None if uncertainty == "none" else uncertainty, n_samples=n_samples,
        seed=seed, batch_size=batch_size, device=device, calibrated=not no_calibration,
        files_per_unit=files_per_unit, rows_per_unit=rows_per_unit, overwrite=overwrite,
        keep_parts=keep_parts, resample=resample,
    )
    try:
        if workers or scheduler:
            from starlabels.inference.distributed import run_distributed

            res = run_distributed(model, inputs, out, workers=workers or 2, scheduler=scheduler,
                                  threads_per_worker=threads_per_worker,
                                  torch_threads=threads_per_worker, **kwargs)
        else:
            from starlabels.inference.catalog import run_catalog

            res = run_catalog(model, inputs, out, **kwargs)
    except StarlabelsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(res.written())
    click.echo(res.summary())
    note = uncalibrated_note(res.flag_counts.get("UNCALIBRATED", 0), model, uncertainty)
    if note:
        click.echo(note)
    if res.failed_units:  # rows of failed units are missing: say so in the exit status
        click.echo(f"{len(res.failed_units)} unit(s) failed; run the same command again to retry them",
                   err=True)
        raise SystemExit(3)


def uncalibrated_note(n_rows: int, model: str, uncertainty: str | None) -> str:
    """The run summary's warning when ``n_rows`` rows carry σ the model was never calibrated
    for (FLAG bit UNCALIBRATED), naming the function that calibrates it; "" when there are none."""
    if not n_rows:
        return ""
    method = uncertainty if uncertainty and uncertainty not in ("none", "model") else "default"
    return (f"WARNING: {n_rows} rows have uncalibrated σ (flag UNCALIBRATED): the model has no "
            f"calibration for uncertainty {method!r}, so these σ can be several times too small. "
            f"Calibrate the model with starlabels.inference.calibration.calibrate({model!r}, "
            f"dev_flux, dev_error, dev_labels, uncertainty={method!r}, save=True) on dev spectra with "
            f"known labels (as in docs/walkthrough.sh), or use --uncertainty model for the method it "
            f"was calibrated for.")
