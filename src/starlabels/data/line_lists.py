"""Line lists of the built-in synthetic generator (:mod:`starlabels.data.synthetic`), by band.

**Test/demo data, not an atomic-physics line list.** Each line has a wavelength (vacuum Å), the
species whose abundance scales it and a parametric strength law (see the generator's module
docstring):

``log10 τ = log_strength + [X/H] + teff_coef·(θ − θ0) + teff_coef2·(θ − θ0)² + logg_coef·(log g − 2.5)``

with θ = 5040 K / Teff, θ0 = 5040/4750, plus a Gaussian core of intrinsic width ``sigma_v`` (km/s)
and a Lorentzian wing (``wing_hwhm`` Å) of weight ``wing_weight·10**(wing_logg_coef·(log g − 2.5))``.

Two recipes; the generator picks one by instrument (:func:`recipe_for`):

``hband`` (APOGEE, 15,100–17,000 Å): real-ish H-band atomic lines, pseudo-random lines per
    element, CO band heads (C), OH doublets (O), CN (N) and the Brackett series.
``optical`` (BOSS, 3,600–10,400 Å): the Balmer and Paschen series (strongest near 9,500 K, weaker
    in cooler and hotter stars, Stark-like wings growing with log g), Ca II H&K, the Ca II
    triplet (cores stronger in giants, wings in dwarfs), Mg b and Na D (pressure wings growing
    with log g), Ca I 4227, K I, Al I, the O I 7774 and C I 9100 high-excitation lines (stronger
    in warm stars), molecular bands (TiO → Ti, CH G band → C, CN → N, MgH → Mg, the last
    gravity-sensitive) and a pseudo-random metal-line forest, denser in the blue.

Every line is drawn from one ``numpy`` Generator seeded by the generator's ``seed``: the same seed
gives the same list.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from starlabels.core import Grid, Instrument

__all__ = [
    "LINE_DTYPE", "RECIPES", "air_to_vacuum", "balmer_wavelength", "brackett_wavelength", "build_lines",
    "hydrogen_wavelength", "paschen_wavelength", "recipe_for",
]

R_H_CM = 109677.583  # Rydberg constant for hydrogen, cm^-1 (vacuum wavenumbers)
KIND_ATOMIC, KIND_MOLECULAR, KIND_HYDROGEN = 0, 1, 2
RECIPES = ("hband", "optical")

#: structured dtype of a line list (one row per line, sorted by wavelength)
LINE_DTYPE = [("wavelength", "f8"), ("species", "i4"), ("kind", "i4"), ("log_strength", "f8"),
              ("teff_coef", "f8"), ("logg_coef", "f8"), ("sigma_v", "f8"), ("wing_hwhm", "f8"),
              ("wing_weight", "f8"), ("wing_logg_coef", "f8"), ("teff_coef2", "f8")]

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

#: moderate optical atomic lines, air Å (strong named features are listed in ``_optical_strong``)
OPTICAL_LINES_AIR: dict[str, tuple[float, ...]] = {
    "FE": (3820.43, 3859.91, 4045.81, 4063.59, 4071.74, 4260.47, 4271.76, 4325.76, 4383.54,
           4404.75, 4957.60, 5269.54, 5328.04, 5371.49, 5397.13, 5405.77, 5429.70, 5446.92,
           6252.56, 6494.98, 8688.62, 8824.22),
    "MG": (3838.29, 4571.10, 4702.99, 5528.41, 8806.76),
    "NA": (5682.63, 5688.20, 6154.23, 6160.75, 8183.26, 8194.82),
    "AL": (3944.01, 3961.52, 6696.02, 6698.67),
    "SI": (3905.52, 5708.40, 5772.15, 6155.13, 7034.90),
    "CA": (4454.78, 6102.72, 6122.22, 6162.17, 6439.08),
    "TI": (4981.73, 4991.07, 4999.50, 5007.21, 5064.65, 5173.74, 5192.97, 5210.38),
    "CR": (4254.33, 4274.80, 4289.72, 5204.51, 5206.04, 5208.42),
    "MN": (4030.75, 4033.06, 4034.48, 4754.04, 4823.52, 6021.82),
    "NI": (5035.36, 5476.90, 6643.63, 6767.77, 7714.31),
    "CO": (4121.31, 5352.05, 5483.35),
    "V": (4379.23, 4389.97, 6251.83),
    "S": (6757.16,),
    "K": (7664.90, 7698.96),
}
#: TiO band heads (air Å); each band degrades to the red
TIO_BANDHEADS_AIR = (4761.0, 4954.0, 5167.0, 5448.0, 5847.0, 6159.0, 6651.0, 7054.0, 7589.0, 8432.0, 8859.0)


def air_to_vacuum(wavelength_air: Any) -> np.ndarray:
    """Vacuum wavelength (Å) from air wavelength (Å), VALD/Piskunov formula."""
    w = np.asarray(wavelength_air, dtype=float)
    s2 = (1e4 / w) ** 2
    n = (1 + 0.00008336624212083 + 0.02408926869968 / (130.1065924522 - s2)
         + 0.0001599740894897 / (38.92568793293 - s2))
    return w * n


def hydrogen_wavelength(n_lower: int, n_upper: Any) -> np.ndarray:
    """Vacuum wavelength (Å) of the hydrogen line n_upper → n_lower (Rydberg formula)."""
    n = np.asarray(n_upper, dtype=float)
    return 1e8 / (R_H_CM * (1.0 / n_lower**2 - 1.0 / n**2))


def brackett_wavelength(n_upper: Any) -> np.ndarray:
    """Vacuum wavelength (Å) of the hydrogen Brackett line n_upper → 4 (Rydberg formula)."""
    n = np.asarray(n_upper, dtype=float)
    return 1e8 / (R_H_CM * (1.0 / 16.0 - 1.0 / n**2))


def balmer_wavelength(n_upper: Any) -> np.ndarray:
    """Vacuum wavelength (Å) of the Balmer line n_upper → 2 (Hα: 3, Hβ: 4, …)."""
    return hydrogen_wavelength(2, n_upper)


def paschen_wavelength(n_upper: Any) -> np.ndarray:
    """Vacuum wavelength (Å) of the Paschen line n_upper → 3."""
    return hydrogen_wavelength(3, n_upper)


def recipe_for(instrument: Instrument) -> str:
    """The line recipe of an instrument: ``"hband"`` for APOGEE, ``"optical"`` for BOSS; for any
    other instrument ``"optical"`` when the middle of its grid is below 12,000 Å, else ``"hband"``."""
    known = {"apogee": "hband", "boss": "optical"}
    if instrument.name in known:
        return known[instrument.name]
    w = instrument.grid.wavelength
    return "optical" if 0.5 * (w[0] + w[-1]) < 12000.0 else "hband"


def build_lines(
    recipe: str, grid: Grid, usable: np.ndarray, species: Sequence[str], per_element: int, seed: int,
) -> np.ndarray:
    """The line list (structured array :data:`LINE_DTYPE`, sorted by wavelength) for ``species``
    (``("H", "FE", *elements)``; the index of a species in it is the ``species`` field).

    ``usable`` (P,) bool marks the grid's pixels with data: pseudo-random lines fall between the
    first and last of them (2 Å inside). ``per_element`` sets the pseudo-random lines per element.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown line recipe {recipe!r}; known: {RECIPES}")
    rng = np.random.default_rng([int(seed), 0])
    idx = np.flatnonzero(usable)
    lo, hi = grid.wavelength[idx[0]] + 2.0, grid.wavelength[idx[-1]] - 2.0
    sp = {s: i for i, s in enumerate(species)}
    if recipe == "hband":
        rows = [(*r, 0.0) for r in _hband_rows(rng, sp, species[2:], per_element, lo, hi)]
    else:
        rows = _optical_rows(rng, sp, species[2:], per_element, lo, hi)
        rows = [r for r in rows if grid.wavelength[0] - 50.0 < r[0] < grid.wavelength[-1] + 50.0]
    lines = np.array(rows, dtype=LINE_DTYPE)
    return lines[np.argsort(lines["wavelength"], kind="stable")]


