"""Accuracy benchmark: APOGEE Net and the Bayesian CNN against The Cannon on a simulated survey.

What it does (configuration: ``bench/accuracy_config.toml``, documented there):

1. **Simulate** with :class:`starlabels.data.survey.SurveySimulator` from the Payne-Kurucz 4-label
   emulator (TEFF, LOGG, FE_H, ALPHA_M; un-normalised flux): giants resampled from the DR17 ASPCAP
   labels plus main-sequence and cool dwarfs, inside the emulator's label box. A high-SNR training
   set (SNR 200–400, noisy training labels, a few % MISSING), a test set at SNR 100–200 and
   low-SNR "visits" (SNR 20–60) of the same test stars (same true labels and extinction, new
   noise, sky residuals and bad pixels).
2. **Train** APOGEE Net (raw-flux path, ``PreprocessConfig(kind="raw")``) and the Bayesian CNN
   (continuum-normalised with the DR17 mask, robust loss) with the project's trainer on the
   train split, the dev split driving early stopping and the learning-rate schedule; both with
   noise augmentation (``TrainingConfig.augment``: batches degraded to random SNRs 15–400), the
   BCNN's dev loss with dropout on.
3. **Calibrate** the uncertainties against the dev stars' true labels, the dev spectra degraded
   to SNRs 15–400 (:func:`starlabels.inference.calibration.calibrate`, model ``auto``: per label
   the best of scale / parts / floor / power) — MC dropout for the BCNN, noise realisations for
   APOGEE Net, which has no variance head — and **predict** both test sets.
4. **The Cannon** (quadratic, PyPI ``annieslasso``) on the same train split and the BCNN's
   continuum-normalised spectra (ivar = 1/σ², rejected pixels ivar = 0), run by
   ``bench/cannon_runner.py`` inside its own virtual environment (created here on first use)
   as a subprocess exchanging ``.npz`` files; its output goes to ``<work>/cannon.log``.
   **The Cannon, native** (``starlabels.CannonModel``, torch, same spectra, labels and test
   starts) is trained in the main process and calibrated/predicted through the same
   ``calibrate``/``predict`` calls as the networks (its σ: the inverse Fisher matrix, ``fisher``).
   **The Payne fit** (``bench/payne_rows.py``: ``starlabels.models.payne_fit`` with the emulator
   that generated the survey — an upper bound, no model mismatch) fits the raw apStar spectra of
   the first ``[payne] n_stars`` test stars in both SNR bins (its Jacobian σ uncalibrated).
5. **Report** median and σ_MAD of the residuals against the TRUE labels per label and SNR bin
   for the three methods; σ_MAD of the z-scores before and after calibration; and astroNN's
   Fig. 7 out-of-distribution test: a BCNN trained with the dwarfs' log g MISSING must give the
   dwarfs a log g uncertainty ≥ 3× the giants' (MC dropout + variance head + the label-coverage
   part of :mod:`starlabels.inference.coverage`, also reported without it).
6. **Write** ``bench/results/accuracy.md`` (tables, sizes, timings, the command, which targets
   were met) and print the main table.

Run (from the repository root)::

    .venv/bin/python bench/accuracy.py --quick           # CI-sized, ~1 min on 2 cores
    nohup .venv/bin/python bench/accuracy.py > bench/.work/accuracy.log 2>&1 &   # full, ~25 min

Needs the reference data in ``../shared/data`` (or ``$STARLABELS_SHARED_DATA``); exits with a
clear message when it is absent. The pure helpers (statistics, target checks, input scaling)
are tested by ``tests/bench/test_accuracy_quick.py``; nothing there trains.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "bench" / "accuracy_config.toml"
LABELS: tuple[str, ...] = ("TEFF", "LOGG", "FE_H", "ALPHA_M")
UNITS = {"TEFF": "K", "LOGG": "dex", "FE_H": "dex", "ALPHA_M": "dex"}
#: the two test sets (SNR bins) and how tables name them
BINS: tuple[str, ...] = ("test", "visits")
BIN_TITLES = {"test": "SNR 100–200", "visits": "visits SNR 20–60"}
NETWORKS: tuple[str, ...] = ("apogee_net", "bcnn")
METHOD_TITLES = {"apogee_net": "APOGEE Net", "bcnn": "BCNN", "cannon": "The Cannon",
                 "cannon_native": "Cannon (starlabels)", "payne": "Payne fit"}
# the hand-written discussion beside the report, which the report links to (full runs only)
DISCUSSION_NAME = "accuracy_discussion.md"
MAD_TO_SIGMA = 1.4826
MISSING = -9999.0
#: preprocessed errors at or above this mark rejected pixels (they carry ~1e10)
BAD_ERROR = 1e8
SECTIONS = ("data", "compute", "survey", "apogee_net", "bcnn", "ood", "cannon", "cannon_native", "payne",
            "targets")


class BenchError(RuntimeError):
    """A setup problem the user must fix (missing data, bad config, failed Cannon install)."""


# ============================================================================================
# configuration
# ============================================================================================


def shared_data_dir() -> Path:
    """The reference-data folder: ``$STARLABELS_SHARED_DATA`` or ``../shared/data``."""
    return Path(os.environ.get("STARLABELS_SHARED_DATA", ROOT.parent / "shared" / "data"))


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: nested tables merge key by key, other values replace."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_overrides(base: Mapping[str, Any], over: Mapping[str, Any], where: str = "") -> None:
    """Raise :class:`BenchError` when ``over`` names a key that ``base`` does not have (typos)."""
    for key, value in over.items():
        if key not in base:
            raise BenchError(f"unknown config key {where}{key!r}; known: {sorted(base)}")
        if isinstance(value, Mapping) and isinstance(base[key], Mapping) and key != "population":
            check_overrides(base[key], value, f"{where}{key}.")


def load_config(path: Path, quick: bool = False) -> dict[str, Any]:
    """Read the TOML config; with ``quick`` merge its ``[quick]`` table over the sections.

    ``${SHARED}`` in a path is the reference-data folder; relative paths are taken from the
    repository root.
    """
    raw = tomllib.loads(Path(path).read_text())
    quick_over = raw.pop("quick", {})
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise BenchError(f"{path}: unknown section(s) {unknown}; known: {list(SECTIONS)} and quick")
    missing = sorted(set(SECTIONS) - set(raw))
    if missing:
        raise BenchError(f"{path}: missing section(s) {missing}")
    if quick:
        check_overrides(raw, quick_over, "quick.")
        raw = deep_merge(raw, quick_over)
    shared = str(shared_data_dir())
    for key in ("emulator", "dr17_labels", "continuum_mask", "work", "output"):
        p = Path(str(raw["data"][key]).replace("${SHARED}", shared))
        raw["data"][key] = p if p.is_absolute() else ROOT / p
    cv = Path(raw["cannon"]["venv"])
    raw["cannon"]["venv"] = cv if cv.is_absolute() else ROOT / cv
    if raw["payne"].get("fit_mask"):
        fm = Path(str(raw["payne"]["fit_mask"]).replace("${SHARED}", shared))
        raw["payne"]["fit_mask"] = fm if fm.is_absolute() else ROOT / fm
    return raw


def check_data(cfg: Mapping[str, Any]) -> None:
    """Exit with a clear message when a reference-data file is absent."""
    absent = [str(cfg["data"][k]) for k in ("emulator", "dr17_labels", "continuum_mask")
              if not Path(cfg["data"][k]).is_file()]
    if absent:
        raise BenchError(
            "reference data not found: " + ", ".join(absent) + ". The benchmark needs ../shared/data "
            "(see its README) or STARLABELS_SHARED_DATA pointing at a copy; never copy it into the repo."
        )


def snr_spec(value: Sequence[Any] | str) -> tuple | str:
    """A TOML SNR distribution (``["uniform", 100, 200]`` or ``"apogee"``) as the simulator wants it."""
    if isinstance(value, str):
        return value
    kind, lo, hi = value
    return (str(kind), float(lo), float(hi))


# ============================================================================================
# pure helpers (tested in tests/bench/test_accuracy_quick.py)
# ============================================================================================


def sigma_mad(x: np.ndarray, axis: int | None = None) -> np.ndarray | float:
    """σ_MAD = 1.4826 · median|x − median x| of the finite values (NaN when there are none)."""
    a = np.asarray(x, dtype=np.float64)
    a = np.where(np.isfinite(a), a, np.nan)
    with np.errstate(all="ignore"), _Quiet():
        med = np.nanmedian(a, axis=axis, keepdims=True)
        out = MAD_TO_SIGMA * np.nanmedian(np.abs(a - med), axis=axis)
    return float(out) if np.ndim(out) == 0 else out


class _Quiet:
    """Silence numpy's all-NaN RuntimeWarnings inside a block."""

    def __enter__(self) -> None:
        import warnings

        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._cm.__exit__(*exc)


