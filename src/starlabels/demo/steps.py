"""Steps of the demo (:mod:`starlabels.demo`) before training: the spectrum source, the simulated
survey (observed in chunks behind a progress bar) and the continuum preprocessing of the training
pool."""

from __future__ import annotations

from typing import Any

import numpy as np

from starlabels.demo.config import (
    ABUNDANCE_NOISE,
    CONTINUUM_SELECTION_ROWS,
    LABEL_NOISE,
    SIM_CHUNK,
    DemoConfig,
)

__all__ = ["SURVEY_ARRAYS", "preprocess_config", "preprocess_pool", "simulate_survey", "spectrum_source"]

#: arrays of a :class:`~starlabels.data.simulated_survey.SimulatedSurvey` filled chunk by chunk
SURVEY_ARRAYS = ("flux", "error", "bitmask", "labels", "label_errors", "true_labels", "snr", "group",
                 "apogee_id", "extinction_h")


def spectrum_source(cfg: DemoConfig) -> tuple[Any, str]:
    """(spectrum source, description)."""
    from starlabels.data.survey_sources import EmulatorSource, GeneratorSource

    if cfg.emulator is None:
        text = "the built-in synthetic generator"
        if cfg.instrument != "apogee":
            text += f" ({cfg.instrument.upper()} grid)"
        return GeneratorSource.default(seed=0, instrument=cfg.instrument), text
    return (EmulatorSource.from_path(cfg.emulator, instrument=cfg.instrument),
            f"the emulator {cfg.emulator}")


def simulate_survey(source: Any, cfg: DemoConfig) -> Any:
    """The survey of n_train + n_test stars, observed in chunks behind a progress bar."""
    from starlabels.data.simulated_survey import SimulatedSurvey
    from starlabels.data.survey import DEFAULT_LABEL_NOISE, SurveyConfig, SurveySimulator
    from starlabels.data.survey_labels import default_population, sample_labels
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
        for k in SURVEY_ARRAYS:  # filled in place: no second copy of the spectra
            v = np.asarray(getattr(part, k))
            if k not in arrays:
                arrays[k] = np.empty((n, *v.shape[1:]), dtype=v.dtype if v.dtype.kind != "U" else object)
            arrays[k][a:b] = v
    for k in ("group", "apogee_id"):
        arrays[k] = arrays[k].astype(str)
    return SimulatedSurvey(label_names=tuple(source.label_names), instrument=source.instrument, **arrays)


def preprocess_config(source: Any, survey: Any, train_rows: np.ndarray) -> tuple[Any, str]:
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


def preprocess_pool(pre: Any, survey: Any, n: int, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
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
