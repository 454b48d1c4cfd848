"""Simulate a survey in chunks of stars with the same numbers as the all-at-once simulator.

:meth:`SurveySimulator.simulate` draws every random array of the survey at once — (N, P) noise,
sky residuals, pixel hits — so its memory grows with N (~0.5 MB per APOGEE star at peak:
``simulate -n 20000`` peaked at 9.5 GB). :func:`simulate_chunks` yields the same survey in chunks
of ``chunk_rows`` stars, **bit-identical** to ``simulate()`` for the same configuration and seed:

- the small per-star draws (labels, SNR, extinction, flux scale, throughput coefficients) are made
  in full, in the original order;
- each of the four (N, P) draws (noise and sky normals, two uniform hit draws) fills its array
  row-major from one generator, so it can be produced row chunk by row chunk from a generator
  started at the state where that draw began. Those states come from a first pass that draws
  each array chunk-wise and discards it (numpy's ziggurat consumes a variable number of words, so
  the state after a normal draw is only known by drawing it); that doubles the random-number time,
  not the memory;
- the training-label noise, drawn after those arrays, is drawn from the state the first pass ends at.

Peak memory is then set by ``chunk_rows`` (chunks of 250 APOGEE stars: a few hundred MB), flat in N.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from starlabels import utils
from starlabels.data.observing import boss_throughput
from starlabels.data.survey import (
    SimulatedSurvey,
    SurveySimulator,
    _blackbody_shape,
    sample_labels,
    snr_distribution,
)
from starlabels.errors import InputDataError

__all__ = ["simulate_chunks", "simulate_to_hdf5"]


def _throughput_coefficients(sim: SurveySimulator, rng: np.random.Generator, n: int, calibrated: bool):
    """The draws of ``survey._throughput`` in its order: per segment (c0, c1, c2) or (c1, c2)."""
    coefs = []
    for k, _ in enumerate(sim.instrument.grid.segment_slices):
        if calibrated:
            coefs.append((rng.normal(0, 0.02, (n, 1)), rng.normal(0, 0.02, (n, 1))))
            continue
        c0 = 0.85 - 0.05 * k + rng.normal(0, 0.02, (n, 1))
        c1 = 0.08 * (1 - k) + rng.normal(0, 0.02, (n, 1))
        c2 = -0.12 + rng.normal(0, 0.02, (n, 1))
        coefs.append((c0, c1, c2))
    return coefs


def _throughput_rows(sim: SurveySimulator, coefs, rows: slice, calibrated: bool) -> np.ndarray:
    """Rows ``rows`` of ``survey._throughput``'s (n, P) multiplier from its coefficients."""
    out = np.ones((rows.stop - rows.start, sim.wavelength.size))
    for sl, c in zip(sim.instrument.grid.segment_slices, coefs, strict=True):
        a, b = sl.start, sl.stop
        x = np.linspace(-1.0, 1.0, b - a)
        if calibrated:
            c1, c2 = c[0][rows], c[1][rows]
            out[:, a:b] = 1 + c1 * x + c2 * (x**2 - 1 / 3)
        else:
            c0, c1, c2 = c[0][rows], c[1][rows], c[2][rows]
            out[:, a:b] = c0 + c1 * x + c2 * x**2
    return out


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
    n, P = len(true_labels), sim.wavelength.size
    ids = np.array([f"SIM{cfg.seed:04d}-{i:07d}" for i in range(n)])
    snr = snr_distribution(n, rng, cfg.snr or obs.snr)
    max_ah = obs.max_extinction_h if cfg.max_extinction_h is None else cfg.max_extinction_h
    extinction_h = rng.uniform(0.0, max_ah, n)
    scale = 10 ** rng.uniform(1.8, 2.8, (n, 1))
    calibrated = obs.recipe == "optical"
    coefs = _throughput_coefficients(sim, rng, n, calibrated)
    chunks = [slice(a, min(n, a + int(chunk_rows))) for a in range(0, n, int(chunk_rows))]
    # first pass: the generator state at the start of each (n, P) draw, and after the last one
    starts = []
    for draw in ("standard_normal", "standard_normal", "random", "random"):
        starts.append(rng.bit_generator.state)
        for sl in chunks:
            getattr(rng, draw)((sl.stop - sl.start, P))
    train, err = sim._training_labels(true_labels, group, rng)
    noise, sky_noise, hit_draw, cosmic_draw = (_generator_at(s) for s in starts)
    teff_col = list(sim.source.label_names).index("TEFF") if sim.source.normalised else None
    for sl in chunks:
        b = sl.stop - sl.start
        flux, covered = sim.source.noiseless(true_labels[sl])
        if teff_col is not None:
            flux = flux * _blackbody_shape(sim.wavelength, true_labels[sl, teff_col], obs.blackbody_reference)
        a_lambda = extinction_h[sl, None] * (sim.wavelength[None, :] / 16500.0) ** -obs.extinction_exponent
        flux = flux * _throughput_rows(sim, coefs, sl, calibrated) * 10 ** (-0.4 * a_lambda) * scale[sl]
        flux = np.where(covered, flux, 0.0)
        med = np.nanmedian(np.where(covered, flux, np.nan), axis=1, keepdims=True)
        if not np.isfinite(med).all() or (med <= 0).any():
            raise InputDataError("spectrum source returned a spectrum with no positive flux")
        if calibrated:
            t = boss_throughput(sim.wavelength)[None, :]
            counts, med_c = flux * t, med * np.median(t)
            sigma = np.sqrt(np.clip(counts, 1e-6 * med_c, None) * med_c
                            + obs.sky_background * med_c**2) / t / snr[sl, None]
        else:
            sigma = np.sqrt(np.clip(flux, 1e-6 * med, None) * med) / snr[sl, None]
        observed = flux + sigma * noise.standard_normal((b, P))
        mask = np.zeros(flux.shape, dtype=np.int32)
        mask[~covered] |= obs.bit("gap")
        sky = sim.sky[None, :] & covered
        observed += np.where(sky, cfg.sky_residual * sigma * sky_noise.standard_normal((b, P)), 0.0)
        mask[sky] |= obs.bit("sky")
        hits = (hit_draw.random((b, P)) < cfg.bad_pixel_fraction) & covered
        cosmic = hits & (cosmic_draw.random((b, P)) < 0.5)
        dead = hits & ~cosmic
        observed[cosmic] += 20.0 * sigma[cosmic]
        observed[dead] = 0.0
        mask[cosmic] |= obs.bit("cosmic")
        mask[dead] |= obs.bit("badpix")
        observed = np.where(covered, observed, 0.0)
        error = np.where(covered, sigma, 1e10 if obs.recipe == "hband" else obs.bad_error)
        yield SimulatedSurvey(
            flux=observed.astype(np.float32), error=error.astype(np.float32), bitmask=mask,
            labels=train[sl], label_errors=err[sl], true_labels=true_labels[sl], snr=snr[sl],
            group=np.asarray(group[sl]).astype(str), apogee_id=ids[sl],
            label_names=tuple(sim.source.label_names), extinction_h=extinction_h[sl],
            instrument=sim.instrument,
        )


def simulate_to_hdf5(sim: SurveySimulator, path: str | Path, chunk_rows: int = 250,
                     progress=None) -> Path:
    """Write ``sim.simulate()``'s survey to an HDF5 dataset chunk by chunk (memory flat in N),
    with a progress bar; ``progress(n_rows)`` is also called after each chunk."""
    from starlabels.data.hdf5 import DatasetWriter

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
