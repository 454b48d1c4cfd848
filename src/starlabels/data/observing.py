"""How the simulators observe on each instrument: coverage, defect bits, sky lines, throughput.

The built-in generator (:mod:`starlabels.data.synthetic`) and the survey simulator
(:mod:`starlabels.data.survey`) make spectra on an instrument's native grid
(:mod:`starlabels.instruments`). What differs between instruments besides the grid and the line
list is collected here, in an :class:`ObservingModel`:

* **coverage**: the wavelength range with data (BOSS: 3,600–10,400 Å; pixels of the 4,648-pixel
  grid below 3,600 Å are flagged ``NODATA`` with no information, as in SDSS-V files);
* **defect bits** of the instrument's pixel bitmask for each kind of defect the simulators put in
  (APOGEE_PIXMASK: BADPIX, CRPIX, SIG_SKYLINE, PERSIST_*; BOSS SPPIXMASK: NODATA, FULLREJECT,
  COMBINEREJ, BRIGHTSKY; any other instrument: its default-reject bits or the generic ``BAD``);
* **sky lines** (BOSS: [O I] 5577/6300/6364, Na D, Hg and a pseudo-random OH forest past 6,800 Å);
* the **continuum**: where the blackbody slope is normalised (16,000 Å / 5,500 Å), the
  extinction law A_λ = A_H·(λ/16,500 Å)^−β (β = 2 in the H band, 1.6 for optical instruments,
  A_V/A_H ≈ 5.8), the default SNR distribution, the largest A_H drawn, and for BOSS, whose
  spectra are flux calibrated, the spectrograph throughput that shapes the noise (not the flux):
  two arms with a dip at the 6,000 Å dichroic and falling ends.

These are test/demo settings, not an instrument model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from starlabels.core import GENERIC_BITMASK, Instrument, PixelBitmask
from starlabels.data.line_lists import air_to_vacuum, recipe_for

__all__ = ["DEFECT_KINDS", "ObservingModel", "boss_throughput", "observing_model"]

#: kinds of defects the simulators put in
DEFECT_KINDS = ("gap", "badpix", "cosmic", "sky", "persistence")

#: bright optical sky lines (air Å): Hg 4358/5461, [O I] 5577/6300/6364, Na D
OPTICAL_SKY_AIR = (4358.34, 5460.74, 5577.34, 5889.95, 5895.92, 6300.30, 6363.78)


@dataclass(frozen=True)
class ObservingModel:
    """Observation settings of one instrument for the simulators (see the module docstring).

    Attributes:
        instrument: the instrument.
        recipe: line recipe (:func:`starlabels.data.line_lists.recipe_for`).
        coverage: (λ_min, λ_max) Å with data; pixels outside (or outside the grid's segments) are gaps.
        defect_bits: defect kind → bit names of ``instrument.bitmask()`` (empty: no bit).
        bad_error: error given to pixels without information (APOGEE 1e13 as DR17 files, BOSS inf
            as ivar = 0).
        blackbody_reference: Å where the blackbody slope of the continuum is 1.
        extinction_exponent: β of A_λ = A_H·(λ/16,500 Å)^−β.
        max_extinction_h: largest A_H (mag) drawn by the survey simulator.
        snr: default SNR distribution name of :func:`starlabels.data.survey_observation.snr_distribution`.
        oversample: sub-pixels per pixel of the generator's line computation.
        default_resolution: R when the instrument has none.
        teff_range: (min, max) K of the generator's label box.
        sky_background: sky continuum variance, in units of the median stellar signal (BOSS 0.3).
        sky_flag_sigma: sky-line pixels are flagged where the residual's σ exceeds this many noise σ
            (APOGEE 0: every pixel a sky line touches; BOSS 3: bright sky only).
        sky_level: range of a star's sky-line residual σ in noise σ (× each line's strength).
        line_floor: residual flux of a saturated line before the instrumental convolution (BOSS
            0.15: cores of strong optical lines are not black; APOGEE 0).
        persistence: put APOGEE blue-detector persistence in (APOGEE only).
    """

    instrument: Instrument
    recipe: str
    coverage: tuple[float, float]
    defect_bits: Mapping[str, tuple[str, ...]]
    bad_error: float = 1.0e13
    blackbody_reference: float = 16000.0
    extinction_exponent: float = 2.0
    max_extinction_h: float = 0.6
    snr: str = "apogee"
    oversample: int = 3
    default_resolution: float = 22500.0
    teff_range: tuple[float, float] = (3500.0, 7000.0)
    sky_background: float = 0.0
    sky_flag_sigma: float = 0.0
    sky_level: tuple[float, float] = (3.0, 30.0)
    line_floor: float = 0.0
    persistence: bool = False

    @property
    def bitmask(self) -> PixelBitmask:
        return self.instrument.bitmask()

    def bit(self, kind: str) -> int:
        """OR of the bits of a defect kind (0 when it has none)."""
        return self.bitmask.value(self.defect_bits.get(kind, ())) if self.defect_bits.get(kind) else 0

    def usable(self) -> np.ndarray:
        """(P,) bool: native-grid pixels inside a segment and inside ``coverage``."""
        w = self.instrument.grid.wavelength
        return self.instrument.grid.in_segments() & (w >= self.coverage[0]) & (w <= self.coverage[1])

    def sky_lines(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Sky-line wavelengths (vacuum Å, sorted) and relative strengths, fixed by ``seed``.

        H band: 48 lines uniformly over the usable range (the generator's APOGEE draws, unchanged).
        Optical: the bright lines of :data:`OPTICAL_SKY_AIR` plus 120 OH lines past 6,800 Å.
        """
        srng = np.random.default_rng([int(seed), 1])
        w = self.instrument.grid.wavelength[self.usable()]
        if self.recipe == "hband":
            wl = np.sort(srng.uniform(w[0], w[-1], 48))
            return wl, srng.lognormal(0.0, 0.7, 48)
        bright = air_to_vacuum(OPTICAL_SKY_AIR)
        lo = max(6800.0, float(w[0]))
        oh = srng.uniform(lo, max(lo + 1.0, float(w[-1])), 120) if w[-1] > lo else np.zeros(0)
        wl = np.concatenate([bright, oh])
        strength = np.concatenate([np.full(len(bright), 3.0), srng.lognormal(0.0, 0.7, len(oh))])
        keep = (wl > w[0]) & (wl < w[-1])
        order = np.argsort(wl[keep])
        return wl[keep][order], strength[keep][order]


