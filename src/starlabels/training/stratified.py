"""Stratified model adaptation (APOGEE Net, Olney et al. 2020, §3.4).

After training to convergence on every star, APOGEE Net "continued training on the YSO and
M-Star samples plus a random 5% of the Payne catalog. Each time the model stopped from early
stopping, the last best performing model was reloaded, and another random 5% of the Payne
catalog was selected to train on ... until the performance on M dwarfs and YSOs did not show
continuing improvement."

:func:`adapt` does exactly that on a :class:`~starlabels.training.trainer.Trainer` that has
finished its main stage:

- round ``r`` trains on the training rows of the focus groups plus a fresh random ``fraction`` of
  the large group's training rows (drawn by a generator seeded from ``(seed, r)``), with a fresh
  optimiser at the configured learning rate, until early stopping; the round's best weights are
  reloaded. The round's early-stopping criterion is by default the *balanced* dev loss — the
  mean over the focus groups and the large group of each group's mean dev loss — so the
  undersampled large group keeps an equal voice (``criterion="focus"``: focus groups only;
  ``criterion="dev"``: the ordinary row-weighted dev loss, which the main run has already
  minimised, so it rarely lets a round change anything). An optional guard,
  ``large_tolerance``, makes any epoch whose large-group dev loss exceeds ``(1 +
  large_tolerance)`` × its value before adaptation count as +inf. A round starts from the
  current weights as its epoch-0 best, so it never ends worse than it started on its criterion;
- after each round the focus dev loss (mean over the focus groups of each group's mean dev loss)
  is compared with the best so far; rounds stop after ``round_patience`` rounds without
  improvement (or ``max_rounds``), and the weights of the best round are restored.

Rounds are checkpointed like epochs, so a resumed trainer continues inside the current round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from starlabels.training.checkpoint import cpu_state
from starlabels.training.errors import TrainingError
from starlabels.training.trainer import Trainer

CRITERIA = ("dev", "balanced", "focus")


def _group_rows(trainer: Trainer, part: str, groups: Sequence[str]) -> np.ndarray:
    rows = trainer.split[part]
    return rows[np.isin(trainer.data.groups[rows], list(groups))]


def check_groups(trainer: Trainer, focus_groups: Sequence[str], large_group: str) -> None:
    """Raise :class:`TrainingError` naming what is missing when the data cannot be adapted:
    no groups, a focus or large group without training rows, a focus group without dev rows.
    ``train`` calls it *before* training, so a bad ``[stratified]`` section costs no training run."""
    fix = ("; fix [data] group_column / the files' meta/group, or change or remove the [stratified] "
           "section (focus_groups, large_group)")
    if trainer.data.groups is None:
        raise TrainingError("[stratified] adaptation needs groups in the training data (meta/group)" + fix)
    focus_groups = [str(g) for g in focus_groups]
    present = set(trainer.data.groups[trainer.split["train"]].tolist())
    missing = [g for g in [*focus_groups, large_group] if g not in present]
    if missing:
        raise TrainingError(f"[stratified] group(s) {missing} have no training rows; groups present: "
                            f"{sorted(present)}" + fix)
    dev_present = set(trainer.data.groups[trainer.split["dev"]].tolist())
    no_dev = [g for g in focus_groups if g not in dev_present]
    if no_dev:
        raise TrainingError(f"[stratified] focus group(s) {no_dev} have no dev rows; dev groups: "
                            f"{sorted(dev_present)}" + fix)


def adapt(
    trainer: Trainer,
    focus_groups: Sequence[str],
    large_group: str,
    *,
    fraction: float = 0.05,
    max_rounds: int = 20,
    round_patience: int = 1,
    epochs: int | None = None,
    criterion: str = "balanced",
    large_tolerance: float | None = None,
    min_delta: float = 0.0,
) -> dict[str, Any]:
    """Adapt ``trainer``'s network to ``focus_groups`` (APOGEE Net §3.4); returns a summary.

    Parameters
    ----------
    trainer
        A trainer whose data have groups; normally after its main stage.
    focus_groups
        Group names to improve (e.g. ``["mdwarf", "yso"]``).
    large_group
        The large group subsampled each round (e.g. ``"payne"``).
    fraction
        Fraction of the large group's training rows drawn afresh each round (0.05 in the paper).
    max_rounds, round_patience
        At most ``max_rounds`` rounds; stop after ``round_patience`` rounds without improving the
        focus dev loss.
    epochs
        Maximum epochs per round (default: the trainer's ``epochs``); patience is the trainer's.
    criterion
        Early stopping within a round: ``"dev"`` — the ordinary dev loss over the focus groups' and
        the large group's dev rows (each row counts once, as in the main run); ``"balanced"`` —
        the mean over those groups of each group's mean dev loss; ``"focus"`` — the focus groups
        only.
    large_tolerance
        The large group's dev loss may rise to at most ``(1 + large_tolerance)`` × its value before
        adaptation: epochs beyond it never count as a round's best, so the weights kept always
        satisfy it. ``None`` removes the guard (the 5% sample is then the only protection).
    min_delta
        Improvement of the focus dev loss that counts as one.

    Returns
    -------
    ``{"rounds": [{"round", "focus_dev_loss", "group_dev_loss", "n_train", "epochs",
    "best_epoch"}...], "best_round", "initial": {...}, "final": {...}}`` — per-group dev losses
    are mean per-sample losses in standardised label space. The summary is also stored in the
    trainer's provenance under ``"stratified"``.
    """
    check_groups(trainer, focus_groups, large_group)
    focus_groups = [str(g) for g in focus_groups]
    dev_present = set(trainer.data.groups[trainer.split["dev"]].tolist())

    focus_train = _group_rows(trainer, "train", focus_groups)
    large_train = _group_rows(trainer, "train", [large_group])
    dev_rows = _group_rows(trainer, "dev", [*focus_groups, large_group])
    groups_of_dev = [g for g in [*focus_groups, large_group] if g in dev_present]
    if criterion not in CRITERIA:
        raise TrainingError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    n_draw = max(1, round(fraction * len(large_train)))

    def group_losses() -> dict[str, float]:
        return trainer.evaluate(dev_rows, by_group=True)  # type: ignore[return-value]

    def focus_loss(losses: dict[str, float]) -> float:
        return float(np.mean([losses[g] for g in focus_groups]))

    weights = {g: 1.0 / len(groups_of_dev) for g in groups_of_dev}  # "balanced"
    if criterion == "dev":  # the ordinary dev loss: groups weighted by their number of dev rows
        counts = {g: int((trainer.data.groups[dev_rows] == g).sum()) for g in groups_of_dev}
        weights = {g: c / sum(counts.values()) for g, c in counts.items()}
    elif criterion == "focus":
        weights = {g: (1.0 / len(focus_groups) if g in focus_groups else 0.0) for g in groups_of_dev}

    def round_loss() -> float:
        """The round's early-stopping criterion; +inf while the large group is beyond tolerance."""
        losses = group_losses()
        if large_limit is not None and losses[large_group] > large_limit:
            return math.inf
        return float(sum(w * losses[g] for g, w in weights.items()))

    st = trainer.state.get("adapt")
    if st is None:
        initial = group_losses()
        st = {"round": 0, "best_focus": focus_loss(initial), "best_round": 0, "bad_rounds": 0,
              "rounds": [], "initial": initial,
              "large_limit": None if large_tolerance is None or large_group not in initial
              else (1.0 + large_tolerance) * initial[large_group]}
        trainer.state["adapt"] = st
        trainer.extra_states["adapt_best"] = cpu_state(trainer.network)
        trainer.save_checkpoint()
    large_limit = st["large_limit"]

    while st["round"] < max_rounds and st["bad_rounds"] < round_patience:
        r = st["round"] + 1
        key = f"adapt-{r}"
        if trainer.state["stage"] != key and key not in trainer.state["done"]:
            trainer.reset_optimiser()
        rng = np.random.default_rng([trainer.seed, 7919, r])
        sample = rng.choice(large_train, size=n_draw, replace=False)
        rows = np.sort(np.concatenate([focus_train, sample]))
        res = trainer.run_stage(key, rows, round_loss, epochs=epochs, start_from_current=True,
                                stage_index=r)
        losses = group_losses()
        f = focus_loss(losses)
        st["rounds"].append({"round": r, "focus_dev_loss": f, "group_dev_loss": losses,
                             "n_train": len(rows), "epochs": res.epochs, "best_epoch": res.best_epoch})
        if f < st["best_focus"] - min_delta:
            st.update(best_focus=f, best_round=r, bad_rounds=0)
            trainer.extra_states["adapt_best"] = cpu_state(trainer.network)
        else:
            st["bad_rounds"] += 1
        st["round"] = r
        trainer.save_checkpoint()

    trainer.network.load_state_dict(trainer.extra_states["adapt_best"])
    summary = {"focus_groups": focus_groups, "large_group": large_group, "fraction": fraction,
               "criterion": criterion, "large_tolerance": large_tolerance,
               "rounds": st["rounds"], "best_round": st["best_round"], "initial": st["initial"],
               "final": group_losses()}
    trainer.extra_provenance["stratified"] = summary
    return summary
