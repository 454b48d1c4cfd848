"""Simulated surveys on any instrument (APOGEE-like by default, BOSS-like with
``instrument="boss"``): realistic labels → spectra with realistic defects.

A survey is drawn in four steps, all vectorised over stars and seeded:

1. **Labels** from realistic distributions: red giants resampled from the real DR17 ASPCAP sample
   (``../shared/data/labels/apogee_dr17_giant_labels.npz``; its two sub-samples are not
   row-aligned, so each giant's [Fe/H] is taken from the nearest neighbour of its (Teff, [α/M])
   in the second sample, which keeps the [α/M]–[Fe/H] sequences), main-sequence dwarfs and cool
   dwarfs from simple analytic relations; all restricted to the spectrum source's label box.
2. **Noise-free spectra** on the instrument's native grid from a :class:`SpectrumSource`: a
   Payne-format emulator on any grid (:class:`EmulatorSource`: its flux placed on the native grid
   when its pixels are a subset of it — APOGEE's 7214-pixel Payne grid, the 7514-pixel ASPCAP grid
   — or interpolated onto it otherwise; the native pixels it does not cover are masked) or the
   built-in generator (:class:`GeneratorSource`, e.g. ``GeneratorSource.default(instrument="boss")``).
3. **Observation** (settings per instrument in :mod:`starlabels.data.observing`): a smooth
   throughput per detector (APOGEE) or a ~2 % flux-calibration ripple per arm (BOSS, whose
   spectra are flux calibrated), a flux scale, a reddening tilt A_λ = A_H (λ / 16500 Å)^−β
   (β = 2 in the H band, 1.6 in the optical), photon-like Gaussian noise σ_i = √(f_i · median f) / SNR
   (BOSS: of the counts f_i·t_i through the two-arm throughput t, plus sky background) with SNR
   from an APOGEE-like or BOSS-like distribution, residuals of imperfect sky subtraction at
   fixed sky-line pixels (APOGEE SIG_SKYLINE, BOSS BRIGHTSKY) and random bad pixels (APOGEE
   BADPIX and CRPIX, BOSS FULLREJECT and COMBINEREJ).
4. **Training labels**: the true labels plus Gaussian noise of known σ (stored as label errors),
   and a chosen fraction of missing labels (MISSING = −9999).

Steps 1 and 3 live in :mod:`starlabels.data.survey_labels` and
:mod:`starlabels.data.survey_observation` (shared with the chunked simulator
:mod:`starlabels.data.survey_stream`), the spectrum sources in :mod:`starlabels.data.survey_sources`;
this module holds the settings (:class:`SurveyConfig`), the simulator and step 4, and re-exports
the public names of those modules.

The result is a :class:`SimulatedSurvey` (:mod:`starlabels.data.simulated_survey`); it writes the
project's HDF5 dataset format (true labels kept as ``meta/true_<LABEL>``, the grid stored with the
spectra) and FITS files on request (apStar for APOGEE, SDSS-V mwmStar for BOSS).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from starlabels.constants import MISSING
from starlabels.core import Instrument
from starlabels.core import get as get_instrument
from starlabels.data.observing import ObservingModel, observing_model
from starlabels.data.simulated_survey import SimulatedSurvey
from starlabels.data.survey_labels import (
    DEFAULT_POPULATIONS,
    HOT_DWARFS,
    POPULATIONS,
    default_population,
    sample_labels,
)
from starlabels.data.survey_observation import (
    DefectDraws,
    draw_per_star,
    observe_rows,
    sky_line_pixels,
    snr_distribution,
)
from starlabels.data.survey_sources import (
    DWARF_LABELS,
    KURUCZ_LABELS,
    EmulatorSource,
    GeneratorSource,
    SpectrumSource,
)
from starlabels.errors import InputDataError

__all__ = [
    "DEFAULT_LABEL_NOISE", "DEFAULT_POPULATIONS", "DWARF_LABELS", "HOT_DWARFS", "KURUCZ_LABELS",
    "POPULATIONS", "EmulatorSource", "GeneratorSource", "SimulatedSurvey", "SpectrumSource", "SurveyConfig",
    "SurveySimulator", "default_population", "sample_labels", "sky_line_pixels", "snr_distribution",
]

DEFAULT_LABEL_NOISE = {"TEFF": 30.0, "LOGG": 0.05, "FE_H": 0.02, "ALPHA_M": 0.02, "VMACRO": 0.5}


@dataclass
class SurveyConfig:
    """What to simulate. Defaults make an APOGEE-like survey of giants and dwarfs (the SNR and
    extinction defaults follow the source's instrument: :mod:`starlabels.data.observing`)."""

    n_stars: int = 1000
    seed: int = 0
    population: dict[str, float] = field(
        default_factory=lambda: {"giants": 0.7, "dwarfs": 0.2, "cool_dwarfs": 0.1}
    )
    #: SNR distribution (:func:`snr_distribution`); None → the instrument's ("apogee", "boss")
    snr: str | tuple | None = None
    #: per-label σ of the Gaussian noise added to training labels (label errors); missing → 0
    label_noise: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LABEL_NOISE))
    #: fraction of training-label entries set to MISSING at random
    missing_fraction: float = 0.0
    #: labels set MISSING for whole groups, e.g. {"LOGG": ["dwarfs", "cool_dwarfs"]} (astroNN Fig. 7)
    missing_for_groups: dict[str, list[str]] = field(default_factory=dict)
    #: maximal H-band extinction A_H (mag) of the reddening tilt, drawn uniformly in [0, max];
    #: None → the instrument's (APOGEE 0.6; BOSS 0.15, i.e. A_V ≤ 0.9)
    max_extinction_h: float | None = None
    #: fraction of pixels per spectrum hit by a cosmic ray or a bad pixel
    bad_pixel_fraction: float = 0.002
    #: σ of sky-subtraction residuals at sky-line pixels, in units of the local noise σ
    sky_residual: float = 3.0
    #: DR17 label sample for the giants (None → analytic fallback)
    dr17_labels: str | None = None

    def with_(self, **changes) -> SurveyConfig:
        return replace(self, **changes)


