"""``starlabels demo``: the whole pipeline on a simulated survey, offline, in a few minutes.

:func:`run_demo` runs five steps and writes everything into one output folder:

1. **Simulate** a survey with known true labels (:mod:`starlabels.data.survey`): the built-in
   synthetic generator (:class:`~starlabels.data.survey.GeneratorSource`; a test/demo generator,
   not an atmosphere model) or, with ``emulator=PATH``, a Payne-format emulator, on the grid of
   ``instrument``: ``"apogee"`` (H band, the apStar grid) or ``"boss"`` (optical, the 4648-pixel
   BOSS coadd grid; BOSS-like SNR, SPPIXMASK defects, A/F dwarfs added to the population, labels
   :data:`BOSS_GENERATOR_LABELS`). Labels follow
   APOGEE-like giant/dwarf populations, spectra get a continuum, reddening, photon noise with an
   APOGEE-like SNR distribution, sky residuals and bad pixels; the training labels get Gaussian
   noise of known σ (their label errors). The first ``n_train`` stars are the training pool
   (split at random into train and dev), the last ``n_test`` are held out.
2. **Train** astroNN's Bayesian CNN (``bcnn``) with the robust loss (astroNN eq. 5) through
   :class:`starlabels.training.Trainer`: continuum normalisation
   (``PreprocessConfig(kind="continuum")`` with the generator's known continuum pixels, or pixels
   chosen from the training spectra by :func:`~starlabels.preprocess.continuum.select_continuum_pixels`
   for an emulator), early stopping and a plateau learning-rate schedule on the dev loss —
   computed with dropout on, as the network is used by MC-dropout prediction
   (``TrainingConfig(dev_mc_samples=1)``: with dropout off this network's output is far from the
   MC-dropout mean that :func:`starlabels.predict` reports — measured Teff σ_MAD 186 K against
   71 K on the same model). By default the built-in generator's stellar parameters and three
   α elements are learnt (:data:`GENERATOR_LABELS`), an emulator's labels all.
3. **Calibrate** the MC-dropout uncertainties on the dev set
   (:func:`starlabels.inference.calibration.calibrate`; the simulation knows the dev stars' true
   labels, so the scales are fitted against those).
4. **Predict** the held-out stars with calibrated MC-dropout uncertainties
   (:func:`starlabels.predict`, ``uncertainty="mc_dropout"``; ``n_samples`` passes, 50 by default
   instead of the library's 100, to fit the time budget).
5. **Write** into the output folder:

   ====================  ========================================================================
   ``model/``            the trained model folder (calibration included; ``starlabels.load_model``)
   ``catalog.fits``      the catalog of the held-out stars (``starlabels.inference.catalog``
                         columns; ``catalog.csv`` with ``catalog_format="csv"``)
   ``truth.csv``         their true labels (``APOGEE_ID``, ``GROUP``, ``SNR``, one column per label)
   ``kiel.png``          Kiel diagrams, true and predicted, coloured by [Fe/H]
   ``pred_vs_true.png``  predicted against true labels with residuals
   ``accuracy.md``       the accuracy table printed at the end
   ``summary.json``      sizes, settings, epochs, calibration scales, the table and timings
   ====================  ========================================================================

The accuracy table has, per label, the median and σ_MAD of the residuals (predicted − true) and the
width σ_MAD of the z-scores (predicted − true)/σ after calibration (1 for calibrated errors), all
from :mod:`starlabels.evaluation.metrics` applied to the written catalog and truth.

Everything is seeded: the same :class:`DemoConfig` gives the same catalog (on the same machine and
torch thread count).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputDataError

__all__ = [
    "BOSS_GENERATOR_LABELS",
    "CATALOG_FORMATS",
    "DEFAULT_OUTPUT",
    "FIGURE_LABELS",
    "GENERATOR_LABELS",
    "MIN_DEV",
    "QUICK",
    "DemoConfig",
    "DemoResult",
    "accuracy_table",
    "format_accuracy_table",
    "run_demo",
]

DEFAULT_OUTPUT = "demo_output"
CATALOG_FORMATS = ("fits", "csv")
#: Labels the demo network learns from the built-in generator (of its 19): the stellar parameters
#: and three α elements. With a few thousand training spectra the network learns little of the
#: weaker elements (measured), so they are left out; an emulator's labels are all learnt.
GENERATOR_LABELS: tuple[str, ...] = ("TEFF", "LOGG", "FE_H", "O_FE", "MG_FE", "SI_FE")
#: The same for BOSS (``instrument="boss"``): the stellar parameters and the two elements with the
#: strongest optical features in the generator (Mg b and MgH; Ca II H&K, the Ca triplet, Ca I 4227).
BOSS_GENERATOR_LABELS: tuple[str, ...] = ("TEFF", "LOGG", "FE_H", "MG_FE", "CA_FE")
#: Labels shown in the predicted-vs-true figure (those the model has, in this order; at most 4).
FIGURE_LABELS: tuple[str, ...] = ("TEFF", "LOGG", "FE_H", "MG_FE", "ALPHA_M")
#: σ of the Gaussian noise on the training labels (their label errors), per label; abundances
#: not listed get ``ABUNDANCE_NOISE``.
LABEL_NOISE: dict[str, float] = {"TEFF": 30.0, "LOGG": 0.05, "FE_H": 0.02, "ALPHA_M": 0.02}
ABUNDANCE_NOISE = 0.03
#: Sizes of ``--quick`` (a smoke test of every step, seconds; the accuracy is meaningless).
QUICK: dict[str, int] = {"n_train": 160, "n_test": 40, "epochs": 2, "n_samples": 8}
#: Smallest dev set (early stopping and calibration need a few stars per label).
MIN_DEV = 10
#: Training spectra used to select continuum pixels for an emulator (a linear model per pixel
#: needs far fewer; more only costs memory: float64 copies of every spectrum).
CONTINUUM_SELECTION_ROWS = 1000
#: Stars simulated per step of the progress bar.
SIM_CHUNK = 150

Echo = Callable[[str], None]


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo` (defaults: the README's demo, ~2–3 min on 2 CPU cores).

    ``n_train`` stars form the training pool, of which ``dev_fraction`` (at least
    :data:`MIN_DEV` stars) is the dev set (early stopping and calibration); ``n_test`` stars are
    held out. ``n_samples`` MC-dropout passes per spectrum are used for calibration and prediction.
    """

    output: str | os.PathLike[str] = DEFAULT_OUTPUT
    n_train: int = 4000
    n_test: int = 300
    #: 20: the dev loss still fell at every one of 15 epochs; 20 gave log g σ_MAD 0.17 against
    #: 0.25 dex at ~3 min wall on 2 cores (of the 5-minute budget)
    epochs: int = 20
    seed: int = 0
    emulator: str | os.PathLike[str] | None = None
    n_samples: int = 50
    dev_fraction: float = 0.08
    batch_size: int = 64
    patience: int = 4
    learning_rate: float = 1e-3
    dropout: float = 0.3
    catalog_format: str = "fits"
    device: str | None = None
    threads: int | None = 1
    #: ``"apogee"`` (apStar grid, H band) or ``"boss"`` (the 4648-pixel optical coadd grid)
    instrument: str = "apogee"

    def __post_init__(self) -> None:
        for name in ("n_train", "n_test", "epochs", "n_samples", "batch_size", "patience"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or v < 1:
                raise InputDataError(f"{name} must be a positive integer, got {v!r}")
            setattr(self, name, int(v))
        if not 0.0 < self.dev_fraction < 0.5:
            raise InputDataError(f"dev_fraction must be in (0, 0.5), got {self.dev_fraction}")
        if self.n_train < 4 * MIN_DEV:
            raise InputDataError(
                f"n_train={self.n_train} is too small: the dev set needs at least {MIN_DEV} stars to "
                f"calibrate the uncertainties and the rest must train (use n_train >= {4 * MIN_DEV})"
            )
        if self.n_samples < 2:
            raise InputDataError("n_samples must be >= 2 (MC-dropout needs several passes)")
        if self.catalog_format not in CATALOG_FORMATS:
            raise InputDataError(
                f"catalog_format must be one of {CATALOG_FORMATS}, got {self.catalog_format!r}"
            )
        if not 0.0 < self.dropout < 1.0:
            raise InputDataError(f"dropout must be in (0, 1) for MC-dropout, got {self.dropout}")
        self.seed = int(self.seed)
        from starlabels.instruments import available

        self.instrument = str(self.instrument).lower()
        if self.instrument not in available():
            raise InputDataError(f"instrument must be one of {available()}, got {self.instrument!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or int(self.threads) < 1):
            raise InputDataError(f"threads must be a positive integer or None, got {self.threads!r}")

    @classmethod
    def quick(cls, **overrides: Any) -> DemoConfig:
        """The ``--quick`` sizes (:data:`QUICK`), with ``overrides`` on top."""
        return cls(**{**QUICK, **overrides})

    @property
    def output_path(self) -> Path:
        return Path(self.output)

    @property
    def n_dev(self) -> int:
        """Dev stars: ``dev_fraction`` of the training pool, at least :data:`MIN_DEV`."""
        return max(MIN_DEV, round(self.dev_fraction * self.n_train))

    @property
    def catalog_name(self) -> str:
        return f"catalog.{self.catalog_format}"


@dataclass
class DemoResult:
    """What :func:`run_demo` wrote and measured."""

    output: Path
    catalog: Path
    truth: Path
    model: Path
    figures: dict[str, Path]
    table: Any  # pandas DataFrame: label, unit, n, median, sigma_mad, z_sigma_mad
    table_text: str
    files: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# the accuracy table
# --------------------------------------------------------------------------------------------


def accuracy_table(catalog: Any, truth: Any, labels: Sequence[str]) -> Any:
    """Per-label accuracy of a catalog against the true labels (row-aligned tables).

    Returns a pandas DataFrame with columns ``label``, ``unit``, ``n``, ``median`` and
    ``sigma_mad`` of the residuals predicted − true (label units), and ``z_sigma_mad``, σ_MAD of
    z = (predicted − true)/σ with σ the catalog's ``X_ERR`` column (1 for calibrated errors).
    Computed with :func:`starlabels.evaluation.metrics.residual_table` and
    :func:`~starlabels.evaluation.metrics.zscore_table`.
    """
    import pandas as pd

    from starlabels.evaluation.metrics import residual_table, zscore_table

    labels = list(labels)
    res = residual_table(catalog, truth, labels)
    z = zscore_table(catalog, truth, labels, pred_err="columns")
    return pd.DataFrame({
        "label": res["label"].to_numpy(), "unit": res["unit"].to_numpy(), "n": res["n"].to_numpy(),
        "median": res["median"].to_numpy(), "sigma_mad": res["sigma_mad"].to_numpy(),
        "z_sigma_mad": z["z_sigma_mad"].to_numpy(),
    })


def _decimals(scale: float) -> int:
    """Decimals that show ``scale`` to 3 significant figures (0 for scales ≥ 100)."""
    if not (np.isfinite(scale) and scale > 0):
        return 3
    return int(max(0, 2 - np.floor(np.log10(scale))))


def format_accuracy_table(table: Any) -> str:
    """The accuracy table as Markdown, columns ``label | unit | N | median Δ | σ_MAD(Δ) | σ_MAD(z)``.

    Per row, the median and σ_MAD of the residuals get the decimals that show σ_MAD to 3
    significant figures (e.g. ``+15.0``/``71.4`` K, ``-0.0201``/``0.0473`` dex); z widths get 2.
    """
    from starlabels.evaluation.metrics import label_display

    head = ["label", "unit", "N", "median Δ", "σ_MAD(Δ)", "σ_MAD(z)"]
    rows = []
    for r in table.itertuples(index=False):
        d = _decimals(float(r.sigma_mad))
        rows.append([label_display(str(r.label), tex=False), str(r.unit), str(int(r.n)),
                     f"{float(r.median):+.{d}f}", f"{float(r.sigma_mad):.{d}f}",
                     f"{float(r.z_sigma_mad):.2f}"])
    widths = [max(len(h), *(len(row[k]) for row in rows)) for k, h in enumerate(head)]
    right = [False, False, True, True, True, True]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ":" if r else "-" * (w + 2)
                         for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(head), sep, *(line(r) for r in rows)]) + "\n"


