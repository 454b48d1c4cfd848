"""``starlabels download``: fetch APOGEE apStar, aspcapStar or allStar files from the SDSS SAS."""

from __future__ import annotations

import sys

import click


@click.command(
    "download",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels download allstar --release dr17 --lite\n"
    "  starlabels download apstar --release dr17 --telescope apo25m \\\n"
    "      --field K04_083+13 2M19485057+5005279\n"
    "  starlabels download aspcapstar --from-allstar stars.csv\n\n"
    "Files go to the cache (--cache, $STARLABELS_CACHE or ~/.cache/starlabels) under their SAS "
    "path; complete cached files are not downloaded again. The local path of every file is "
    "printed, one per line.",
)
@click.argument("kind", type=click.Choice(["apstar", "aspcapstar", "allstar"], case_sensitive=False))
@click.argument("apogee_ids", nargs=-1)
@click.option("--release", default="dr17", show_default=True,
              type=click.Choice(["dr14", "dr16", "dr17"], case_sensitive=False), help="SDSS data release.")
@click.option("--telescope", default="apo25m", show_default=True,
              type=click.Choice(["apo25m", "lco25m", "apo1m"], case_sensitive=False),
              help="Telescope of the spectra (lco25m files are named asStar).")
@click.option("--field", default=None,
              help="allStar FIELD of the stars (DR14: LOCATION_ID). Needed for spectra unless "
                   "--from-allstar gives it per star.")
@click.option("--from-allstar", "catalog", type=click.Path(exists=True, dir_okay=False), default=None,
              help="allStar-like table (FITS/CSV/Parquet) with APOGEE_ID, TELESCOPE and FIELD "
                   "(DR14: LOCATION_ID) columns; downloads the listed APOGEE_IDs, or every row "
                   "when none are given.")
@click.option("--lite", is_flag=True, help="allstar: the DR17 allStarLite file.")
@click.option("--cache", type=click.Path(file_okay=False), default=None,
              help="Cache folder (default $STARLABELS_CACHE or ~/.cache/starlabels).")
@click.option("--base-url", default=None,
              help="SAS root URL (default $STARLABELS_SAS_URL or https://data.sdss.org/sas).")
@click.option("--checksum", default=None,
              help="Expected checksum of a single file, e.g. sha256:<hex> or md5:<hex>.")
@click.option("--retries", default=5, show_default=True, type=click.IntRange(0),
              help="Retries after connection errors and HTTP 5xx.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Socket timeout per attempt, seconds.")
@click.option("--dry-run", is_flag=True, help="Print the URLs that would be fetched and exit.")
def command(kind: str, apogee_ids: tuple[str, ...], release: str, telescope: str, field: str | None,
            catalog: str | None, lite: bool, cache: str | None, base_url: str | None,
            checksum: str | None, retries: int, timeout: float, dry_run: bool) -> None:
    """Download APOGEE files: KIND is apstar, aspcapstar or allstar; APOGEE_IDS name the stars."""
    from starlabels.io import sas

    kind = kind.lower()
    jobs: list[tuple[str, str]] = []  # (label, SAS path)
    try:
        if kind == "allstar":
            if apogee_ids or catalog:
                raise click.UsageError("allstar takes no APOGEE_IDs or --from-allstar")
            jobs.append(("allStar", sas.allstar_path(release, lite=lite)))
        else:
            if lite:
                raise click.UsageError("--lite applies to allstar only")
            stars = _stars(apogee_ids, catalog, release, telescope, field)
            if not stars:
                raise click.UsageError("name at least one APOGEE_ID (or give --from-allstar)")
            for apogee_id, tel, fld in stars:
                jobs.append((apogee_id, sas.file_path(kind, apogee_id, release=release,
                                                      telescope=tel, field=fld)))
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    if checksum and len(jobs) != 1:
        raise click.UsageError("--checksum needs exactly one file")

    failed = 0
    for label, path in jobs:
        if dry_run:
            click.echo(f"{sas.sas_url(path, base_url)} -> {sas.cache_path(path, cache, base_url)}")
            continue
        try:
            local = sas.download(path, base_url=base_url, cache=cache, checksum=checksum,
                                 retries=retries, timeout=timeout)
        except (sas.DownloadError, OSError, ValueError) as e:
            failed += 1
            click.echo(f"error: {label}: {e}", err=True)
            continue
        click.echo(str(local))
    if failed:
        click.echo(f"{failed} of {len(jobs)} download(s) failed", err=True)
        sys.exit(1)


def _stars(apogee_ids: tuple[str, ...], catalog: str | None, release: str, telescope: str,
           field: str | None) -> list[tuple[str, str, str | None]]:
    """(APOGEE_ID, telescope, field) for each star to fetch."""
    if catalog is None:
        return [(i, telescope, field) for i in apogee_ids]
    from starlabels.io import read_allstar

    field_col = "LOCATION_ID" if release.lower() == "dr14" else "FIELD"
    table = read_allstar(catalog, labels=(), columns=("TELESCOPE", field_col))
    tel = table.columns["TELESCOPE"]
    fld = table.columns[field_col].astype(str)
    rows = list(zip(table.apogee_id.tolist(), tel.tolist(), fld.tolist(), strict=True))
    if not apogee_ids:
        return [(str(a), str(t), str(f)) for a, t, f in rows]
    by_id: dict[str, tuple[str, str, str]] = {}
    for a, t, f in rows:
        by_id.setdefault(str(a), (str(a), str(t), str(f)))
    missing = [i for i in apogee_ids if i not in by_id]
    if missing:
        raise ValueError(f"APOGEE_ID(s) not in {catalog}: {', '.join(missing[:10])}")
    return [by_id[i] for i in apogee_ids]
