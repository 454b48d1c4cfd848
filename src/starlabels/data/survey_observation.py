"""Observation of simulated spectra (step 3 of :mod:`starlabels.data.survey`): SNR, sky-line
pixels, throughput, continuum slope, reddening, photon noise and pixel defects.

One implementation serves both simulators: :meth:`SurveySimulator.observe
<starlabels.data.survey.SurveySimulator.observe>` observes all stars at once and
:func:`starlabels.data.survey_stream.simulate_chunks` observes them chunk by chunk; both call
:func:`draw_per_star` for the small per-star draws and :func:`observe_rows` for the (rows, P)
spectra, so the two give bit-identical numbers for the same generator states.

Flux is in the source's units times a flux scale 10^U(1.8, 2.8); σ is per pixel in the same units;
A_H in mag; wavelengths in vacuum Å.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starlabels.core import Grid, Instrument
from starlabels.core import get as get_instrument
from starlabels.data.observing import ObservingModel, boss_throughput, observing_model
from starlabels.data.survey_sources import resolve_instrument
from starlabels.errors import InputDataError

__all__ = [
    "DefectDraws", "PerStarDraws", "blackbody_shape", "draw_per_star", "observe_rows", "sky_line_pixels",
    "snr_distribution", "throughput", "throughput_coefficients", "throughput_rows",
]


def snr_distribution(n: int, rng: np.random.Generator, kind: str | tuple = "apogee") -> np.ndarray:
    """(n,) signal-to-noise ratios per pixel.

    ``"apogee"``: log-normal around 150 (σ_ln = 0.55) clipped to 40–1000, like APOGEE combined
    spectra; ``"visit"``: uniform 20–60, like single visits; ``"boss"``: log-normal around 35
    (σ_ln = 0.6) clipped to 8–300, like BOSS spectra of Milky Way Mapper stars (G ≈ 13–17.5);
    ``("uniform", lo, hi)`` or
    ``("loguniform", lo, hi)`` for a chosen range.
    """
    if kind == "apogee":
        return np.clip(150.0 * np.exp(rng.normal(0.0, 0.55, n)), 40.0, 1000.0)
    if kind == "visit":
        return rng.uniform(20.0, 60.0, n)
    if kind == "boss":
        return np.clip(35.0 * np.exp(rng.normal(0.0, 0.6, n)), 8.0, 300.0)
    if isinstance(kind, (tuple, list)) and len(kind) == 3:
        what, a, b = kind
        if not 0 < a <= b:
            raise InputDataError(f"SNR range must satisfy 0 < lo <= hi, got {a}, {b}")
        if what == "uniform":
            return rng.uniform(a, b, n)
        if what == "loguniform":
            return np.exp(rng.uniform(np.log(a), np.log(b), n))
    raise InputDataError(f"unknown SNR distribution {kind!r}")


def sky_line_pixels(
    n_lines: int = 80, half_width: int = 2, seed: int = 2024, instrument: str | Instrument = "apogee",
) -> np.ndarray:
    """(P,) bool on the instrument's native grid: fixed pixels affected by bright sky lines (same
    for every star). H band (APOGEE): ``n_lines`` OH lines at random pixels with data. Optical
    (BOSS): the bright lines and the ``n_lines`` strongest OH lines of
    :meth:`starlabels.data.observing.ObservingModel.sky_lines` (fixed by ``seed``)."""
    obs = observing_model(resolve_instrument(instrument))
    grid = obs.instrument.grid
    usable = np.flatnonzero(obs.usable())
    if obs.recipe == "hband":
        rng = np.random.default_rng(seed)
        centres = rng.choice(usable, size=n_lines, replace=False)
    else:
        wl, strength = obs.sky_lines(seed)
        keep = np.sort(np.argsort(strength)[::-1][:n_lines])
        centres = np.clip(np.searchsorted(grid.wavelength, wl[keep]), 0, grid.n_pixels - 1)
    mask = np.zeros(grid.n_pixels, dtype=bool)
    for off in range(-half_width, half_width + 1):
        mask[np.clip(centres + off, 0, grid.n_pixels - 1)] = True
    return mask


#: per grid segment, the (n, 1) coefficients of the throughput polynomial: (c0, c1, c2) not flux
#: calibrated, (c1, c2) flux calibrated
ThroughputCoefficients = list[tuple[np.ndarray, ...]]


def throughput_coefficients(
    grid: Grid, rng: np.random.Generator, n: int, calibrated: bool
) -> ThroughputCoefficients:
    """The random coefficients of :func:`throughput`, drawn per segment in order."""
    coefs = []
    for k, _ in enumerate(grid.segment_slices):
        if calibrated:
            coefs.append((rng.normal(0, 0.02, (n, 1)), rng.normal(0, 0.02, (n, 1))))
            continue
        c0 = 0.85 - 0.05 * k + rng.normal(0, 0.02, (n, 1))
        c1 = 0.08 * (1 - k) + rng.normal(0, 0.02, (n, 1))
        c2 = -0.12 + rng.normal(0, 0.02, (n, 1))
        coefs.append((c0, c1, c2))
    return coefs


def throughput_rows(
    grid: Grid, coefficients: ThroughputCoefficients, rows: slice, calibrated: bool
) -> np.ndarray:
    """(len(rows), P) smooth per-segment flux multiplier of the stars ``rows``, slightly different
    per star.

    Not flux calibrated (APOGEE): the instrument throughput, ~0.6–1, a quadratic in each
    detector's own [−1, 1] coordinate; 1 outside the detectors (gap pixels are masked anyway).
    Flux calibrated (BOSS): 1 + a ~2 % calibration ripple per arm.
    """
    out = np.ones((rows.stop - rows.start, grid.n_pixels))
    for sl, c in zip(grid.segment_slices, coefficients, strict=True):
        a, b = sl.start, sl.stop
        x = np.linspace(-1.0, 1.0, b - a)
        if calibrated:
            c1, c2 = c[0][rows], c[1][rows]
            out[:, a:b] = 1 + c1 * x + c2 * (x**2 - 1 / 3)
        else:
            c0, c1, c2 = c[0][rows], c[1][rows], c[2][rows]
            out[:, a:b] = c0 + c1 * x + c2 * x**2
    return out


def throughput(
    rng: np.random.Generator, n: int, grid: Grid | None = None, calibrated: bool = False,
) -> np.ndarray:
    """(n, P) smooth per-segment flux multiplier of ``n`` stars (see :func:`throughput_rows`);
    ``grid`` defaults to APOGEE's apStar grid."""
    grid = grid or get_instrument("apogee").grid
    return throughput_rows(grid, throughput_coefficients(grid, rng, n, calibrated), slice(0, n), calibrated)