# --------------------------------------------------------------------------------------------
# steps
# --------------------------------------------------------------------------------------------


def _source(cfg: DemoConfig) -> tuple[Any, str]:
    """(spectrum source, description)."""
    from starlabels.data.survey import EmulatorSource, GeneratorSource

    if cfg.emulator is None:
        text = "the built-in synthetic generator"
        if cfg.instrument != "apogee":
            text += f" ({cfg.instrument.upper()} grid)"
        return GeneratorSource.default(seed=0, instrument=cfg.instrument), text
    return (EmulatorSource.from_path(cfg.emulator, instrument=cfg.instrument),
            f"the emulator {cfg.emulator}")


def _simulate(source: Any, cfg: DemoConfig) -> Any:
    """The survey of n_train + n_test stars, observed in chunks behind a progress bar."""
    from starlabels.data.survey import (
        DEFAULT_LABEL_NOISE,
        SimulatedSurvey,
        SurveyConfig,
        SurveySimulator,
        default_population,
        sample_labels,
    )
    from starlabels.utils import progress

    names = list(source.label_names)
    noise = {**DEFAULT_LABEL_NOISE, **LABEL_NOISE}
    noise = {n: noise.get(n, ABUNDANCE_NOISE) for n in names}
    n = cfg.n_train + cfg.n_test
    scfg = SurveyConfig(n_stars=n, seed=cfg.seed, label_noise=noise,
                        population=default_population(source.instrument))
    sim = SurveySimulator(source, scfg)
    rng = np.random.default_rng([cfg.seed, 2024])
    labels, group = sample_labels(n, source, rng, scfg.population, None)
    ids = np.array([f"DEMO{cfg.seed:04d}-{i:06d}" for i in range(n)])
    arrays: dict[str, np.ndarray] = {}
    starts = range(0, n, SIM_CHUNK)
    for a in progress(starts, desc="simulate", total=len(starts), unit="chunk"):
        b = min(n, a + SIM_CHUNK)
        part = sim.observe(labels[a:b], group[a:b], ids[a:b], rng=rng)
        for k in _SURVEY_ARRAYS:  # filled in place: no second copy of the spectra
            v = np.asarray(getattr(part, k))
            if k not in arrays:
                arrays[k] = np.empty((n, *v.shape[1:]), dtype=v.dtype if v.dtype.kind != "U" else object)
            arrays[k][a:b] = v
    for k in ("group", "apogee_id"):
        arrays[k] = arrays[k].astype(str)
    return SimulatedSurvey(label_names=tuple(source.label_names), instrument=source.instrument, **arrays)