def residual_stats(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per-label median and σ_MAD of ``pred − true`` ((N, L) each), and n and failures.

    Non-finite predictions (e.g. failed Cannon fits) are left out and counted in ``failed``.
    """
    r = np.asarray(pred, np.float64) - np.asarray(true, np.float64)
    ok = np.isfinite(r)
    with np.errstate(all="ignore"), _Quiet():
        median = np.nanmedian(np.where(ok, r, np.nan), axis=0)
    return {"median": median, "sigma_mad": np.asarray(sigma_mad(r, axis=0)),
            "n": ok.sum(axis=0), "failed": (~ok).sum(axis=0)}


def z_widths(
    pred: np.ndarray, std: np.ndarray, true: np.ndarray, scales: np.ndarray | None = None
) -> np.ndarray:
    """(L,) σ_MAD of z = (pred − true) / (scale · std); rows with σ ≤ 0 or non-finite are left out."""
    s = np.asarray(std, np.float64) * (1.0 if scales is None else np.asarray(scales, np.float64))
    with np.errstate(all="ignore"):
        z = (np.asarray(pred, np.float64) - np.asarray(true, np.float64)) / s
    z = np.where(s > 0, z, np.nan)
    return np.asarray(sigma_mad(z, axis=0))


def cannon_ivar(error: np.ndarray) -> np.ndarray:
    """Inverse variance 1/σ² of preprocessed errors; 0 for rejected pixels (σ ≥ BAD_ERROR, σ ≤ 0,
    non-finite), float32."""
    e = np.asarray(error, np.float64)
    good = np.isfinite(e) & (e > 0) & (e < BAD_ERROR)
    with np.errstate(all="ignore"):
        return np.where(good, 1.0 / np.where(good, e, 1.0) ** 2, 0.0).astype(np.float32)


def group_initial_labels(labels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(K, L) median labels of the complete rows (no MISSING/NaN) of each group, in sorted group
    order; groups without a complete row are skipped."""
    lab = np.asarray(labels, np.float64)
    ok = np.all(np.isfinite(lab) & (lab != MISSING), axis=1)
    starts = [np.median(lab[ok & (groups == g)], axis=0)
              for g in sorted(set(np.asarray(groups).tolist())) if np.any(ok & (groups == g))]
    if not starts:
        raise BenchError("no training row has every label: cannot choose Cannon starting points")
    return np.array(starts)


def ood_ratio(std_logg: np.ndarray, groups: np.ndarray, ood_groups: Sequence[str],
              reference: str = "giants") -> dict[str, float]:
    """Median log g σ of the out-of-distribution groups, of ``reference``, and their ratio."""
    s = np.asarray(std_logg, np.float64)
    g = np.asarray(groups)
    ok = np.isfinite(s)
    out_sel, ref_sel = ok & np.isin(g, list(ood_groups)), ok & (g == reference)
    if not out_sel.any() or not ref_sel.any():
        return {"ood": float("nan"), "reference": float("nan"), "ratio": float("nan")}
    a, b = float(np.median(s[out_sel])), float(np.median(s[ref_sel]))
    return {"ood": a, "reference": b, "ratio": a / b if b > 0 else float("nan")}


def mc_only_std(pred: Any) -> np.ndarray:
    """(N, L) σ of a prediction without its label-coverage part (MC dropout + variance head)."""
    return np.sqrt(sum(v for k, v in pred.variance_parts.items() if k != "coverage"))


def fit_ood_coverage(model: Any, cfg: Mapping[str, Any], survey: Any, train_rows: np.ndarray,
                     dev_rows: np.ndarray) -> dict[str, Any]:
    """Fit the OOD model's label coverage (``starlabels.inference.coverage``): reference = its
    training spectra with the labels they had (dwarfs without log g), d_ref from its dev stars
    degraded to ``[ood] coverage.snr`` (their labels as the survey gives them, MISSING kept)."""
    from starlabels.inference.coverage import fit_coverage

    ccfg = dict(cfg["ood"].get("coverage") or {})
    pp = preprocess_config("bcnn", cfg)
    dev = calibration_set(_rows(survey, dev_rows), {"snr": ccfg.get("snr")}, pp)
    cov = fit_coverage(model, survey.flux[train_rows], survey.error[train_rows], survey.labels[train_rows],
                       dev.flux, dev.error, dev.labels, train_bitmask=survey.bitmask[train_rows],
                       dev_bitmask=dev.bitmask, k=int(ccfg.get("k", 10)),
                       percentile=float(ccfg.get("percentile", 95.0)))
    return {"k": cov.k, "percentile": cov.percentile, "n_reference": int(cov.reference_.shape[0]),
            "snr_bins": [float(np.exp(v)) for v in cov.log_snr_],
            "d_ref_logg": [float(v) for v in cov.d_ref_[LABELS.index("LOGG")]],
            "tau_logg": float(cov.tau_[LABELS.index("LOGG")])}


def accuracy_target(
    stats: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    labels: Sequence[str],
    check_labels: Sequence[str],
    max_ratio: float,
    networks: Sequence[str] = NETWORKS,
    bins: Sequence[str] = BINS,
) -> dict[str, Any]:
    """σ_MAD(network) / σ_MAD(The Cannon) for ``check_labels`` in every bin.

    ``stats[method][bin]`` are :func:`residual_stats` dicts. Returns ``{"ratios": {network:
    {(label, bin): ratio}}, "best": network with the smallest worst ratio, "met": the best
    network's worst ratio ≤ max_ratio, "worst": that ratio, "failing": [(label, bin, ratio)] of
    the best network}``.
    """
    ratios: dict[str, dict[tuple[str, str], float]] = {}
    for net in networks:
        if net not in stats:
            continue
        ratios[net] = {}
        for b in bins:
            for lab in check_labels:
                k = list(labels).index(lab)
                c = float(stats["cannon"][b]["sigma_mad"][k])
                v = float(stats[net][b]["sigma_mad"][k])
                ratios[net][(lab, b)] = v / c if c > 0 else float("nan")
    if not ratios:
        return {"ratios": {}, "best": None, "met": False, "worst": float("nan"), "failing": []}
    worst = {n: max(r.values()) for n, r in ratios.items()}
    best = min(worst, key=lambda n: (np.nan_to_num(worst[n], nan=np.inf)))
    failing = [(lab, b, r) for (lab, b), r in ratios[best].items() if not r <= max_ratio]
    return {"ratios": ratios, "best": best, "met": not failing, "worst": worst[best], "failing": failing}


def z_target(widths: Mapping[str, np.ndarray], labels: Sequence[str], lo: float, hi: float) -> dict[str, Any]:
    """Which (label, bin) z-widths (``widths[bin]`` (L,)) fall outside [lo, hi]."""
    outside = [(lab, b, float(w[k])) for b, w in widths.items() for k, lab in enumerate(labels)
               if not lo <= float(w[k]) <= hi]
    return {"met": not outside, "outside": outside}


def fmt(value: float, label: str | None = None, signed: bool = False) -> str:
    """A label-unit number: K to 1 decimal, dex to 3; plain numbers to 2 decimals; NaN as '—'."""
    if value is None or not np.isfinite(value):
        return "—"
    digits = 1 if label == "TEFF" else (3 if label else 2)
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    """A GitHub Markdown table; columns right-aligned where ``right`` says (default: all but the first)."""
    right = list(right) if right is not None else [False] + [True] * (len(header) - 1)
    widths = [max(len(str(h)), 3, *(len(str(r[i])) for r in rows)) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).rjust(w) if r else str(c).ljust(w)
                                 for c, w, r in zip(cells, widths, right, strict=True)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                         for w, r in zip(widths, right, strict=True)) + "|"
    return "\n".join([line(header), sep, *(line(r) for r in rows)]) + "\n"


