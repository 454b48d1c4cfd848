"""Simulate a survey in chunks of stars with the same numbers as the all-at-once simulator.

:meth:`SurveySimulator.simulate` draws every random array of the survey at once — (N, P) noise,
sky residuals, pixel hits — so its memory grows with N (~0.5 MB per APOGEE star at peak:
``simulate -n 20000`` peaked at 9.5 GB). :func:`simulate_chunks` yields the same survey in chunks
of ``chunk_rows`` stars, **bit-identical** to ``simulate()`` for the same configuration and seed:

- the small per-star draws (labels, SNR, extinction, flux scale, throughput coefficients) are made
  in full, in the original order (:func:`~starlabels.data.survey_observation.draw_per_star`);
- each of the four (N, P) draws (noise and sky normals, two uniform hit draws) fills its array
  row-major from one generator, so it can be produced row chunk by row chunk from a generator
  started at the state where that draw began. Those states come from a first pass that draws
  each array chunk-wise and discards it (numpy's ziggurat consumes a variable number of words, so
  the state after a normal draw is only known by drawing it); that doubles the random-number time,
  not the memory;
- the training-label noise, drawn after those arrays, is drawn from the state the first pass ends at;
- each chunk is observed by :func:`~starlabels.data.survey_observation.observe_rows`, the code
  ``simulate()`` runs on all rows at once, with the four draws from their own generators.

Peak memory is then set by ``chunk_rows`` (chunks of 250 APOGEE stars: a few hundred MB), flat in N.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from starlabels import utils
from starlabels.data.simulated_survey import SimulatedSurvey
from starlabels.data.survey import SurveySimulator
from starlabels.data.survey_labels import sample_labels
from starlabels.data.survey_observation import DefectDraws, draw_per_star, observe_rows
from starlabels.errors import InputDataError

__all__ = ["simulate_chunks", "simulate_to_hdf5"]


def _generator_at(state: dict) -> np.random.Generator:
    bit = type(np.random.default_rng().bit_generator)()
    bit.state = state
    return np.random.Generator(bit)


def simulate_chunks(sim: SurveySimulator, chunk_rows: int = 250) -> Iterator[SimulatedSurvey]:
    """``sim.simulate()`` in consecutive chunks of ≤ ``chunk_rows`` stars (identical numbers)."""
    if int(chunk_rows) < 1:
        raise InputDataError(f"chunk_rows must be >= 1, got {chunk_rows}")
    cfg, obs = sim.config, sim.observing
    rng = np.random.default_rng(cfg.seed)
    true_labels, group = sample_labels(cfg.n_stars, sim.source, rng, cfg.population, cfg.dr17_labels)
    true_labels = np.asarray(true_labels, dtype=np.float64)
    n, n_pixels = len(true_labels), sim.wavelength.size
    ids = np.array([f"SIM{cfg.seed:04d}-{i:07d}" for i in range(n)])
    per_star = draw_per_star(obs, rng, n, cfg.snr or obs.snr, cfg.max_extinction_h)
    chunks = [slice(a, min(n, a + int(chunk_rows))) for a in range(0, n, int(chunk_rows))]
    # first pass: the generator state at the start of each (n, P) draw of observe_rows, and after
    # the last one
    starts = []
    for draw in ("standard_normal", "standard_normal", "random", "random"):
        starts.append(rng.bit_generator.state)
        for sl in chunks:
            getattr(rng, draw)((sl.stop - sl.start, n_pixels))
    train, err = sim.training_labels(true_labels, group, rng)
    draws = DefectDraws(*(_generator_at(s) for s in starts))
    for sl in chunks:
        flux, covered = sim.source.noiseless(true_labels[sl])
        observed, error, mask = observe_rows(
            obs, flux, covered, sim.continuum_teff(true_labels[sl]), per_star, sl, draws,
            sky_pixels=sim.sky, sky_residual=cfg.sky_residual, bad_pixel_fraction=cfg.bad_pixel_fraction,
        )
        yield SimulatedSurvey(
            flux=observed, error=error, bitmask=mask,
            labels=train[sl], label_errors=err[sl], true_labels=true_labels[sl], snr=per_star.snr[sl],
            group=np.asarray(group[sl]).astype(str), apogee_id=ids[sl],
            label_names=tuple(sim.source.label_names), extinction_h=per_star.extinction_h[sl],
            instrument=sim.instrument,
        )


def simulate_to_hdf5(sim: SurveySimulator, path: str | Path, chunk_rows: int = 250,
                     progress=None) -> Path:
    """Write ``sim.simulate()``'s survey to an HDF5 dataset chunk by chunk (memory flat in N),
    with a progress bar; ``progress(n_rows)`` is also called after each chunk."""
    from starlabels.data.hdf5_writer import DatasetWriter

    path = Path(path)
    with contextlib.ExitStack() as stack:
        writer = None
        n_chunks = -(-sim.config.n_stars // max(1, int(chunk_rows)))
        for chunk in utils.progress(simulate_chunks(sim, chunk_rows), desc="simulate", total=n_chunks,
                                    unit="chunk"):
            if writer is None:
                writer = stack.enter_context(DatasetWriter(path, **chunk.writer_settings()))
            chunk.append_to(writer)
            if progress is not None:
                progress(len(chunk))
    return path