_SURVEY_ARRAYS = ("flux", "error", "bitmask", "labels", "label_errors", "true_labels", "snr", "group",
                  "apogee_id", "extinction_h")


def _preprocess_config(source: Any, survey: Any, train_rows: np.ndarray) -> tuple[Any, str]:
    """Continuum preprocessing: the generator's known continuum pixels, or pixels selected from the
    training spectra (emulator). Returns (PreprocessConfig, description)."""
    from starlabels.preprocess.continuum import select_continuum_pixels
    from starlabels.preprocess.pipeline import PreprocessConfig

    inst = source.instrument
    gen = getattr(source, "generator", None)
    if gen is not None and hasattr(gen, "continuum_pixels"):
        mask = gen.continuum_pixels()  # on the segment grid (APOGEE: the 7514-pixel ASPCAP grid)
        how = "the generator's known continuum pixels"
    else:
        rows = train_rows[:CONTINUUM_SELECTION_ROWS]
        extra = {} if inst.name == "apogee" else {"grid": inst.grid, "bitmask_def": inst.bitmask()}
        mask = select_continuum_pixels(
            survey.flux[rows], survey.error[rows], survey.labels[rows], survey.bitmask[rows], **extra,
        )
        how = f"continuum pixels selected from {len(rows):,} training spectra"
    extra = {} if inst.name == "apogee" else {"instrument": inst.name}
    return PreprocessConfig.from_mask(mask, degree=2, **extra), f"{how} ({int(mask.sum())} pixels)"