def _hband_rows(
    rng: np.random.Generator, sp: dict[str, int], elements: Sequence[str], per_element: int,
    lo: float, hi: float,
) -> list[tuple]:
    """The H-band recipe (APOGEE); rows without ``teff_coef2``. Its random draws are in a fixed
    order: changing it would change every APOGEE spectrum the generator makes."""
    rows: list[tuple] = []  # (wl, species, kind, log_s, a, b, sigma_v, hwhm, w0, c)

    def atomic(el: str, wl: np.ndarray, log_s: np.ndarray, a: np.ndarray) -> None:
        b = rng.uniform(-0.15, 0.05, len(wl))
        for w, s, ai, bi in zip(wl, log_s, a, b, strict=True):
            rows.append((w, sp[el], KIND_ATOMIC, s, ai, bi, 2.5, 0.08, 0.4, 0.25))

    for el in ("FE", *elements):
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
    return rows


#: θ = 5040/Teff where the hydrogen lines peak (9,500 K), and their curvature in θ (dex per θ²)
H_THETA_PEAK = 5040.0 / 9500.0
H_CURVATURE = 6.0
THETA0 = 5040.0 / 4750.0


def _hydrogen_law(log_peak: float) -> tuple[float, float, float]:
    """(log_strength, teff_coef, teff_coef2) of ``log_peak − H_CURVATURE·(θ − θ_peak)²`` written
    around θ0, the generator's reference θ."""
    d = THETA0 - H_THETA_PEAK
    return log_peak - H_CURVATURE * d**2, -2.0 * H_CURVATURE * d, -H_CURVATURE


