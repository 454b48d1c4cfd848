"""``starlabels simulate``: a simulated APOGEE-like survey written as an HDF5 dataset (and FITS)."""

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
    if text in ("apogee", "visit"):
        return text
    kind, _, rng = text.partition(":")
    lo, _, hi = rng.partition("-")
    if kind not in ("uniform", "loguniform") or not hi:
        raise click.BadParameter("use apogee, visit, uniform:LO-HI or loguniform:LO-HI")
    return (kind, float(lo), float(hi))


@click.command(
    "simulate",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels simulate -n 2000 -o survey.h5\n"
    "  starlabels simulate -n 5000 --emulator payne_kurucz_4label.npz "
    "--dr17-labels apogee_dr17_giant_labels.npz --snr loguniform:200-400 -o train.h5\n"
    "  starlabels simulate -n 50 -o s.h5 --fits-dir spectra/   # also apStar-layout FITS",
)
@click.option("-n", "--n-stars", default=1000, show_default=True, type=click.IntRange(1))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="HDF5 dataset to write (true labels kept as meta/true_<LABEL>).")
@click.option("--emulator", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Payne-format emulator .npz [default: the built-in generator].")
@click.option("--dr17-labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Real DR17 giant label sample (.npz) for the giants' label distribution.")
@click.option("--population", default="giants=0.7,dwarfs=0.2,cool_dwarfs=0.1", show_default=True,
              help="Fractions of giants, dwarfs, cool_dwarfs.")
@click.option("--snr", default="apogee", show_default=True,
              help="apogee, visit, uniform:LO-HI or loguniform:LO-HI.")
@click.option("--missing-fraction", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--fits-dir", type=click.Path(file_okay=False), default=None,
              help="Also write one apStar-layout FITS file per star here.")
def command(n_stars: int, output: str, emulator: str | None, dr17_labels: str | None,
            population: str, snr: str, missing_fraction: float, seed: int,
            fits_dir: str | None) -> None:
    """Simulate a survey with known true labels (a test/benchmark tool, not real stars)."""
    from starlabels.data.survey import GeneratorSource, SurveyConfig, SurveySimulator
    from starlabels.errors import StarlabelsError

    cfg = SurveyConfig(
        n_stars=n_stars, seed=seed, population=_parse_population(population), snr=_parse_snr(snr),
        missing_fraction=missing_fraction, dr17_labels=dr17_labels,
    )
    try:
        if emulator:
            sim = SurveySimulator.from_emulator(emulator, cfg)
        else:
            sim = SurveySimulator(GeneratorSource.default(seed), cfg)
        survey = sim.simulate()
        path = survey.write_hdf5(output)
        if fits_dir:
            survey.write_apstar(fits_dir)
    except StarlabelsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {len(survey)} simulated spectra with labels {', '.join(survey.label_names)} "
               f"to {path}" + (f" and FITS files to {fits_dir}" if fits_dir else ""))