def accuracy_table(stats: Mapping[str, Any], methods: Sequence[str], target: Mapping[str, Any]) -> str:
    """The main table: median / σ_MAD of the residuals per label and SNR bin for each method, and
    the σ_MAD ratio of each network to The Cannon."""
    nets = [m for m in methods if m in NETWORKS]
    header = ["label", "SNR bin"] + [f"{METHOD_TITLES[m]} median / σ_MAD" for m in methods]
    if "cannon" in methods:
        header += [f"{METHOD_TITLES[n]} / Cannon" for n in nets]
    rows = []
    for k, lab in enumerate(LABELS):
        for b in BINS:
            row = [f"{lab} ({UNITS[lab]})", BIN_TITLES[b]]
            for m in methods:
                s = stats[m][b]
                cell = f"{fmt(s['median'][k], lab, signed=True)} / {fmt(s['sigma_mad'][k], lab)}"
                if int(s["failed"][k]):
                    cell += f" ({int(s['failed'][k])} failed)"
                row.append(cell)
            if "cannon" in methods:
                c = float(stats["cannon"][b]["sigma_mad"][k])
                row += [fmt(float(stats[n][b]["sigma_mad"][k]) / c if c > 0 else float("nan")) for n in nets]
            rows.append(row)
    return markdown_table(header, rows)


def population_table(preds: Mapping[str, Mapping[str, np.ndarray]], truth: Mapping[str, np.ndarray],
                     groups: np.ndarray, methods: Sequence[str]) -> str:
    """σ_MAD of the residuals per population (giants, dwarfs, cool dwarfs), label and SNR bin.

    ``preds[method][bin]`` (N, L) predictions of the same stars (``groups`` (N,)) in both bins.
    """
    names = [g for g in ("giants", "dwarfs", "cool_dwarfs") if np.any(groups == g)]
    header = ["population", "n", "SNR bin"]
    header += [f"{lab} {METHOD_TITLES[m]}" for lab in LABELS[:3] for m in methods]
    rows = []
    for g in names:
        sel = groups == g
        for b in BINS:
            row = [g, str(int(sel.sum())), BIN_TITLES[b]]
            for k, lab in enumerate(LABELS[:3]):
                row += [fmt(sigma_mad(preds[m][b][sel, k] - truth[b][sel, k]), lab) for m in methods]
            rows.append(row)
    return markdown_table(header, rows, right=[False, True, True, *([True] * (len(header) - 3))])


# ============================================================================================
# simulation
# ============================================================================================


def _concat_surveys(parts: Sequence[Any]) -> Any:
    """One SimulatedSurvey from row chunks of the same survey."""
    first = parts[0]
    values = {}
    for f in dataclasses.fields(first):
        v = getattr(first, f.name)
        is_array = isinstance(v, np.ndarray)
        values[f.name] = np.concatenate([getattr(p, f.name) for p in parts]) if is_array else v
    return type(first)(**values)


