"""``starlabels labels``: make training labels for M dwarfs and young stars.

Subcommands:

- ``mdwarf CATALOG -o OUT``: photometric Teff, log g, [Fe/H] for the M dwarfs of a catalog
  (:func:`starlabels.labels.mdwarf_labels`).
- ``yso-population -o OUT``: a synthetic PARSEC population of young stars
  (:func:`starlabels.labels.yso.synthetic_population`).
- ``yso-train POPULATION -o MODEL``: train the photometric YSO CNN on such a population.
- ``yso-predict MODEL CATALOG -o OUT``: apply a trained YSO CNN to a photometry catalog.

Tables are read and written by extension: ``.fits``/``.fit``/``.fits.gz``, ``.csv``, ``.ecsv``,
``.parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

_FORMATS = {".fits": "fits", ".fit": "fits", ".fts": "fits", ".gz": "fits", ".csv": "csv",
            ".ecsv": "ascii.ecsv", ".parquet": "parquet"}
#: Identifier columns copied into the M-dwarf output when present.
_ID_COLUMNS = ("APOGEE_ID", "apogee_id", "source_id", "SOURCE_ID", "TELESCOPE", "FIELD", "field")


def _format(path: Path) -> str:
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None or (path.suffix.lower() == ".gz" and not path.name.lower().endswith(".fits.gz")):
        from starlabels.errors import InputFileError

        raise InputFileError(path, "unknown table format (use .fits, .fits.gz, .csv, .ecsv or .parquet)")
    return fmt


def read_table(path: str | Path):
    """Read a catalog into an astropy Table by extension; errors name the file."""
    from astropy.table import Table

    from starlabels.errors import InputFileError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "file not found")
    fmt = _format(path)
    try:
        return Table.read(path, format=fmt)
    except Exception as exc:
        raise InputFileError(path, f"cannot read as {fmt} ({exc})") from exc


def write_table(table, path: str | Path) -> None:
    """Write an astropy Table by extension, overwriting; only scalar metadata is kept."""
    path = Path(path)
    fmt = _format(path)
    out = table.copy(copy_data=False)
    out.meta = {k[:8].upper() if fmt == "fits" else k: v for k, v in table.meta.items()
                if isinstance(v, (str, int, float, bool))}
    path.parent.mkdir(parents=True, exist_ok=True)
    out.write(path, format=fmt, overwrite=True)


def _parse_map(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for p in pairs:
        if "=" not in p:
            raise click.BadParameter(f"expected NAME=COLUMN, got {p!r}", param_hint="--column")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


class _Group(click.Group):
    """Turns starlabels errors (bad files, bad data) into clean one-line CLI errors."""

    def invoke(self, ctx: click.Context):
        from starlabels.errors import StarlabelsError

        try:
            return super().invoke(ctx)
        except StarlabelsError as exc:
            raise click.ClickException(str(exc)) from exc


@click.group(name="labels", cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Make training labels: M dwarfs from photometry, young stars from a PARSEC-trained CNN."""


