"""The demo's run (:func:`run_demo`; the steps are described in :mod:`starlabels.demo`):
simulate, train, calibrate, predict and write, with one status line per step."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.demo.accuracy import accuracy_table, format_accuracy_table
from starlabels.demo.config import (
    ABUNDANCE_NOISE,
    BOSS_GENERATOR_LABELS,
    GENERATOR_LABELS,
    LABEL_NOISE,
    DemoConfig,
    DemoResult,
    Echo,
)
from starlabels.demo.figures import kiel_figure, pred_vs_true_figure
from starlabels.demo.steps import preprocess_config, preprocess_pool, simulate_survey, spectrum_source

__all__ = ["run_demo"]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s"


def run_demo(config: DemoConfig | None = None, *, echo: Echo | None = None) -> DemoResult:
    """Simulate, train, calibrate, predict and write the demo's outputs (see the module docstring).

    ``echo`` receives the one-line status messages and the final table (default: ``print``);
    progress bars go to stderr (:func:`starlabels.utils.progress`). The run leaves the process's
    state alone: torch's thread setting (``config.threads`` is applied by ``starlabels demo``, which
    owns its process; a script calls ``torch.set_num_threads`` itself) and the global random
    states (training draws from a seeded stream of its own). Returns a :class:`DemoResult`.
    """
    cfg = config or DemoConfig()
    say: Echo = echo or print
    return _run(cfg, say)


def _run(cfg: DemoConfig, say: Echo) -> DemoResult:
    """The body of :func:`run_demo`."""
    import pandas as pd

    import starlabels
    from starlabels.data.splits import random_split
    from starlabels.inference.calibration import calibrate
    from starlabels.inference.catalog import catalog_frame, write_table
    from starlabels.models import build_network
    from starlabels.models.bcnn import BayesianCNN
    from starlabels.training.config import OptimiserConfig, TrainingConfig
    from starlabels.training.trainer import Trainer, TrainingData
    from starlabels.utils import seeded

    out = cfg.output_path
    out.mkdir(parents=True, exist_ok=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        timings[name] = time.perf_counter() - t0
        return timings[name]

    # 1. simulate ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    source, source_text = spectrum_source(cfg)
    n_all = cfg.n_train + cfg.n_test
    say(f"[1/5] Simulating {n_all:,} spectra ({cfg.n_train:,} training + {cfg.n_test:,} held out) "
        f"with {source_text} ...")
    survey = simulate_survey(source, cfg)
    all_names = list(survey.label_names)
    wanted = BOSS_GENERATOR_LABELS if cfg.instrument == "boss" else GENERATOR_LABELS
    names = [x for x in wanted if x in all_names] if cfg.emulator is None else all_names
    cols = [all_names.index(x) for x in names]
    units = [survey.label_units[j] for j in cols]
    pool = np.arange(cfg.n_train)
    test = np.arange(cfg.n_train, n_all)
    fractions = (1 - cfg.n_dev / cfg.n_train, cfg.n_dev / cfg.n_train)
    train_local, dev_local = random_split(cfg.n_train, fractions, seed=cfg.seed)
    train, dev = pool[train_local], pool[dev_local]
    say(f"      {len(train):,} train / {len(dev):,} dev / {len(test):,} test stars, median SNR "
        f"{np.median(survey.snr):.0f}, labels {', '.join(names)} "
        f"({_duration(lap('simulate', t0))})")

    # 2. preprocess + train -----------------------------------------------------------------
    t0 = time.perf_counter()
    pre, pre_text = preprocess_config(source, survey, train)
    say(f"[2/5] Training a Bayesian CNN (bcnn, robust loss, up to {cfg.epochs} epochs, early stopping "
        f"on the dev loss) on spectra continuum-normalised with {pre_text} ...")
    pre_flux, pre_error = preprocess_pool(pre, survey, cfg.n_train)
    # keep the raw spectra of the dev and test stars only (calibration and prediction take raw
    # apStar flux, like real data); the training pool's raw spectra are no longer needed
    raw = {k: (getattr(survey, k)[dev], getattr(survey, k)[test]) for k in ("flux", "error", "bitmask")}
    survey.flux = survey.error = survey.bitmask = None  # type: ignore[assignment]
    data = TrainingData.from_arrays(
        pre_flux, survey.labels[pool][:, cols], names, error=pre_error,
        label_errors=survey.label_errors[pool][:, cols], label_units=units, groups=survey.group[pool],
        grid=pre.output_grid, preprocessing=pre.to_dict(),
    )
    with seeded(cfg.seed):  # the initial weights, without touching the caller's random states
        network = build_network("bcnn", n_labels=len(names), n_pixels=pre.n_pixels, dropout=cfg.dropout)

    def epoch_line(trainer: Any, row: dict[str, Any]) -> None:
        say(f"      epoch {row['epoch']:3d}: train loss {row['train_loss']:8.4f}   dev loss "
            f"{row['dev_loss']:8.4f}   lr {row['lr']:.1e}   ({row['seconds']:.1f} s)")

    trainer = Trainer(
        network, data, {"train": train_local, "dev": dev_local},
        optimiser=OptimiserConfig(learning_rate=cfg.learning_rate,
                                  weight_decay=BayesianCNN.recommended_weight_decay),
        training=TrainingConfig(loss="robust", epochs=cfg.epochs, patience=cfg.patience,
                                batch_size=cfg.batch_size, seed=cfg.seed,
                                device=cfg.device or "auto", dev_mc_samples=1),
        preprocess=pre, spectrum_scaling="centred", folder=None,
        split_info={"method": "random", "fractions": list(fractions),
                    "seed": cfg.seed, "held_out_test": len(test)},
        provenance={"demo": {"source": source_text, "seed": cfg.seed, "n_train_pool": cfg.n_train,
                             "n_test": cfg.n_test, "label_noise": LABEL_NOISE,
                             "abundance_noise": ABUNDANCE_NOISE}},
        callbacks=[epoch_line],
    )
    trainer.run_stage("main", trainer.split["train"])
    model = trainer.finish()
    stage = trainer.state["stages"]["main"]
    say(f"      best dev loss {stage['best_loss']:.4f} at epoch {stage['best_epoch']} of {stage['epochs']} "
        f"({_duration(lap('train', t0))})")

    # 3. calibrate --------------------------------------------------------------------------
    t0 = time.perf_counter()
    say(f"[3/5] Calibrating the MC-dropout uncertainties ({cfg.n_samples} passes per spectrum) on the "
        f"{len(dev)} dev stars against their true labels ...")
    entry = calibrate(
        model, raw["flux"][0], raw["error"][0], survey.true_labels[dev][:, cols],
        uncertainty="mc_dropout", n_samples=cfg.n_samples, seed=cfg.seed, bitmask=raw["bitmask"][0],
        device=cfg.device,
    )
    scales = entry["scales"]
    say("      σ scale factors: " + ", ".join(f"{k} {v:.2f}" for k, v in scales.items())
        + f" ({_duration(lap('calibrate', t0))})")
    model_dir = model.save(out / "model")
    for part in (getattr(model, "coverage", None), getattr(model, "domain_shift", None)):
        if part is not None:  # fitted by the trainer at the end of training
            part.save(model_dir)

    # 4. predict ----------------------------------------------------------------------------
    t0 = time.perf_counter()
    say(f"[4/5] Predicting the {len(test)} held-out stars with calibrated MC-dropout uncertainties "
        f"({cfg.n_samples} passes) ...")
    pred = starlabels.predict(
        model, raw["flux"][1], raw["error"][1], uncertainty="mc_dropout", n_samples=cfg.n_samples,
        bitmask=raw["bitmask"][1], seed=cfg.seed + 1, snr=survey.snr[test], device=cfg.device,
    )
    n_flagged = int(np.count_nonzero(pred.flags))
    say(f"      {len(pred)} stars, {n_flagged} with a quality flag set ({_duration(lap('predict', t0))})")

    # 5. write ------------------------------------------------------------------------------
    t0 = time.perf_counter()
    say(f"[5/5] Writing the catalog, figures and tables to {out}/ ...")
    meta = {
        "APOGEE_ID": survey.apogee_id[test], "RA": np.full(len(test), np.nan),
        "DEC": np.full(len(test), np.nan), "SNR": pred.snr,
        "SOURCE": [f"simulated survey (seed {cfg.seed}) row {i}" for i in test],
    }
    if cfg.instrument != "apogee":  # SDSS-V style: an integer SDSS_ID and the telescope
        meta.update(SDSS_ID=test + 1, TELESCOPE=np.full(len(test), "apo25m"))
    version = f"{starlabels.__version__}:demo-seed{cfg.seed}"
    frame = catalog_frame(pred, meta, "starlabels-demo-bcnn", version)
    catalog_path = out / cfg.catalog_name
    write_table(frame, catalog_path, cfg.catalog_format, names, units,
                meta={"DEMOSEED": cfg.seed, "NTRAIN": cfg.n_train})
    truth = pd.DataFrame({"APOGEE_ID": survey.apogee_id[test], "GROUP": survey.group[test],
                          "SNR": survey.snr[test]})
    for j, name in zip(cols, names, strict=True):
        truth[name] = survey.true_labels[test, j]
    truth_path = out / "truth.csv"
    truth.to_csv(truth_path, index=False, float_format="%.8g")

    # metrics and figures from the files as written (what a user would read back)
    from starlabels.inference.catalog import read_catalog

    cat = read_catalog(catalog_path)
    truth_back = pd.read_csv(truth_path, dtype={"APOGEE_ID": str})
    table = accuracy_table(cat, truth_back, names)
    text = format_accuracy_table(table)
    figures = {
        "kiel": kiel_figure(cat, truth_back, out / "kiel.png"),
        "pred_vs_true": pred_vs_true_figure(cat, truth_back, names, out / "pred_vs_true.png"),
    }
    (out / "accuracy.md").write_text(
        "# starlabels demo: accuracy on the held-out stars\n\n"
        "Residuals Δ = predicted − true (label units); σ_MAD(z) is the width of "
        "z = Δ/σ with the calibrated MC-dropout σ (1 = calibrated).\n\n" + text, encoding="utf-8")
    lap("write", t0)

    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    timings.update(total_wall=wall, total_cpu=cpu)
    summary = {
        "config": {k: (str(v) if isinstance(v, os.PathLike) else v) for k, v in asdict(cfg).items()},
        "source": source_text, "labels": names, "units": units,
        "sizes": {"train": len(train), "dev": len(dev), "test": len(test)},
        "epochs": {"run": stage["epochs"], "best": stage["best_epoch"], "max": cfg.epochs},
        "calibration_scales": scales, "mc_dropout_samples": cfg.n_samples,
        "accuracy": json.loads(table.to_json(orient="records")),
        "timings_seconds": {k: round(v, 2) for k, v in timings.items()},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    files = {"model": model_dir, "catalog": catalog_path, "truth": truth_path, **figures,
             "accuracy": out / "accuracy.md", "summary": out / "summary.json"}

    say("")
    say("Outputs:")
    shown = {k: (f"{p}/" if p.is_dir() else str(p)) for k, p in files.items()}
    width = max(len(v) for v in shown.values())
    descriptions = {
        "model": "trained model folder (starlabels.load_model)",
        "catalog": f"catalog of the {len(test)} held-out stars",
        "truth": "their true labels",
        "kiel": "Kiel diagrams, true and predicted",
        "pred_vs_true": "predicted against true labels",
        "accuracy": "the table below",
        "summary": "settings, epochs, calibration, timings",
    }
    for k in files:
        say(f"  {shown[k]:<{width}}  {descriptions[k]}")
    say("")
    say(f"Accuracy on the {len(test)} held-out stars (Δ = predicted − true; σ_MAD(z) = width of "
        f"Δ/σ, 1 when the calibrated σ are right):")
    say("")
    say(text.rstrip("\n"))
    say("")
    say(f"Done in {_duration(wall)} wall, {_duration(cpu)} CPU. Next: {_cli_name()} report {model_dir} "
        f"{catalog_path} --reference {truth_path} -o {out / 'report'}")
    return DemoResult(output=out, catalog=catalog_path, truth=truth_path, model=model_dir, figures=figures,
                      table=table, table_text=text, files=files, timings=timings, summary=summary)


def _cli_name() -> str:
    """How to call the CLI from this shell: ``starlabels`` when it is on PATH, else the script
    beside this Python (e.g. ``.venv/bin/starlabels`` when the venv is not activated)."""
    import shutil
    import sys

    if shutil.which("starlabels"):
        return "starlabels"
    beside = Path(sys.executable).parent / "starlabels"
    return str(beside) if beside.is_file() else f"{sys.executable} -m starlabels.cli.main"
