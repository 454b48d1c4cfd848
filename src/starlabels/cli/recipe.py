"""``starlabels recipe``: published training recipes, run end to end from one TOML file.

``starlabels recipe apogee-net CONFIG.toml`` runs APOGEE Net's recipe (Olney et al. 2020,
§3.3–3.4): a train/dev/test split per group (80/10/10 Payne, 60/20/20 M dwarfs and YSOs),
training on every star from the raw apStar flux, stratified adaptation to the M dwarfs and YSOs,
then the paper's Tables 1–3 (label normalisation, standardised MSE and per-parameter scatter
per group for train/dev/test) as Markdown and CSV beside the trained model. The config is a
training config plus a ``[recipe]`` section; the format, the output files and how to build the
dataset from label catalogs are documented in :mod:`starlabels.training.recipe` (example:
``examples/recipe_apogee_net.toml``).
"""

from __future__ import annotations

import click


@click.group("recipe", context_settings={"help_option_names": ["-h", "--help"]})
def command() -> None:
    """Run a published training recipe end to end (split, train, adapt, evaluate, tables)."""


@command.command(
    "apogee-net",
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nExamples:\n"
    "  starlabels recipe apogee-net examples/recipe_apogee_net.toml\n"
    "  starlabels recipe apogee-net run.toml -o runs/apogee_net --device cuda\n"
    "  starlabels recipe apogee-net run.toml --resume      # continue an interrupted run\n"
    "  torchrun --nproc_per_node=2 -m starlabels.cli.main recipe apogee-net run.toml",
)
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False), default=None,
              help="Output folder (tables, predictions.csv, recipe.json and model/); "
                   "overrides [output] folder.")
@click.option("--resume", is_flag=True, help="Continue from OUTPUT/model/checkpoint.pt.")
@click.option("--overwrite", is_flag=True, help="Start afresh even if OUTPUT/model holds a model.")
@click.option("--device", default=None, help="Override [training] device (cpu, cuda, cuda:1, auto).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Override [training] epochs (also the per-round maximum of the adaptation unless "
                   "[recipe.adaptation] epochs is set).")
def apogee_net(config: str, output: str | None, resume: bool, overwrite: bool, device: str | None,
               epochs: int | None) -> None:
    """APOGEE Net's recipe from CONFIG (a training TOML file with a [recipe] section).

    Splits every group of the dataset's group column with its own train/dev/test fractions,
    trains on all stars, adapts to the focus groups (a fresh 5% of the large group per round),
    and writes Tables 1-3 of the paper (table1_normalisation, table2_mse, table3_scatter; .md
    and .csv), predictions.csv, recipe.json and the model folder into the output folder. Keys:
    `python -c "import starlabels.training.recipe as r; help(r)"`.
    """
    from starlabels.errors import StarlabelsError
    from starlabels.training.recipe import load_recipe

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    try:
        cfg = load_recipe(config)
        cfg.train.override(device=device, epochs=epochs, output=output, overwrite=overwrite)
        result = _run(cfg, resume)
    except (StarlabelsError, FileExistsError) as exc:
        from starlabels.training.distributed import exit_quietly_unless_main_rank

        exit_quietly_unless_main_rank()  # under torchrun every rank fails alike: rank 0 says why, once
        raise click.ClickException(str(exc)) from None
    if result is None:  # a non-zero rank of a distributed run
        return
    s = result.summary
    for g, info in s["groups"].items():
        rows = info["rows"]
        click.echo(f"{info['name']} ({g}): train {rows['train']}, dev {rows['dev']}, test {rows['test']}")
    excluded = s["split"]["excluded"]
    if excluded["no_group"] or excluded["no_labels"]:
        click.echo(f"left out: {excluded['no_group']} rows without a group, "
                   f"{excluded['no_labels']} rows without labels")
    main = s["main"]
    click.echo(f"main stage: {main['epochs']} epochs, best dev loss {main['best_loss']:.4g} "
               f"at epoch {main['best_epoch']}")
    st = s["stratified"]
    click.echo(f"stratified adaptation: {len(st['rounds'])} rounds, best round {st['best_round']}")
    from starlabels.evaluation.table_format import to_markdown

    click.echo("\nTable 2 (combined standardised MSE):")
    click.echo(to_markdown(result.tables.table2()))
    click.echo(f"tables, predictions and recipe.json written to {result.output}; "
               f"model saved to {result.model_folder}")


def _run(cfg, resume: bool):
    """The recipe's result, in this process or as a rank of a torchrun job (None on ranks > 0)."""
    import functools

    from starlabels.evaluation.recipe_tables import run_recipe
    from starlabels.training.distributed import run_as_launched

    return run_as_launched(functools.partial(run_recipe, cfg, resume=resume),
                           device=cfg.train.training.torch_device)