def simulate(cfg: Mapping[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The training set, the test set, its visits and the OOD training set (SimulatedSurveys)."""
    from starlabels.data.survey import EmulatorSource, SurveyConfig, SurveySimulator, sample_labels

    sc = cfg["survey"]
    source = EmulatorSource.from_path(cfg["data"]["emulator"])
    if tuple(source.label_names) != LABELS:
        raise BenchError(f"the emulator's labels are {source.label_names}, expected {LABELS}")
    base = SurveyConfig(
        seed=int(sc["seed"]), population=dict(sc["population"]),
        label_noise={k: float(v) for k, v in sc["label_noise"].items()},
        missing_fraction=float(sc["missing_fraction"]), dr17_labels=str(cfg["data"]["dr17_labels"]),
    )
    chunk = int(sc["chunk"])

    def observe(sim: Any, labels: np.ndarray, group: np.ndarray, ids: np.ndarray, snr: Any,
                rng: np.random.Generator, extinction: np.ndarray | None = None) -> Any:
        parts = []
        for a in range(0, len(labels), chunk):
            b = a + chunk
            parts.append(sim.observe(labels[a:b], group[a:b], ids[a:b], snr=snr, rng=rng,
                                     extinction_h=None if extinction is None else extinction[a:b]))
        return _concat_surveys(parts)

    def survey(n: int, seed: int, snr: Any, config: Any, tag: str) -> Any:
        sim = SurveySimulator(source, config.with_(n_stars=n, seed=seed, snr=snr))
        rng = np.random.default_rng(seed)
        labels, group = sample_labels(n, source, rng, config.population, config.dr17_labels)
        ids = np.array([f"SIM-{tag}-{i:06d}" for i in range(n)])
        return sim, observe(sim, labels, group, ids, snr, rng)

    seed = int(sc["seed"])
    t0 = time.perf_counter()
    _, train = survey(int(sc["n_train"]), seed, snr_spec(sc["train_snr"]), base, "train")
    test_sim, test = survey(int(sc["n_test"]), seed + 1, snr_spec(sc["test_snr"]), base, "test")
    visits = observe(test_sim, test.true_labels, test.group, test.apogee_id, snr_spec(sc["visit_snr"]),
                     np.random.default_rng(seed + 2), extinction=test.extinction_h)
    oc = cfg["ood"]
    ood_cfg = base.with_(missing_for_groups={"LOGG": list(oc["missing_groups"])})
    _, ood = survey(int(oc["n_train"]), seed + 3, snr_spec(sc["train_snr"]), ood_cfg, "ood")
    log(f"simulated {len(train)} training, {len(test)} test (+ visits) and {len(ood)} OOD-training "
        f"spectra in {time.perf_counter() - t0:.0f} s")
    return {"train": train, "test": test, "visits": visits, "ood": ood,
            "seconds": time.perf_counter() - t0}


# ============================================================================================
# networks
# ============================================================================================


def preprocess_config(name: str, cfg: Mapping[str, Any]) -> Any:
    """APOGEE Net: raw flux; BCNN: continuum-normalised with the DR17 mask."""
    from starlabels.preprocess.pipeline import PreprocessConfig

    if name == "apogee_net":
        scale = "median" if cfg["apogee_net"].get("median_normalise", False) else None
        return PreprocessConfig(kind="raw", scale=scale)
    return PreprocessConfig.from_mask(cfg["data"]["continuum_mask"])


def train_network(
    name: str, arch: str, ncfg: Mapping[str, Any], cfg: Mapping[str, Any], survey: Any,
    split: Mapping[str, np.ndarray], folder: Path, log: Callable[[str], None],
) -> tuple[Any, dict[str, Any]]:
    """Train ``arch`` on ``survey`` (train/dev ``split``) with the project's trainer.

    ``ncfg["time_budget_s"]`` (> 0) ends training after the epoch past which another epoch would
    not fit the budget (the best dev epoch so far is kept, as with early stopping).
    """
    from starlabels.models import build_network
    from starlabels.training.config import OptimiserConfig, TrainingConfig
    from starlabels.training.trainer import Trainer, TrainingData
    from starlabels.utils import seed_everything

    kind = "apogee_net" if arch == "apogee_net" else "bcnn"
    # both networks take the raw apStar arrays: each model's PreprocessConfig does the rest
    data = TrainingData.from_arrays(
        survey.flux, survey.labels, LABELS, error=survey.error, bitmask=survey.bitmask,
        label_errors=survey.label_errors, label_units=[UNITS[k] for k in LABELS], groups=survey.group,
    )
    pp = preprocess_config(kind, cfg)
    seed = int(cfg["survey"]["seed"])
    seed_everything(seed)
    network = build_network(arch, n_labels=len(LABELS), n_pixels=pp.n_pixels, dropout=float(ncfg["dropout"]))
    init = str(ncfg.get("init", "default"))
    if init == "kaiming":
        from starlabels.models.init import kaiming_init

        kaiming_init(network)
    elif init != "default":
        raise BenchError(f"[{name}] init must be 'default' or 'kaiming', got {init!r}")
    scaling = str(ncfg["spectrum_scaling"])
    if scaling not in ("none", "centred", "centered", "standardised"):  # "centered": the old spelling
        raise BenchError(f"[{name}] spectrum_scaling must be none, centred or standardised, got {scaling!r}")
    budget = float(ncfg.get("time_budget_s", 0) or 0)
    t_epoch: list[float] = []
    t0 = time.perf_counter()

    def on_epoch(trainer: Any, row: Mapping[str, Any]) -> None:
        t_epoch.append(float(row["seconds"]))
        log(f"  {name} epoch {row['epoch']}: train {row['train_loss']:.4f}  dev {row['dev_loss']:.4f}  "
            f"lr {row['lr']:.1e}  {row['seconds']:.0f} s")
        spent = time.perf_counter() - t0
        if budget > 0 and spent + max(t_epoch) > budget and row["epoch"] < trainer.training_cfg.epochs:
            log(f"  {name}: stopping, another epoch would pass the {budget:.0f} s budget")
            trainer.state["bad_epochs"] = int(trainer.training_cfg.patience)  # ends the epoch loop

    trainer = Trainer(
        network, data, {"train": split["train"], "dev": split["dev"], "test": np.zeros(0, np.int64)},
        optimiser=OptimiserConfig(learning_rate=float(ncfg["learning_rate"]),
                                  weight_decay=float(ncfg.get("weight_decay", 0.0))),
        training=TrainingConfig(loss=str(ncfg["loss"]), epochs=int(ncfg["epochs"]),
                                patience=int(ncfg["patience"]), batch_size=int(ncfg["batch_size"]),
                                seed=seed, augment=ncfg.get("augment"),
                                dev_mc_samples=int(ncfg.get("dev_mc_samples", 0))),
        preprocess=pp, spectrum_scaling=scaling, folder=folder,
        overwrite=True,
        split_info={"method": "random", "fractions": [1 - cfg["survey"]["dev_fraction"],
                                                      cfg["survey"]["dev_fraction"], 0.0], "seed": seed},
        provenance={"benchmark": "bench/accuracy.py", "init": init, "spectrum_scaling": scaling,
                    "median_scaled_input": pp.kind == "raw" and pp.scale == "median"},
        callbacks=[on_epoch],
    )
    model = trainer.fit()
    seconds = time.perf_counter() - t0
    stage = trainer.state["stages"]["main"]
    info = {"seconds": seconds, "epochs": int(stage["epochs"]), "best_epoch": int(stage["best_epoch"]),
            "best_dev_loss": float(stage["best_loss"]), "n_train": len(split["train"]),
            "n_dev": len(split["dev"]), "epoch_seconds": float(np.median(t_epoch)) if t_epoch else 0.0,
            "n_parameters": int(sum(p.numel() for p in network.parameters())),
            "history": [(float(r["train_loss"]), float(r["dev_loss"])) for r in trainer.history]}
    log(f"{name}: {info['epochs']} epochs (best {info['best_epoch']}) in {seconds:.0f} s")
    return model, info


def calibration_set(dev: Any, ccfg: Mapping[str, Any], pp: Any) -> Any:
    """The dev stars as the calibration sees them: with ``ccfg["snr"] = [lo, hi]`` each dev
    spectrum degraded (:func:`starlabels.data.augment.degrade_snr`, raw apStar flux, the
    preprocessing's rejection bits) to an SNR drawn log-uniformly in [lo, hi] (seed 5), so the
    calibration spans the SNRs it will be used at; the dev split itself otherwise."""
    from starlabels.data.augment import degrade_snr

    if not ccfg.get("snr"):
        return dev
    lo, hi = (float(v) for v in ccfg["snr"])
    rng = np.random.default_rng(5)
    target = np.exp(rng.uniform(np.log(lo), np.log(hi), len(dev.flux)))
    flux, error = degrade_snr(dev.flux, dev.error, target, rng, bitmask=dev.bitmask,
                              reject_bits=pp.reject_bits)
    return dataclasses.replace(dev, flux=flux, error=error, snr=np.minimum(dev.snr, target))


def evaluate_network(
    name: str, model: Any, ncfg: Mapping[str, Any], cfg: Mapping[str, Any], sets: Mapping[str, Any], dev: Any,
    folder: Path, log: Callable[[str], None],
) -> dict[str, Any]:
    """Calibrate (``ncfg["calibration"]``: model and dev SNR range) on the dev stars' true labels
    and predict every set of ``sets`` (uncalibrated σ and calibrated ``std_cal`` kept)."""
    from starlabels import PredictOptions, predict
    from starlabels.inference.calibration import apply_calibration, calibrate

    method = str(ncfg["uncertainty"])
    n_samples = int(ncfg["n_samples"])
    ccfg = dict(ncfg.get("calibration") or {})
    t0 = time.perf_counter()
    cal_set = calibration_set(dev, ccfg, preprocess_config(name, cfg))
    entry = calibrate(model, cal_set.flux, cal_set.error, cal_set.true_labels, uncertainty=method,
                      n_samples=n_samples, bitmask=cal_set.bitmask, seed=0, save=folder,
                      model=str(ccfg.get("model", "scale")))
    scales = np.array([entry["scales"][k] for k in LABELS])
    out: dict[str, Any] = {"method": method, "n_samples": n_samples, "scales": scales, "entry": entry,
                           "dev_before": np.array([entry["sigma_mad_before"][k] for k in LABELS]),
                           "dev_after": np.array([entry["sigma_mad_after"][k] for k in LABELS]),
                           "n_dev": len(dev), "calibrate_seconds": time.perf_counter() - t0, "pred": {}}
    t0 = time.perf_counter()
    for b, s in sets.items():
        p = predict(model, s.flux, s.error, bitmask=s.bitmask, uncertainty=method, n_samples=n_samples,
                    options=PredictOptions(calibrated=False), seed=1)
        cal_parts, _ = apply_calibration(p.variance_parts, list(LABELS), entry)
        std_cal = np.sqrt(sum(cal_parts.values()))
        out["pred"][b] = {"mean": p.mean, "std": p.std, "std_cal": std_cal, "flags": p.flags}
    out["predict_seconds"] = time.perf_counter() - t0
    log(f"{name}: calibrated ({method}) in {out['calibrate_seconds']:.0f} s, scales "
        + ", ".join(f"{k} {v:.2f}" for k, v in zip(LABELS, scales, strict=True))
        + f"; predicted {sum(len(s) for s in sets.values())} spectra in {out['predict_seconds']:.0f} s")
    return out


# ============================================================================================
# The Cannon
# ============================================================================================


def ensure_cannon_venv(ccfg: Mapping[str, Any], log: Callable[[str], None]) -> Path:
    """The Cannon's interpreter, creating its virtual environment on first use."""
    venv = Path(ccfg["venv"])
    python = venv / "bin" / "python"
    probe = [str(python), "-c", "import thecannon, numpy"]
    if python.is_file() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    log(f"creating The Cannon's virtual environment {venv} ({' '.join(ccfg['packages'])})")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *ccfg["packages"]], check=True,
                       capture_output=True, text=True)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"could not set up The Cannon's environment {venv}: {exc.stderr[-2000:]}") from None
    if subprocess.run(probe, capture_output=True).returncode != 0:
        raise BenchError(f"{venv}: thecannon does not import after installation")
    return python


def cannon_inputs(cfg: Mapping[str, Any], surveys: Mapping[str, Any], train_rows: np.ndarray,
                  path: Path) -> None:
    """Write The Cannon's IN.npz: continuum-normalised train/test spectra, ivar, labels, starts."""
    pp = preprocess_config("bcnn", cfg)
    train = surveys["train"]
    f, e = pp.apply(train.flux[train_rows], train.error[train_rows], train.bitmask[train_rows])
    arrays = {"train_flux": f.astype(np.float32), "train_ivar": cannon_ivar(e),
              "train_labels": train.labels[train_rows].astype(np.float64), "label_names": np.array(LABELS)}
    if cfg["cannon"]["initial"] == "groups":
        arrays["initial_labels"] = group_initial_labels(train.labels[train_rows], train.group[train_rows])
    elif cfg["cannon"]["initial"] != "fiducial":
        raise BenchError(f"[cannon] initial must be 'groups' or 'fiducial', got {cfg['cannon']['initial']!r}")
    for b in BINS:
        s = surveys[b]
        f, e = pp.apply(s.flux, s.error, s.bitmask)
        arrays[f"test_{b}_flux"] = f.astype(np.float32)
        arrays[f"test_{b}_ivar"] = cannon_ivar(e)
    np.savez(path, **arrays)


