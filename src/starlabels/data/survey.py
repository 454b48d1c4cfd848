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

The result is a :class:`SimulatedSurvey`; it writes the project's HDF5 dataset format
(true labels kept as ``meta/true_<LABEL>``, the grid stored with the spectra) and FITS files on
request (apStar for APOGEE, SDSS-V mwmStar for BOSS).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from starlabels.constants import MISSING
from starlabels.core import Grid, Instrument
from starlabels.core import get as get_instrument
from starlabels.data.observing import ObservingModel, boss_throughput, observing_model
from starlabels.data.survey_sources import (
    DWARF_LABELS,
    KURUCZ_LABELS,
    EmulatorSource,
    GeneratorSource,
    SpectrumSource,
    resolve_instrument,
)
from starlabels.errors import InputDataError
from starlabels.units import label_unit

__all__ = [
    "DEFAULT_LABEL_NOISE", "DEFAULT_POPULATIONS", "DWARF_LABELS", "HOT_DWARFS", "KURUCZ_LABELS",
    "POPULATIONS", "EmulatorSource", "GeneratorSource", "SimulatedSurvey", "SpectrumSource", "SurveyConfig",
    "SurveySimulator", "default_population", "sample_labels", "sky_line_pixels", "snr_distribution",
]

DEFAULT_LABEL_NOISE = {"TEFF": 30.0, "LOGG": 0.05, "FE_H": 0.02, "ALPHA_M": 0.02, "VMACRO": 0.5}
POPULATIONS = ("giants", "dwarfs", "cool_dwarfs")
#: A/F main-sequence stars (6,900–9,800 K), only drawn when asked for (BOSS's default population)
HOT_DWARFS = "hot_dwarfs"
#: default population fractions per instrument (others: APOGEE's)
DEFAULT_POPULATIONS: dict[str, dict[str, float]] = {
    "apogee": {"giants": 0.7, "dwarfs": 0.2, "cool_dwarfs": 0.1},
    "boss": {"giants": 0.5, "dwarfs": 0.25, "cool_dwarfs": 0.1, HOT_DWARFS: 0.15},
}


def default_population(instrument: str | Instrument = "apogee") -> dict[str, float]:
    """A copy of the instrument's default population fractions (:data:`DEFAULT_POPULATIONS`)."""
    name = instrument.name if isinstance(instrument, Instrument) else str(instrument).lower()
    return dict(DEFAULT_POPULATIONS.get(name, DEFAULT_POPULATIONS["apogee"]))


#: log g range (dex) of the analytic giants drawn when no DR17 label sample is given
GIANT_LOGG_RANGE = (0.5, 3.5)


# --------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------
def _giants_from_dr17(n: int, rng: np.random.Generator, labels_path: Path | None) -> np.ndarray:
    """(n, 4) TEFF, LOGG, FE_H, ALPHA_M resampled from the real DR17 giant samples."""
    from scipy.spatial import cKDTree

    if labels_path is None or not Path(labels_path).is_file():
        # Fallback when ../shared is absent: a red-clump/RGB-like analytic distribution. Stars
        # outside the giant branch's log g range get NaN, which the caller's label-box test
        # rejects and redraws: clipping them would pile ~5% of the giants onto log g = 3.5.
        teff = rng.normal(4700, 300, n)
        logg = 2.5 + (teff - 4700) / 600 + rng.normal(0, 0.35, n)
        logg[(logg < GIANT_LOGG_RANGE[0]) | (logg > GIANT_LOGG_RANGE[1])] = np.nan
        fe_h = rng.normal(-0.25, 0.3, n)
        alpha = np.clip(-0.2 * fe_h + rng.normal(0.05, 0.06, n), -0.2, 0.5)
        return np.column_stack([teff, logg, fe_h, alpha])
    with np.load(labels_path) as d:
        a = np.column_stack([d["a_teff"], d["a_logg"], d["a_alpha_m"]])
        b = np.column_stack([d["b_teff"], d["b_fe_h"], d["b_alpha_m"]])
    a = a[np.isfinite(a).all(axis=1)]
    b = b[np.isfinite(b).all(axis=1)]
    pick = a[rng.integers(0, len(a), n)]
    scale = np.array([100.0, 0.05])  # 100 K ~ 0.05 dex in [α/M]
    tree = cKDTree(b[:, [0, 2]] / scale)
    # k nearest, one chosen at random, so repeated (Teff, α) draws do not all share one [Fe/H]
    _, idx = tree.query(pick[:, [0, 2]] / scale, k=8)
    fe_h = b[idx[np.arange(n), rng.integers(0, 8, n)], 1]
    return np.column_stack([pick[:, 0], pick[:, 1], fe_h, pick[:, 2]])


