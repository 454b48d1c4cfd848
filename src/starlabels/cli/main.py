"""Entry point of the ``starlabels`` command.

Subcommands live in their own modules (``starlabels.cli.<name>``), each exposing a click command
named ``command``, and are imported here directly: a missing or broken subcommand module fails
``starlabels`` at once instead of silently disappearing from the list. The subcommand modules
import their heavy dependencies (torch, astropy, h5py) inside the command functions, so
``starlabels --help`` stays fast and does not import torch (tests/test_cli_commands.py checks both).
"""

from __future__ import annotations

import click

from starlabels import __version__
from starlabels.cli import (
    demo,
    download,
    fit,
    import_astronn,
    ingest,
    labels,
    predict,
    recipe,
    report,
    simulate,
    train,
)

#: subcommand name -> its click command.
COMMANDS: dict[str, click.Command] = {
    "demo": demo.command,
    "download": download.command,
    "ingest": ingest.command,
    "simulate": simulate.command,
    "train": train.command,
    "predict": predict.command,
    "recipe": recipe.command,
    "labels": labels.command,
    "report": report.command,
    "import-astronn": import_astronn.command,
    "fit": fit.command,
}


@click.group(commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="starlabels")
def cli() -> None:
    """starlabels: learn stellar labels with calibrated uncertainties from survey spectra."""
    # the CLI owns its process: keep freed activation buffers instead of re-faulting them
    # (starlabels.process; STARLABELS_NO_MALLOC_TUNING=1 opts out)
    from starlabels.process import tune_process

    tune_process()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