def blackbody_shape(wavelength: np.ndarray, teff: np.ndarray, reference: float = 16000.0) -> np.ndarray:
    """(n, P) Planck B_λ(Teff) normalised to 1 at ``reference`` Å (the continuum of a normalised
    source; APOGEE 16,000 Å, BOSS 5,500 Å)."""
    c2 = 1.4387769e8  # h c / k in Å K
    lam = wavelength[None, :]
    t = teff[:, None]
    shape = lam**-5 / np.expm1(c2 / (lam * t))
    ref = reference**-5 / np.expm1(c2 / (reference * t))
    return shape / ref


@dataclass(frozen=True)
class PerStarDraws:
    """The small per-star draws of an observation, for all N stars (rows are sliced from them)."""

    snr: np.ndarray  # (N,) signal-to-noise ratio per pixel
    extinction_h: np.ndarray  # (N,) A_H of the reddening tilt, mag
    scale: np.ndarray  # (N, 1) flux scale
    throughput: ThroughputCoefficients  # per segment, (N, 1) each
    calibrated: bool  # flux-calibrated instrument (optical recipe)


def draw_per_star(
    obs: ObservingModel,
    rng: np.random.Generator,
    n: int,
    snr: str | tuple | np.ndarray,
    max_extinction_h: float | None,
    extinction_h: np.ndarray | None = None,
) -> PerStarDraws:
    """Draw, in this order, the SNR (unless ``snr`` is an array), A_H ~ U(0, max) (unless
    ``extinction_h`` is given; ``max_extinction_h`` None → the instrument's), the flux scale and
    the throughput coefficients of ``n`` stars."""
    snr_arr = snr.astype(float) if isinstance(snr, np.ndarray) else snr_distribution(n, rng, snr)
    if extinction_h is None:
        max_ah = obs.max_extinction_h if max_extinction_h is None else max_extinction_h
        extinction_h = rng.uniform(0.0, max_ah, n)
    scale = 10 ** rng.uniform(1.8, 2.8, (n, 1))
    calibrated = obs.recipe == "optical"
    coefs = throughput_coefficients(obs.instrument.grid, rng, n, calibrated)
    return PerStarDraws(snr_arr, extinction_h, scale, coefs, calibrated)


