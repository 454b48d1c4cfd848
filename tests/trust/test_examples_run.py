"""Issue 19: every file in examples/ runs end to end on data made by the commands its header (and
the README) give — ``starlabels simulate … --fits-dir … --labels-csv`` then ``starlabels ingest``
of those apStar files with their labels — at a tiny size (fewer stars, ``--epochs 1``)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from starlabels.cli.main import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: how each example is run after its data commands (the tiny size comes from these overrides)
RUN = {
    "train_bcnn.toml": ["train", "{config}", "--epochs", "1", "--output", "{tmp}/out"],
    "recipe_apogee_net.toml": ["recipe", "apogee-net", "{config}", "--epochs", "1", "-o", "{tmp}/out"],
}
N_STARS = {"train_bcnn.toml": 150, "recipe_apogee_net.toml": 40}


def header_commands(text: str) -> list[list[str]]:
    """The ``.venv/bin/starlabels simulate|ingest`` commands of an example's header comment
    (continuation lines joined), as argument lists without the program name."""
    lines, out, pending = text.splitlines(), [], ""
    for line in lines:
        if not line.startswith("#"):
            break
        body = line.lstrip("#").strip()
        if pending:
            body, pending = pending + " " + body, ""
        if body.endswith("\\"):
            pending = body[:-1].strip()
            continue
        m = re.match(r"\.venv/bin/starlabels (simulate|ingest) (.*)", body)
        if m:
            words = shlex.split(m.group(1) + " " + m.group(2).split("(")[0])
            out.append(words)
    return out


def _first_block(commands: list[list[str]]) -> list[list[str]]:
    """Commands up to the first ingest when an example shows alternatives writing one file."""
    seen, out = set(), []
    for words in commands:
        target = words[words.index("-o") + 1]
        if target in seen:
            break
        seen.add(target)
        out.append(words)
    return out


def _tiny(words: list[str], n: int, tmp: Path) -> list[str]:
    out = []
    for i, w in enumerate(words):
        if i and words[i - 1] in ("-n", "--n-stars"):
            w = str(n)
        elif w.startswith("examples/"):
            w = str(tmp / "examples" / w.removeprefix("examples/"))
        elif (i and words[i - 1] in ("-o", "--fits-dir", "--labels-csv", "--labels")) or (
                words[0] == "ingest" and i == 1):
            w = str(tmp / w)
        out.append(w)
    return out


def test_every_example_has_a_run():
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_file()) == sorted(RUN)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUN))
def test_example_runs_end_to_end_on_data_its_commands_make(name, tmp_path):
    runner = CliRunner()
    (tmp_path / "examples").mkdir()
    config = tmp_path / "examples" / name
    shutil.copy(EXAMPLES / name, config)  # relative paths resolve beside the copy
    commands = _first_block(header_commands(config.read_text()))
    assert any(c[0] == "simulate" for c in commands), "the example names no data command"
    for words in commands:
        args = _tiny(words, N_STARS[name], tmp_path)
        res = runner.invoke(cli, args, catch_exceptions=False)
        assert res.exit_code == 0, (args, res.output)
    args = [w.format(config=config, tmp=tmp_path) for w in RUN[name]]
    res = runner.invoke(cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "saved to" in res.output or "model saved" in res.output, res.output
    assert (tmp_path / "out").is_dir()