def start_cannon(cfg: Mapping[str, Any], surveys: Mapping[str, Any], train_rows: np.ndarray,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Start bench/cannon_runner.py in the background (output to <work>/cannon.log)."""
    python = ensure_cannon_venv(cfg["cannon"], log)
    work = Path(cfg["data"]["work"])
    inp, out, logf = work / "cannon_in.npz", work / "cannon_out.npz", work / "cannon.log"
    out.unlink(missing_ok=True)
    cannon_inputs(cfg, surveys, train_rows, inp)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    fh = open(logf, "w")  # noqa: SIM115 - closed in finish_cannon
    proc = subprocess.Popen([str(python), str(ROOT / "bench" / "cannon_runner.py"), str(inp), str(out)],
                            stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=str(work))
    log(f"The Cannon started (pid {proc.pid}, log {logf})")
    return {"proc": proc, "log": fh, "out": out, "logfile": logf, "t0": time.perf_counter()}


def finish_cannon(job: Mapping[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Wait for The Cannon and read its predictions."""
    rc = job["proc"].wait()
    job["log"].close()
    wall = time.perf_counter() - job["t0"]
    if rc != 0:
        tail = Path(job["logfile"]).read_text()[-3000:]
        raise BenchError(f"The Cannon failed (exit {rc}); end of {job['logfile']}:\n{tail}")
    with np.load(job["out"]) as d:
        res = {"pred": {b: d[f"pred_{b}"] for b in BINS}, "train_seconds": float(d["train_seconds"]),
               "test_seconds": float(d["test_seconds"]), "n_train": int(d["n_train"]), "wall_seconds": wall}
    log(f"The Cannon: trained on {res['n_train']} spectra in {res['train_seconds']:.0f} s, "
        f"tested in {res['test_seconds']:.0f} s ({wall:.0f} s wall)")
    return res


def train_native_cannon(cfg: Mapping[str, Any], train: Any, train_rows: np.ndarray, folder: Path,
                        log: Callable[[str], None]) -> tuple[Any, dict[str, Any]]:
    """``starlabels.CannonModel`` on exactly the peer's inputs: the BCNN's continuum-normalised train
    rows with every label, σ = inf where the peer's ivar is 0, the same test starts; saved to
    ``folder``. Returns (model, info)."""
    import starlabels

    ncfg = cfg["cannon_native"]
    pp = preprocess_config("bcnn", cfg)
    lab = train.labels[train_rows].astype(np.float64)
    rows = train_rows[np.all(np.isfinite(lab) & (lab != MISSING), axis=1)]
    f, e = pp.apply(train.flux[rows], train.error[rows], train.bitmask[rows])
    iv = cannon_ivar(e).astype(np.float64)
    with np.errstate(divide="ignore"):
        err = np.where(iv > 0, 1.0 / np.sqrt(iv), np.inf)
    starts = (group_initial_labels(train.labels[train_rows], train.group[train_rows])
              if cfg["cannon"]["initial"] == "groups" else None)
    model = starlabels.CannonModel(list(LABELS), order=int(ncfg["order"]),
                                   regularisation=float(ncfg["regularization"]),
                                   label_units=[UNITS[k] for k in LABELS], initial_labels=starts,
                                   preprocessing=pp, device=ncfg.get("device") or None)
    t0 = time.perf_counter()
    model.fit(np.asarray(f, np.float64), err, train.labels[rows].astype(np.float64))
    seconds = time.perf_counter() - t0
    model.save(folder)
    log(f"Cannon (starlabels): trained on {len(rows)} spectra in {seconds:.1f} s "
        f"({int(model.pixel_used_.sum())} of {model.n_pixels} pixels used)")
    return model, {"seconds": seconds, "n_train": len(rows), "n_starts": len(model.initial_labels_),
                   "epochs": 0, "best_epoch": 0, "epoch_seconds": 0.0}


def run_payne(
    cfg: Mapping[str, Any], surveys: Mapping[str, Any], log: Callable[[str], None]
) -> dict[str, Any]:
    """The Payne fit with the generating emulator on the first ``[payne] n_stars`` test stars of
    both SNR bins (raw apStar flux, σ, bitmask). NaN rows beyond them and where it did not converge."""
    sys.path.insert(0, str(ROOT / "bench"))
    from payne_rows import payne_row

    pcfg = cfg["payne"]
    n = min(int(pcfg["n_stars"]), len(surveys["test"]))
    out: dict[str, Any] = {"n": n, "pred": {}, "std": {}, "seconds": {}, "converged": {}}
    for b in BINS:
        s = surveys[b]
        res = payne_row(cfg["data"]["emulator"], LABELS, s.flux[:n], s.error[:n], s.bitmask[:n],
                        fit_mask=pcfg["fit_mask"] or None, continuum_degree=int(pcfg["continuum_degree"]),
                        n_starts=int(pcfg["n_starts"]), batch_size=int(pcfg["batch_size"]))
        mean = np.full((len(s.flux), len(LABELS)), np.nan)
        std = np.full_like(mean, np.nan)
        mean[:n], std[:n] = res["mean"], res["std"]
        out["pred"][b], out["std"][b] = mean, std
        out["seconds"][b] = float(res["seconds"])
        out["converged"][b] = int(np.sum(res["converged"]))
        log(f"Payne fit ({BIN_TITLES[b]}): {n} stars in {res['seconds']:.0f} s "
            f"({res['seconds_per_star']:.2f} s/star), {out['converged'][b]} converged")
    return out


# ============================================================================================
# report
# ============================================================================================


def cal_range(ncfg: Mapping[str, Any]) -> str:
    """``"15–400"`` for a calibration on degraded dev spectra, else ``""``."""
    snr = (ncfg.get("calibration") or {}).get("snr")
    return f"{snr[0]:g}–{snr[1]:g}" if snr else ""


def calibration_text(entry: Mapping[str, Any], label: str) -> str:
    """One label's fitted calibration: ``×0.30`` (scale), ``epistemic ×0.3, aleatoric ×0.9``
    (parts) or ``×1.2 ⊕ 15`` (scale and floor, label units)."""
    parts = (entry.get("part_scales") or {}).get(label)
    power = (entry.get("power") or {}).get(label)
    if power:
        return f"×{float(entry['scales'][label]):.2f}, power {power['exponent']:.2f}"
    if parts:
        return ", ".join(f"{p} ×{v:.2f}" for p, v in parts.items())
    text = f"×{float(entry['scales'][label]):.2f}"
    if label in (entry.get("floor") or {}):
        text += f" ⊕ {fmt(float(entry['floor'][label]), label)}"
    return text


def calibration_table(
    evals: Mapping[str, Any], truth: Mapping[str, np.ndarray]
) -> tuple[str, dict[str, Any]]:
    """σ_MAD of the z-scores before → after calibration per network, label and set."""
    header = ["network", "label", "calibration", "dev before → after"]
    header += [f"{BIN_TITLES[b]} before → after" for b in BINS]
    rows, widths = [], {}
    for name, ev in evals.items():
        widths[name] = {}
        for b in BINS:
            p = ev["pred"][b]
            widths[name][b] = {"before": z_widths(p["mean"], p["std"], truth[b]),
                               "after": z_widths(p["mean"], p["std_cal"], truth[b])}
        for k, lab in enumerate(LABELS):
            row = [f"{METHOD_TITLES[name]} ({ev['method']})", lab, calibration_text(ev["entry"], lab),
                   f"{fmt(ev['dev_before'][k])} → {fmt(ev['dev_after'][k])}"]
            row += [f"{fmt(widths[name][b]['before'][k])} → {fmt(widths[name][b]['after'][k])}" for b in BINS]
            rows.append(row)
    return markdown_table(header, rows, right=[False, False, True, True, True, True]), widths


def write_report(path: Path, ctx: Mapping[str, Any]) -> str:
    """Write the Markdown report; returns its text."""
    cfg, evals = ctx["cfg"], ctx["evals"]
    tg = cfg["targets"]
    lo, hi = (float(x) for x in tg["z_width"])
    lines = [
        "# Accuracy benchmark: APOGEE Net and the Bayesian CNN against The Cannon (peer and native) "
        "and a Payne fit",
        "",
        f"Made by `{ctx['command']}` ({ctx['mode']} run) on {ctx['date']}, {ctx['machine']}; "
        f"wall time {ctx['total_seconds'] / 60:.1f} min. Configuration: `bench/accuracy_config.toml`"
        + (" with its `[quick]` overrides." if ctx["mode"] == "quick" else "."),
        "",
        "Simulated survey (`starlabels.data.survey.SurveySimulator`, Payne-Kurucz 4-label emulator, "
        "giants resampled from DR17 ASPCAP labels + main-sequence and cool dwarfs inside the emulator's "
        "label box; reddening, throughput, photon noise, sky residuals, cosmic rays and dead pixels). "
        "Residuals are against the **true** labels.",
        "",
        "## Targets",
        "",
    ]
    acc = ctx["accuracy_target"]
    if acc["best"] is None:
        lines.append("- Network vs The Cannon: **not evaluated** (no Cannon run).")
    else:
        worst = ", ".join(f"{METHOD_TITLES[n]} worst {max(r.values()):.2f}" for n, r in acc["ratios"].items())
        verdict = "**MET**" if acc["met"] else "**NOT MET**"
        lines.append(
            f"- Best network's σ_MAD ≤ {tg['cannon_ratio']} × The Cannon's for "
            f"{', '.join(tg['ratio_labels'])} in both SNR bins: {verdict} — best network "
            f"{METHOD_TITLES[acc['best']]} (σ_MAD ratios to The Cannon: {worst})."
            + ("" if acc["met"] else " Failing: " + ", ".join(
                f"{lab} {BIN_TITLES[b]} {r:.2f}" for lab, b, r in acc["failing"]) + ".")
        )
    for name, zt in ctx["z_targets"].items():
        verdict = "**MET**" if zt["met"] else "**NOT MET**"
        detail = "" if zt["met"] else " Outside: " + ", ".join(
            f"{lab} {BIN_TITLES[b]} {w:.2f}" for lab, b, w in zt["outside"]) + "."
        lines.append(f"- Calibrated z-score widths (σ_MAD) of {METHOD_TITLES[name]} "
                     f"({evals[name]['method']}) within {lo}–{hi} for every label and SNR bin: "
                     f"{verdict}.{detail}")
    ood = ctx["ood"]
    verdict = "**MET**" if ood["ratio"] >= float(cfg["ood"]["min_ratio"]) else "**NOT MET**"
    lines.append(f"- Out-of-distribution (astroNN Fig. 7): dwarfs' log g σ / giants' = {ood['ratio']:.2f} "
                 f"(≥ {cfg['ood']['min_ratio']}): {verdict}.")
    lines += ["", "## Accuracy: median / σ_MAD of the residuals (prediction − true)", "",
              ctx["accuracy_md"], ""]
    lines += ["### σ_MAD of the residuals by population (same stars in both bins)", "",
              ctx["population_md"], ""]
    lines += [
        "## Calibration: σ_MAD of z = (prediction − true) / σ, before → after calibration", "",
        "Fitted on the dev stars against their true labels with "
        "`starlabels.inference.calibration.calibrate`: "
        + "; ".join(f"{METHOD_TITLES[n]}: model `{e['entry'].get('model', 'scale')}`"
                    + (f", dev spectra degraded to SNR {cal_range(cfg[n])} (log-uniform)"
                       if cal_range(cfg[n]) else ", dev spectra at training quality (SNR 200–400)")
                    for n, e in evals.items()) + ". "
        "`auto` keeps, per label, the model with the lowest SNR-binned objective among `scale`, "
        "`parts` (MC-dropout and variance-head variances scaled separately), `floor` "
        "(σ² → (sσ)² + f², ⊕ f in the table) and `power` (σ → s·m·(σ/m)^γ, m the dev median σ). "
        + "; ".join(f"{METHOD_TITLES[n]}: `{e['method']}` with {e['n_samples']} samples"
                    if e["method"] in ("mc_dropout", "noise")
                    else f"{METHOD_TITLES[n]}: `delta` (first-order propagation of the flux errors)"
                    if e["method"] == "delta"
                    else f"{METHOD_TITLES[n]}: `{e['method']}` (inverse Fisher matrix of the test step)"
                    for n, e in evals.items()) + ".", "",
        ctx["calibration_md"], "",
    ]
    cov = ctx["ood_info"]["coverage"]
    lines += [
        "## Out-of-distribution test (astroNN Fig. 7)", "",
        f"A BCNN trained on {ctx['ood_info']['n_train']} spectra (+{ctx['ood_info']['n_dev']} dev) whose "
        f"dwarfs ({', '.join(cfg['ood']['missing_groups'])}) have log g MISSING, MC dropout "
        f"({cfg['ood']['n_samples']} samples) on the SNR 100–200 test set:", "",
        markdown_table(["group", "n", "median σ(log g)", "without coverage", "epistemic", "aleatoric",
                        "coverage", "median residual", "σ_MAD residual"], ctx["ood_rows"]),
        "(log g in dex; σ uncalibrated: the ratio does not depend on a per-label scale; epistemic = "
        "MC-dropout scatter, aleatoric = the variance head, coverage = the label-coverage part "
        "(`starlabels.inference.coverage`), medians of each part.)", "",
        f"Label coverage: reference = the {cov['n_reference']} OOD training spectra with the labels they "
        f"had; k = {cov['k']} nearest neighbours in the BCNN's last hidden layer; d_ref = the "
        f"{cov['percentile']:g}th percentile of the dev stars' distances (dev spectra degraded to SNR "
        f"{'–'.join(f'{v:g}' for v in cfg['ood']['coverage']['snr'])}), in SNR bins centred at "
        + ", ".join(f"{v:.0f}" for v in cov["snr_bins"])
        + " (log g: d_ref " + ", ".join(f"{v:.2f}" for v in cov["d_ref_logg"])
        + f"; τ = {cov['tau_logg']:.2f} dex).", "",
        f"Ratio of the dwarfs' median log g σ to the giants': **{ood['ratio']:.2f}** "
        f"(MC dropout + variance head alone: {ood['without_coverage']:.2f}; on the SNR 20–60 visits: "
        f"{ood['visits']:.2f}, alone {ood['visits_without_coverage']:.2f}).", "",
    ]
    lines += ["## Sizes and timings", "", ctx["sizes_md"], "", ctx["timings_md"], ""]
    lines += ["## Method notes", "", *ctx["notes"], ""]
    discussion = path.with_name(DISCUSSION_NAME)
    if ctx["mode"] == "full" and discussion.exists():
        lines += ["## Discussion", "",
                  f"What changed between full runs, the side runs behind the configuration, and the "
                  f"caveats are written by hand in [{DISCUSSION_NAME}]({DISCUSSION_NAME}) (kept apart "
                  "so that a new run does not overwrite them).", ""]
    text = "\n".join(lines)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


# ============================================================================================
# main
# ============================================================================================


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="TOML config (default: %(default)s)")
    ap.add_argument("--quick", action="store_true", help="CI-sized run: the config's [quick] overrides")
    ap.add_argument("--output", type=Path, help="Markdown report (default: [data] output)")
    ap.add_argument("--no-cannon", action="store_true", help="skip The Cannon (debugging)")
    ap.add_argument("--threads", type=int, help="torch threads (default: [compute] threads)")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    args = ap.parse_args(argv)
    if not args.progress:
        os.environ.setdefault("STARLABELS_NO_PROGRESS", "1")
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f} s] {msg}", flush=True)

    try:
        cfg = load_config(args.config, quick=args.quick)
        check_data(cfg)
    except (BenchError, OSError, tomllib.TOMLDecodeError) as exc:
        print(f"accuracy.py: {exc}", file=sys.stderr)
        return 2
    import torch

    if cfg["payne"]["enabled"]:  # fail fast (and load the code now) rather than after the training
        sys.path.insert(0, str(ROOT / "bench"))
        import payne_rows  # noqa: F401
        import starlabels.models.payne_fit  # noqa: F401
    threads = int(args.threads or cfg["compute"].get("threads", 0) or 0)
    if threads > 0:
        torch.set_num_threads(threads)
    work = Path(cfg["data"]["work"])
    work.mkdir(parents=True, exist_ok=True)
    output = args.output or Path(cfg["data"]["output"])
    exe = Path(sys.executable)
    command = " ".join([os.path.relpath(exe, ROOT) if exe.is_relative_to(ROOT) else "python",
                        "bench/accuracy.py",
                        *(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))])
    log(f"accuracy benchmark ({'quick' if args.quick else 'full'}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; work folder {work}")

    from starlabels.data.splits import random_split

    try:
        surveys = simulate(cfg, log)
        sc = cfg["survey"]
        fractions = (1 - sc["dev_fraction"], sc["dev_fraction"], 0.0)
        train_rows, dev_rows, _ = random_split(len(surveys["train"]), fractions, seed=sc["seed"])
        split = {"train": train_rows, "dev": dev_rows}
        train = surveys["train"]
        dev = _rows(train, dev_rows)
        cannon_job = None
        if cfg["cannon"]["enabled"] and not args.no_cannon:
            cannon_job = start_cannon(cfg, surveys, train_rows, log)

        infos, evals = {}, {}
        sets = {b: surveys[b] for b in BINS}
        for name in NETWORKS:
            ncfg = cfg[name]
            folder = work / "models" / name
            model, infos[name] = train_network(name, name, ncfg, cfg, train, split, folder, log)
            evals[name] = evaluate_network(name, model, ncfg, cfg, sets, dev, folder, log)
        if cfg["cannon_native"]["enabled"]:  # a LabelMethod: the same calibrate/predict calls
            folder = work / "models" / "cannon_native"
            native, infos["cannon_native"] = train_native_cannon(cfg, train, train_rows, folder, log)
            evals["cannon_native"] = evaluate_network("cannon_native", native, cfg["cannon_native"], cfg,
                                                      sets, dev, folder, log)
        payne = run_payne(cfg, surveys, log) if cfg["payne"]["enabled"] else None

        # --- astroNN Fig. 7: BCNN without the dwarfs' log g
        ood_s = surveys["ood"]
        o_train, o_dev, _ = random_split(len(ood_s), fractions, seed=sc["seed"] + 3)
        own = ("epochs", "patience", "n_samples", "time_budget_s")
        ocfg = {**cfg["bcnn"], **{k: cfg["ood"][k] for k in own}}
        ood_split = {"train": o_train, "dev": o_dev}
        ood_model, ood_info = train_network("bcnn-ood", "bcnn", ocfg, cfg, ood_s, ood_split,
                                            work / "models" / "bcnn_ood", log)
        from starlabels import PredictOptions, predict

        t0 = time.perf_counter()
        ood_info["coverage"] = fit_ood_coverage(ood_model, cfg, ood_s, o_train, o_dev)
        ood_info["coverage_seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        test = surveys["test"]
        ood_preds = {b: predict(ood_model, surveys[b].flux, surveys[b].error, bitmask=surveys[b].bitmask,
                                uncertainty="mc_dropout", n_samples=int(cfg["ood"]["n_samples"]),
                                options=PredictOptions(calibrated=False), seed=2) for b in BINS}
        op = ood_preds["test"]
        ood_info["predict_seconds"] = time.perf_counter() - t0
        k_logg = LABELS.index("LOGG")
        groups = cfg["ood"]["missing_groups"]
        ood = ood_ratio(op.std[:, k_logg], test.group, groups)
        ood["without_coverage"] = ood_ratio(mc_only_std(op)[:, k_logg], test.group, groups)["ratio"]
        ood["visits"] = ood_ratio(ood_preds["visits"].std[:, k_logg], test.group, groups)["ratio"]
        ood["visits_without_coverage"] = ood_ratio(mc_only_std(ood_preds["visits"])[:, k_logg], test.group,
                                                   groups)["ratio"]
        ood_rows = []
        for g in ("giants", *groups):
            sel = test.group == g
            if not sel.any():
                continue
            resid = op.mean[sel, k_logg] - test.true_labels[sel, k_logg]
            parts = [fmt(float(np.nanmedian(np.sqrt(op.variance_parts[k][sel, k_logg]))), "LOGG")
                     if k in op.variance_parts else "—" for k in ("epistemic", "aleatoric", "coverage")]
            ood_rows.append([g, str(int(sel.sum())), fmt(float(np.nanmedian(op.std[sel, k_logg])), "LOGG"),
                             fmt(float(np.nanmedian(mc_only_std(op)[sel, k_logg])), "LOGG"),
                             *parts, fmt(float(np.median(resid)), "LOGG", signed=True),
                             fmt(sigma_mad(resid), "LOGG")])
        log(f"OOD: dwarfs' log g σ {ood['ood']:.3f} dex vs giants' {ood['reference']:.3f} dex: "
            f"ratio {ood['ratio']:.2f} (MC dropout alone {ood['without_coverage']:.2f}; visits "
            f"{ood['visits']:.2f})")

        cannon = finish_cannon(cannon_job, log) if cannon_job is not None else None
    except BenchError as exc:
        print(f"accuracy.py: {exc}", file=sys.stderr)
        return 2

    # --- statistics
    truth = {b: surveys[b].true_labels for b in BINS}
    stats: dict[str, dict[str, Any]] = {
        n: {b: residual_stats(evals[n]["pred"][b]["mean"], truth[b]) for b in BINS} for n in evals
    }
    if cannon is not None:
        stats["cannon"] = {b: residual_stats(cannon["pred"][b], truth[b]) for b in BINS}
    if payne is not None:  # its subset of the test stars
        n_p = payne["n"]
        stats["payne"] = {b: residual_stats(payne["pred"][b][:n_p], truth[b][:n_p]) for b in BINS}
    methods = [m for m in (*NETWORKS, "cannon", "cannon_native", "payne") if m in stats]
    tg = cfg["targets"]
    acc = (accuracy_target(stats, LABELS, tg["ratio_labels"], float(tg["cannon_ratio"]))
           if cannon is not None else {"ratios": {}, "best": None, "met": False, "failing": []})
    accuracy_md = accuracy_table(stats, methods, acc)
    calibration_md, widths = calibration_table(evals, truth)
    preds = {n: {b: evals[n]["pred"][b]["mean"] for b in BINS} for n in evals}
    if cannon is not None:
        preds["cannon"] = cannon["pred"]
    if payne is not None:
        preds["payne"] = payne["pred"]
    population_md = population_table(preds, truth, surveys["test"].group, methods)
    np.savez(work / "predictions.npz", group=surveys["test"].group, snr_test=surveys["test"].snr,
             snr_visits=surveys["visits"].snr,
             **{f"true_{b}": truth[b] for b in BINS},
             **{f"{n}_{b}_mean": preds[n][b] for n in preds for b in BINS},
             **{f"{n}_{b}_std": evals[n]["pred"][b]["std"] for n in evals for b in BINS},
             **{f"{n}_scales": evals[n]["scales"] for n in evals},
             **({f"payne_{b}_std": payne["std"][b] for b in BINS} if payne is not None else {}),
             ood_std=op.std, ood_mean=op.mean)
    lo, hi = (float(x) for x in tg["z_width"])
    z_targets = {n: z_target({b: widths[n][b]["after"] for b in BINS}, LABELS, lo, hi) for n in NETWORKS}

    total = time.perf_counter() - t_start
    sizes_rows = [
        ["training set (SNR 200–400)",
         f"{len(train)} spectra: {len(train_rows)} train + {len(dev_rows)} dev; "
         f"{_group_counts(train.group)}; "
         f"{100 * np.mean(train.labels == MISSING):.1f}% label entries MISSING"],
        ["test set (SNR 100–200)", f"{len(surveys['test'])} stars; {_group_counts(surveys['test'].group)}"],
        ["visits (SNR 20–60)", f"the same {len(surveys['visits'])} stars, new noise"],
        ["OOD training set", f"{len(ood_s)} spectra ({len(o_train)} train + {len(o_dev)} dev), "
         f"log g MISSING for {', '.join(cfg['ood']['missing_groups'])}"],
    ]
    for n in NETWORKS:
        i = infos[n]
        nc = cfg[n]
        sizes_rows.append([f"{METHOD_TITLES[n]}",
                           f"{i['n_parameters']:,} parameters; batch {nc['batch_size']}, "
                           f"Adam lr {nc['learning_rate']:g}, loss {nc['loss']}, ≤ {nc['epochs']} epochs "
                           f"(patience {nc['patience']}): ran {i['epochs']}, best {i['best_epoch']}"])
    sizes_rows.append(["BCNN (OOD)", f"ran {ood_info['epochs']} epochs, best {ood_info['best_epoch']}"])
    if "cannon_native" in infos:
        nc = cfg["cannon_native"]
        sizes_rows.append([METHOD_TITLES["cannon_native"],
                           f"order {nc['order']} in {len(LABELS)} labels, Λ = {nc['regularization']:g}; "
                           f"trained on {infos['cannon_native']['n_train']} spectra (the peer's rows); "
                           f"{infos['cannon_native']['n_starts']} test starts ({cfg['cannon']['initial']})"])
    if payne is not None:
        pc = cfg["payne"]
        sizes_rows.append([METHOD_TITLES["payne"],
                           f"the generating emulator; first {payne['n']} test stars of each bin; continuum "
                           f"degree {pc['continuum_degree']}, {pc['n_starts']} starts, fit mask "
                           f"{Path(pc['fit_mask']).name if pc['fit_mask'] else 'none'}; converged "
                           + ", ".join(f"{payne['converged'][b]}/{payne['n']} ({BIN_TITLES[b]})"
                                       for b in BINS)])
    if cannon is not None:
        sizes_rows.append(["The Cannon", f"quadratic in {len(LABELS)} labels; trained on {cannon['n_train']} "
                           f"spectra (train rows with every label); test starts: {cfg['cannon']['initial']}"])
    sizes_md = markdown_table(["what", "size"], sizes_rows, right=[False, False])
    t_rows = [["simulation", f"{surveys['seconds']:.0f} s"]]
    for n in NETWORKS:
        i, e = infos[n], evals[n]
        t_rows.append([f"{METHOD_TITLES[n]} training",
                       f"{i['seconds']:.0f} s ({i['epoch_seconds']:.0f} s/epoch)"])
        t_rows.append([f"{METHOD_TITLES[n]} calibration + prediction",
                       f"{e['calibrate_seconds']:.0f} s + {e['predict_seconds']:.0f} s"])
    t_rows.append(["BCNN (OOD) training + coverage fit + prediction (both sets)",
                   f"{ood_info['seconds']:.0f} s + {ood_info['coverage_seconds']:.0f} s + "
                   f"{ood_info['predict_seconds']:.0f} s"])
    if cannon is not None:
        t_rows.append(["The Cannon (in the background, own process, 1 BLAS thread)",
                       f"train {cannon['train_seconds']:.0f} s, test {cannon['test_seconds']:.0f} s"])
    if "cannon_native" in evals:
        e = evals["cannon_native"]
        t_rows.append([f"{METHOD_TITLES['cannon_native']} training + calibration + prediction (main process)",
                       f"{infos['cannon_native']['seconds']:.1f} s + {e['calibrate_seconds']:.0f} s + "
                       f"{e['predict_seconds']:.0f} s"])
    if payne is not None:
        t_rows.append([f"{METHOD_TITLES['payne']} ({payne['n']} stars per bin)",
                       " + ".join(f"{payne['seconds'][b]:.0f} s" for b in BINS)])
    t_rows.append(["total wall time", f"{total:.0f} s"])
    timings_md = markdown_table(["step", "wall time"], t_rows, right=[False, True])
    n_pred = sum(len(surveys[b]) for b in BINS)
    star_rows = []
    for n in evals:
        unc = evals[n]["method"]
        star_rows.append([METHOD_TITLES[n], f"{infos[n]['seconds']:.0f} s",
                          f"{1e3 * evals[n]['predict_seconds'] / n_pred:.1f} ms",
                          f"`{unc}`" + (f", {evals[n]['n_samples']} samples" if unc in ("mc_dropout", "noise")
                                        else "")])
    if cannon is not None:
        star_rows.append([METHOD_TITLES["cannon"], f"{cannon['train_seconds']:.0f} s",
                          f"{1e3 * cannon['test_seconds'] / n_pred:.1f} ms", "none (labels only)"])
    if payne is not None:
        star_rows.append([METHOD_TITLES["payne"], "— (emulator given)",
                          f"{1e3 * sum(payne['seconds'].values()) / (len(BINS) * payne['n']):.0f} ms",
                          "`jacobian` (uncalibrated)"])
    timings_md += "\n" + markdown_table(["method", "training", "prediction per star", "uncertainty"],
                                        star_rows, right=[False, True, True, False])
    timings_md += ("\nPer star: wall time of predicting both test sets (with the uncertainty named) over "
                   "the number of spectra; the networks and the native Cannon share the main process "
                   f"({torch.get_num_threads()} torch threads), the peer Cannon runs beside them in its own "
                   "single-threaded process, so the column compares methods on this machine, not "
                   "implementations at equal load (bench/cannon_agreement.py does that for the two "
                   "Cannons).\n")
    notes = [
        "- Both networks are trained by `starlabels.training.Trainer` on the same train split "
        "(in-memory arrays, preprocessing from the model's `PreprocessConfig`), the dev split driving "
        "early stopping and ReduceLROnPlateau; the best dev epoch is kept.",
        *[f"- {METHOD_TITLES[n]}: noise augmentation "
          f"(`TrainingConfig.augment`: {cfg[n]['augment']['fraction']:.0%} of each batch degraded to an "
          f"SNR drawn log-uniformly in {cfg[n]['augment']['snr'][0]}–{cfg[n]['augment']['snr'][1]}, "
          "dev loss on one fixed degraded copy of the dev split); the training spectra themselves are "
          "the SNR 200–400 set, as for The Cannon."
          for n in NETWORKS if cfg[n].get("augment")],
        *[f"- {METHOD_TITLES[n]}: dev loss with dropout on (`dev_mc_samples` = {cfg[n]['dev_mc_samples']})."
          for n in NETWORKS if int(cfg[n].get("dev_mc_samples", 0))],
        "- APOGEE Net input: raw apStar flux (`PreprocessConfig(kind=\"raw\""
        + (", scale=\"median\")`: errors capped at 5× the mean, then flux and error divided by the "
           "median of the usable pixels" if cfg["apogee_net"].get("median_normalise")
           else ")`, errors capped at 5× the mean")
        + f"; spectrum scaling `{cfg['apogee_net']['spectrum_scaling']}`. No variance head, so its σ is "
        f"`{cfg['apogee_net']['uncertainty']}` propagation of the flux errors, calibrated on the dev set.",
        "- BCNN input: DR17 continuum mask, degree-2 Chebyshev per detector (ASPCAP grid), per-pixel "
        "training mean subtracted; robust loss (astroNN eq. 5) with the training-label errors; σ² = "
        "MC-dropout variance + mean predicted variance (astroNN eq. 3).",
        "- The Cannon sees exactly the BCNN's continuum-normalised spectra with ivar = 1/σ² (rejected "
        "pixels 0) and the same noisy training labels; rows with a MISSING label are dropped (it cannot "
        "use them). Test-step starts: "
        + ("the median training labels of each population, best χ² kept (its default single start at the "
           "label mean sits between giants and dwarfs)." if cfg["cannon"]["initial"] == "groups"
           else "The Cannon's default (training-label mean)."),
        "- Calibration uses the dev stars' true labels; before/after columns use the same predictions "
        "(uncalibrated σ, and σ after the fitted calibration).",
    ]
    if cannon is not None and any(int(s["failed"].sum()) for s in stats["cannon"].values()):
        notes.append("- Failed Cannon fits (NaN) are left out of its statistics and counted in the table.")
    if "cannon_native" in evals:
        notes.append(
            "- Cannon (starlabels): `starlabels.CannonModel` (torch, float64) on the peer's exact inputs "
            "(the same rows, spectra, ivar and test starts); as a model it takes raw apStar flux (its "
            "`PreprocessConfig` is the BCNN's continuum normalisation) and goes through the same "
            "`calibrate`/`predict` calls as the networks; σ = inverse Fisher matrix, calibrated on the dev "
            "stars. Agreement with the peer: `bench/results/cannon_agreement.md`.")
    if payne is not None:
        notes.append(
            f"- Payne fit: `bench/payne_rows.py` (`starlabels.models.payne_fit`) with the emulator that made "
            f"the survey, so there is no model mismatch — an upper bound on a Payne fit, not a fair "
            f"comparison; labels, radial velocity and a per-segment continuum polynomial fitted to the raw "
            f"apStar spectra of the first {payne['n']} test stars of each bin (its statistics are over "
            f"those stars only; non-converged fits count as failed). Its Jacobian σ is not calibrated here.")
    ctx = {
        "cfg": cfg, "stats": stats, "evals": evals, "accuracy_target": acc, "z_targets": z_targets,
        "ood": ood, "ood_rows": ood_rows, "ood_info": ood_info, "accuracy_md": accuracy_md,
        "calibration_md": calibration_md, "population_md": population_md, "sizes_md": sizes_md,
        "timings_md": timings_md, "notes": notes,
        "command": command, "mode": "quick" if args.quick else "full",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"), "total_seconds": total,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__} "
                   f"({torch.get_num_threads()} threads)",
    }
    write_report(output, ctx)
    (work / "summary.json").write_text(json.dumps(_jsonable({
        "stats": stats, "z_widths": widths, "ood": ood, "accuracy_target": {k: v for k, v in acc.items()
                                                                             if k != "ratios"},
        "infos": infos, "ood_info": ood_info, "total_seconds": total,
        "scales": {n: evals[n]["scales"] for n in evals},
        "payne": None if payne is None else {k: payne[k] for k in ("n", "seconds", "converged")}}), indent=1))
    print()
    print(accuracy_md)
    print(calibration_md)
    print(f"OOD log g σ ratio (dwarfs / giants): {ood['ratio']:.2f}")
    print(f"report: {output}  ({total / 60:.1f} min)")
    return 0


def _rows(survey: Any, rows: np.ndarray) -> Any:
    """The rows ``rows`` of a SimulatedSurvey."""
    values = {}
    for f in dataclasses.fields(survey):
        v = getattr(survey, f.name)
        values[f.name] = v[rows] if isinstance(v, np.ndarray) else v
    return type(survey)(**values)


def _group_counts(group: np.ndarray) -> str:
    names, counts = np.unique(group, return_counts=True)
    return ", ".join(f"{c} {n}" for n, c in zip(names, counts, strict=True))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


if __name__ == "__main__":
    sys.exit(main())
