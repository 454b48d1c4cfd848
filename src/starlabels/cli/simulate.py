"""``starlabels simulate``: a simulated survey (APOGEE-like, BOSS-like or any registered instrument)
written as an HDF5 dataset (and FITS files)."""

from __future__ import annotations

import click


def _parse_population(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, frac = part.partition("=")
        if not frac:
            raise click.BadParameter(f"expected NAME=FRACTION, got {part!r}")
        out[name.strip()] = float(frac)
    return out


def _parse_snr(text: str) -> str | tuple:
    if text in ("apogee", "visit", "boss"):
        return text
    kind, _, rng = text.partition(":")
    lo, _, hi = rng.partition("-")
    if kind not in ("uniform", "loguniform") or not hi:
        raise click.BadParameter("use apogee, boss, visit, uniform:LO-HI or loguniform:LO-HI")
    return (kind, float(lo), float(hi))


@click.command(
    "simulate",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels simulate -n 2000 -o survey.h5\n"
    "  starlabels simulate -n 5000 --emulator payne_kurucz_4label.npz "
    "--dr17-labels apogee_dr17_giant_labels.npz --snr loguniform:200-400 -o train.h5\n"
    "  starlabels simulate -n 50 -o s.h5 --fits-dir spectra/   # also apStar-layout FITS\n"
    "  starlabels simulate --instrument boss -n 50 -o boss.h5 --fits-dir boss/   # BOSS, mwmStar files",
)
@click.option("-n", "--n-stars", default=1000, show_default=True, type=click.IntRange(1))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 dataset to write (true labels kept as meta/true_<LABEL>, the grid stored).")
@click.option("--instrument", default="apogee", show_default=True,
              help="apogee (apStar grid, H band), boss (4648-pixel coadd grid, 3,600-10,400 Å) or a "
                   "registered instrument: spectra on its native grid with its bitmask bits.")
@click.option("--emulator", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Payne-format emulator .npz on one of the instrument's grids (or with a wavelength "
                   "array) [default: the built-in generator].")
@click.option("--dr17-labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Real DR17 giant label sample (.npz) for the giants' label distribution.")
@click.option("--population", default=None,
              help="Fractions of giants, dwarfs, cool_dwarfs (and hot_dwarfs) [default: apogee "
                   "giants=0.7,dwarfs=0.2,cool_dwarfs=0.1; boss "
                   "giants=0.5,dwarfs=0.25,cool_dwarfs=0.1,hot_dwarfs=0.15].")
@click.option("--snr", default=None,
              help="apogee, boss, visit, uniform:LO-HI or loguniform:LO-HI [default: the instrument's].")
@click.option("--missing-fraction", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True, type=int,
              help="Seed of the stars drawn (labels, noise); the built-in generator's physics (its "
                   "line list) is fixed and the same for every seed.")
@click.option("--fits-dir", type=click.Path(file_okay=False), default=None,
              help="Also write one FITS file per star here: apStar layout for APOGEE, SDSS-V mwmStar "
                   "otherwise.")
@click.option("--layout", type=click.Choice(["dr19", "dr20"]), default="dr20", show_default=True,
              help="mwmStar layout of --fits-dir files (not APOGEE).")
@click.option("--labels-csv", type=click.Path(dir_okay=False), default=None,
              help="Also write the labels as an allStar-like CSV table for `starlabels ingest --labels`: "
                   "APOGEE_ID, GROUP, SNR, each label as the survey measured it (empty where missing) "
                   "with <LABEL>_ERR, and its true value as TRUE_<LABEL>.")
def command(n_stars: int, output: str, instrument: str, emulator: str | None, dr17_labels: str | None,
            population: str | None, snr: str | None, missing_fraction: float, seed: int,
            fits_dir: str | None, layout: str, labels_csv: str | None) -> None:
    """Simulate a survey with known true labels (a test/benchmark tool, not real stars)."""
    from starlabels.data.survey import SurveyConfig, SurveySimulator
    from starlabels.data.survey_labels import default_population
    from starlabels.data.survey_sources import GeneratorSource
    from starlabels.errors import StarlabelsError
    from starlabels.instruments import available, get

    try:
        inst = get(instrument)
    except ValueError:
        raise click.BadParameter(f"unknown instrument {instrument!r}; known: {', '.join(available())}",
                                 param_hint="--instrument") from None
    cfg = SurveyConfig(
        n_stars=n_stars, seed=seed,
        population=_parse_population(population) if population else default_population(inst),
        snr=_parse_snr(snr) if snr else None, missing_fraction=missing_fraction, dr17_labels=dr17_labels,
    )
    try:
        if emulator:
            sim = SurveySimulator.from_emulator(emulator, cfg, instrument=inst)
        else:
            # the generator's physics (line list) has its own fixed seed: --seed draws new stars
            # from the same physics, so every simulated set matches a model trained on another
            sim = SurveySimulator(GeneratorSource.default(0, instrument=inst), cfg)
        if not fits_dir and not labels_csv:  # stream: memory flat in N, same numbers (ENG-17, issue 17)
            from starlabels.data.survey_stream import simulate_to_hdf5

            path = simulate_to_hdf5(sim, output)
            click.echo(f"wrote {n_stars} simulated {inst.name} spectra with labels "
                       f"{', '.join(sim.source.label_names)} to {path}")
            return
        survey = sim.simulate()
        path = survey.write_hdf5(output)
        if fits_dir:
            survey.write_fits(fits_dir, layout=layout)
        if labels_csv:
            _write_labels_csv(survey, labels_csv)
    except StarlabelsError as exc:
        raise click.ClickException(str(exc)) from exc
    kind = "apStar" if inst.name == "apogee" else f"mwmStar ({layout})"
    click.echo(f"wrote {len(survey)} simulated {inst.name} spectra with labels "
               f"{', '.join(survey.label_names)} to {path}"
               + (f" and {kind} files to {fits_dir}" if fits_dir else "")
               + (f"; labels table {labels_csv}" if labels_csv else ""))


def _write_labels_csv(survey, path: str) -> None:
    """The survey's labels as an allStar-like CSV (MISSING written as an empty cell)."""
    import numpy as np
    import pandas as pd

    from starlabels.constants import MISSING

    table = {"APOGEE_ID": np.asarray(survey.apogee_id).astype(str),
             "GROUP": np.asarray(survey.group).astype(str), "SNR": np.asarray(survey.snr)}
    for j, name in enumerate(survey.label_names):
        for col, values in ((name, survey.labels[:, j]), (f"{name}_ERR", survey.label_errors[:, j])):
            v = np.asarray(values, np.float64)
            table[col] = np.where((v == MISSING) | ~np.isfinite(v), np.nan, v)
        table[f"TRUE_{name}"] = np.asarray(survey.true_labels[:, j], np.float64)
    pd.DataFrame(table).to_csv(path, index=False, float_format="%.8g")