@dataclass(frozen=True)
class DefectDraws:
    """Generators of the four (rows, P) draws of :func:`observe_rows`, drawn in this order: photon
    noise (standard normal), sky-subtraction residuals (standard normal), pixel hits (uniform) and
    cosmic-ray-or-dead choice (uniform). :meth:`single` uses one generator for all four."""

    noise: np.random.Generator
    sky: np.random.Generator
    hits: np.random.Generator
    cosmic: np.random.Generator

    @classmethod
    def single(cls, rng: np.random.Generator) -> DefectDraws:
        """All four draws from ``rng``, one after the other."""
        return cls(rng, rng, rng, rng)


def observe_rows(
    obs: ObservingModel,
    flux: np.ndarray,
    covered: np.ndarray,
    teff: np.ndarray | None,
    per_star: PerStarDraws,
    rows: slice,
    draws: DefectDraws,
    *,
    sky_pixels: np.ndarray,
    sky_residual: float,
    bad_pixel_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observe the noise-free spectra of the stars ``rows``.

    Args:
        obs: the instrument's observing model.
        flux: (R, P) noise-free flux of the rows (R = len(rows)); continuum-normalised when
            ``teff`` is given, which then applies a blackbody continuum.
        covered: (R, P) bool, False where the source has no pixel (a gap).
        teff: (R,) K, or None for a source with its own continuum.
        per_star: the draws of all N stars (:func:`draw_per_star`); rows ``rows`` are used.
        rows: which of the N stars these are.
        draws: generators of the (R, P) random draws.
        sky_pixels: (P,) bool sky-line pixels.
        sky_residual: σ of sky-subtraction residuals at sky-line pixels, in units of the local σ.
        bad_pixel_fraction: fraction of pixels hit by a cosmic ray or a bad pixel.

    Returns:
        ``(flux (R, P) float32, error σ (R, P) float32, bitmask (R, P) int32)``.
    """
    wavelength = obs.instrument.wavelength
    n_rows, n_pixels = flux.shape
    if teff is not None:
        flux = flux * blackbody_shape(wavelength, teff, obs.blackbody_reference)
    a_lambda = per_star.extinction_h[rows, None] * (wavelength[None, :] / 16500.0) ** -obs.extinction_exponent
    flux = flux * throughput_rows(obs.instrument.grid, per_star.throughput, rows, per_star.calibrated) \
        * 10 ** (-0.4 * a_lambda) * per_star.scale[rows]
    flux = np.where(covered, flux, 0.0)

    med = np.nanmedian(np.where(covered, flux, np.nan), axis=1, keepdims=True)
    if not np.isfinite(med).all() or (med <= 0).any():
        raise InputDataError("spectrum source returned a spectrum with no positive flux")
    snr = per_star.snr[rows, None]
    if per_star.calibrated:  # photon noise of the counts through the spectrograph, plus sky background
        t = boss_throughput(wavelength)[None, :]
        counts, med_c = flux * t, med * np.median(t)
        sigma = np.sqrt(np.clip(counts, 1e-6 * med_c, None) * med_c
                        + obs.sky_background * med_c**2) / t / snr
    else:
        sigma = np.sqrt(np.clip(flux, 1e-6 * med, None) * med) / snr
    observed = flux + sigma * draws.noise.standard_normal((n_rows, n_pixels))

    mask = np.zeros(flux.shape, dtype=np.int32)
    mask[~covered] |= obs.bit("gap")
    sky = sky_pixels[None, :] & covered
    observed += np.where(sky, sky_residual * sigma * draws.sky.standard_normal((n_rows, n_pixels)), 0.0)
    mask[sky] |= obs.bit("sky")
    hits = (draws.hits.random((n_rows, n_pixels)) < bad_pixel_fraction) & covered
    cosmic = hits & (draws.cosmic.random((n_rows, n_pixels)) < 0.5)
    dead = hits & ~cosmic
    observed[cosmic] += 20.0 * sigma[cosmic]
    observed[dead] = 0.0
    mask[cosmic] |= obs.bit("cosmic")
    mask[dead] |= obs.bit("badpix")
    observed = np.where(covered, observed, 0.0)
    error = np.where(covered, sigma, 1e10 if obs.recipe == "hband" else obs.bad_error)
    return observed.astype(np.float32), error.astype(np.float32), mask