def _optical_strong(sp: dict[str, int]) -> list[tuple]:
    """Named strong optical features: (wl vac, species, kind, log_s, a, b, σ_v, hwhm, w0, c, q)."""
    rows: list[tuple] = []
    for n_up in range(3, 15):  # Balmer Hα … H14: peak near 9,500 K, Stark-like wings
        log_s, a, q = _hydrogen_law(2.0 - 0.2 * min(n_up - 3, 1) - 0.15 * max(n_up - 4, 0))
        rows.append((float(balmer_wavelength(n_up)), sp["H"], KIND_HYDROGEN, log_s, a, 0.0, 20.0, 2.0,
                     0.04, 0.25, q))
    for n_up in range(9, 17):  # Paschen P9 … P16 (near the Ca triplet): hot stars
        log_s, a, q = _hydrogen_law(1.0 - 0.1 * (n_up - 9))
        rows.append((float(paschen_wavelength(n_up)), sp["H"], KIND_HYDROGEN, log_s, a, 0.0, 20.0, 1.5,
                     0.04, 0.25, q))

    def strong(el: str, air: Sequence[float], log_s: Sequence[float], a: float, b: float, hwhm: float,
               weight: float, wing_logg: float) -> None:
        if el not in sp:
            return
        for w, s in zip(air_to_vacuum(air), log_s, strict=True):
            rows.append((float(w), sp[el], KIND_ATOMIC, s, a, b, 15.0, hwhm, weight, wing_logg, 0.0))

    strong("CA", (3933.66, 3968.47), (1.5, 1.3), 2.0, 0.0, 1.0, 0.05, 0.3)  # Ca II K, H
    # Ca II triplet: cores stronger in giants (b < 0), pressure wings in dwarfs (c > 0)
    strong("CA", (8498.02, 8542.09, 8662.14), (0.6, 0.9, 0.8), 1.0, -0.35, 0.6, 0.1, 0.1)
    strong("CA", (4226.73,), (1.3,), 1.8, 0.0, 0.3, 0.1, 0.4)  # Ca I resonance line
    strong("MG", (5167.32, 5172.68, 5183.60), (1.3, 1.5, 1.6), 1.0, 0.0, 0.4, 0.15, 0.5)  # Mg b
    strong("NA", (5889.95, 5895.92), (1.6, 1.3), 1.6, 0.0, 0.3, 0.15, 0.5)  # Na D
    strong("K", (7664.90, 7698.96), (0.9, 0.7), 2.5, 0.0, 0.2, 0.1, 0.4)  # K I resonance
    strong("O", (7771.94, 7774.17, 7775.39), (0.2, 0.1, 0.0), -1.5, -0.1, 0.05, 0.3, 0.25)  # O I
    strong("C", (9061.43, 9078.29, 9088.51, 9094.83, 9111.80, 9405.73), (-0.2,) * 6, -1.5, -0.1, 0.05,
           0.3, 0.25)  # C I, high excitation
    strong("S", (9212.86, 9228.09, 9237.54), (0.0, -0.1, -0.2), -1.0, -0.1, 0.05, 0.3, 0.25)  # S I
    return rows