class SurveySimulator:
    """Draws surveys from a :class:`SpectrumSource` on its instrument's native grid; the same stars
    can be observed again."""

    def __init__(self, source: SpectrumSource, config: SurveyConfig | None = None):
        self.source = source
        self.config = config or SurveyConfig()
        self.instrument: Instrument = getattr(source, "instrument", None) or get_instrument("apogee")
        self.observing: ObservingModel = observing_model(self.instrument)
        self.wavelength = self.instrument.wavelength
        self.sky = sky_line_pixels(instrument=self.instrument)

    @classmethod
    def from_emulator(cls, path: str | Path, config: SurveyConfig | None = None, **kw) -> SurveySimulator:
        """A simulator of an emulator file (``kw``: :meth:`EmulatorSource.from_path`'s, e.g.
        ``instrument=``, ``grid=``)."""
        return cls(EmulatorSource.from_path(path, **kw), config)

    def simulate(self) -> SimulatedSurvey:
        """A whole survey per ``self.config``."""
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        labels, group = sample_labels(
            cfg.n_stars, self.source, rng, cfg.population, cfg.dr17_labels
        )
        ids = np.array([f"SIM{cfg.seed:04d}-{i:07d}" for i in range(cfg.n_stars)])
        return self.observe(labels, group, ids, rng=rng)

    def observe(
        self,
        true_labels: np.ndarray,
        group: np.ndarray,
        apogee_id: np.ndarray,
        *,
        snr: str | tuple | np.ndarray | None = None,
        rng: np.random.Generator | None = None,
        extinction_h: np.ndarray | None = None,
    ) -> SimulatedSurvey:
        """Observe stars with known true labels (e.g. low-SNR 'visits' of a simulated survey)."""
        cfg = self.config
        obs = self.observing
        rng = rng or np.random.default_rng(cfg.seed + 1)
        true_labels = np.asarray(true_labels, dtype=np.float64)
        n = len(true_labels)
        per_star = draw_per_star(obs, rng, n, snr if snr is not None else (cfg.snr or obs.snr),
                                 cfg.max_extinction_h, extinction_h)
        flux, covered = self.source.noiseless(true_labels)
        observed, error, mask = observe_rows(
            obs, flux, covered, self.continuum_teff(true_labels), per_star, slice(0, n),
            DefectDraws.single(rng),
            sky_pixels=self.sky, sky_residual=cfg.sky_residual, bad_pixel_fraction=cfg.bad_pixel_fraction,
        )
        train, err = self.training_labels(true_labels, group, rng)
        return SimulatedSurvey(
            flux=observed, error=error, bitmask=mask,
            labels=train, label_errors=err, true_labels=true_labels, snr=per_star.snr,
            group=np.asarray(group).astype(str), apogee_id=np.asarray(apogee_id).astype(str),
            label_names=tuple(self.source.label_names), extinction_h=per_star.extinction_h,
            instrument=self.instrument,
        )

    def continuum_teff(self, true_labels: np.ndarray) -> np.ndarray | None:
        """(n,) Teff of the stars when the source is continuum-normalised (the simulator then applies
        a blackbody continuum), else None."""
        if not self.source.normalised:
            return None
        return true_labels[:, list(self.source.label_names).index("TEFF")]

    def training_labels(
        self, true_labels: np.ndarray, group: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Step 4: ``(labels, label_errors)``, both (n, L) float32: the true labels plus Gaussian
        noise of σ ``config.label_noise`` (the errors), MISSING where ``config.missing_fraction``
        and ``config.missing_for_groups`` say."""
        cfg = self.config
        names = list(self.source.label_names)
        sig = np.array([cfg.label_noise.get(n, 0.0) for n in names])
        labels = true_labels + sig * rng.standard_normal(true_labels.shape)
        errors = np.broadcast_to(sig, labels.shape).copy()
        missing = rng.random(labels.shape) < cfg.missing_fraction
        for name, groups in cfg.missing_for_groups.items():
            if name not in names:
                raise InputDataError(f"missing_for_groups names {name!r}, not a label of {names}")
            missing[:, names.index(name)] |= np.isin(group, groups)
        labels[missing] = MISSING
        errors[missing] = MISSING
        return labels.astype(np.float32), errors.astype(np.float32)
