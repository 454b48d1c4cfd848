"""Entry point of the ``starlabels`` command.

Subcommands live in their own modules (``starlabels.cli.<name>``), each exposing a click
command named ``command``. They are imported only when used, so ``starlabels --help`` is fast
and does not import torch.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from starlabels import __version__

#: subcommand name -> module defining ``command``. A module not yet present is not listed.
COMMANDS: dict[str, str] = {
    "demo": "starlabels.cli.demo",
    "download": "starlabels.cli.download",
    "ingest": "starlabels.cli.ingest",
    "simulate": "starlabels.cli.simulate",
    "train": "starlabels.cli.train",
    "predict": "starlabels.cli.predict",
    "recipe": "starlabels.cli.recipe",
    "labels": "starlabels.cli.labels",
    "report": "starlabels.cli.report",
    "import-astronn": "starlabels.cli.import_astronn",
    "fit": "starlabels.cli.fit",
}


class LazyGroup(click.Group):
    """A click group that imports each subcommand's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n, m in COMMANDS.items() if importlib.util.find_spec(m) is not None)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.list_commands(ctx):
            return None
        return importlib.import_module(COMMANDS[cmd_name]).command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