def _dwarfs(n: int, rng: np.random.Generator, teff_range: tuple[float, float]) -> np.ndarray:
    """(n, 4) main-sequence TEFF, LOGG, FE_H, ALPHA_M: log g falls from ~4.75 to ~4.2 with Teff."""
    teff = rng.uniform(*teff_range, n)
    x = (teff - 3500.0) / 3500.0
    logg = 4.85 - 0.65 * x**1.5 + rng.normal(0, 0.06, n)
    fe_h = rng.normal(-0.1, 0.22, n)
    alpha = np.clip(-0.25 * fe_h + rng.normal(0.0, 0.04, n), -0.2, 0.4)
    return np.column_stack([teff, logg, fe_h, alpha])


def _hot_dwarfs(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) A/F main-sequence TEFF 6,900–9,800 K, LOGG ≈ 4.2 (± 0.1), FE_H, ALPHA_M ≈ 0."""
    teff = rng.uniform(6900.0, 9800.0, n)
    logg = 4.25 - 0.1 * (teff - 6900.0) / 2900.0 + rng.normal(0, 0.1, n)
    fe_h = rng.normal(-0.05, 0.2, n)
    alpha = np.clip(rng.normal(0.0, 0.04, n), -0.2, 0.4)
    return np.column_stack([teff, logg, fe_h, alpha])


def sample_labels(
    n: int,
    source: SpectrumSource,
    rng: np.random.Generator,
    population: Mapping[str, float] | None = None,
    dr17_labels: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` stars' true labels inside ``source.label_box``.

    Returns ``(labels (n, L) in source.label_names order, group (n,) str)``. ``population`` maps
    ``giants``/``dwarfs``/``cool_dwarfs`` (and ``hot_dwarfs``, 6,900–9,800 K, drawn only when asked
    for, e.g. for BOSS's generator) to fractions (normalised; a population with no room in the
    label box gets none). Labels other than TEFF, LOGG, FE_H, ALPHA_M are drawn uniformly
    inside the box (element abundances X_FE around ALPHA_M for α elements).
    """
    population = dict(population or {"giants": 0.7, "dwarfs": 0.2, "cool_dwarfs": 0.1})
    # hot dwarfs are a fourth category only when asked for: the other three's draws stay as they were
    pops = (*POPULATIONS, HOT_DWARFS) if population.get(HOT_DWARFS) else POPULATIONS
    unknown = set(population) - set(POPULATIONS) - {HOT_DWARFS}
    if unknown:
        raise InputDataError(f"unknown populations {sorted(unknown)}; known: {(*POPULATIONS, HOT_DWARFS)}")
    lo, hi = source.label_box
    names = list(source.label_names)
    frac = np.array([population.get(p, 0.0) for p in pops], float)
    if frac.sum() <= 0:
        raise InputDataError("population fractions must sum to a positive number")
    counts = rng.multinomial(n, frac / frac.sum())
    base = {"TEFF": 0, "LOGG": 1, "FE_H": 2, "ALPHA_M": 3}
    out, groups = [], []
    for pop, k in zip(pops, counts, strict=True):
        got: list[np.ndarray] = []
        need, tries = int(k), 0
        while need > 0:
            tries += 1
            if tries > 50:
                raise InputDataError(
                    f"population {pop!r} hardly overlaps the source's label box {lo}–{hi}; "
                    "give it fraction 0"
                )
            m = max(4 * need, 64)
            if pop == "giants":
                core = _giants_from_dr17(m, rng, Path(dr17_labels) if dr17_labels else None)
            elif pop == "dwarfs":
                core = _dwarfs(m, rng, (4200.0, 6900.0))
            elif pop == HOT_DWARFS:
                core = _hot_dwarfs(m, rng)
            else:
                core = _dwarfs(m, rng, (3500.0, 4200.0))
            lab = rng.uniform(lo, hi, size=(m, len(names)))
            for j, name in enumerate(names):
                if name in base:
                    lab[:, j] = core[:, base[name]]
                elif name.endswith("_FE"):
                    alpha_el = name[:-3] in {"O", "MG", "SI", "S", "CA", "TI"}
                    centre = core[:, 3] if alpha_el else 0.0
                    lab[:, j] = centre + rng.normal(0.0, 0.08, m)
            inside = ((lab >= lo) & (lab <= hi)).all(axis=1)
            got.append(lab[inside][:need])
            need -= len(got[-1])
        if k:
            out.append(np.concatenate(got))
            groups.append(np.full(k, pop))
    perm = rng.permutation(n)
    return np.concatenate(out)[perm], np.concatenate(groups)[perm]


