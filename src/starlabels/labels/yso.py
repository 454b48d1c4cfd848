"""Synthetic young stellar objects from PARSEC isochrones, the photometric inputs of the YSO
network (APOGEE Net §2.4).

Isochrone fits fail for YSOs (extinction degeneracies, infrared excess, grid edges), so the paper
trains a small CNN on *synthetic* stars drawn from the PARSEC isochrones and applies it to the real
photometry. The recipe is split by layer:

1. :mod:`starlabels.labels.yso_isochrones` reads the grid of one metallicity and interpolates it
   (:func:`~starlabels.labels.yso_isochrones.load_isochrones`), through the one PARSEC reader
   :mod:`starlabels.io.parsec`.
2. This module draws the population (:func:`synthetic_population`) as in the paper: mass uniform in
   0.08-3 Msun, age 1-100 Myr (uniform in log age by default, see below), A_V uniform in 0-20 mag,
   distance uniform in 50-1000 pc, solar metallicity. Observed inputs: apparent magnitudes in Gaia
   G/BP/RP and 2MASS J/H/Ks (+ WISE W1-W3 when the grid has them) with extinction A_band = A_V x
   (A_band/A_V from the coefficients file); a magnitude fainter than the paper's detection limit
   (G < 19, BP < 20.5, RP < 17.5, J < 17, H < 16, Ks < 16, W1 < 16, W2 < 16, W3 < 13.5) is set to
   the limit. Only G is required, so stars with G >= 19 are not part of the population (they are
   redrawn). Radius and log L are "reported" as Gaia DR2 did only if R > 0.5 Rsun, log L > -1.54
   and M_G < 10 (absolute G from the isochrone); otherwise both are set to their limiting values
   0.5 Rsun and -1.54. The distance is an input too. No noise is added. :func:`observed_inputs`
   turns a table of (real or synthetic) photometry into the network's inputs the same way.
3. :mod:`starlabels.models.yso` holds the network and :class:`~starlabels.models.yso.YSOLabeler`
   (apply, save, load); :func:`starlabels.training.yso.train_yso_network` trains it through the
   shared :class:`~starlabels.training.trainer.Trainer`. ``bench/yso_labels.py`` trains it at
   full size.

The paper says ages are drawn "uniformly from 1 to 100 Myr" without saying in which variable; the
default here is uniform in log age (``age_sampling="log"``), which puts as many stars in 1-10 Myr
(where the APOGEE YSOs are) as in 10-100 Myr; ``age_sampling="linear"`` is the other reading. The
grid's metallicity nearest to ``mh`` is used (PARSEC's [M/H] = 0.05 in the reference grid) and its
lowest initial mass (0.09 Msun) bounds the drawn masses from below: the isochrones are not
extrapolated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputDataError
from starlabels.labels.yso_isochrones import (
    ALL_BANDS,
    LOG_AGE_RANGE,
    MASS_RANGE,
    Isochrones,
    extinction_for_bands,
    load_isochrones,
)

__all__ = [
    "ABS_G_MAX", "AV_RANGE", "CENSORED_RADIUS_BIT", "DISTANCE_RANGE", "EXTRA_FEATURES",
    "LOG_L_MIN", "PAPER_LIMITS", "RADIUS_MIN", "TARGETS", "TARGET_UNITS", "TEFF_SUN", "feature_names",
    "observed_inputs", "radius_from_l_teff", "synthetic_population",
]

logger = logging.getLogger(__name__)

#: Detection limits (apparent mag) of the paper; fainter magnitudes are set to the limit.
PAPER_LIMITS: dict[str, float] = {
    "G": 19.0, "BP": 20.5, "RP": 17.5, "J": 17.0, "H": 16.0, "Ks": 16.0,
    "W1": 16.0, "W2": 16.0, "W3": 13.5,
}
#: Gaia DR2-like reporting conditions for radius and luminosity, and the values used otherwise.
RADIUS_MIN = 0.5  # Rsun
LOG_L_MIN = -1.54  # log10(L / Lsun)
ABS_G_MAX = 10.0  # mag (absolute G from the isochrone, no extinction)
#: Nominal solar effective temperature (IAU 2015 B3), K, for R = sqrt(L) (Teff_sun / Teff)^2.
TEFF_SUN = 5772.0

#: Sampling ranges of the paper (mass and log age: :data:`MASS_RANGE`, :data:`LOG_AGE_RANGE`).
AV_RANGE = (0.0, 20.0)  # mag
DISTANCE_RANGE = (50.0, 1000.0)  # pc

#: Non-band network inputs, after the bands.
EXTRA_FEATURES: tuple[str, ...] = ("radius", "log_l", "distance")
#: Network targets (population column names) and their units.
TARGETS: tuple[str, ...] = ("log_age", "mass", "av", "log_teff", "logg")
TARGET_UNITS: dict[str, str] = {
    "log_age": "dex(yr)", "mass": "Msun", "av": "mag", "log_teff": "dex(K)", "logg": "dex(cgs)",
}

#: Bit of the population's ``censored`` column for radius/log L set to their limits; bands use
#: bit ``ALL_BANDS.index(band)``.
CENSORED_RADIUS_BIT = 1 << 9


def radius_from_l_teff(log_l: np.ndarray, log_teff: np.ndarray) -> np.ndarray:
    """Radius (Rsun) from log10(L/Lsun) and log10(Teff/K): R = sqrt(L) (Teff_sun/Teff)^2."""
    return 10.0 ** (0.5 * np.asarray(log_l) - 2.0 * (np.asarray(log_teff) - math.log10(TEFF_SUN)))


def synthetic_population(
    n: int,
    *,
    grid: str | Path | None = None,
    extinction: str | Path | Mapping[str, float] | None = None,
    seed: int | np.random.Generator | None = 0,
    mass_range: tuple[float, float] = MASS_RANGE,
    log_age_range: tuple[float, float] = LOG_AGE_RANGE,
    av_range: tuple[float, float] = AV_RANGE,
    distance_range: tuple[float, float] = DISTANCE_RANGE,
    mh: float = 0.0,
    limits: Mapping[str, float] | None = None,
    require_g: bool = True,
    age_sampling: str = "log",
    isochrones: Isochrones | None = None,
):
    """Draw ``n`` synthetic young stars with the paper's observables (see the module docstring).

    Returns an astropy Table with ``n`` rows:

    - inputs: apparent magnitudes ``G, BP, RP, J, H, Ks`` (+ ``W1, W2, W3`` when the grid has
      them; mag, extincted, set to the limit when fainter), ``radius`` (Rsun) and ``log_l``
      (dex Lsun) as reported (else 0.5 and -1.54), ``distance`` (pc);
    - truth: ``mass`` (initial, Msun), ``log_age`` (dex yr), ``av`` (mag), ``teff`` (K),
      ``log_teff``, ``logg`` (dex cgs), ``radius_true``, ``log_l_true``, ``abs_G`` (mag),
      ``current_mass`` (Msun);
    - ``censored`` (int32): bit ``ALL_BANDS.index(b)`` set when band b was set to its limit,
      :data:`CENSORED_RADIUS_BIT` when radius and log L were.

    ``meta`` records the grid, [M/H], bands, extinction coefficients, limits, ranges, and
    ``n_drawn`` / ``n_rejected_faint_g`` (stars redrawn because G >= 19 when ``require_g``).
    Mass is drawn uniformly in ``mass_range`` intersected with the grid's mass coverage;
    ``age_sampling`` is ``"log"`` (uniform in log age) or ``"linear"`` (uniform in age).
    """
    from astropy.table import Table

    if n < 0:
        raise InputDataError(f"n must be >= 0, got {n}")
    if age_sampling not in ("log", "linear"):
        raise InputDataError(f"age_sampling must be 'log' or 'linear', got {age_sampling!r}")
    for name, (lo, hi) in {"mass_range": mass_range, "log_age_range": log_age_range,
                           "av_range": av_range, "distance_range": distance_range}.items():
        if not (np.isfinite(lo) and np.isfinite(hi) and hi >= lo):
            raise InputDataError(f"{name} must be (low, high) with high >= low, got {(lo, hi)}")
    if distance_range[0] <= 0 or mass_range[1] <= 0:
        raise InputDataError("distance and mass ranges must be positive")
    iso = isochrones or load_isochrones(grid, mh=mh, log_age_range=log_age_range,
                                        max_mass=mass_range[1])
    bands = iso.bands
    coeff = extinction_for_bands(bands, extinction, grid=iso.source)
    lim = dict(PAPER_LIMITS)
    lim.update(limits or {})
    grid_lo, grid_hi = iso.mass_range
    m_lo, m_hi = max(mass_range[0], grid_lo), min(mass_range[1], grid_hi)
    if m_lo > mass_range[0] or m_hi < mass_range[1]:
        logger.info("synthetic_population: masses drawn in %.4f-%.4f Msun (grid coverage), "
                       "not %.4f-%.4f", m_lo, m_hi, *mass_range)
    if m_hi < m_lo:
        raise InputDataError(f"mass_range {mass_range} does not overlap the grid's {iso.mass_range}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def draw(k: int) -> dict[str, np.ndarray]:
        mass = rng.uniform(m_lo, m_hi, k)
        if age_sampling == "log":
            log_age = rng.uniform(*log_age_range, k)
        else:
            log_age = np.log10(rng.uniform(10 ** log_age_range[0], 10 ** log_age_range[1], k))
        av = rng.uniform(*av_range, k)
        dist = rng.uniform(*distance_range, k)
        q = iso.interpolate(mass, log_age)
        dm = 5.0 * np.log10(dist / 10.0)
        s = {"mass": mass, "log_age": log_age, "av": av, "distance": dist}
        for b in bands:
            s[b] = q[b] + dm + coeff[b] * av
        s["abs_G"] = q["G"]
        s["log_teff"], s["logg"], s["log_l_true"] = q["log_teff"], q["logg"], q["log_l"]
        s["current_mass"] = q["mass"]
        return s

    parts: list[dict[str, np.ndarray]] = []
    kept, drawn, rejected = 0, 0, 0
    for _ in range(200):
        if kept >= n:
            break
        need = n - kept
        rate = (kept + 1) / (drawn + 1) if drawn else 1.0
        k = int(min(max(need / max(rate, 0.02) * 1.1 + 16, need), 4 * n + 1000))
        s = draw(k)
        ok = s["G"] < lim["G"] if require_g else np.ones(k, dtype=bool)
        accepted = np.flatnonzero(ok)[:need]
        take = len(accepted)
        # count only the draws examined up to the last star kept, so n_drawn = n + rejected
        examined = int(accepted[-1]) + 1 if take == need else k
        drawn += examined
        rejected += examined - take
        parts.append({key: val[accepted] for key, val in s.items()})
        kept += take
    if kept < n:
        raise InputDataError(f"could not draw {n} stars with G < {lim['G']} ({kept} after {drawn} draws)")
    s = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]} if parts else draw(0)

    censored = np.zeros(n, dtype=np.int32)
    for b in bands:
        faint = s[b] >= lim[b]
        s[b] = np.where(faint, lim[b], s[b])
        censored[faint] |= 1 << ALL_BANDS.index(b)
    radius_true = radius_from_l_teff(s["log_l_true"], s["log_teff"])
    reported = (radius_true > RADIUS_MIN) & (s["log_l_true"] > LOG_L_MIN) & (s["abs_G"] < ABS_G_MAX)
    censored[~reported] |= CENSORED_RADIUS_BIT

    out = Table()
    for b in bands:
        out[b] = s[b]
    out["radius"] = np.where(reported, radius_true, RADIUS_MIN)
    out["log_l"] = np.where(reported, s["log_l_true"], LOG_L_MIN)
    out["distance"] = s["distance"]
    out["mass"] = s["mass"]
    out["log_age"] = s["log_age"]
    out["av"] = s["av"]
    out["teff"] = 10.0 ** s["log_teff"]
    out["log_teff"] = s["log_teff"]
    out["logg"] = s["logg"]
    out["radius_true"] = radius_true
    out["log_l_true"] = s["log_l_true"]
    out["abs_G"] = s["abs_G"]
    out["current_mass"] = s["current_mass"]
    out["censored"] = censored
    units = {"radius": "solRad", "radius_true": "solRad", "distance": "pc", "mass": "solMass",
             "current_mass": "solMass", "av": "mag", "teff": "K", "abs_G": "mag"}
    units.update({b: "mag" for b in bands})
    for c, unit in units.items():
        out[c].unit = unit
    out.meta.update({
        "grid": iso.source, "mh": iso.mh, "bands": list(bands), "extinction": coeff,
        "limits": {b: lim[b] for b in bands}, "mass_range": [m_lo, m_hi],
        "log_age_range": list(log_age_range), "av_range": list(av_range),
        "distance_range": list(distance_range), "age_sampling": age_sampling,
        "require_g": require_g, "n_drawn": drawn, "n_rejected_faint_g": rejected,
    })
    return out


def feature_names(bands: Sequence[str]) -> list[str]:
    """Network input columns for the given bands: bands in :data:`ALL_BANDS` order, then
    :data:`EXTRA_FEATURES`."""
    return [b for b in ALL_BANDS if b in bands] + list(EXTRA_FEATURES)


def observed_inputs(table: Any, features: Sequence[str], limits: Mapping[str, float]) -> np.ndarray:
    """(N, F) float64 network inputs from a table of photometry, treated like the synthetic data.

    A band that is missing (NaN/masked/-9999) or fainter than its limit is set to the limit,
    except G, which is required (rows without G give NaN rows). Radius and log L missing or below
    their limits are set to 0.5 Rsun and -1.54 (both, as for the synthetic stars); so are absent
    radius/log_l columns and absent band columns (other than G). Distance (pc) must be finite and
    positive, else the row is NaN. Column names are looked up case-insensitively.
    """
    from starlabels.labels.mdwarf import column_as_float, find_column

    cols: dict[str, np.ndarray | None] = {}
    for f in features:
        name = find_column(table, f)
        if name is None and (f in ("radius", "log_l") or (f in limits and f != "G")):
            cols[f] = None  # an absent column is missing for every star: set to its limit below
            continue
        if name is None:
            raise InputDataError(f"table has no column {f!r} needed by the YSO network (G and distance "
                                 "are required; absent bands, radius and log_l are set to their limits)")
        cols[f] = column_as_float(table, name)
    n = len(next(v for v in cols.values() if v is not None))
    cols = {f: (np.full(n, np.nan) if v is None else v) for f, v in cols.items()}
    x = np.empty((n, len(features)))
    bad = np.zeros(n, dtype=bool)
    r, logl = cols.get("radius"), cols.get("log_l")
    unreported = np.zeros(n, dtype=bool)
    if r is not None and logl is not None:
        with np.errstate(invalid="ignore"):
            unreported = ~(np.isfinite(r) & np.isfinite(logl) & (r > RADIUS_MIN) & (logl > LOG_L_MIN))
    for j, f in enumerate(features):
        v = cols[f].copy()
        if f in limits:
            with np.errstate(invalid="ignore"):
                faint = ~np.isfinite(v) | (v >= limits[f])
            if f == "G":
                bad |= ~np.isfinite(v)
            v = np.where(faint, limits[f], v)
        elif f == "radius":
            v = np.where(unreported, RADIUS_MIN, v)
        elif f == "log_l":
            v = np.where(unreported, LOG_L_MIN, v)
        elif f == "distance":
            with np.errstate(invalid="ignore"):
                bad |= ~(np.isfinite(v) & (v > 0))
        x[:, j] = v
    x[bad] = np.nan
    return x

