"""starlabels' own synthetic APOGEE-like spectra, for tests, demos and benchmarks.

**This is a test/demo generator, not a stellar atmosphere model.** Line strengths follow a
simple parametric recipe chosen so that every label leaves a smooth, known imprint on the
spectrum; nothing here is fitted to real stars or suitable for science. It needs no external
data.

Spectra are made on the 8575-pixel apStar grid (vacuum Å, ``grids.apstar_wavelength()``):

* **Lines.** Each line *i* of species *s* has a peak optical depth
  ``log10 τ_i = log_s_i + [X/H]_s + a_i (θ − θ0) + b_i (log g − 2.5)`` with θ = 5040 K / Teff,
  θ0 = 5040/4750, ``[X/H] = X_FE + FE_H`` for an element, ``FE_H`` for iron and 0 for
  hydrogen. Profiles are a Gaussian core (intrinsic width ``sigma_v`` km/s) plus a Lorentzian
  wing whose weight grows with log g (pressure broadening), both tapered to zero at a finite
  distance. The flux is ``exp(−Σ τ φ)`` on a 3× oversampled log-linear grid, convolved with a
  Gaussian instrumental profile of resolving power R (22,500) and averaged back to pixels.
* **Species.** Atomic lines of Fe and of each element in ``elements``: real-ish H-band
  wavelengths where known (e.g. Mg I 15740/15749/15766, Al I 16719/16751/16763, K I
  15163/15168, Ca I 16137–16197 Å; air values converted to vacuum) plus deterministic
  pseudo-random lines per element drawn from ``seed``. Molecular lines strengthen steeply as
  Teff falls: CO band heads (Δv = 3, 15582–16610 Å, belonging to C), OH doublets (O) and CN
  (N). Brackett hydrogen lines (n = 11…20 → 4; 16811, 16412, 16114, 15885, 15705 Å, …) grow
  with Teff and broaden with log g. Every line depends on exactly one element, so each element
  has its own lines (:meth:`SyntheticGenerator.element_windows`).
* **Continuum.** A blackbody slope at Teff times a per-detector throughput with a per-star
  random quadratic ripple, scaled by the star's H magnitude to apStar-like flux (~1e2–1e3,
  "1e-17 erg/s/cm²/Å").
* **Noise.** Photon-like: σ ∝ sqrt(flux), scaled so that the median S/N over detector pixels
  equals the requested SNR; flux = noise-free flux + σ·N(0, 1) with the same σ as the
  ``error`` array.
* **Defects, flagged with APOGEE_PIXMASK bits** (``starlabels.preprocess.bitmask``):
  detector gaps (apStar pixels outside ASPCAP's three ranges) flux ``gap_value`` (0, as in
  DR12–DR14 files; DR17 files have NaN there) and BADPIX; bad-pixel clusters (BADPIX: flux
  linearly interpolated over, error ~1e13, as DR17); cosmic rays (CRPIX: positive spikes);
  sky-line residuals (SIG_SKYLINE at sky-line positions shifted by −VHELIO into the star's rest
  frame: inflated error and residual flux); persistence in the blue detector of some stars
  (PERSIST_LOW/MED/HIGH: excess flux, not rejected by default).

With ``n_visits > 0`` each star is also observed as separate visits (each at SNR/√n_visits,
sky lines at each visit's own velocity) and the combined spectrum is their inverse-variance
mean over unrejected visit pixels, with the OR of the visit bitmasks.

Everything is vectorised over stars (stars are processed in chunks, lines through sparse
profile matrices); no Python loop runs per star except when writing files.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import sparse
from scipy.ndimage import gaussian_filter1d

from starlabels.constants import MISSING
from starlabels.errors import InputDataError
from starlabels.preprocess import grids
from starlabels.preprocess.bitmask import DEFAULT_REJECT_VALUE, PIXMASK_BITS

C_KMS = 299792.458
THETA0 = 5040.0 / 4750.0
LOGG0 = 2.5
R_H_CM = 109677.583  # Rydberg constant for hydrogen, cm^-1 (vacuum wavenumbers)
HC_K = 1.438777e8  # hc/k in Å·K

#: default elements; each gives a label ``<X>_FE``
DEFAULT_ELEMENTS: tuple[str, ...] = (
    "C", "N", "O", "NA", "MG", "AL", "SI", "S", "K", "CA", "TI", "V", "CR", "MN", "CO", "NI",
)
#: rough α-elements (enhanced at low [Fe/H] in :meth:`SyntheticGenerator.sample_labels`)
ALPHA_ELEMENTS = frozenset({"O", "MG", "SI", "S", "CA", "TI"})

#: real-ish H-band atomic lines, air wavelengths in Å (converted to vacuum on use)
REAL_LINES_AIR: dict[str, tuple[float, ...]] = {
    "FE": (15194.49, 15207.53, 15395.72, 15490.34, 15648.51, 15964.87, 16040.65, 16153.25,
           16165.03, 16486.67),
    "MG": (15740.72, 15748.99, 15765.84, 15879.57, 15886.26, 15954.48),
    "AL": (16718.96, 16750.56, 16763.36),
    "K": (15163.07, 15168.38),
    "SI": (15888.41, 15960.06, 16060.01, 16094.79, 16215.69, 16680.77),
    "CA": (16136.82, 16150.76, 16155.24, 16157.36, 16197.07),
    "TI": (15543.76, 15602.84, 15715.57, 16635.16),
    "MN": (15159.10, 15217.70, 15262.50),
    "NI": (15605.68, 16584.44, 16589.30, 16673.71),
    "NA": (16373.85, 16388.85),
    "S": (15422.28, 15469.82, 15478.48),
    "V": (15924.80,),
    "CR": (15680.06, 15860.21),
    "CO": (16757.64,),
    "C": (16021.70, 16890.40),
    "CU": (16005.70,),
    "P": (15711.50,),
    "CE": (15784.80,),
    "RB": (15289.50,),
}
#: per-element strength offset (dex) of its atomic lines: abundant, strong-lined elements high
STRENGTH_OFFSET: dict[str, float] = {
    "FE": 0.0, "MG": 0.3, "SI": 0.2, "AL": 0.3, "K": -0.2, "CA": -0.1, "TI": -0.4, "MN": -0.4,
    "NI": -0.3, "CR": -0.6, "V": -0.9, "CO": -0.8, "NA": -0.7, "S": -0.5, "C": -0.5,
}
#: CO Δv=3 band heads (3-0 … 8-5), vacuum Å
CO_BANDHEADS = (15582.0, 15780.0, 15982.0, 16189.0, 16397.0, 16610.0)
BAD_ERROR = 1.0e13  # error of BADPIX pixels, as DR17 apStar files (~1e13)

KIND_ATOMIC, KIND_MOLECULAR, KIND_HYDROGEN = 0, 1, 2
_BIT = {name: 1 << b for name, b in PIXMASK_BITS.items()}


def air_to_vacuum(wavelength_air: Any) -> np.ndarray:
    """Vacuum wavelength (Å) from air wavelength (Å), VALD/Piskunov formula."""
    w = np.asarray(wavelength_air, dtype=float)
    s2 = (1e4 / w) ** 2
    n = (1 + 0.00008336624212083 + 0.02408926869968 / (130.1065924522 - s2)
         + 0.0001599740894897 / (38.92568793293 - s2))
    return w * n


def brackett_wavelength(n_upper: Any) -> np.ndarray:
    """Vacuum wavelength (Å) of the hydrogen Brackett line n_upper → 4 (Rydberg formula)."""
    n = np.asarray(n_upper, dtype=float)
    return 1e8 / (R_H_CM * (1.0 / 16.0 - 1.0 / n**2))


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


@dataclass
class SyntheticSpectra:
    """Synthetic spectra on the apStar grid, with their true labels.

    Shapes: N stars, P = 8575 pixels, L labels, V visits.

    Attributes:
        flux: (N, P) float32 observed flux (noise, defects, gaps), ~1e2–1e3 "1e-17 erg/s/cm²/Å".
        error: (N, P) float32 1-σ error of ``flux`` (BAD_ERROR on BADPIX pixels and gaps).
        bitmask: (N, P) int32 APOGEE_PIXMASK.
        clean_flux: (N, P) float64 noise- and defect-free flux (gaps included).
        continuum: (N, P) float64 the continuum of ``clean_flux`` (no lines).
        labels: (N, L) float64 true labels (TEFF K, LOGG dex, FE_H and X_FE dex).
        label_names, label_units: the L names and units.
        snr: (N,) median S/N over good detector pixels (the requested SNR when no visits).
        meta: ``{name: (N,) array}`` header values: APOGEE_ID, RA, DEC (deg), SNR, VHELIO
            (km/s), NVISITS, J, H, K (mag).
        defects: ``{"gap", "badpix", "cosmic", "sky", "persistence": (N, P) bool}`` where each
            kind of defect was put.
        visits: None, or ``{"flux", "error", "bitmask": (N, V, P)}`` the individual visits.
    """

    flux: np.ndarray
    error: np.ndarray
    bitmask: np.ndarray
    clean_flux: np.ndarray
    continuum: np.ndarray
    labels: np.ndarray
    label_names: tuple[str, ...]
    label_units: tuple[str, ...]
    snr: np.ndarray
    meta: dict[str, np.ndarray]
    defects: dict[str, np.ndarray] = field(default_factory=dict)
    visits: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.flux.shape[0])

    @property
    def wavelength(self) -> np.ndarray:
        """(P,) vacuum Å of the apStar grid."""
        return grids.apstar_wavelength()

    @property
    def normalized_clean(self) -> np.ndarray:
        """(N, P) noise-free flux divided by its continuum (1 = no absorption)."""
        return self.clean_flux / self.continuum

    def star_meta(self, i: int) -> dict[str, Any]:
        """Header values of star ``i`` as Python scalars (for ``write_apstar``)."""
        return {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in self.meta.items()}

    def subset(self, index: Any) -> SyntheticSpectra:
        """The stars at ``index`` (int array, slice or bool mask)."""
        idx = np.arange(len(self))[index]
        return SyntheticSpectra(
            flux=self.flux[idx], error=self.error[idx], bitmask=self.bitmask[idx],
            clean_flux=self.clean_flux[idx], continuum=self.continuum[idx], labels=self.labels[idx],
            label_names=self.label_names, label_units=self.label_units, snr=self.snr[idx],
            meta={k: v[idx] for k, v in self.meta.items()},
            defects={k: v[idx] for k, v in self.defects.items()},
            visits=None if self.visits is None else {k: v[idx] for k, v in self.visits.items()},
        )


class SyntheticGenerator:
    """Parametric H-band spectra whose lines respond to Teff, log g, [Fe/H] and [X/Fe].

    A test/demo generator, not a stellar atmosphere model (see the module docstring).

    Parameters:
        elements: element symbols (upper case); each adds a label ``<X>_FE``. C owns the CO
            lines, N the CN lines and O the OH lines when present.
        seed: fixes the pseudo-random line list and sky-line positions (not the stars: those
            come from the ``rng`` given to :meth:`sample_labels` and :meth:`generate`).
        resolution: instrumental resolving power R = λ/FWHM.
        lines_per_element: pseudo-random atomic lines added per element (Fe gets 5×).
        oversample: sub-pixels per apStar pixel for the line computation.
    """

    #: label box used by :meth:`continuum_pixels` and :meth:`element_windows` (X_FE for all X)
    DEFAULT_RANGES: ClassVar[dict[str, tuple[float, float]]] = {
        "TEFF": (3500.0, 7000.0), "LOGG": (0.0, 5.2), "FE_H": (-2.0, 0.5), "X_FE": (-0.5, 0.8),
    }

    def __init__(
        self,
        elements: Sequence[str] = DEFAULT_ELEMENTS,
        seed: int = 0,
        *,
        resolution: float = 22500.0,
        lines_per_element: int = 8,
        oversample: int = 3,
    ):
        self.elements = tuple(str(e).upper() for e in elements)
        if len(set(self.elements)) != len(self.elements) or "FE" in self.elements or "H" in self.elements:
            raise InputDataError(f"elements must be distinct and exclude FE and H, got {elements}")
        self.seed = int(seed)
        self.resolution = float(resolution)
        self.oversample = int(oversample)
        self.species = ("H", "FE", *self.elements)
        self.label_names: tuple[str, ...] = ("TEFF", "LOGG", "FE_H", *(f"{e}_FE" for e in self.elements))
        self.label_units: tuple[str, ...] = ("K", *(["dex"] * (len(self.label_names) - 1)))
        self.wavelength = grids.apstar_wavelength()
        n = grids.APSTAR_N_PIXELS
        k = self.oversample
        self._sub_log = grids.APSTAR_CRVAL1 + grids.APSTAR_CDELT1 * (
            np.arange(n * k) / k - (k - 1) / (2 * k)
        )
        self.sub_wavelength = 10.0**self._sub_log
        # instrumental Gaussian σ in sub-pixels: FWHM = λ/R in ln λ
        self._sigma_inst_sub = (1.0 / self.resolution / (2 * np.sqrt(2 * np.log(2)))) / (
            np.log(10) * grids.APSTAR_CDELT1 / k
        )
        self.lines = self._build_lines(int(lines_per_element))
        self._phi_core, self._phi_wing = self._profile_matrices()
        srng = np.random.default_rng([self.seed, 1])
        lo, hi = self.wavelength[246], self.wavelength[8334]
        self.sky_wavelength = np.sort(srng.uniform(lo, hi, 48))
        self.sky_strength = srng.lognormal(0.0, 0.7, 48)
        self._detector = np.zeros(n, bool)
        for a, b in grids.APSTAR_DETECTOR_SEGMENTS:
            self._detector[a:b] = True

    # -- line list -----------------------------------------------------------------------------

    def _build_lines(self, per_element: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 0])
        lo, hi = self.wavelength[246] + 2.0, self.wavelength[8334] - 2.0
        rows: list[tuple] = []  # (wl, species, kind, log_s, a, b, sigma_v, hwhm, w0, c)
        sp = {s: i for i, s in enumerate(self.species)}

        def atomic(el: str, wl: np.ndarray, log_s: np.ndarray, a: np.ndarray) -> None:
            b = rng.uniform(-0.15, 0.05, len(wl))
            for w, s, ai, bi in zip(wl, log_s, a, b, strict=True):
                rows.append((w, sp[el], KIND_ATOMIC, s, ai, bi, 2.5, 0.08, 0.4, 0.25))

        for el in ("FE", *self.elements):
            n_rand = per_element * (5 if el == "FE" else 1)
            off = STRENGTH_OFFSET.get(el, -0.5)
            real = air_to_vacuum(REAL_LINES_AIR.get(el, ()))
            wl = np.concatenate([real, rng.uniform(lo, hi, n_rand)])
            log_s = off + rng.uniform(-1.0, 0.3, len(wl))
            a = rng.uniform(0.5, 2.0, len(wl))
            if el == "C":  # high-excitation C I: stronger in warmer stars
                a = np.full(len(wl), -1.5)
            if el == "K":  # low ionisation potential: very temperature sensitive
                a = a + 1.5
            atomic(el, wl, log_s, a)
        if "C" in sp:  # CO band heads: R-branch-like lines piling up at each head
            j = np.arange(1, 41)
            pop = np.log10((2 * j + 1) * np.exp(-j * (j + 1) / (2 * 15.0**2)))
            pop -= pop.max()
            for v, head in enumerate(CO_BANDHEADS):
                wl = head + 0.045 * j**2
                log_s = 0.1 - 0.2 * v + pop + rng.normal(0, 0.05, len(j))
                a = rng.uniform(4.5, 5.5, len(j))
                for w, s, ai in zip(wl, log_s, a, strict=True):
                    rows.append((w, sp["C"], KIND_MOLECULAR, s, ai, -0.1, 2.0, 0.0, 0.0, 0.0))
        if "O" in sp:  # OH doublets
            centres = rng.uniform(lo, hi, 40)
            split = rng.uniform(0.6, 3.0, 40)
            for c, d in zip(centres, split, strict=True):
                s, a = rng.uniform(-0.6, 0.3), rng.uniform(5.5, 6.5)
                for w in (c - d / 2, c + d / 2):
                    rows.append((w, sp["O"], KIND_MOLECULAR, s, a, 0.05, 2.0, 0.0, 0.0, 0.0))
        if "N" in sp:  # CN: many weak lines
            for w in rng.uniform(lo, hi, 120):
                rows.append((w, sp["N"], KIND_MOLECULAR, rng.uniform(-1.4, -0.5), rng.uniform(3.5, 4.5),
                             -0.1, 2.0, 0.0, 0.0, 0.0))
        for n_up in range(11, 21):  # Brackett series
            rows.append((float(brackett_wavelength(n_up)), sp["H"], KIND_HYDROGEN, -1.8 - 0.08 * (n_up - 11),
                         -4.0, 0.0, 8.0, 2.5, 0.3, 0.4))
        dtype = [("wavelength", "f8"), ("species", "i4"), ("kind", "i4"), ("log_strength", "f8"),
                 ("teff_coef", "f8"), ("logg_coef", "f8"), ("sigma_v", "f8"), ("wing_hwhm", "f8"),
                 ("wing_weight", "f8"), ("wing_logg_coef", "f8")]
        lines = np.array(rows, dtype=dtype)
        return lines[np.argsort(lines["wavelength"], kind="stable")]

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
        sequence 3600–6800 K) or ``"mixed"`` (each star a giant or a dwarf with probability ½).

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
        teff_d = rng.uniform(3600.0, 6800.0, n)
        logg_d = 4.44 + (5777.0 - teff_d) * 1.7e-4 + rng.normal(0, 0.08, n)
        teff = np.where(giant, teff_g, teff_d)
        logg = np.clip(np.where(giant, logg_g, logg_d), 0.0, 5.2)
        teff = np.clip(teff, 3500.0, 7000.0)
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
        tau = 10.0**log_tau
        wing = tau * ln["wing_weight"] * 10.0 ** (ln["wing_logg_coef"] * (logg[:, None] - LOGG0))
        return tau, wing

    def _absorb(self, tau_core: np.ndarray, tau_wing: np.ndarray) -> np.ndarray:
        """(N, P) normalised line spectrum from per-line optical depths (N, n_lines)."""
        opacity = np.asarray((self._phi_core.T @ tau_core.T).T + (self._phi_wing.T @ tau_wing.T).T)
        sub_flux = gaussian_filter1d(np.exp(-opacity), self._sigma_inst_sub, axis=1, mode="nearest",
                                     truncate=4.0)
        return sub_flux.reshape(len(sub_flux), -1, self.oversample).mean(axis=2)

    def line_spectrum(self, labels: Any, chunk: int = 128) -> np.ndarray:
        """(N, P) noise-free continuum-normalised spectra (1 = continuum) for labels (N, L)."""
        lab = self._check_labels(labels)
        out = np.empty((len(lab), grids.APSTAR_N_PIXELS))
        for s in range(0, len(lab), chunk):  # chunks of stars bound the (chunk, 3·P) temporaries
            out[s:s + chunk] = self._absorb(*self._line_strengths(lab[s:s + chunk]))
        return out

    def _continuum(self, teff: np.ndarray, hmag: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        wl = self.wavelength
        x = HC_K / (wl[None, :] * teff[:, None])
        x0 = HC_K / (16000.0 * teff[:, None])
        bb = (16000.0 / wl[None, :]) ** 5 * np.expm1(x0) / np.expm1(x)
        thr = np.ones((len(teff), len(wl)))
        for (a, b), level in zip(grids.APSTAR_DETECTOR_SEGMENTS, (0.85, 1.0, 0.92), strict=True):
            u = np.linspace(-1, 1, b - a)
            ripple = rng.normal(0, 0.04, (len(teff), 2))
            thr[:, a:b] = level * (1 - 0.12 * u**2 + ripple[:, :1] * u + ripple[:, 1:] * (u**2 - 1 / 3))
        segs = grids.APSTAR_DETECTOR_SEGMENTS
        # gaps and ends: continue smoothly between detectors
        thr[:, :segs[0][0]] = thr[:, segs[0][0]:segs[0][0] + 1]
        for (_, b0), (a1, _) in itertools.pairwise(segs):
            t = np.linspace(0, 1, a1 - b0)
            thr[:, b0:a1] = thr[:, b0 - 1:b0] * (1 - t) + thr[:, a1:a1 + 1] * t
        thr[:, segs[-1][1]:] = thr[:, segs[-1][1] - 1:segs[-1][1]]
        scale = 656.0 * 10.0 ** (-0.4 * (hmag - 10.58))
        return scale[:, None] * bb * thr

    def _observe(
        self, clean: np.ndarray, continuum: np.ndarray, snr: np.ndarray, sky_v: np.ndarray,
        rng: np.random.Generator, defects: bool, gap_value: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Noise and defects for M rows: returns flux, error, bitmask (M, P), defect masks."""
        M, P = clean.shape
        det = self._detector
        med = np.median(clean[:, det], axis=1)
        err = np.sqrt(np.clip(clean, 1e-3 * med[:, None], None) * med[:, None]) / snr[:, None]
        err *= np.median(clean[:, det] / err[:, det], axis=1)[:, None] / snr[:, None]
        bitmask = np.zeros((M, P), np.int32)
        masks = {k: np.zeros((M, P), bool) for k in ("gap", "badpix", "cosmic", "sky", "persistence")}
        masks["gap"][:, ~det] = True
        extra = np.zeros((M, P))
        sky_sigma = np.zeros((M, P))
        rows_all = np.arange(M)
        det_idx = np.flatnonzero(det)
        if defects:
            # sky lines, shifted into the star's rest frame
            centre = (np.log10(self.sky_wavelength[None, :] * (1 + sky_v[:, None] / C_KMS))
                      - grids.APSTAR_CRVAL1) / grids.APSTAR_CDELT1  # (M, K) fractional pixels
            off = np.arange(-3, 4)
            pix = np.rint(centre)[:, :, None].astype(int) + off  # (M, K, 7)
            prof = np.exp(-0.5 * ((pix - centre[:, :, None]) / 1.0) ** 2)
            level = rng.uniform(3.0, 30.0, (M, 1)) * self.sky_strength[None, :]  # in units of err
            amp = level[:, :, None] * prof
            ok = (pix >= 0) & (pix < P) & (prof > 0.05)
            r = np.broadcast_to(rows_all[:, None, None], pix.shape)[ok]
            p = pix[ok]
            np.maximum.at(sky_sigma, (r, p), amp[ok])
            sky_sigma *= err
            masks["sky"] = (sky_sigma > 0) & det
            # cosmic rays: Poisson(1) per spectrum, 1–2 pixels, spike of 10–100 σ
            n_cr = rng.poisson(1.0, M)
            r = np.repeat(rows_all, n_cr)
            p = rng.choice(det_idx, len(r))
            two = rng.random(len(r)) < 0.5
            r, p = np.concatenate([r, r[two]]), np.concatenate([p, np.minimum(p[two] + 1, P - 1)])
            extra[r, p] += rng.uniform(10.0, 100.0, len(r)) * err[r, p]
            masks["cosmic"][r, p] = True
            # persistence: excess flux over the first 60 % of the blue detector of ~15 % of stars
            a0, b0 = grids.APSTAR_DETECTOR_SEGMENTS[0]
            pers_end = a0 + int(0.6 * (b0 - a0))
            hit = rng.random(M) < 0.15
            lvl = np.where(hit, rng.uniform(0.002, 0.03, M), 0.0)
            extra[:, a0:pers_end] += lvl[:, None] * continuum[:, a0:pers_end]
            masks["persistence"][hit, a0:pers_end] = True
            pbits = np.where(lvl > 0.02, _BIT["PERSIST_HIGH"],
                             np.where(lvl > 0.008, _BIT["PERSIST_MED"], _BIT["PERSIST_LOW"]))
            bitmask[:, a0:pers_end] |= np.where(hit, pbits, 0)[:, None].astype(np.int32)
        err_tot = np.sqrt(err**2 + sky_sigma**2)
        flux = clean + err_tot * rng.standard_normal((M, P)) + extra
        if defects:
            # sky residual: a systematic over/under-subtraction per line, mostly positive
            flux += sky_sigma * rng.normal(0.5, 0.5, (M, 1))
            bitmask[masks["sky"]] |= _BIT["SIG_SKYLINE"]
            bitmask[masks["cosmic"]] |= _BIT["CRPIX"]
            # bad-pixel clusters (3–8 px): flux interpolated across, huge error
            n_bad = rng.poisson(2.0, M)
            r = np.repeat(rows_all, n_bad)
            length = rng.integers(3, 9, len(r))
            start = rng.choice(det_idx, len(r))
            start = np.clip(start, 1, P - 10)
            stop = start + length
            left, right = flux[r, start - 1], flux[r, stop]
            k = np.repeat(np.arange(len(r)), length)
            pos = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)
            t = (pos + 1) / (length[k] + 1)
            pp = start[k] + pos
            flux[r[k], pp] = left[k] + (right[k] - left[k]) * t
            masks["badpix"][r[k], pp] = True
            masks["badpix"] &= det[None, :]
            err_tot[masks["badpix"]] = BAD_ERROR
            bitmask[masks["badpix"]] |= _BIT["BADPIX"]
        flux[:, ~det] = gap_value
        err_tot[:, ~det] = BAD_ERROR
        bitmask[:, ~det] |= _BIT["BADPIX"]
        return flux, err_tot, bitmask, masks

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
        hmag = rng.uniform(9.0, 12.2, N)
        theta = 5040.0 / lab[:, 0]
        jk = np.clip(1.62 * theta - 1.04, 0.1, 1.4)
        vhelio = rng.normal(0.0, 40.0, N)
        hdr: dict[str, np.ndarray] = {
            "APOGEE_ID": np.array([_apogee_id(a, d) for a, d in zip(ra, dec, strict=True)]),
            "RA": ra, "DEC": dec, "SNR": snr_arr.copy(), "VHELIO": vhelio,
            "NVISITS": np.full(N, max(V, 1), np.int32),
            "J": hmag + 0.75 * jk, "H": hmag, "K": hmag - 0.25 * jk,
        }
        for k, v in (meta or {}).items():
            a = np.asarray(v)
            if a.shape != (N,):
                raise InputDataError(f"meta[{k!r}] has shape {a.shape}, expected ({N},)")
            hdr[k.upper()] = a

        continuum = self._continuum(lab[:, 0], hmag, rng)
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
            good = (vm & DEFAULT_REJECT_VALUE) == 0
            w = np.where(good, 1.0 / ve**2, 0.0)
            wsum = w.sum(axis=1)
            have = wsum > 0
            flux = np.where(have, (w * vf).sum(axis=1) / np.where(have, wsum, 1.0), vf.mean(axis=1))
            error = np.where(have, 1.0 / np.sqrt(np.where(have, wsum, 1.0)), BAD_ERROR)
            bitmask = np.bitwise_or.reduce(vm, axis=1)
            bitmask[~have] |= _BIT["BADPIX"]
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
            visits=visits,
        )

    def simulate(
        self, n: int, snr: float | np.ndarray = 100.0, seed: int = 0, population: str = "giants",
        **kwargs: Any,
    ) -> SyntheticSpectra:
        """Sample ``n`` label sets and generate their spectra, all from one ``seed``."""
        rng = np.random.default_rng(seed)
        return self.generate(self.sample_labels(n, rng, population), snr, rng, **kwargs)

    # -- masks for the networks ----------------------------------------------------------------

    @property
    def label_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) (L,) arrays: the label range the generator is meant for (DEFAULT_RANGES)."""
        return self._box(None)

    def _box(self, ranges: Mapping[str, tuple[float, float]] | None) -> tuple[np.ndarray, np.ndarray]:
        r = dict(self.DEFAULT_RANGES)
        r.update(ranges or {})
        lo = [r["TEFF"][0], r["LOGG"][0], r["FE_H"][0]]
        hi = [r["TEFF"][1], r["LOGG"][1], r["FE_H"][1]]
        for name in self.label_names[3:]:
            a, b = r.get(name, r["X_FE"])
            lo.append(a)
            hi.append(b)
        return np.array(lo), np.array(hi)

    def _max_depth(self, select: np.ndarray, ranges: Mapping[str, tuple[float, float]] | None) -> np.ndarray:
        """(P,) upper bound of 1 − normalised flux over the label box, from the lines ``select``."""
        lo, hi = self._box(ranges)
        ln = self.lines
        # log τ is linear in θ, log g and [X/H]: its maximum over the box is at a corner
        theta = 5040.0 / np.array([hi[0], lo[0]])
        dth = np.max(ln["teff_coef"][:, None] * (theta[None, :] - THETA0), axis=1)
        dg = np.max(ln["logg_coef"][:, None] * (np.array([lo[1], hi[1]])[None, :] - LOGG0), axis=1)
        xh_max = np.zeros(len(self.species))
        xh_max[1] = hi[2]
        xh_max[2:] = hi[3:] + hi[2]
        xh = np.where(ln["species"] == 0, 0.0, xh_max[ln["species"]])
        tau = 10.0 ** (ln["log_strength"] + xh + dth + dg)
        wing_max = ln["wing_weight"] * 10.0 ** np.max(
            ln["wing_logg_coef"][:, None] * (np.array([lo[1], hi[1]])[None, :] - LOGG0), axis=1)
        tau = np.where(select, tau, 0.0)
        # the bound on τ per line may come from different corners: still an upper bound
        return 1.0 - self._absorb(tau[None, :], (tau * wing_max)[None, :])[0]

    def continuum_pixels(
        self, grid: str = "aspcap", threshold: float = 1e-3,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> np.ndarray:
        """(P,) bool on ``grid``: pixels no line makes deeper than ``threshold`` anywhere in the
        label box ``ranges`` (``{"TEFF": (lo, hi), "LOGG": …, "FE_H": …, "X_FE" or "<X>_FE": …}``,
        default :attr:`DEFAULT_RANGES`); detector-gap pixels are never continuum."""
        depth = self._max_depth(np.ones(len(self.lines), bool), ranges)
        mask = (depth < threshold) & self._detector
        return grids.convert(mask, "apstar", grid, fill=0).astype(bool)

    def element_windows(
        self, grid: str = "aspcap", threshold: float = 0.01,
        ranges: Mapping[str, tuple[float, float]] | None = None,
    ) -> tuple[tuple[str, ...], np.ndarray]:
        """Each element's line pixels: ``(names, windows)``, ``windows`` (E, P) bool on ``grid``.

        ``names`` are element symbols, upper case: ``"FE"`` then :attr:`elements` (label
        ``FE_H`` for ``"FE"``, ``<X>_FE`` otherwise). A pixel is in an element's window where
        that element's lines alone can absorb more than ``threshold`` in the label box.
        """
        names = ("FE", *self.elements)
        sp = self.lines["species"]
        rows = [self._max_depth(sp == self.species.index(e), ranges) > threshold for e in names]
        win = np.array(rows) & self._detector[None, :]
        return names, grids.convert(win, "apstar", grid, fill=0).astype(bool)


def _apogee_id(ra: float, dec: float) -> str:
    """A 2MASS-style designation ``2MHHMMSSss+DDMMSSs`` from RA/Dec in degrees."""
    h = ra / 15.0
    hh, mm = int(h), int((h * 60) % 60)
    ss = (h * 3600) % 60
    sign = "+" if dec >= 0 else "-"
    d = abs(dec)
    dd, dm = int(d), int((d * 60) % 60)
    ds = (d * 3600) % 60
    return f"2M{hh:02d}{mm:02d}{int(ss * 100):04d}{sign}{dd:02d}{dm:02d}{int(ds * 10):03d}"


def write_apstar_files(
    directory: str | os.PathLike[str],
    spectra: SyntheticSpectra,
    *,
    prefix: str = "apStar-synth-",
    overwrite: bool = False,
) -> list[Path]:
    """Write each star as a real-layout apStar FITS file ``<prefix><APOGEE_ID>.fits``.

    Uses :func:`starlabels.io.write_apstar` (atomic writes; visits included when
    ``spectra.visits`` is set). Returns the paths, in star order.
    """
    from starlabels.io import write_apstar

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(spectra)):  # one file per star: I/O bound
        meta = spectra.star_meta(i)
        visits = None
        if spectra.visits is not None:
            visits = tuple(spectra.visits[k][i] for k in ("flux", "error", "bitmask"))
        p = d / f"{prefix}{meta['APOGEE_ID']}.fits"
        paths.append(write_apstar(p, spectra.flux[i], spectra.error[i], spectra.bitmask[i], meta,
                                  visits=visits, overwrite=overwrite))
    return paths


#: nominal 1-σ errors written by :func:`write_label_catalog` (labels themselves are exact)
NOMINAL_ERRORS: dict[str, float] = {"TEFF": 30.0, "LOGG": 0.05, "FE_H": 0.02}


def write_label_catalog(
    path: str | os.PathLike[str], spectra: SyntheticSpectra, errors: Mapping[str, float] | None = None
) -> Path:
    """Write an allStar-like catalogue (FITS table, or CSV for a ``.csv`` name) of the true labels.

    Columns: APOGEE_ID, RA, DEC, SNR, each label and ``<label>_ERR`` (nominal errors from
    ``errors`` or :data:`NOMINAL_ERRORS`, 0.03 dex for abundances), with units.
    """
    from astropy.table import Table

    errs = dict(NOMINAL_ERRORS)
    errs.update(errors or {})
    t = Table()
    t["APOGEE_ID"] = spectra.meta["APOGEE_ID"].astype(str)
    t["RA"], t["DEC"], t["SNR"] = spectra.meta["RA"], spectra.meta["DEC"], spectra.snr
    t["RA"].unit = t["DEC"].unit = "deg"
    for j, (name, unit) in enumerate(zip(spectra.label_names, spectra.label_units, strict=True)):
        t[name] = spectra.labels[:, j]
        t[f"{name}_ERR"] = np.full(len(spectra), errs.get(name, 0.03))
        if unit and unit != "dex":  # FITS has no native "dex" unit: leave it in the description
            t[name].unit = t[f"{name}_ERR"].unit = unit
        t[name].description = t[f"{name}_ERR"].description = unit
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt = "ascii.csv" if p.suffix.lower() == ".csv" else "fits"
    t.write(p, format=fmt, overwrite=True)
    return p
