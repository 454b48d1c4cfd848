"""PARSEC isochrones of one metallicity for the young-star population (APOGEE Net §2.4).

:func:`load_isochrones` reads a PARSEC grid with photometry through the one PARSEC reader
(:func:`starlabels.io.parsec.read_parsec_table`: the reference FITS table, or the CMD web tool's
text output), keeps one metallicity (nearest to solar by default) and the ages needed, and
:meth:`Isochrones.interpolate` interpolates it: at each log-age node ``np.interp`` in initial
mass, then linear in log age — vectorised over stars, looping only over the ~20 age nodes.
:func:`extinction_for_bands` gives A_band / A_V of each band from the coefficients file that
accompanies the grid. Without a path, both files are found by
:func:`starlabels.io.parsec.parsec_grid_path` / :func:`~starlabels.io.parsec.extinction_coefficients_path`
(``$STARLABELS_ISOCHRONES``, ``$STARLABELS_REFERENCE_DIR``, the download cache).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from starlabels.errors import InputDataError, InputFileError
from starlabels.io.parsec import (
    extinction_coefficients_path,
    grid_column,
    parsec_grid_path,
    read_extinction_coefficients,
    read_parsec_table,
)

__all__ = [
    "ALL_BANDS", "BAND_EXTINCTION_NAMES", "BAND_GRID_COLUMNS", "LOG_AGE_RANGE", "MASS_RANGE",
    "QUANTITY_COLUMNS", "REQUIRED_BANDS", "Isochrones", "extinction_for_bands", "load_isochrones",
]

logger = logging.getLogger(__name__)

#: Canonical band names in network-input order.
ALL_BANDS: tuple[str, ...] = ("G", "BP", "RP", "J", "H", "Ks", "W1", "W2", "W3")
#: Bands every grid must have (Gaia + 2MASS); WISE is used when present.
REQUIRED_BANDS: tuple[str, ...] = ("G", "BP", "RP", "J", "H", "Ks")

#: Grid column names accepted for each band: the reference FITS grid's names, then the CMD web tool's.
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
#: Grid columns for the physical quantities (reference FITS names are upper case; CMD's mixed case).
QUANTITY_COLUMNS: dict[str, tuple[str, ...]] = {
    "mh": ("MH", "[M/H]"),
    "log_age": ("LOGAGE", "logAge"),
    "mini": ("MINI", "Mini"),
    "mass": ("MASS", "Mass"),
    "log_l": ("LOGL", "logL"),
    "log_teff": ("LOGTE", "logTe"),
    "logg": ("LOGG", "logg"),
}


#: Sampling ranges of the paper that bound the isochrones read (initial mass, Msun; log age, dex yr).
MASS_RANGE = (0.08, 3.0)  # Msun
LOG_AGE_RANGE = (6.0, 8.0)  # log10(age / yr): 1-100 Myr


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

    ``path``: FITS grid or CMD text file (default: :func:`starlabels.io.parsec.parsec_grid_path`).
    The metallicity nearest to ``mh`` (dex) is kept (a warning is logged if it is more than 0.1 dex
    away). Age nodes bracketing ``log_age_range`` are kept; at each, rows are sorted by initial
    mass, duplicates and rows with non-finite or placeholder (> 90 mag) magnitudes dropped, and
    masses beyond the first node above ``max_mass`` cut (later phases are irrelevant below 100 Myr
    and 3 Msun).
    """
    path = parsec_grid_path(path)
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
    table = read_parsec_table(path)
    names = list(table.colnames)
    cols = {q: grid_column(names, opts) for q, opts in QUANTITY_COLUMNS.items()}
    missing = [q for q in ("log_age", "mini", "log_l", "log_teff", "logg") if cols[q] is None]
    if missing:
        raise InputFileError(path, f"isochrone table lacks columns for {missing}; has {names[:30]}")
    band_cols = {b: grid_column(names, BAND_GRID_COLUMNS[b]) for b in ALL_BANDS}
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
    grid: str | Path | None = None,
) -> dict[str, float]:
    """A_band / A_V for each canonical band, from a coefficients file (default: the one beside
    ``grid``, else found by :func:`starlabels.io.parsec.extinction_coefficients_path`) or a mapping
    keyed by canonical band names (``"G"``, ``"Ks"``) or by the file's names."""
    if extinction is None or isinstance(extinction, (str, Path)):
        src = extinction_coefficients_path(extinction, grid=grid)
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

