"""``starlabels report``: an HTML page with the model card, metrics tables and figures of a catalog."""

from __future__ import annotations

import click


@click.command(
    "report",
    epilog="\b\nExamples:\n"
    "  starlabels report model/ catalog.fits -o report/\n"
    "  starlabels report model/ catalog.parquet --reference allStar-dr17.fits -o report/ --embed\n"
    "  starlabels report model/ sim.csv --reference sim.csv -o report/   # TRUE_X columns in sim.csv",
)
@click.argument("model", type=click.Path())
@click.argument("catalog", type=click.Path())
@click.option("-r", "--reference", type=click.Path(), default=None,
              help="Reference labels (FITS/CSV/Parquet) matched by APOGEE_ID, with columns named like "
                   "the labels (or X_REF, TRUE_X); the catalog's own path to use such columns in it.")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for index.html (+ figures/ and tables/).")
@click.option("--embed", is_flag=True,
              help="Embed the figures in index.html (base64 PNG) instead of writing figures/*.png.")
@click.option("--no-figures", is_flag=True, help="Tables only (quick).")
@click.option("--isochrones", type=click.Path(dir_okay=False), default=None,
              help="PARSEC isochrone grid (default: $STARLABELS_ISOCHRONES, else "
                   "parsec_photometry_grid.fits.gz found via $STARLABELS_REFERENCE_DIR or the download "
                   "cache; no isochrones, with a note, when not found).")
@click.option("--no-isochrones", is_flag=True, help="Draw no isochrones on the Kiel diagrams.")
@click.option("--isochrone-age", "ages", type=float, multiple=True,
              help="log10(age/yr) of an isochrone to draw (repeatable; default 9.6 = 4 Gyr).")
@click.option("--groups", "group_column", default=None,
              help="Column with each star's group for the per-group table (default: GROUP if present).")
@click.option("--id-column", default="auto", show_default=True,
              help="Star id column used to match the reference (auto: SDSS_ID for catalogs of SDSS-V "
                   "files when the reference has it, else APOGEE_ID).")
@click.option("--title", default=None, help="Page title.")
def command(model: str, catalog: str, reference: str | None, out: str, embed: bool, no_figures: bool,
            isochrones: str | None, no_isochrones: bool, ages: tuple[float, ...],
            group_column: str | None, id_column: str, title: str | None) -> None:
    """Write index.html into the folder given with -o for the model folder MODEL and its CATALOG
    (FITS, CSV or Parquet).

    The page has the model card (first what to check: method, labels and units, training-set
    size, instrument and grid, uncertainty method, calibration z-widths before and after, label
    coverage and domain shift, warnings; the full provenance folded below), catalog statistics
    (flags, label ranges, uncertainties), accuracy tables against the reference when one is
    given, and every figure the inputs allow; what cannot be shown is listed with the reason.
    """
    from starlabels.errors import StarlabelsError
    from starlabels.evaluation.report import DEFAULT_ISOCHRONE_AGES, build_report

    if no_isochrones and isochrones:
        raise click.UsageError("--isochrones and --no-isochrones exclude each other")
    try:
        res = build_report(
            model, catalog, out, reference=reference, embed=embed, figures=not no_figures,
            isochrones=False if no_isochrones else isochrones,
            isochrone_ages=ages or DEFAULT_ISOCHRONE_AGES, group_column=group_column,
            id_column=id_column, title=title,
        )
    except StarlabelsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {res.path} with {len(res.figures)} figure(s) and {len(res.tables)} table(s)"
               + (f"; {len(res.skipped)} item(s) not shown (listed on the page)" if res.skipped else ""))
