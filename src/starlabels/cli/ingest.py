"""``starlabels ingest``: spectrum files of any format (+ a label table) into one HDF5 training dataset."""

from __future__ import annotations

import click


@click.command(
    "ingest",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels ingest spectra/ -o train.h5 --labels allStar-dr17.fits\n"
    "  starlabels ingest a.fits b.fits -o more.h5 --labels stars.csv --label-names TEFF,LOGG,FE_H,MG_FE\n"
    "  starlabels ingest spectra/ -o visits.h5 --visits\n"
    "  starlabels ingest mwmStar/ -o apogee.h5 --labels astraAllStarASPCAP-0.8.1.fits\n"
    "  starlabels ingest mwmStar/ -o boss.h5 --instrument boss\n\n"
    "Folders are scanned by content: every spectrum file is used whatever its name (apStar, "
    "mwmStar/mwmVisit, apVisit, BOSS spec, tables), every other file is listed as skipped. "
    "Running the same command again resumes: files already in the dataset are skipped. Files "
    "and spectra that cannot be used (other instrument, other grid without --resample) are "
    "skipped with a reason, listed at the end and in OUT.skipped.csv.",
)
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Output HDF5 dataset (created, or resumed when it exists).")
@click.option("--labels", "catalog", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Label table: allStar-like (FITS, CSV or Parquet; matched by APOGEE_ID) or an SDSS-V "
                   "astraAllStar<Pipeline> table (matched by SDSS_ID).")
@click.option("--label-names", default=None,
              help="Comma-separated label columns [default: TEFF,LOGG,FE_H with --labels].")
@click.option("--visits", is_flag=True, help="One row per visit spectrum instead of the combined one.")
@click.option("--group", default=None, help="Value of meta/group for every added row (e.g. payne).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1),
              help="Rows written per committed append.")
@click.option("--instrument", default="apogee", show_default=True,
              help="Whose spectra the dataset holds (apogee, boss, or a registered instrument).")
@click.option("--grid", default=None,
              help="The dataset's grid by name (e.g. apstar, payne, boss) [default: the instrument's].")
@click.option("--resample", type=click.Choice(["linear", "flux-conserving"]), default=None,
              help="Resample spectra on another grid onto the dataset's (default: skip them).")
def command(inputs: tuple[str, ...], output: str, catalog: str | None, label_names: str | None,
            visits: bool, group: str | None, batch_size: int, instrument: str, grid: str | None,
            resample: str | None) -> None:
    """Ingest spectrum files or folders INPUTS (searched recursively, by content) into OUTPUT."""
    from starlabels.data.ingest import ingest_files
    from starlabels.errors import StarlabelsError

    names = None if label_names is None else [n for n in label_names.split(",") if n.strip()]
    try:
        result = ingest_files(inputs, output, labels=catalog, label_names=names, visits=visits,
                              group=group, batch_size=batch_size, instrument=instrument, grid=grid,
                              resample=resample)
    except (StarlabelsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.summary())