def boss_throughput(wavelength: np.ndarray) -> np.ndarray:
    """(P,) relative BOSS throughput (peak ≈ 1): blue arm peaking near 4,800 Å, red arm near 7,600 Å,
    crossing at the 6,000 Å dichroic (≈ 0.5 there), ≈ 0.3 at 3,600 and 10,400 Å. Not measured:
    a smooth stand-in that makes the noise grow at the ends and at the dichroic."""
    lam = np.asarray(wavelength, float)
    blue = np.exp(-0.5 * (np.log(lam / 4800.0) / 0.18) ** 2) / (1 + np.exp((lam - 6000.0) / 60.0))
    red = 0.95 * np.exp(-0.5 * (np.log(lam / 7600.0) / 0.2) ** 2) / (1 + np.exp((6000.0 - lam) / 60.0))
    return blue + red


def _apogee(inst: Instrument) -> ObservingModel:
    return ObservingModel(
        inst, "hband", (float(inst.wavelength[0]), float(inst.wavelength[-1])),
        {"gap": ("BADPIX",), "badpix": ("BADPIX",), "cosmic": ("CRPIX",), "sky": ("SIG_SKYLINE",),
         "persistence": ()},
        persistence=True,
    )


def _boss(inst: Instrument) -> ObservingModel:
    return ObservingModel(
        inst, "optical", (3600.0, 10400.0),
        {"gap": ("NODATA",), "badpix": ("FULLREJECT",), "cosmic": ("COMBINEREJ",), "sky": ("BRIGHTSKY",),
         "persistence": ()},
        bad_error=np.inf, blackbody_reference=5500.0, extinction_exponent=1.6, max_extinction_h=0.15,
        snr="boss", oversample=5, default_resolution=2000.0, teff_range=(3500.0, 10000.0),
        sky_background=0.3, sky_flag_sigma=3.0, sky_level=(0.5, 4.0), line_floor=0.15,
    )


def _generic(inst: Instrument) -> ObservingModel:
    """Any other instrument: its default-reject bits (first one) for every rejected defect."""
    bm = inst.bitmask()
    first = bm.default_reject[:1] or tuple(bm.bits)[:1] or GENERIC_BITMASK.default_reject
    recipe = recipe_for(inst)
    w = inst.wavelength
    optical = recipe == "optical"
    return ObservingModel(
        inst, recipe, (float(w[0]), float(w[-1])),
        {"gap": first, "badpix": first, "cosmic": first, "sky": first, "persistence": ()},
        bad_error=np.inf, blackbody_reference=float(np.sqrt(w[0] * w[-1])),
        extinction_exponent=1.6 if optical else 2.0, max_extinction_h=0.15 if optical else 0.6,
        snr="boss" if optical else "apogee",
        oversample=3, default_resolution=inst.resolving_power or 5000.0,
        teff_range=(3500.0, 10000.0) if optical else (3500.0, 7000.0),
        line_floor=0.15 if optical else 0.0,
    )


def observing_model(instrument: Instrument) -> ObservingModel:
    """The :class:`ObservingModel` of an instrument (APOGEE, BOSS, or generic by wavelength)."""
    maker = {"apogee": _apogee, "boss": _boss}.get(instrument.name, _generic)
    return maker(instrument)