@command.command("mdwarf")
@click.argument("catalog", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output table (.fits, .csv, .ecsv, .parquet).")
@click.option("--column", "column_map", multiple=True, metavar="NAME=COLUMN",
              help="Catalog column for a needed quantity (g, r, J, H, K, parallax, parallax_error, "
                   "field); repeatable, e.g. --column K=ks_m.")
@click.option("--exclude-field", multiple=True, metavar="NAME",
              help="APOGEE field (prefix) whose stars get no M-dwarf label; repeatable. Replaces the "
                   "default list (Orion, lambda Ori, IC 348, NGC 1333, NGC 2264, Pleiades).")
@click.option("--no-field-exclusion", is_flag=True, help="Exclude no field.")
@click.option("--keep", multiple=True, metavar="COLUMN",
              help="Catalog column copied to the output (default: id-like columns present).")
def mdwarf(catalog: Path, output: Path, column_map: tuple[str, ...], exclude_field: tuple[str, ...],
           no_field_exclusion: bool, keep: tuple[str, ...]) -> None:
    """Photometric Teff, log g and [Fe/H] for the M dwarfs in CATALOG (APOGEE Net §2.3.1).

    CATALOG needs SDSS g, r, 2MASS J, H, K (mag), Gaia parallax and parallax_error (mas) and
    optionally the APOGEE field. Writes teff (K), logg, fe_h (dex; NaN where no label), abs_k and a
    flag bitmask, and prints how many stars each flag bit hit.
    """
    from starlabels.errors import InputDataError
    from starlabels.labels.mdwarf import MDwarfFlag, mdwarf_labels, table_columns

    table = read_table(catalog)
    cols = set(table_columns(table))
    keep_cols = list(keep) if keep else [c for c in _ID_COLUMNS if c in cols]
    excluded = () if no_field_exclusion else (exclude_field or None)
    try:
        out = mdwarf_labels(table, exclude_fields=excluded, columns=_parse_map(column_map), keep=keep_cols)
    except InputDataError as exc:  # name the CLI option, not the Python argument
        raise click.ClickException(str(exc).replace(
            "map names with columns={...}", "map names with --column NAME=COLUMN (e.g. --column K=ks_m)"
        )) from None
    write_table(out, output)
    click.echo(f"{output}: {out.meta['n_labelled']} of {out.meta['n_input']} stars labelled")
    for bit in MDwarfFlag:
        count = out.meta["flag_counts"][bit.name]
        if count:
            click.echo(f"  bit {int(bit).bit_length() - 1:2d} {bit.name:<20s} {count}")


@command.command("yso-population")
@click.option("-n", "--n-stars", default=42000, show_default=True, type=click.IntRange(min=1),
              help="Number of synthetic stars.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Output table (.fits, .csv, .ecsv, .parquet).")
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PARSEC grid with photometry: FITS or CMD text file [default: "
                   "parsec_photometry_grid.fits.gz from $STARLABELS_ISOCHRONES, $STARLABELS_REFERENCE_DIR "
                   "or the download cache].")
@click.option("--extinction", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A_band/A_V coefficients file [default: extinction_coefficients.txt beside the "
                   "grid, else from $STARLABELS_REFERENCE_DIR or the download cache].")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--mh", default=0.0, show_default=True, type=float,
              help="Metallicity [M/H]; the grid's nearest one is used.")
@click.option("--age-sampling", type=click.Choice(["log", "linear"]), default="log", show_default=True,
              help="Ages 1-100 Myr uniform in log age or in age.")
@click.option("--mass-range", nargs=2, type=float, default=(0.08, 3.0), show_default=True,
              metavar="LO HI", help="Initial mass (Msun).")
@click.option("--av-range", nargs=2, type=float, default=(0.0, 20.0), show_default=True,
              metavar="LO HI", help="A_V (mag).")
@click.option("--distance-range", nargs=2, type=float, default=(50.0, 1000.0), show_default=True,
              metavar="LO HI", help="Distance (pc).")
def yso_population(n_stars: int, output: Path, grid: Path | None, extinction: Path | None, seed: int,
                   mh: float, age_sampling: str, mass_range: tuple[float, float],
                   av_range: tuple[float, float], distance_range: tuple[float, float]) -> None:
    """Draw a synthetic young-star population from PARSEC isochrones (APOGEE Net §2.4).

    Columns: extincted magnitudes (set to the paper's limits when fainter; G < 19 required),
    radius and log L (Gaia-DR2-like, limits otherwise), distance, and the true mass, log age, A_V,
    Teff, log g.
    """
    from starlabels.labels.yso import synthetic_population

    pop = synthetic_population(
        n_stars, grid=grid, extinction=extinction, seed=seed, mh=mh, age_sampling=age_sampling,
        mass_range=mass_range, av_range=av_range, distance_range=distance_range,
    )
    write_table(pop, output)
    m = pop.meta
    click.echo(f"{output}: {len(pop)} stars, [M/H]={m['mh']:.2f}, bands {','.join(m['bands'])}, "
               f"{m['n_rejected_faint_g']} of {m['n_drawn']} draws redrawn (G >= {m['limits']['G']})")


@command.command("yso-train")
@click.argument("population", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Model folder (config.json, weights.safetensors).")
@click.option("--dev-fraction", default=0.1, show_default=True, type=click.FloatRange(0.0, 0.5),
              help="Share of POPULATION held out to pick the best epoch.")
@click.option("--epochs", default=60, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=2e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", default=None, help="torch device [default: cuda if available, else cpu].")
@click.option("--threads", type=click.IntRange(0), default=1, show_default=True,
              help="Torch CPU threads when training on the CPU (0: torch's default). The network is "
                   "so small that one is fastest.")
def yso_train(population: Path, output: Path, dev_fraction: float, epochs: int, batch_size: int,
              lr: float, seed: int, device: str | None, threads: int) -> None:
    """Train the photometric YSO CNN on a POPULATION table from ``yso-population``."""
    import numpy as np
    import torch

    from starlabels.labels.yso_isochrones import ALL_BANDS
    from starlabels.training.yso import train_yso_network
    from starlabels.utils import get_device

    if threads and get_device(device).type == "cpu":  # process-wide: the CLI owns its process
        torch.set_num_threads(threads)

    pop = read_table(population)
    pop.meta["bands"] = [b for b in ALL_BANDS if b in pop.colnames]
    rng = np.random.default_rng(seed)
    is_dev = rng.random(len(pop)) < dev_fraction
    train, dev = pop[~is_dev], (pop[is_dev] if is_dev.any() else None)
    train.meta["bands"] = pop.meta["bands"]
    labeler, history = train_yso_network(train, dev=dev, epochs=epochs, batch_size=batch_size, lr=lr,
                                         seed=seed, device=device)
    labeler.save(output)
    (Path(output) / "history.json").write_text(json.dumps(history, indent=1))
    last = history[-1]
    click.echo(f"{output}: trained on {len(train)} stars, {epochs} epochs, final train loss "
               f"{last['train_loss']:.4g}, best dev loss {labeler.training.get('best_dev_loss')}")


@command.command("yso-predict")
@click.argument("model", type=click.Path(file_okay=False, path_type=Path))
@click.argument("catalog", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--keep", multiple=True, metavar="COLUMN",
              help="Catalog column copied to the output (default: id-like columns present).")
def yso_predict(model: Path, catalog: Path, output: Path, keep: tuple[str, ...]) -> None:
    """Labels (log age, mass, A_V, Teff, log g) for the stars of CATALOG from a trained YSO CNN.

    CATALOG needs the model's bands (G, BP, RP, J, H, Ks, ...; mag), radius (Rsun), log_l and
    distance (pc); faint or missing bands and unreported radius/log L are set to their limits.
    """
    from starlabels.models.yso import YSOLabeler

    labeler = YSOLabeler.load(model)
    table = read_table(catalog)
    keep_cols = list(keep) if keep else [c for c in _ID_COLUMNS if c in table.colnames]
    pred = labeler.predict(table)
    for i, c in enumerate(keep_cols):
        pred.add_column(table[c], index=i, name=c)
    write_table(pred, output)
    click.echo(f"{output}: {len(pred)} stars")