def _preprocess_pool(pre: Any, survey: Any, n: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` spectra of the survey preprocessed with ``pre``, chunk by chunk into
    preallocated float32 arrays (no full-size temporaries)."""
    from starlabels.utils import progress

    flux = np.empty((n, pre.n_pixels), np.float32)
    error = np.empty((n, pre.n_pixels), np.float32)
    starts = range(0, n, chunk)
    for a in progress(starts, desc="continuum", total=len(starts), unit="chunk"):
        b = min(n, a + chunk)
        flux[a:b], error[a:b] = pre.apply(survey.flux[a:b], survey.error[a:b], survey.bitmask[a:b])
    return flux, error


def _kiel_figure(catalog: Any, truth: Any, path: Path) -> Path:
    """Two Kiel diagrams side by side, true and predicted, same axes and [Fe/H] colour scale."""
    from matplotlib.figure import Figure

    from starlabels.evaluation.plots import plot_kiel, save_figure

    fe = np.asarray(truth["FE_H"], float)
    lo, hi = np.nanpercentile(fe, [2, 98]) if np.isfinite(fe).any() else (-1.0, 0.5)
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    plot_kiel(truth, ax=axes[0], vmin=lo, vmax=hi, marker_size=9,
              title=f"True labels ({len(truth)} held-out stars)")
    plot_kiel(catalog, ax=axes[1], vmin=lo, vmax=hi, marker_size=9, title="Predicted by starlabels (BCNN)")
    t = np.concatenate([np.asarray(truth["TEFF"], float), np.asarray(catalog["TEFF"], float)])
    g = np.concatenate([np.asarray(truth["LOGG"], float), np.asarray(catalog["LOGG"], float)])
    t, g = t[np.isfinite(t)], g[np.isfinite(g)]
    if t.size and g.size:
        pt, pg = 0.04 * np.ptp(t) + 10.0, 0.04 * np.ptp(g) + 0.05
        axes[0].set_xlim(t.max() + pt, t.min() - pt)
        axes[0].set_ylim(g.max() + pg, g.min() - pg)
    return save_figure(fig, path)


def _pred_vs_true_figure(catalog: Any, truth: Any, labels: Sequence[str], path: Path) -> Path:
    from starlabels.evaluation.metrics import axis_label
    from starlabels.evaluation.plots import plot_pred_vs_ref, save_figure

    show = [x for x in FIGURE_LABELS if x in labels][:4] or list(labels)[:4]
    fig = plot_pred_vs_ref(catalog, truth, show)
    for j, name in enumerate(show):  # each label has a main and a residual panel; the truth is known
        fig.axes[2 * j + 1].set_xlabel(f"True {axis_label(name)}")
    fig.suptitle(f"Held-out stars: predicted against true labels (N = {len(truth)})", fontsize=12)
    return save_figure(fig, path)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s"


# --------------------------------------------------------------------------------------------
# the demo
# --------------------------------------------------------------------------------------------


def run_demo(config: DemoConfig | None = None, *, echo: Echo | None = None) -> DemoResult:
    """Simulate, train, calibrate, predict and write the demo's outputs (see the module docstring).

    ``echo`` receives the one-line status messages and the final table (default: ``print``);
    progress bars go to stderr (:func:`starlabels.utils.progress`). Torch runs with
    ``config.threads`` intra-op threads (default 1; restored afterwards): the demo's small
    convolutions gain little from more, and on a busy 2-core machine two threads made a training
    step 3.5× slower (measured). Returns a :class:`DemoResult`.
    """
    import torch

    cfg = config or DemoConfig()
    say: Echo = echo or print
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    try:
        return _run(cfg, say)
    finally:
        torch.set_num_threads(threads_before)


def _run(cfg: DemoConfig, say: Echo) -> DemoResult:
    """The body of :func:`run_demo` (torch threads already set)."""
    import pandas as pd

    import starlabels
    from starlabels.data.splits import random_split
    from starlabels.inference.calibration import calibrate
    from starlabels.inference.catalog import catalog_frame, write_table
    from starlabels.models import build_network
    from starlabels.models.bcnn import BayesianCNN
    from starlabels.training.config import OptimiserConfig, TrainingConfig
    from starlabels.training.trainer import Trainer, TrainingData
    from starlabels.utils import seed_everything

    out = cfg.output_path
    out.mkdir(parents=True, exist_ok=True)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    timings: dict[str, float] = {}

    def lap(name: str, t0: float) -> float:
        timings[name] = time.perf_counter() - t0
        return timings[name]

    # 1. simulate ---------------------------------------------------------------------------
    t0 = time.perf_counter()
    source, source_text = _source(cfg)
    n_all = cfg.n_train + cfg.n_test
    say(f"[1/5] Simulating {n_all:,} spectra ({cfg.n_train:,} training + {cfg.n_test:,} held out) "
        f"with {source_text} ...")
    survey = _simulate(source, cfg)
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
    pre, pre_text = _preprocess_config(source, survey, train)
    say(f"[2/5] Training a Bayesian CNN (bcnn, robust loss, up to {cfg.epochs} epochs, early stopping "
        f"on the dev loss) on spectra continuum-normalised with {pre_text} ...")
    pre_flux, pre_error = _preprocess_pool(pre, survey, cfg.n_train)
    # keep the raw spectra of the dev and test stars only (calibration and prediction take raw
    # apStar flux, like real data); the training pool's raw spectra are no longer needed
    raw = {k: (getattr(survey, k)[dev], getattr(survey, k)[test]) for k in ("flux", "error", "bitmask")}
    survey.flux = survey.error = survey.bitmask = None  # type: ignore[assignment]
    data = TrainingData.from_arrays(
        pre_flux, survey.labels[pool][:, cols], names, error=pre_error,
        label_errors=survey.label_errors[pool][:, cols], label_units=units, groups=survey.group[pool],
        grid=pre.output_grid, preprocessing=pre.to_dict(),
    )
    seed_everything(cfg.seed)
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
        "kiel": _kiel_figure(cat, truth_back, out / "kiel.png"),
        "pred_vs_true": _pred_vs_true_figure(cat, truth_back, names, out / "pred_vs_true.png"),
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


def with_sizes(cfg: DemoConfig, **sizes: int | None) -> DemoConfig:
    """``cfg`` with the given sizes replaced (``None`` values ignored)."""
    return replace(cfg, **{k: v for k, v in sizes.items() if v is not None})
