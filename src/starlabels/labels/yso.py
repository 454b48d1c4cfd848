"""Labels for young stellar objects from photometry (APOGEE Net §2.4).

Isochrone fits fail for YSOs (extinction degeneracies, infrared excess, grid edges), so the paper
trains a small CNN on *synthetic* stars drawn from the PARSEC isochrones and applies it to the real
photometry. This module implements that recipe:

1. :func:`load_isochrones` reads a PARSEC grid with photometry — the FITS table in
   ``../shared/data/isochrones`` or a text file as written by the CMD web tool — keeps one
   metallicity (nearest to solar by default) and the ages needed, and interpolates it
   (:meth:`Isochrones.interpolate`): at each log-age node ``np.interp`` in initial mass, then
   linear in log age — vectorised over stars, looping only over the ~20 age nodes.
2. :func:`synthetic_population` draws stars as in the paper: mass uniform in 0.08-3 Msun, age
   1-100 Myr (uniform in log age by default, see below), A_V uniform in 0-20 mag, distance uniform
   in 50-1000 pc, solar metallicity. Observed inputs: apparent magnitudes in Gaia G/BP/RP and 2MASS
   J/H/Ks (+ WISE W1-W3 when the grid has them) with extinction A_band = A_V x (A_band/A_V from the
   coefficients file); a magnitude fainter than the paper's detection limit (G < 19, BP < 20.5,
   RP < 17.5, J < 17, H < 16, Ks < 16, W1 < 16, W2 < 16, W3 < 13.5) is set to the limit. Only G is
   required, so stars with G >= 19 are not part of the population (they are redrawn). Radius and
   log L are "reported" as Gaia DR2 did only if R > 0.5 Rsun, log L > -1.54 and M_G < 10 (absolute
   G from the isochrone); otherwise both are set to their limiting values 0.5 Rsun and -1.54. The
   distance is an input too. No noise is added.
3. :func:`train_yso_network` trains the paper's small CNN (three conv1d + max-pool layers over the
   feature axis, two dense layers; inputs standardised, radius and distance as log10) to predict
   log age, mass, A_V, log Teff and log g; :class:`YSOLabeler` applies it to a table of (real or
   synthetic) photometry and saves/loads itself. ``bench/yso_labels.py`` trains it at full size.

The paper says ages are drawn "uniformly from 1 to 100 Myr" without saying in which variable; the
default here is uniform in log age (``age_sampling="log"``), which puts as many stars in 1-10 Myr
(where the APOGEE YSOs are) as in 10-100 Myr; ``age_sampling="linear"`` is the other reading. The
grid's metallicity nearest to ``mh`` is used (PARSEC's [M/H] = 0.05 in the shared grid) and its
lowest initial mass (0.09 Msun) bounds the drawn masses from below: the isochrones are not
extrapolated.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from starlabels.errors import InputDataError, InputFileError, ModelFormatError

logger = logging.getLogger(__name__)

#: Canonical band names in network-input order.
ALL_BANDS: tuple[str, ...] = ("G", "BP", "RP", "J", "H", "Ks", "W1", "W2", "W3")
#: Bands every grid must have (Gaia + 2MASS); WISE is used when present.
REQUIRED_BANDS: tuple[str, ...] = ("G", "BP", "RP", "J", "H", "Ks")

#: Grid column names accepted for each band: the shared FITS grid's names, then the CMD web tool's.
BAND_GRID_COLUMNS: dict[str, tuple[str, ...]] = {
    "G": ("GAIAEDR3_GMAG", "GAIADR3_GMAG", "GAIADR2_GMAG", "Gmag"),
    "BP": ("GAIAEDR3_GBPMAG", "GAIAEDR3_BPMAG", "GAIADR3_GBPMAG", "GAIADR2_GBPMAG", "G_BPmag",
           "G_BPbrmag"),
    "RP": ("GAIAEDR3_GRPMAG", "GAIAEDR3_RPMAG", "GAIADR3_GRPMAG", "GAIADR2_GRPMAG", "G_RPmag"),
    "J": ("TMASS_JMAG", "Jmag"),
    "H": ("TMASS_HMAG", "Hmag"),
    "Ks": ("TMASS_KSMAG", "Ksmag"),
    "W1": ("WISE_W1MAG", "W1mag"),
    "W2": ("WISE_W2MAG", "W2mag"),
    "W3": ("WISE_W3MAG", "W3mag"),
}
#: Names looked up in the extinction-coefficients file (A_band / A_V) for each band.
BAND_EXTINCTION_NAMES: dict[str, tuple[str, ...]] = {
    "G": ("GAIAEDR3_GMAG", "GAIADR3_GMAG", "GAIADR2_GMAG"),
    "BP": ("GAIAEDR3_GBPMAG", "GAIAEDR3_BPMAG", "GAIADR3_GBPMAG", "GAIADR2_GBPMAG"),
    "RP": ("GAIAEDR3_GRPMAG", "GAIAEDR3_RPMAG", "GAIADR3_GRPMAG", "GAIADR2_GRPMAG"),
    "J": ("TMASS_JMAG",),
    "H": ("TMASS_HMAG",),
    "Ks": ("TMASS_KSMAG",),
    "W1": ("WISE_W1MAG",),
    "W2": ("WISE_W2MAG",),
    "W3": ("WISE_W3MAG",),
}
#: Grid columns for the physical quantities (shared FITS names are upper case; CMD's mixed case).
_QUANTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "mh": ("MH", "[M/H]"),
    "log_age": ("LOGAGE", "logAge"),
    "mini": ("MINI", "Mini"),
    "mass": ("MASS", "Mass"),
    "log_l": ("LOGL", "logL"),
    "log_teff": ("LOGTE", "logTe"),
    "logg": ("LOGG", "logg"),
}

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

#: Sampling ranges of the paper.
MASS_RANGE = (0.08, 3.0)  # Msun
LOG_AGE_RANGE = (6.0, 8.0)  # log10(age / yr): 1-100 Myr
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


def _shared_data_dir() -> Path:
    env = os.environ.get("STARLABELS_SHARED_DATA")
    if env:
        return Path(env)
    cwd_candidate = Path.cwd().parent / "shared" / "data"
    if cwd_candidate.is_dir():
        return cwd_candidate
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def default_grid_path() -> Path:
    """``isochrones/parsec_photometry_grid.fits.gz`` under ``$STARLABELS_SHARED_DATA`` or
    ``../shared/data`` (relative to the working directory, else to the source checkout)."""
    return _shared_data_dir() / "isochrones" / "parsec_photometry_grid.fits.gz"


def default_extinction_path() -> Path:
    """The extinction-coefficient file beside the default grid."""
    return _shared_data_dir() / "isochrones" / "extinction_coefficients.txt"


# ----------------------------------------------------------------------------- reading


def read_extinction_coefficients(path: str | Path) -> dict[str, float]:
    """A_band / A_V per band name from a whitespace table ``NAME EXTINCTION [LAMBDA WIDTH]``.

    Lines starting with ``#`` and blank lines are skipped. Raises :class:`InputFileError` for a
    missing file or a line whose second field is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "extinction-coefficient file not found")
    out: dict[str, float] = {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        parts = s.split()
        try:
            out[parts[0]] = float(parts[1])
        except (IndexError, ValueError):
            raise InputFileError(path, f"line {i} is not 'NAME A_band/A_V ...': {s!r}") from None
    if not out:
        raise InputFileError(path, "no extinction coefficients found")
    return out


def read_isochrone_table(path: str | Path):
    """Read a PARSEC grid as an astropy Table: FITS (any HDU with a table) or CMD text output.

    CMD text: ``#`` comment lines, the last comment line before the data starting with ``Zini``
    gives the column names (repeated headers of multi-isochrone files are skipped).
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "isochrone grid not found")
    name = path.name.lower()
    if name.endswith((".fits", ".fits.gz", ".fit", ".fit.gz", ".fts")):
        try:
            return Table.read(path)
        except Exception as exc:
            raise InputFileError(path, f"cannot read FITS isochrone table ({exc})") from exc
    header: list[str] | None = None
    rows: list[str] = []
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise InputFileError(path, f"cannot read ({exc})") from exc
    for line in text.splitlines():
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            words = s.lstrip("#").split()
            if words and words[0].lower() == "zini" and header is None:
                header = words
            continue
        rows.append(s)
    if header is None:
        raise InputFileError(path, "no CMD header line ('# Zini MH logAge Mini ...') found")
    if not rows:
        raise InputFileError(path, "no data rows")
    try:
        data = np.loadtxt(rows, dtype=float, ndmin=2)
    except ValueError as exc:
        raise InputFileError(path, f"unparsable data row ({exc})") from exc
    if data.shape[1] != len(header):
        raise InputFileError(
            path, f"header names {len(header)} columns but data rows have {data.shape[1]}"
        )
    return Table(data, names=header)


def _pick(colnames: Sequence[str], options: Sequence[str]) -> str | None:
    for o in options:
        if o in colnames:
            return o
    lower = {c.lower(): c for c in colnames}
    for o in options:
        if o.lower() in lower and o.lower() not in ("jmag", "hmag", "gmag"):
            return lower[o.lower()]
    return None


@dataclass
class Isochrones:
    """One metallicity of a PARSEC grid, ready for interpolation.

    ``log_ages`` (A,) are the age nodes (dex yr); for node i, ``mini[i]`` (M_i,) is the strictly
    increasing initial mass (Msun) and ``values[name][i]`` (M_i,) the quantity: ``mass`` (Msun),
    ``log_l``, ``log_teff``, ``logg`` and absolute magnitudes under the canonical band names.
    """

    log_ages: np.ndarray
    mini: list[np.ndarray]
    values: dict[str, list[np.ndarray]]
    bands: tuple[str, ...]
    mh: float
    source: str
    band_columns: dict[str, str] = field(default_factory=dict)

    @property
    def mass_range(self) -> tuple[float, float]:
        """Initial-mass range covered at *every* age node (Msun)."""
        return (max(float(m[0]) for m in self.mini), min(float(m[-1]) for m in self.mini))

    def interpolate(self, mass: np.ndarray, log_age: np.ndarray) -> dict[str, np.ndarray]:
        """Quantities at (initial mass [Msun], log age [dex yr]) for N stars, each (N,).

        Linear in initial mass at each bracketing age node (``np.interp``), then linear in log
        age. Points outside the grid are clamped to its edges (callers draw inside it).
        """
        mass = np.asarray(mass, dtype=float).reshape(-1)
        log_age = np.asarray(log_age, dtype=float).reshape(-1)
        ages = self.log_ages
        if len(ages) == 1:
            lo = np.zeros(len(mass), dtype=np.int64)
            w = np.zeros(len(mass))
        else:
            a = np.clip(log_age, ages[0], ages[-1])
            lo = np.clip(np.searchsorted(ages, a, side="right") - 1, 0, len(ages) - 2)
            w = (a - ages[lo]) / (ages[lo + 1] - ages[lo])
        out = {name: np.zeros(len(mass)) for name in self.values}
        for node in np.unique(np.concatenate([lo, np.minimum(lo + 1, len(ages) - 1)])):
            for which, weight in ((lo == node, 1.0 - w), (np.minimum(lo + 1, len(ages) - 1) == node, w)):
                sel = which & (weight > 0) if len(ages) > 1 else which
                if not sel.any():
                    continue
                m = mass[sel]
                for name, per_node in self.values.items():
                    out[name][sel] += weight[sel] * np.interp(m, self.mini[node], per_node[node])
        return out


def load_isochrones(
    path: str | Path | None = None,
    *,
    mh: float = 0.0,
    log_age_range: tuple[float, float] = LOG_AGE_RANGE,
    max_mass: float = MASS_RANGE[1],
) -> Isochrones:
    """Read and prepare the isochrones of one metallicity (cached per file, mtime and arguments).

    ``path``: FITS grid or CMD text file (default :func:`default_grid_path`). The metallicity
    nearest to ``mh`` (dex) is kept (a warning is logged if it is more than 0.1 dex away). Age nodes
    bracketing ``log_age_range`` are kept; at each, rows are sorted by initial mass, duplicates and
    rows with non-finite or placeholder (> 90 mag) magnitudes dropped, and masses beyond the first
    node above ``max_mass`` cut (later phases are irrelevant below 100 Myr and 3 Msun).
    """
    path = Path(path) if path is not None else default_grid_path()
    if not path.is_file():
        raise InputFileError(path, "isochrone grid not found (pass the PARSEC grid path)")
    return _load_isochrones_cached(
        str(path.resolve()), path.stat().st_mtime, float(mh), tuple(map(float, log_age_range)),
        float(max_mass),
    )


@functools.lru_cache(maxsize=4)
def _load_isochrones_cached(
    path: str, mtime: float, mh: float, log_age_range: tuple[float, float], max_mass: float
) -> Isochrones:
    table = read_isochrone_table(path)
    names = list(table.colnames)
    cols = {q: _pick(names, opts) for q, opts in _QUANTITY_COLUMNS.items()}
    missing = [q for q in ("log_age", "mini", "log_l", "log_teff", "logg") if cols[q] is None]
    if missing:
        raise InputFileError(path, f"isochrone table lacks columns for {missing}; has {names[:30]}")
    band_cols = {b: _pick(names, BAND_GRID_COLUMNS[b]) for b in ALL_BANDS}
    absent = [b for b in REQUIRED_BANDS if band_cols[b] is None]
    if absent:
        raise InputFileError(path, f"isochrone table lacks magnitudes for bands {absent}")
    bands = tuple(b for b in ALL_BANDS if band_cols[b] is not None)

    def arr(col: str) -> np.ndarray:
        return np.asarray(table[col], dtype=float)

    log_age = arr(cols["log_age"])
    if cols["mh"] is not None:
        mhs = arr(cols["mh"])
        avail = np.unique(mhs)
        chosen = float(avail[np.argmin(np.abs(avail - mh))])
        if abs(chosen - mh) > 0.1:
            logger.warning("isochrones: nearest [M/H] to %.2f in %s is %.2f", mh, path, chosen)
        keep = mhs == chosen
    else:
        chosen, keep = float("nan"), np.ones(len(log_age), dtype=bool)
    all_ages = np.unique(log_age[keep])
    lo_i = max(int(np.searchsorted(all_ages, log_age_range[0], side="right")) - 1, 0)
    hi_i = min(int(np.searchsorted(all_ages, log_age_range[1], side="left")), len(all_ages) - 1)
    ages = all_ages[lo_i: hi_i + 1]
    if ages[0] > log_age_range[0] + 1e-6 or ages[-1] < log_age_range[1] - 1e-6:
        raise InputFileError(
            path, f"grid ages {all_ages[0]:.2f}-{all_ages[-1]:.2f} do not cover log age "
                  f"{log_age_range[0]}-{log_age_range[1]}"
        )
    quantities = {"mass": cols["mass"] or cols["mini"], "log_l": cols["log_l"],
                  "log_teff": cols["log_teff"], "logg": cols["logg"]}
    quantities.update({b: band_cols[b] for b in bands})
    data = {q: arr(c) for q, c in quantities.items()}
    mini_all = arr(cols["mini"])
    minis: list[np.ndarray] = []
    values: dict[str, list[np.ndarray]] = {q: [] for q in quantities}
    for age in ages:
        sel = keep & (log_age == age)
        mags = np.stack([data[b][sel] for b in bands])
        ok = (np.isfinite(mags) & (np.abs(mags) < 90)).all(axis=0) & np.isfinite(mini_all[sel])
        for q in ("mass", "log_l", "log_teff", "logg"):
            ok &= np.isfinite(data[q][sel])
        m = mini_all[sel][ok]
        order = np.argsort(m, kind="stable")
        m_sorted = m[order]
        uniq_m, first = np.unique(m_sorted, return_index=True)
        stop = min(max(int(np.searchsorted(uniq_m, max_mass, side="left")) + 1, 2), len(uniq_m))
        if stop < 2:
            raise InputFileError(path, f"log age {age}: fewer than two usable isochrone points")
        minis.append(uniq_m[:stop])
        for q in quantities:
            values[q].append(data[q][sel][ok][order][first][:stop])
    iso = Isochrones(
        log_ages=ages, mini=minis, values=values, bands=bands, mh=chosen, source=str(path),
        band_columns={b: str(band_cols[b]) for b in bands},
    )
    logger.info("isochrones: %s, [M/H]=%.2f, %d ages %.2f-%.2f, bands %s", path, chosen, len(ages),
                ages[0], ages[-1], ",".join(bands))
    return iso


def extinction_for_bands(
    bands: Sequence[str],
    extinction: str | Path | Mapping[str, float] | None = None,
) -> dict[str, float]:
    """A_band / A_V for each canonical band, from a coefficients file (default beside the grid) or
    a mapping keyed by canonical band names (``"G"``, ``"Ks"``) or by the file's names."""
    if extinction is None or isinstance(extinction, (str, Path)):
        src = Path(extinction) if extinction is not None else default_extinction_path()
        table = read_extinction_coefficients(src)
    else:
        src, table = "mapping", dict(extinction)
    out: dict[str, float] = {}
    for b in bands:
        for key in (b, *BAND_EXTINCTION_NAMES[b]):
            if key in table:
                out[b] = float(table[key])
                break
        else:
            problem = f"no extinction coefficient for band {b} (looked for {BAND_EXTINCTION_NAMES[b]})"
            if isinstance(src, Path):
                raise InputFileError(src, problem)
            raise InputDataError(problem)
    return out


# ----------------------------------------------------------------------------- population


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
    coeff = extinction_for_bands(bands, extinction)
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


# ----------------------------------------------------------------------------- network


def _build_cnn(n_inputs: int, n_outputs: int, channels: Sequence[int], kernel_size: int, hidden: int):
    import torch
    from torch import nn

    class YSOPhotometryCNN(nn.Module):
        """Three (conv1d -> SiLU -> max-pool) blocks over the feature axis, then two dense layers.

        Input (N, F) or (N, 1, F) standardised features; output (N, n_outputs) standardised
        targets.
        """

        def __init__(self) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in, length = 1, n_inputs
            for c_out in channels:
                layers += [nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2), nn.SiLU(),
                           nn.MaxPool1d(2, ceil_mode=True)]
                c_in, length = c_out, math.ceil(length / 2)
            self.features = nn.Sequential(*layers)
            self.dense = nn.Sequential(nn.Flatten(), nn.Linear(c_in * length, hidden), nn.SiLU(),
                                       nn.Linear(hidden, n_outputs))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dim() == 2:
                x = x.unsqueeze(1)
            return self.dense(self.features(x))

    return YSOPhotometryCNN()


