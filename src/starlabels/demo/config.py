"""Settings and result of the demo (:mod:`starlabels.demo`): sizes, labels, label noise and the
``--quick`` preset."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from starlabels.errors import InputDataError

__all__ = [
    "ABUNDANCE_NOISE", "BOSS_GENERATOR_LABELS", "CATALOG_FORMATS", "CONTINUUM_SELECTION_ROWS",
    "DEFAULT_OUTPUT", "FIGURE_LABELS", "GENERATOR_LABELS", "LABEL_NOISE", "MIN_DEV", "QUICK", "SIM_CHUNK",
    "DemoConfig", "DemoResult", "Echo", "with_sizes",
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
    ``threads``: torch intra-op threads for the run (None: torch's default), recorded in
    ``summary.json``; ``starlabels demo`` applies them to its process before the run (one is
    fastest for the demo's small convolutions: two made a training step 3.5× slower on a busy
    2-core machine, measured). :func:`run_demo` never changes the process's thread setting.
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


def with_sizes(cfg: DemoConfig, **sizes: int | None) -> DemoConfig:
    """``cfg`` with the given sizes replaced (``None`` values ignored)."""
    return replace(cfg, **{k: v for k, v in sizes.items() if v is not None})