# --------------------------------------------------------------------------------------------
# observation
# --------------------------------------------------------------------------------------------
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


def _throughput(
    wavelength: np.ndarray, rng: np.random.Generator, n: int, grid: Grid | None = None,
    calibrated: bool = False,
) -> np.ndarray:
    """(n, P) smooth per-segment flux multiplier, slightly different per star.

    Not flux calibrated (APOGEE): the instrument throughput, ~0.6–1, a quadratic in each
    detector's own [−1, 1] coordinate; 1 outside the detectors (gap pixels are masked anyway).
    Flux calibrated (BOSS): 1 + a ~2 % calibration ripple per arm.
    """
    grid = grid or get_instrument("apogee").grid
    out = np.ones((n, wavelength.size))
    for k, sl in enumerate(grid.segment_slices):
        a, b = sl.start, sl.stop
        x = np.linspace(-1.0, 1.0, b - a)
        if calibrated:
            c1, c2 = rng.normal(0, 0.02, (n, 1)), rng.normal(0, 0.02, (n, 1))
            out[:, a:b] = 1 + c1 * x + c2 * (x**2 - 1 / 3)
            continue
        c0 = 0.85 - 0.05 * k + rng.normal(0, 0.02, (n, 1))
        c1 = 0.08 * (1 - k) + rng.normal(0, 0.02, (n, 1))
        c2 = -0.12 + rng.normal(0, 0.02, (n, 1))
        out[:, a:b] = c0 + c1 * x + c2 * x**2
    return out


def _blackbody_shape(wavelength: np.ndarray, teff: np.ndarray, reference: float = 16000.0) -> np.ndarray:
    """(n, P) Planck B_λ(Teff) normalised to 1 at ``reference`` Å (the continuum of a normalised
    source; APOGEE 16,000 Å, BOSS 5,500 Å)."""
    c2 = 1.4387769e8  # h c / k in Å K
    lam = wavelength[None, :]
    t = teff[:, None]
    shape = lam**-5 / np.expm1(c2 / (lam * t))
    ref = reference**-5 / np.expm1(c2 / (reference * t))
    return shape / ref


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


