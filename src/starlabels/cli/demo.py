"""``starlabels demo``: simulate a survey, train a Bayesian CNN, calibrate, predict, write a catalog
and figures — offline, in a few minutes on a laptop CPU (:mod:`starlabels.demo`)."""

from __future__ import annotations

import click

from starlabels.demo.config import DEFAULT_OUTPUT, QUICK, DemoConfig

_DEFAULTS = {f: DemoConfig.__dataclass_fields__[f].default
             for f in ("n_train", "n_test", "epochs", "n_samples")}


def _sizes(name: str) -> str:
    return f"[default: {_DEFAULTS[name]}; --quick: {QUICK[name]}]"


@click.command(
    "demo",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels demo                      # ~2-3 min on 2 CPU cores, writes ./demo_output/\n"
    "  starlabels demo --quick -o /tmp/d    # tiny sizes: checks every step in seconds\n"
    "  starlabels demo --emulator payne_kurucz_4label.npz\n"
    "  starlabels demo --instrument boss     # BOSS-like optical spectra (R ~ 2,000, 3,600-10,400 A)\n"
    "\b\nOutputs (in --output): model/ (trained model folder), catalog.fits (held-out stars),\n"
    "truth.csv (their true labels), kiel.png, pred_vs_true.png, accuracy.md, summary.json.",
)
@click.option("-o", "--output", default=DEFAULT_OUTPUT, show_default=True, type=click.Path(file_okay=False),
              help="Folder for the model, catalog, figures and tables (created; files in it are replaced).")
@click.option("--n-train", type=click.IntRange(40), default=None,
              help="Training stars, dev set included (8% of them).  " + _sizes("n_train"))
@click.option("--n-test", type=click.IntRange(1), default=None,
              help="Held-out stars in the catalog.  " + _sizes("n_test"))
@click.option("--epochs", type=click.IntRange(1), default=None,
              help="Maximum training epochs (early stopping on the dev loss).  " + _sizes("epochs"))
@click.option("--n-samples", type=click.IntRange(2), default=None,
              help="MC-dropout passes per spectrum.  " + _sizes("n_samples"))
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of everything (survey, split, training, dropout): same seed, same catalog.")
@click.option("--emulator", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Simulate with a Payne-format emulator (.npz) instead of the built-in generator, e.g. "
                   "payne_kurucz_4label.npz.")
@click.option("--instrument", type=click.Choice(["apogee", "boss"]), default="apogee", show_default=True,
              help="Simulate APOGEE-like H-band spectra on the apStar grid, or BOSS-like optical spectra "
                   "on the 4648-pixel coadd grid (labels Teff, log g, [Fe/H], [Mg/Fe], [Ca/Fe]).")
@click.option("--format", "catalog_format", type=click.Choice(["fits", "csv"]), default="fits",
              show_default=True, help="Catalog format.")
@click.option("--device", default=None, help="Torch device (default: cuda when available, else cpu).")
@click.option("--threads", type=click.IntRange(0), default=1, show_default=True,
              help="Torch CPU threads (0: torch's default). One is fastest on a busy 2-core machine.")
@click.option("--quick", is_flag=True, help="Tiny sizes for a smoke test (seconds; accuracy meaningless).")
def command(output: str, n_train: int | None, n_test: int | None, epochs: int | None,
            n_samples: int | None, seed: int, emulator: str | None, instrument: str, catalog_format: str,
            device: str | None, threads: int, quick: bool) -> None:
    """Run the whole pipeline on a simulated survey and print an accuracy table.

    Simulates APOGEE-like (or, with --instrument boss, BOSS-like) spectra with known labels
    (built-in generator, no data needed), trains
    a Bayesian CNN on continuum-normalised spectra with early stopping, calibrates its MC-dropout
    uncertainties on the dev set, predicts the held-out stars and writes the catalog, a Kiel diagram
    and a predicted-vs-true figure. Prints the median and sigma_MAD of the residuals per label and
    the widths of the z-scores after calibration.
    """
    from starlabels.demo.config import with_sizes
    from starlabels.demo.run import run_demo
    from starlabels.errors import StarlabelsError

    try:
        base = (DemoConfig.quick if quick else DemoConfig)(
            output=output, seed=seed, emulator=emulator, catalog_format=catalog_format, device=device,
            threads=threads or None, instrument=instrument,
        )
        cfg = with_sizes(base, n_train=n_train, n_test=n_test, epochs=epochs, n_samples=n_samples)
        if cfg.threads is not None:  # process-wide, so the CLI's business: it owns its process
            import torch

            torch.set_num_threads(int(cfg.threads))
        run_demo(cfg, echo=click.echo)
    except StarlabelsError as exc:
        raise click.ClickException(str(exc)) from exc
