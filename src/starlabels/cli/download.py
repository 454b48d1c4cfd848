"""``starlabels download``: fetch SDSS files from the SAS — APOGEE apStar, aspcapStar, allStar (DR14–17);
mwmStar, mwmVisit, HEALPix apStar, BOSS specFull/spec-lite, astraAllStar tables (DR19, DR20)."""

from __future__ import annotations

import sys

import click

#: starlabels.io.sas.KINDS (not imported here: the CLI loads the library only when a command runs)
KINDS = ("apstar", "aspcapstar", "allstar", "mwmstar", "mwmvisit", "specfull", "speclite", "astraallstar")


@click.command(
    "download",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels download allstar --release dr17 --lite\n"
    "  starlabels download apstar --release dr17 --telescope apo25m \\\n"
    "      --field K04_083+13 2M19485057+5005279\n"
    "  starlabels download aspcapstar --from-allstar stars.csv\n"
    "  starlabels download mwmstar --release dr20 103020000 99560000\n"
    "  starlabels download apstar --release dr19 --healpix 10105 2M13593121+6335074\n"
    "  starlabels download specfull --release dr19 --field 112360 --mjd 60000 27021598150202075\n"
    "  starlabels download astraallstar --release dr20 --pipeline ASPCAP\n\n"
    "IDS are APOGEE_IDs (apstar, aspcapstar), SDSS_IDs (mwmstar, mwmvisit) or CATALOGIDs "
    "(specfull, speclite). Files go to the cache (--cache, $STARLABELS_CACHE or ~/.cache/starlabels) "
    "under their SAS path; complete cached files are not downloaded again. The local path of every "
    "file is printed, one per line.",
)
@click.argument("kind", type=click.Choice(list(KINDS), case_sensitive=False))
@click.argument("ids", nargs=-1)
@click.option("--release", default="dr17", show_default=True,
              type=click.Choice(["dr14", "dr16", "dr17", "dr19", "dr20"], case_sensitive=False),
              help="SDSS data release (mwm*, spec*, astraallstar: dr19 or dr20).")
@click.option("--telescope", default="apo25m", show_default=True,
              type=click.Choice(["apo25m", "lco25m", "apo1m"], case_sensitive=False),
              help="Telescope of APOGEE spectra (DR14–17 lco25m files are named asStar).")
@click.option("--field", default=None,
              help="DR14–17: allStar FIELD (DR14: LOCATION_ID), needed for spectra unless --from-allstar "
                   "gives it per star. specfull/speclite: the BOSS field id.")
@click.option("--healpix", default=None, type=click.IntRange(0), help="DR19/DR20 apstar: the star's HEALPix.")
@click.option("--mjd", default=None, type=click.IntRange(0), help="specfull/speclite: MJD of the coadd.")
@click.option("--pipeline", default=None,
              help="astraallstar: pipeline, e.g. ASPCAP, AstroNN, BossNet, ThePayne.")
@click.option("--v-astra", "v_astra", default=None,
              help="SDSS-V astra version (default: the release's, 0.6.0 for DR19, 0.8.1 for DR20).")
@click.option("--apred", default=None, help="SDSS-V APOGEE reduction version of apStar files.")
@click.option("--run2d", default=None, help="BOSS reduction version (default: the release's).")
@click.option("--from-allstar", "catalog", type=click.Path(exists=True, dir_okay=False), default=None,
              help="DR14–17 apstar/aspcapstar: allStar-like table (FITS/CSV/Parquet) with APOGEE_ID, "
                   "TELESCOPE and FIELD (DR14: LOCATION_ID) columns; downloads the listed APOGEE_IDs, or "
                   "every row when none are given.")
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
def command(kind: str, ids: tuple[str, ...], release: str, telescope: str, field: str | None,
            healpix: int | None, mjd: int | None, pipeline: str | None, v_astra: str | None,
            apred: str | None, run2d: str | None, catalog: str | None, lite: bool, cache: str | None,
            base_url: str | None, checksum: str | None, retries: int, timeout: float, dry_run: bool) -> None:
    """Download SDSS files: KIND is the file type; IDS name the stars (see the examples)."""
    from starlabels.io import sas

    kind = kind.lower()
    release = release.lower()
    jobs: list[tuple[str, str]] = []  # (label, SAS path)
    single = kind in ("allstar", "astraallstar")
    try:
        if single:
            if ids or catalog:
                raise click.UsageError(f"{kind} takes no IDS or --from-allstar")
            jobs.append((kind, sas.file_path(kind, release=release, lite=lite, pipeline=pipeline,
                                             v_astra=v_astra)))
        else:
            if lite:
                raise click.UsageError("--lite applies to allstar only (use speclite for BOSS spec-lite)")
            if catalog is not None and (release in ("dr19", "dr20") or kind not in ("apstar", "aspcapstar")):
                raise click.UsageError("--from-allstar applies to DR14–17 apstar/aspcapstar")
            stars = _stars(ids, catalog, release, telescope, field)
            if not stars:
                raise click.UsageError("name at least one ID (or give --from-allstar)")
            for ident, tel, fld in stars:
                jobs.append((ident, sas.file_path(kind, ident, release=release, telescope=tel, field=fld,
                                                  healpix=healpix, v_astra=v_astra, apred=apred,
                                                  run2d=run2d, mjd=mjd)))
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
    """(ID, telescope, field) for each file to fetch."""
    if catalog is None:
        return [(i, telescope, field) for i in apogee_ids]
    from starlabels.io.allstar import read_allstar

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
