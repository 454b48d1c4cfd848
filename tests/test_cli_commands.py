"""The ``starlabels`` command lists every subcommand module, each answers ``--help``, and ``--help``
imports no torch (issue 18: the subcommands are imported directly, with no guard for absent modules)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from starlabels.cli.main import COMMANDS, cli

CLI_DIR = Path(__file__).resolve().parents[1] / "src" / "starlabels" / "cli"


def test_every_subcommand_module_is_registered():
    modules = {p.stem for p in CLI_DIR.glob("*.py")} - {"__init__", "main"}
    registered = {COMMANDS[name].callback.__module__.rsplit(".", 1)[1] for name in COMMANDS}
    assert registered == modules


def test_help_lists_every_command():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0, result.output
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines() if line.strip()}
    assert listed == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_help(name):
    result = CliRunner().invoke(cli, [name, "--help"], prog_name="starlabels")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: starlabels {name} ")


def test_help_does_not_import_torch():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom starlabels.cli.main import cli\n"
            "r = CliRunner().invoke(cli, ['--help'])\nassert r.exit_code == 0, r.output\n"
            "print(sorted(m for m in ('torch', 'astropy', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