def _optical_rows(
    rng: np.random.Generator, sp: dict[str, int], elements: Sequence[str], per_element: int,
    lo: float, hi: float,
) -> list[tuple]:
    """The optical recipe (BOSS)."""
    rows = _optical_strong(sp)
    for el in ("FE", *elements):  # moderate real lines and a pseudo-random forest, denser in the blue
        n_rand = per_element * (25 if el == "FE" else 3)
        u = rng.random(n_rand)
        forest = np.exp(np.log(lo) + (np.log(hi) - np.log(lo)) * u**2)
        wl = np.concatenate([air_to_vacuum(OPTICAL_LINES_AIR.get(el, ())), forest])
        log_s = STRENGTH_OFFSET.get(el, -0.5) + rng.uniform(-1.2, 0.4, len(wl))
        a = rng.uniform(0.5, 2.0, len(wl))
        b = rng.uniform(-0.15, 0.05, len(wl))
        if el == "K":
            a = a + 1.5
        for w, s, ai, bi in zip(wl, log_s, a, b, strict=True):
            rows.append((float(w), sp[el], KIND_ATOMIC, s, ai, bi, 15.0, 0.05, 0.3, 0.25, 0.0))

    def band(el: str, heads_vac: Sequence[float], n_lines: int, spacing: float, log_s0: float,
             a: tuple[float, float], b: float) -> None:
        """Molecular bands: lines head ± spacing·j² (spacing < 0: degraded to the blue)."""
        if el not in sp:
            return
        j = np.arange(1, n_lines + 1)
        pop = np.log10((2 * j + 1) * np.exp(-j * (j + 1) / (2 * (n_lines / 2.5) ** 2)))
        pop -= pop.max()
        for head in heads_vac:
            wl = head + spacing * j**2
            log_s = log_s0 + pop + rng.normal(0.0, 0.1, len(j))
            ai = rng.uniform(*a, len(j))
            for w, s, aa in zip(wl, log_s, ai, strict=True):
                rows.append((float(w), sp[el], KIND_MOLECULAR, s, aa, b, 15.0, 0.0, 0.0, 0.0, 0.0))

    band("TI", air_to_vacuum(TIO_BANDHEADS_AIR), 50, 0.03, -3.0, (8.5, 9.5), 0.0)  # TiO: M stars
    band("C", (4300.0, 4325.0), 40, -0.012, -0.6, (2.5, 3.5), -0.1)  # CH G band
    band("N", (3884.0, 4217.0), 40, -0.02, -0.9, (3.0, 4.0), -0.1)  # CN violet bands
    band("MG", (5212.0,), 60, -0.02, -2.6, (5.5, 6.5), 0.6)  # MgH: cool dwarfs, gravity-sensitive
    return rows