@dataclass
class SimulatedSurvey:
    """Arrays of a simulated survey on the instrument's native grid (P pixels: APOGEE 8575, BOSS
    4648); labels in ``label_names`` order."""

    flux: np.ndarray  # (N, P) float32, raw (continuum kept)
    error: np.ndarray  # (N, P) float32 (APOGEE 1e10, BOSS inf where there is no data)
    bitmask: np.ndarray  # (N, P) int32, the instrument's bitmask (APOGEE_PIXMASK, SPPIXMASK)
    labels: np.ndarray  # (N, L) training labels (noisy, MISSING where absent)
    label_errors: np.ndarray  # (N, L) σ of the training-label noise (MISSING where absent)
    true_labels: np.ndarray  # (N, L)
    snr: np.ndarray  # (N,)
    group: np.ndarray  # (N,) str
    apogee_id: np.ndarray  # (N,) str: the simulated star's identifier (any instrument)
    label_names: tuple[str, ...]
    extinction_h: np.ndarray  # (N,) A_H of the reddening tilt, mag
    instrument: Instrument | None = None  # None: APOGEE

    def __post_init__(self) -> None:
        if self.instrument is None:
            self.instrument = get_instrument("apogee")

    def __len__(self) -> int:
        return len(self.flux)

    @property
    def grid(self) -> Grid:
        """The native grid of :attr:`instrument` (the spectra's pixels)."""
        return self.instrument.grid

    @property
    def wavelength(self) -> np.ndarray:
        """(P,) vacuum Å."""
        return self.instrument.wavelength

    @property
    def label_units(self) -> tuple[str, ...]:
        return tuple(label_unit(n) for n in self.label_names)

    def write_hdf5(self, path: str | Path) -> Path:
        """Write the project's HDF5 dataset (true labels as ``meta/true_<LABEL>``; the grid and
        instrument stored with the spectra)."""
        from starlabels.data.hdf5 import DatasetWriter

        path = Path(path)
        with DatasetWriter(path, **self.writer_settings()) as writer:
            self.append_to(writer)
        return path

    def writer_settings(self) -> dict:
        """Keyword arguments of :class:`~starlabels.data.hdf5.DatasetWriter` for this survey."""
        if self.instrument.name == "apogee":
            where = {"n_pixels": self.grid.n_pixels, "grid": "apstar"}
        else:
            where = {"n_pixels": None, "grid": self.grid, "instrument": self.instrument.name}
        return {**where, "label_names": list(self.label_names), "label_units": list(self.label_units)}

    def append_to(self, writer) -> None:
        """Append these stars to an open :class:`~starlabels.data.hdf5.DatasetWriter`."""
        meta = {
            "apogee_id": self.apogee_id.astype(str),
            "snr": self.snr.astype(np.float64),
            "group": self.group.astype(str),
            "ra": np.zeros(len(self)),
            "dec": np.zeros(len(self)),
            "source": np.full(len(self), "simulated", dtype=object).astype(str),
            "extinction_h": self.extinction_h.astype(np.float64),
        }
        for j, name in enumerate(self.label_names):
            meta[f"true_{name}"] = self.true_labels[:, j].astype(np.float64)
        writer.append(
            self.flux, self.error, self.bitmask, labels=self.labels,
            label_errors=self.label_errors, meta=meta,
        )

    def write_apstar(self, directory: str | Path) -> list[Path]:
        """Write one apStar-layout FITS file per star into ``directory`` (APOGEE only)."""
        from starlabels.io import write_apstar

        if self.instrument.name != "apogee":
            raise InputDataError(f"apStar files hold APOGEE spectra, not {self.instrument.name!r}: "
                                 "use write_mwm_star")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(len(self)):  # one file per star: I/O bound, not a numeric hot path
            # no RA/DEC cards: a simulated star has no position, and readers give NaN for it
            meta = {"APOGEE_ID": str(self.apogee_id[i]),
                    "SNR": float(self.snr[i]), "VHELIO": 0.0, "NVISITS": 1}
            p = directory / f"apStar-sim-{self.apogee_id[i]}.fits"
            write_apstar(p, self.flux[i], self.error[i], self.bitmask[i], meta, overwrite=True)
            paths.append(p)
        return paths

    def write_mwm_star(self, directory: str | Path, layout: str = "dr20") -> list[Path]:
        """Write one SDSS-V ``mwmStar`` file per star into ``directory`` (``layout`` ``"dr19"`` or
        ``"dr20"``; APOGEE or BOSS spectra in their APO extension; SDSS_ID = row number + 1)."""
        from starlabels.io.mwm_writer import write_mwm_star
        from starlabels.io.spectrum import Spectrum

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(len(self)):  # one file per star: I/O bound
            spec = Spectrum(self.instrument.name, self.wavelength, self.flux[i], self.error[i],
                            self.bitmask[i], {"SNR": float(self.snr[i]), "TELESCOPE": "apo25m"})
            header = {"SDSS_ID": i + 1}  # no position: RA/DEC cards left blank (read as NaN)
            if self.instrument.name == "apogee":
                header["APOGEE_ID"] = str(self.apogee_id[i])
            p = directory / f"mwmStar-sim-{self.apogee_id[i]}.fits"
            paths.append(write_mwm_star(p, [spec], header, layout=layout, overwrite=True))
        return paths

    def write_fits(self, directory: str | Path, layout: str = "dr20") -> list[Path]:
        """One FITS file per star: apStar for APOGEE, mwmStar (``layout``) otherwise."""
        if self.instrument.name == "apogee":
            return self.write_apstar(directory)
        return self.write_mwm_star(directory, layout)


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
        if isinstance(snr, np.ndarray):
            snr_arr = snr.astype(float)
        else:
            snr_arr = snr_distribution(n, rng, snr if snr is not None else (cfg.snr or obs.snr))
        flux, covered = self.source.noiseless(true_labels)
        if self.source.normalised:
            teff = true_labels[:, list(self.source.label_names).index("TEFF")]
            flux = flux * _blackbody_shape(self.wavelength, teff, obs.blackbody_reference)
        if extinction_h is None:
            max_ah = obs.max_extinction_h if cfg.max_extinction_h is None else cfg.max_extinction_h
            extinction_h = rng.uniform(0.0, max_ah, n)
        a_lambda = extinction_h[:, None] * (self.wavelength[None, :] / 16500.0) ** -obs.extinction_exponent
        scale = 10 ** rng.uniform(1.8, 2.8, (n, 1))
        calibrated = obs.recipe == "optical"
        flux = flux * _throughput(self.wavelength, rng, n, self.instrument.grid, calibrated) \
            * 10 ** (-0.4 * a_lambda) * scale
        flux = np.where(covered, flux, 0.0)

        med = np.nanmedian(np.where(covered, flux, np.nan), axis=1, keepdims=True)
        if not np.isfinite(med).all() or (med <= 0).any():
            raise InputDataError("spectrum source returned a spectrum with no positive flux")
        if calibrated:  # photon noise of the counts through the spectrograph, plus sky background
            t = boss_throughput(self.wavelength)[None, :]
            counts, med_c = flux * t, med * np.median(t)
            sigma = np.sqrt(np.clip(counts, 1e-6 * med_c, None) * med_c
                            + obs.sky_background * med_c**2) / t / snr_arr[:, None]
        else:
            sigma = np.sqrt(np.clip(flux, 1e-6 * med, None) * med) / snr_arr[:, None]
        observed = flux + sigma * rng.standard_normal(flux.shape)

        mask = np.zeros(flux.shape, dtype=np.int32)
        mask[~covered] |= obs.bit("gap")
        sky = self.sky[None, :] & covered
        observed += np.where(sky, cfg.sky_residual * sigma * rng.standard_normal(flux.shape), 0.0)
        mask[sky] |= obs.bit("sky")
        hits = (rng.random(flux.shape) < cfg.bad_pixel_fraction) & covered
        cosmic = hits & (rng.random(flux.shape) < 0.5)
        dead = hits & ~cosmic
        observed[cosmic] += 20.0 * sigma[cosmic]
        observed[dead] = 0.0
        mask[cosmic] |= obs.bit("cosmic")
        mask[dead] |= obs.bit("badpix")
        observed = np.where(covered, observed, 0.0)
        error = np.where(covered, sigma, 1e10 if obs.recipe == "hband" else obs.bad_error)

        train, err = self._training_labels(true_labels, group, rng)
        return SimulatedSurvey(
            flux=observed.astype(np.float32), error=error.astype(np.float32), bitmask=mask,
            labels=train, label_errors=err, true_labels=true_labels, snr=snr_arr,
            group=np.asarray(group).astype(str), apogee_id=np.asarray(apogee_id).astype(str),
            label_names=tuple(self.source.label_names), extinction_h=extinction_h,
            instrument=self.instrument,
        )

    def _training_labels(
        self, true_labels: np.ndarray, group: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
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
