"""starlabels' own synthetic spectra on any instrument's grid, for tests, demos and benchmarks.

**This is a test/demo generator, not a stellar atmosphere model.** Line strengths follow a
simple parametric recipe chosen so that every label leaves a smooth, known imprint on the
spectrum; nothing here is fitted to real stars or suitable for science. It needs no external
data.

One class, :class:`SyntheticGenerator`, parameterised by an instrument
(``starlabels.instruments.get("apogee" | "boss")`` or any :class:`~starlabels.core.Instrument`):
spectra are made on its native grid (APOGEE: the 8575-pixel apStar grid; BOSS: the 4648-pixel
coadd grid, 3,566–10,399 Å, of which 3,600–10,400 Å has data), its defects flagged with its own
bitmask (:mod:`starlabels.data.observing`), with the line list of its band
(:mod:`starlabels.data.line_lists`; fixed by ``seed``):

* **Lines.** Each line *i* of species *s* has a peak optical depth
  ``log10 τ_i = log_s_i + [X/H]_s + a_i (θ − θ0) + q_i (θ − θ0)² + b_i (log g − 2.5)`` with
  θ = 5040 K / Teff, θ0 = 5040/4750, ``[X/H] = X_FE + FE_H`` for an element, ``FE_H`` for iron and
  0 for hydrogen (``q`` ≠ 0 only for optical hydrogen lines, which peak near 9,500 K). Profiles are
  a Gaussian core (intrinsic width ``sigma_v`` km/s) plus a Lorentzian wing whose weight grows
  with log g (pressure broadening), both tapered to zero at a finite distance. The flux is
  ``exp(−Σ τ φ)`` (optical: ``f + (1 − f) exp(−Σ τ φ)`` with a residual ``f`` = 0.15, so strong
  cores are not black) on an oversampled grid, convolved with a Gaussian instrumental profile of
  resolving power R (APOGEE 22,500, BOSS 2,000) and averaged back to pixels.
* **H band (APOGEE).** Atomic lines of Fe and of each element in ``elements``: real-ish H-band
  wavelengths where known plus deterministic pseudo-random lines per element; CO band heads (C),
  OH (O), CN (N) strengthening steeply as Teff falls; Brackett lines growing with Teff.
* **Optical (BOSS).** Balmer and Paschen series (strongest near 9,500 K, weaker in cooler
  stars, wings growing with log g), Ca II H&K, the Ca II triplet (cores stronger at low log g,
  wings at high log g, all scaling with [Ca/H]), Mg b and Na D (pressure wings growing with
  log g), a pseudo-random metal-line forest denser in the blue, and molecular bands (TiO, CH, CN,
  MgH).
* **Continuum.** APOGEE: a blackbody slope at Teff times a per-detector throughput with a per-star
  random quadratic ripple, scaled by the star's H magnitude to apStar-like flux (~1e2–1e3,
  "1e-17 erg/s/cm²/Å"). BOSS (flux calibrated): a blackbody slope normalised at 5,500 Å,
  reddened by A_λ = A_H (λ/16,500 Å)^−1.6 (A_V up to ~0.9 mag, in ``meta["A_V"]``), a ~2 % per-arm
  calibration ripple, scaled by a G magnitude (13–17.5).
* **Noise.** Photon-like: σ ∝ sqrt(flux) (BOSS: of the detected counts, flux × the two-arm
  throughput, plus sky background, so the noise grows at the ends and at the dichroic), scaled
  so that the median S/N over pixels with data equals the requested SNR; flux = noise-free flux
  + σ·N(0, 1) with the same σ as the ``error`` array.
* **Defects, flagged with the instrument's bits.** Gaps (APOGEE: apStar pixels outside the three
  detectors, flux ``gap_value``, BADPIX; BOSS: below 3,600 Å, NODATA, error inf), bad-pixel
  clusters (BADPIX / FULLREJECT: flux linearly interpolated over, error 1e13 / inf), cosmic rays
  (CRPIX / COMBINEREJ: positive spikes), sky-line residuals at sky lines shifted by −VHELIO into
  the star's rest frame (SIG_SKYLINE / BRIGHTSKY, inflated error and residual flux; BOSS: the
  bright optical lines and an OH forest past 6,800 Å, flagged where the residual exceeds 3σ), and
  for APOGEE persistence in the blue detector of some stars (PERSIST_LOW/MED/HIGH, not rejected
  by default).

With ``n_visits > 0`` each star is also observed as separate visits (each at SNR/√n_visits,
sky lines at each visit's own velocity) and the combined spectrum is their inverse-variance
mean over unrejected visit pixels, with the OR of the visit bitmasks.

Everything is vectorised over stars (stars are processed in chunks, lines through sparse
profile matrices); no Python loop runs per star except when writing files
(:mod:`starlabels.data.synthetic_io`).

This module holds the generator's line list, line spectra and labels; continuum, noise and
defects are in :mod:`starlabels.data.synthetic_observation`, label-box masks in
:mod:`starlabels.data.synthetic_masks`, the result type in :mod:`starlabels.data.synthetic_spectra`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import sparse
from scipy.ndimage import gaussian_filter1d

from starlabels.constants import MISSING
from starlabels.core import Grid, Instrument, PixelBitmask
from starlabels.core import get as get_instrument
from starlabels.data.line_lists import (
    CO_BANDHEADS,
    KIND_ATOMIC,
    KIND_HYDROGEN,
    KIND_MOLECULAR,
    REAL_LINES_AIR,
    STRENGTH_OFFSET,
    THETA0,
    air_to_vacuum,
    balmer_wavelength,
    brackett_wavelength,
    build_lines,
    paschen_wavelength,
)
from starlabels.data.observing import ObservingModel, boss_throughput, observing_model
from starlabels.data.synthetic_io import (
    NOMINAL_ERRORS,
    write_apstar_files,
    write_label_catalog,
    write_mwm_star_files,
)
from starlabels.data.synthetic_masks import LOGG0, GeneratorMasks
from starlabels.data.synthetic_observation import C_KMS, GeneratorObservation
from starlabels.data.synthetic_spectra import SyntheticSpectra, apogee_id
from starlabels.errors import InputDataError

__all__ = [
    "ALPHA_ELEMENTS", "BAD_ERROR", "CO_BANDHEADS", "DEFAULT_ELEMENTS", "KIND_ATOMIC", "KIND_HYDROGEN",
    "KIND_MOLECULAR", "NOMINAL_ERRORS", "REAL_LINES_AIR", "STRENGTH_OFFSET", "SyntheticGenerator",
    "SyntheticSpectra", "air_to_vacuum", "balmer_wavelength", "brackett_wavelength", "paschen_wavelength",
    "write_apstar_files", "write_label_catalog", "write_mwm_star_files",
]

#: default elements; each gives a label ``<X>_FE``
DEFAULT_ELEMENTS: tuple[str, ...] = (
    "C", "N", "O", "NA", "MG", "AL", "SI", "S", "K", "CA", "TI", "V", "CR", "MN", "CO", "NI",
)
#: rough α-elements (enhanced at low [Fe/H] in :meth:`SyntheticGenerator.sample_labels`)
ALPHA_ELEMENTS = frozenset({"O", "MG", "SI", "S", "CA", "TI"})
BAD_ERROR = 1.0e13  # error of APOGEE BADPIX pixels, as DR17 apStar files (~1e13)


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _sub_pixel_log(grid: Grid, k: int) -> tuple[np.ndarray, float]:
    """log10 λ of ``k`` sub-pixels per pixel (centred on the pixels) and the mean sub-pixel step
    in log10 λ. Exact for a log-linear grid; interpolated in log λ for any other."""
    n = grid.n_pixels
    frac = np.arange(n * k) / k - (k - 1) / (2 * k)
    if grid.log_linear is not None:
        crval, cdelt = grid.log_linear
        return crval + cdelt * frac, cdelt / k
    log_w = np.log10(grid.wavelength)
    step = np.diff(log_w)
    # linear extrapolation by half a pixel at both ends
    sub = np.interp(frac, np.arange(n), log_w)
    sub = np.where(frac < 0, log_w[0] + frac * step[0], sub)
    sub = np.where(frac > n - 1, log_w[-1] + (frac - n + 1) * step[-1], sub)
    return sub, float(np.median(step)) / k


class SyntheticGenerator(GeneratorMasks, GeneratorObservation):
    """Parametric spectra whose lines respond to Teff, log g, [Fe/H] and [X/Fe], on any instrument.

    A test/demo generator, not a stellar atmosphere model (see the module docstring).

    Parameters:
        elements: element symbols (upper case); each adds a label ``<X>_FE``. C owns the CO/CH
            lines, N the CN lines, O the OH lines and Ti the TiO bands when present.
        seed: fixes the pseudo-random line list and sky-line positions (not the stars: those
            come from the ``rng`` given to :meth:`sample_labels` and :meth:`generate`).
        instrument: ``"apogee"`` (default), ``"boss"``, or any :class:`~starlabels.core.Instrument`
            (``starlabels.instruments.from_wavelength``): spectra are made on its native grid with
            its bitmask's bits for defects and the line recipe of its band
            (:mod:`starlabels.data.line_lists`).
        resolution: instrumental resolving power R = λ/FWHM (default: the instrument's).
        lines_per_element: pseudo-random atomic lines added per element (Fe gets more).
        oversample: sub-pixels per pixel for the line computation (default: APOGEE 3, BOSS 5).
    """

    #: APOGEE label box used by :meth:`continuum_pixels` and :meth:`element_windows` (X_FE for all
    #: X); other instruments change TEFF (:attr:`default_ranges`, BOSS 3,500–10,000 K)
    DEFAULT_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "TEFF": (3500.0, 7000.0), "LOGG": (0.0, 5.2), "FE_H": (-2.0, 0.5), "X_FE": (-0.5, 0.8),
    }

    def __init__(
        self,
        elements: Sequence[str] = DEFAULT_ELEMENTS,
        seed: int = 0,
        *,
        instrument: str | Instrument = "apogee",
        resolution: float | None = None,
        lines_per_element: int = 8,
        oversample: int | None = None,
    ):
        self.elements = tuple(str(e).upper() for e in elements)
        if len(set(self.elements)) != len(self.elements) or "FE" in self.elements or "H" in self.elements:
            raise InputDataError(f"elements must be distinct and exclude FE and H, got {elements}")
        try:
            self.instrument: Instrument = get_instrument(instrument)
        except ValueError as exc:
            raise InputDataError(str(exc)) from None
        self.observing: ObservingModel = observing_model(self.instrument)
        obs = self.observing
        self.seed = int(seed)
        self.resolution = float(resolution or self.instrument.resolving_power or obs.default_resolution)
        self.oversample = int(oversample or obs.oversample)
        self.species = ("H", "FE", *self.elements)
        self.label_names: tuple[str, ...] = ("TEFF", "LOGG", "FE_H", *(f"{e}_FE" for e in self.elements))
        self.label_units: tuple[str, ...] = ("K", *(["dex"] * (len(self.label_names) - 1)))
        self.default_ranges: dict[str, tuple[float, float]] = {**self.DEFAULT_RANGES, "TEFF": obs.teff_range}
        self.grid: Grid = self.instrument.grid
        self.wavelength = self.grid.wavelength
        k = self.oversample
        self._sub_log, sub_step = _sub_pixel_log(self.grid, k)
        self.sub_wavelength = 10.0**self._sub_log
        # instrumental Gaussian σ in sub-pixels: FWHM = λ/R in ln λ
        self._sigma_inst_sub = (1.0 / self.resolution / (2 * np.sqrt(2 * np.log(2)))) / (
            np.log(10) * sub_step
        )
        self._detector = obs.usable()
        if not self._detector.any():
            raise InputDataError(f"instrument {self.instrument.name!r}: no pixel inside its segments")
        self.lines = build_lines(obs.recipe, self.grid, self._detector, self.species,
                                 int(lines_per_element), self.seed)
        self._phi_core, self._phi_wing = self._profile_matrices()
        self.sky_wavelength, self.sky_strength = obs.sky_lines(self.seed)
        # relative throughput shaping the noise of flux-calibrated spectra (BOSS); None: flat
        self._throughput = boss_throughput(self.wavelength) if obs.recipe == "optical" else None

    @property
    def covered(self) -> np.ndarray:
        """(P,) bool: native-grid pixels with data (inside a segment and the instrument's coverage)."""
        return self._detector.copy()

    @property
    def bitmask_definition(self) -> PixelBitmask:
        """The instrument's default :class:`~starlabels.core.PixelBitmask` (the bits of ``bitmask``)."""
        return self.observing.bitmask

    # -- line list -----------------------------------------------------------------------------

    def line_element(self) -> np.ndarray:
        """(n_lines,) species name of each line in :attr:`lines` (``"H"``, ``"FE"``, ``"MG"``…)."""
        return np.asarray(self.species)[self.lines["species"]]

    def _sparse_profiles(self, centre: np.ndarray, half_width: np.ndarray, func) -> sparse.csr_matrix:
        """(n_lines, n_sub) sparse matrix of ``func(x, line)`` over |x| ≤ half_width (Å)."""
        sub = self.sub_wavelength
        start = np.searchsorted(sub, centre - half_width)
        stop = np.searchsorted(sub, centre + half_width)
        lengths = stop - start
        line_idx = np.repeat(np.arange(len(centre)), lengths)
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        cols = start[line_idx] + offsets
        vals = func(sub[cols] - centre[line_idx], line_idx)
        keep = vals > 0
        return sparse.csr_matrix((vals[keep], (line_idx[keep], cols[keep])), shape=(len(centre), len(sub)))

    def _profile_matrices(self) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
        ln = self.lines
        sig = ln["wavelength"] * ln["sigma_v"] / C_KMS
        core = self._sparse_profiles(ln["wavelength"], 5.0 * sig,
                                     lambda x, i: np.exp(-0.5 * (x / sig[i]) ** 2))
        h = ln["wing_hwhm"]
        reach = np.where(h > 0, np.maximum(40.0 * h, 4.0), 0.0)

        def wing(x, i):
            t = np.clip(1.0 - (x / np.maximum(reach[i], 1e-9)) ** 2, 0.0, None) ** 2
            return h[i] ** 2 / (x**2 + h[i] ** 2) * t

        return core, self._sparse_profiles(ln["wavelength"], reach, wing)

    # -- labels --------------------------------------------------------------------------------

    def _check_labels(self, labels: Any) -> np.ndarray:
        lab = np.asarray(labels, dtype=float)
        if lab.ndim == 1:
            lab = lab[None]
        if lab.ndim != 2 or lab.shape[1] != len(self.label_names):
            raise InputDataError(
                f"labels must be (N, {len(self.label_names)}) for {list(self.label_names)}, got {lab.shape}"
            )
        if not np.all(np.isfinite(lab)) or np.any(lab == MISSING):
            raise InputDataError("labels must be finite and not MISSING")
        if np.any(lab[:, 0] <= 1000.0):
            raise InputDataError("TEFF must be > 1000 K")
        return lab

    def sample_labels(
        self, n: int, rng: np.random.Generator | int | None = None, population: str = "giants"
    ) -> np.ndarray:
        """(n, L) plausible labels: ``"giants"`` (red giant branch + clump), ``"dwarfs"`` (main
        sequence 3600–6800 K; to 200 K below the box's top for a wider box, e.g. 9,800 K for BOSS)
        or ``"mixed"`` (each star a giant or a dwarf with probability ½).

        [Fe/H] ~ N(−0.2, 0.35) clipped to [−2, 0.5]; α elements +0.3 dex at [Fe/H] < −1 tapering
        to 0 at solar, plus a high-α sequence; giants have C depleted and N enhanced (mixing);
        every X_FE gets N(0, 0.07) scatter.
        """
        rng = _rng(rng)
        if population not in ("giants", "dwarfs", "mixed"):
            raise InputDataError(f"population must be 'giants', 'dwarfs' or 'mixed', got {population!r}")
        n = int(n)
        feh = np.clip(rng.normal(-0.2, 0.35, n), -2.0, 0.5)
        if population == "giants":
            giant = np.ones(n, bool)
        elif population == "dwarfs":
            giant = np.zeros(n, bool)
        else:
            giant = rng.random(n) < 0.5
        # giants: RGB with a red clump
        logg_g = rng.uniform(0.8, 3.6, n)
        teff_g = 4750.0 + (logg_g - 2.5) * 600.0 - 200.0 * feh + rng.normal(0, 80, n)
        clump = rng.random(n) < 0.25
        logg_g = np.where(clump, rng.normal(2.45, 0.08, n), logg_g)
        teff_g = np.where(clump, rng.normal(4750, 90, n) - 150.0 * feh, teff_g)
        # dwarfs: main sequence
        teff_lo, teff_hi = self.default_ranges["TEFF"]
        teff_d = rng.uniform(3600.0, teff_hi - 200.0 if teff_hi > 7000.0 else 6800.0, n)
        logg_d = 4.44 + (5777.0 - teff_d) * 1.7e-4 + rng.normal(0, 0.08, n)
        teff = np.where(giant, teff_g, teff_d)
        logg = np.clip(np.where(giant, logg_g, logg_d), 0.0, 5.2)
        teff = np.clip(teff, teff_lo, teff_hi)
        alpha = np.clip(-0.3 * feh, 0.0, 0.3) + np.where(
            (feh > -1.0) & (feh < 0.0) & (rng.random(n) < 0.3), 0.2, 0.0
        )
        cols = [teff, logg, feh]
        for el in self.elements:
            x = rng.normal(0.0, 0.07, n)
            if el in ALPHA_ELEMENTS:
                x = x + alpha
            if el == "C":
                x = x - np.where(giant, 0.15, 0.0)
            if el == "N":
                x = x + np.where(giant, 0.3, 0.0)
            if el == "MN":
                x = x + np.clip(0.2 * feh, -0.3, 0.0)
            cols.append(x)
        return np.column_stack(cols)

    # -- spectra -------------------------------------------------------------------------------

    def _line_strengths(self, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, n_lines) peak optical depth of the Gaussian core and of the Lorentzian wing."""
        teff, logg, feh = lab[:, 0], lab[:, 1], lab[:, 2]
        xh = np.zeros((len(lab), len(self.species)))
        xh[:, 1] = feh
        xh[:, 2:] = lab[:, 3:] + feh[:, None]
        ln = self.lines
        log_tau = (ln["log_strength"] + xh[:, ln["species"]]
                   + ln["teff_coef"] * (5040.0 / teff[:, None] - THETA0)
                   + ln["logg_coef"] * (logg[:, None] - LOGG0))
        if np.any(ln["teff_coef2"]):
            log_tau = log_tau + ln["teff_coef2"] * (5040.0 / teff[:, None] - THETA0) ** 2
        tau = 10.0**log_tau
        wing = tau * ln["wing_weight"] * 10.0 ** (ln["wing_logg_coef"] * (logg[:, None] - LOGG0))
        return tau, wing

    def _absorb(self, tau_core: np.ndarray, tau_wing: np.ndarray) -> np.ndarray:
        """(N, P) normalised line spectrum from per-line optical depths (N, n_lines)."""
        opacity = np.asarray((self._phi_core.T @ tau_core.T).T + (self._phi_wing.T @ tau_wing.T).T)
        transmitted = np.exp(-opacity)
        floor = self.observing.line_floor
        if floor:
            transmitted = floor + (1.0 - floor) * transmitted
        sub_flux = gaussian_filter1d(transmitted, self._sigma_inst_sub, axis=1, mode="nearest", truncate=4.0)
        return sub_flux.reshape(len(sub_flux), -1, self.oversample).mean(axis=2)

    def line_spectrum(self, labels: Any, chunk: int = 128) -> np.ndarray:
        """(N, P) noise-free continuum-normalised spectra (1 = continuum) for labels (N, L)."""
        lab = self._check_labels(labels)
        out = np.empty((len(lab), self.grid.n_pixels))
        for s in range(0, len(lab), chunk):  # chunks of stars bound the (chunk, 3·P) temporaries
            out[s:s + chunk] = self._absorb(*self._line_strengths(lab[s:s + chunk]))
        return out

    def generate(
        self,
        labels: Any,
        snr: float | Sequence[float] | np.ndarray = 100.0,
        rng: np.random.Generator | int | None = None,
        *,
        n_visits: int = 0,
        defects: bool = True,
        gap_value: float = 0.0,
        meta: Mapping[str, Any] | None = None,
        chunk: int = 128,
    ) -> SyntheticSpectra:
        """Spectra for ``labels`` (N, L) at signal-to-noise ``snr`` (scalar or (N,)).

        ``rng`` (Generator or seed; None = unseeded) draws the noise, defects, continuum ripple
        and header values; the same labels, snr and seed give identical spectra. ``defects=False``
        leaves out bad pixels, cosmic rays, sky lines and persistence (gaps are always there).
        ``meta`` overrides header columns ((N,) arrays, e.g. ``{"APOGEE_ID": ids}``).
        """
        lab = self._check_labels(labels)
        N = len(lab)
        snr_arr = np.broadcast_to(np.asarray(snr, dtype=float), (N,)).copy()
        if not np.all(np.isfinite(snr_arr)) or np.any(snr_arr <= 0):
            raise InputDataError("snr must be finite and > 0")
        rng = _rng(rng)
        V = int(n_visits)
        # header values
        ra = rng.uniform(0.0, 360.0, N)
        dec = np.degrees(np.arcsin(rng.uniform(-0.5, 1.0, N)))
        hband = self.observing.recipe == "hband"
        a_h = None
        if hband:
            mag = rng.uniform(9.0, 12.2, N)
            theta = 5040.0 / lab[:, 0]
            jk = np.clip(1.62 * theta - 1.04, 0.1, 1.4)
            vhelio = rng.normal(0.0, 40.0, N)
            hdr: dict[str, np.ndarray] = {
                "APOGEE_ID": np.array([apogee_id(a, d) for a, d in zip(ra, dec, strict=True)]),
                "RA": ra, "DEC": dec, "SNR": snr_arr.copy(), "VHELIO": vhelio,
                "NVISITS": np.full(N, max(V, 1), np.int32),
                "J": mag + 0.75 * jk, "H": mag, "K": mag - 0.25 * jk,
            }
        else:  # optical (flux calibrated): G magnitude, reddening, SDSS-V style identifiers
            mag = rng.uniform(13.0, 17.5, N)
            vhelio = rng.normal(0.0, 40.0, N)
            a_h = rng.uniform(0.0, self.observing.max_extinction_h, N)
            hdr = {
                "SDSS_ID": rng.integers(10**8, 10**9, N).astype(np.int64),
                "RA": ra, "DEC": dec, "SNR": snr_arr.copy(), "VHELIO": vhelio,
                "NVISITS": np.full(N, max(V, 1), np.int32), "G": mag,
                "A_V": a_h * (5500.0 / 16500.0) ** -self.observing.extinction_exponent,
                "TELESCOPE": np.full(N, "apo25m"),
            }
        for k, v in (meta or {}).items():
            a = np.asarray(v)
            if a.shape != (N,):
                raise InputDataError(f"meta[{k!r}] has shape {a.shape}, expected ({N},)")
            hdr[k.upper()] = a

        continuum = self._continuum(lab[:, 0], mag, rng, a_h)
        clean = self.line_spectrum(lab, chunk=chunk) * continuum
        if V <= 0:
            flux, error, bitmask, masks = self._observe(clean, continuum, snr_arr, -vhelio, rng, defects,
                                                        gap_value)
            visits = None
            snr_out = snr_arr
        else:
            rep = np.repeat(np.arange(N), V)
            bary = rng.normal(0.0, 15.0, N * V)
            vf, ve, vm, vmasks = self._observe(clean[rep], continuum[rep], snr_arr[rep] / np.sqrt(V),
                                               -vhelio[rep] + bary, rng, defects, gap_value)
            vf, ve, vm = (a.reshape(N, V, -1) for a in (vf, ve, vm))
            good = (vm & self.bitmask_definition.value()) == 0
            w = np.where(good, 1.0 / ve**2, 0.0)
            wsum = w.sum(axis=1)
            have = wsum > 0
            flux = np.where(have, (w * vf).sum(axis=1) / np.where(have, wsum, 1.0), vf.mean(axis=1))
            error = np.where(have, 1.0 / np.sqrt(np.where(have, wsum, 1.0)), self.observing.bad_error)
            bitmask = np.bitwise_or.reduce(vm, axis=1)
            bitmask[~have] |= self.observing.bit("badpix")
            masks = {k: v.reshape(N, V, -1).any(axis=1) for k, v in vmasks.items()}
            visits = {"flux": vf.astype(np.float32), "error": ve.astype(np.float32), "bitmask": vm}
            gp = (bitmask == 0)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(gp, clean / error, np.nan)
            snr_out = np.nanmedian(ratio, axis=1)
            hdr["SNR"] = snr_out
        return SyntheticSpectra(
            flux=flux.astype(np.float32), error=error.astype(np.float32), bitmask=bitmask.astype(np.int32),
            clean_flux=clean, continuum=continuum, labels=lab, label_names=self.label_names,
            label_units=self.label_units, snr=np.asarray(snr_out, float), meta=hdr, defects=masks,
            visits=visits, instrument=self.instrument,
        )

    def simulate(
        self, n: int, snr: float | np.ndarray = 100.0, seed: int = 0, population: str = "giants",
        **kwargs: Any,
    ) -> SyntheticSpectra:
        """Sample ``n`` label sets and generate their spectra, all from one ``seed``."""
        rng = np.random.default_rng(seed)
        return self.generate(self.sample_labels(n, rng, population), snr, rng, **kwargs)