#: Inputs that enter the network as log10 (radius in Rsun, distance in pc): with log R and log L,
#: log Teff is linear in the inputs (Stefan-Boltzmann) and magnitudes are linear in log distance.
LOG_INPUTS: tuple[str, ...] = ("radius", "distance")


def _input_transform(x: np.ndarray, features: Sequence[str]) -> np.ndarray:
    """(N, F) raw inputs -> network inputs: :data:`LOG_INPUTS` as log10, everything else as given."""
    x = np.array(x, dtype=float, copy=True)
    for name in LOG_INPUTS:
        if name in features:
            j = list(features).index(name)
            with np.errstate(invalid="ignore", divide="ignore"):
                x[:, j] = np.log10(np.where(x[:, j] > 0, x[:, j], np.nan))
    return x


@dataclass
class YSOLabeler:
    """A trained YSO photometry network with its scalers; :meth:`predict` labels a table."""

    model: Any
    features: list[str]
    targets: list[str]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    limits: dict[str, float]
    arch: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)

    def predict_array(
        self, x: np.ndarray, *, batch_size: int = 8192, device: str | None = None
    ) -> np.ndarray:
        """(N, T) targets in physical units from (N, F) raw inputs (NaN rows give NaN rows)."""
        import torch

        from starlabels.utils import get_device

        dev = get_device(device)
        model = self.model.to(dev).eval()
        z = (_input_transform(x, self.features) - self.x_mean) / self.x_std
        good = np.isfinite(z).all(axis=1)
        out = np.full((len(z), len(self.targets)), np.nan)
        zg = torch.as_tensor(z[good], dtype=torch.float32)
        preds = []
        with torch.no_grad():
            for i in range(0, len(zg), batch_size):
                preds.append(model(zg[i: i + batch_size].to(dev)).cpu().numpy())
        if preds:
            out[good] = np.concatenate(preds) * self.y_std + self.y_mean
        return out

    def predict(self, table: Any, *, batch_size: int = 8192, device: str | None = None):
        """Labels for a table of photometry (synthetic population or real stars, same columns).

        Returns an astropy Table: ``log_age`` (dex yr), ``mass`` (Msun), ``av`` (mag),
        ``log_teff``, ``teff`` (K), ``logg`` (dex); NaN for rows without G or distance.
        """
        from astropy.table import Table

        y = self.predict_array(observed_inputs(table, self.features, self.limits),
                               batch_size=batch_size, device=device)
        out = Table()
        for j, t in enumerate(self.targets):
            out[t] = y[:, j]
        if "log_teff" in self.targets:
            out["teff"] = 10.0 ** out["log_teff"]
            out["teff"].unit = "K"
        return out

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and ``weights.safetensors`` into ``folder`` (created)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        cfg = {
            "format": "starlabels-yso-labeler", "format_version": 1,
            "features": self.features, "targets": self.targets,
            "target_units": {t: TARGET_UNITS.get(t, "") for t in self.targets},
            "x_mean": self.x_mean.tolist(), "x_std": self.x_std.tolist(),
            "y_mean": self.y_mean.tolist(), "y_std": self.y_std.tolist(),
            "limits": self.limits, "arch": self.arch, "training": self.training,
        }
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / "weights.safetensors"))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> YSOLabeler:
        """Restore a labeler written by :meth:`save` (raises :class:`ModelFormatError`)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        cfg_path, w_path = folder / "config.json", folder / "weights.safetensors"
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise ModelFormatError(f"{folder}: missing {p.name}")
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFormatError(f"{cfg_path}: not valid JSON ({exc})") from exc
        if cfg.get("format") != "starlabels-yso-labeler" or cfg.get("format_version") != 1:
            raise ModelFormatError(f"{cfg_path}: not a version-1 YSO labeler")
        model = _build_cnn(**cfg["arch"])
        model.load_state_dict(load_file(str(w_path)))
        return cls(
            model=model, features=cfg["features"], targets=cfg["targets"],
            x_mean=np.array(cfg["x_mean"]), x_std=np.array(cfg["x_std"]),
            y_mean=np.array(cfg["y_mean"]), y_std=np.array(cfg["y_std"]),
            limits=cfg["limits"], arch=cfg["arch"], training=cfg.get("training", {}),
        )


def train_yso_network(
    train: Any,
    *,
    dev: Any | None = None,
    targets: Sequence[str] = TARGETS,
    epochs: int = 60,
    batch_size: int = 256,
    lr: float = 2e-3,
    weight_decay: float = 0.0,
    channels: Sequence[int] = (32, 64, 128),
    kernel_size: int = 3,
    hidden: int = 256,
    seed: int = 0,
    device: str | None = None,
    limits: Mapping[str, float] | None = None,
    cpu_threads: int | None = 1,
) -> tuple[YSOLabeler, list[dict[str, float]]]:
    """Train the YSO photometry CNN on a synthetic population (table from
    :func:`synthetic_population`).

    Inputs: the bands present in ``train.meta["bands"]`` (else in the table), radius, log L and
    distance (as log10), standardised; targets standardised. MSE loss, Adam with a one-cycle
    learning-rate schedule; with ``dev`` the epoch with the lowest dev loss is kept.
    ``cpu_threads``: torch intra-op threads while training on the CPU (restored afterwards); the
    network is so small that one thread is fastest, and several threads are many times slower on a
    busy machine. ``None`` leaves the setting alone.
    Returns the labeler and the history (one dict per epoch: ``epoch, train_loss, dev_loss, lr,
    seconds``).
    """
    import torch

    from starlabels.utils import get_device

    previous_threads = torch.get_num_threads()
    if cpu_threads is not None and get_device(device).type == "cpu":
        torch.set_num_threads(cpu_threads)
    try:
        return _train(train, dev, targets, epochs, batch_size, lr, weight_decay, channels, kernel_size,
                      hidden, seed, device, limits)
    finally:
        torch.set_num_threads(previous_threads)


def _train(train, dev, targets, epochs, batch_size, lr, weight_decay, channels, kernel_size, hidden,
           seed, device, limits) -> tuple[YSOLabeler, list[dict[str, float]]]:
    import torch

    from starlabels.labels.mdwarf import table_columns
    from starlabels.utils import get_device, progress, seed_everything

    seed_everything(seed)
    bands = list(train.meta.get("bands", [])) if hasattr(train, "meta") else []
    if not bands:
        bands = [b for b in ALL_BANDS if b in table_columns(train)]
    feats = feature_names(bands)
    lim = {b: float(v) for b, v in {**PAPER_LIMITS, **(limits or {})}.items() if b in bands}
    x = _input_transform(observed_inputs(train, feats, lim), feats)
    y = np.stack([np.asarray(train[t], dtype=float) for t in targets], axis=1)
    good = np.isfinite(x).all(axis=1) & np.isfinite(y).all(axis=1)
    if good.sum() < 2:
        raise InputDataError("training population has fewer than two usable stars")
    x, y = x[good], y[good]
    x_mean, x_std = x.mean(0), x.std(0)
    x_std[x_std == 0] = 1.0
    y_mean, y_std = y.mean(0), y.std(0)
    y_std[y_std == 0] = 1.0
    arch = {"n_inputs": len(feats), "n_outputs": len(targets), "channels": list(channels),
            "kernel_size": kernel_size, "hidden": hidden}
    model = _build_cnn(**arch)
    dev_t = get_device(device)
    model.to(dev_t)
    xt = torch.as_tensor((x - x_mean) / x_std, dtype=torch.float32, device=dev_t)
    yt = torch.as_tensor((y - y_mean) / y_std, dtype=torch.float32, device=dev_t)
    xd = yd = None
    if dev is not None:
        xdv = _input_transform(observed_inputs(dev, feats, lim), feats)
        ydv = np.stack([np.asarray(dev[t], dtype=float) for t in targets], axis=1)
        ok = np.isfinite(xdv).all(axis=1) & np.isfinite(ydv).all(axis=1)
        xd = torch.as_tensor((xdv[ok] - x_mean) / x_std, dtype=torch.float32, device=dev_t)
        yd = torch.as_tensor((ydv[ok] - y_mean) / y_std, dtype=torch.float32, device=dev_t)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = max(1, math.ceil(len(xt) / batch_size))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    best_state, best_loss = None, float("inf")
    for epoch in progress(range(epochs), desc="YSO CNN", total=epochs, unit="epoch"):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xt), generator=gen).to(dev_t)
        total = 0.0
        for i in range(0, len(xt), batch_size):
            idx = perm[i: i + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = torch.mean((model(xt[idx]) - yt[idx]) ** 2)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        row = {"epoch": epoch, "train_loss": total / len(xt), "dev_loss": float("nan"),
               "lr": float(opt.param_groups[0]["lr"])}
        if xd is not None and len(xd):
            model.eval()
            with torch.no_grad():
                dl = float(torch.mean((model(xd) - yd) ** 2))
            row["dev_loss"] = dl
            if dl < best_loss:
                best_loss = dl
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.cpu().eval()
    labeler = YSOLabeler(
        model=model, features=feats, targets=list(targets), x_mean=x_mean, x_std=x_std,
        y_mean=y_mean, y_std=y_std, limits=lim, arch=arch,
        training={"n_train": len(xt), "n_dev": len(xd) if xd is not None else 0,
                  "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                  "best_dev_loss": best_loss if best_state is not None else None,
                  "population": {k: v for k, v in getattr(train, "meta", {}).items()
                                 if isinstance(v, (str, int, float, list, dict))}},
    )
    return labeler, history


def scatter_report(labeler: YSOLabeler, test: Any) -> dict[str, dict[str, float]]:
    """Residual statistics (prediction - truth) of ``labeler`` on a synthetic test population.

    For each target (and ``teff`` in K): ``bias`` (mean), ``std``, ``robust_std``
    (1.4826 x median absolute deviation), ``p68`` (half the 16-84 percentile width) and
    ``spread`` (std of the true values), all in the target's units; ``n`` rows used.
    """
    pred = labeler.predict(test)
    out: dict[str, dict[str, float]] = {}
    names = [*labeler.targets, *(["teff"] if "log_teff" in labeler.targets else [])]
    for t in names:
        p = np.asarray(pred[t], dtype=float)
        truth = np.asarray(test[t], dtype=float)
        ok = np.isfinite(p) & np.isfinite(truth)
        d = p[ok] - truth[ok]
        q16, q84 = np.percentile(d, [16, 84]) if len(d) else (np.nan, np.nan)
        out[t] = {
            "bias": float(np.mean(d)), "std": float(np.std(d)),
            "robust_std": float(1.4826 * np.median(np.abs(d - np.median(d)))),
            "p68": float(0.5 * (q84 - q16)), "spread": float(np.std(truth[ok])), "n": int(ok.sum()),
        }
    return out
