"""PARSEC isochrones for Kiel diagrams (log g vs Teff).

The grid is a FITS (or any astropy-readable) table with one row per isochrone point and at least
the columns ``MH`` ([M/H], dex), ``LOGAGE`` (log10 age / yr), ``LOGTE`` (log10 Teff / K) and
``LOGG`` (log10 g / cm s⁻², dex); ``LABEL`` (PARSEC evolutionary phase: 0 pre-main sequence,
1 main sequence, 2 subgiant branch, 3 red giant branch, 4–6 core-helium burning, 7 early AGB,
8 thermally pulsing AGB, 9 post-AGB/white dwarf) and ``MINI`` (initial mass, M☉) are used when
present. Column names are matched case-insensitively, so CMD output works too. The file is read
by :func:`starlabels.io.parsec.read_parsec_table` (the one PARSEC reader).

The project's reference grid ``parsec_photometry_grid.fits.gz`` (PARSEC v1.2S, [M/H]
−2.19…+0.3, log age 6.0–10.2 in steps of 0.12) is found through :func:`default_isochrone_path`
(``$STARLABELS_ISOCHRONES``, else ``$STARLABELS_REFERENCE_DIR`` or the download cache); it is
never shipped with the package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from starlabels.errors import InputDataError, InputFileError
from starlabels.io.parsec import parsec_grid_path, read_parsec_table

_REQUIRED = ("MH", "LOGAGE", "LOGTE", "LOGG")
_OPTIONAL = ("LABEL", "MINI")


def default_isochrone_path() -> Path:
    """``$STARLABELS_ISOCHRONES`` if set, else ``parsec_photometry_grid.fits.gz`` found by
    :func:`starlabels.core.reference.find_reference` (:func:`starlabels.io.parsec.parsec_grid_path`)."""
    return parsec_grid_path()


@dataclass(frozen=True)
class IsochroneGrid:
    """Columns of an isochrone table as float arrays, all (N_points,)."""

    mh: np.ndarray
    log_age: np.ndarray
    log_teff: np.ndarray
    logg: np.ndarray
    phase: np.ndarray | None
    mass_init: np.ndarray | None
    path: str

    @property
    def metallicities(self) -> np.ndarray:
        """Distinct [M/H] values of the grid (dex), sorted."""
        return np.unique(self.mh)

    @property
    def ages(self) -> np.ndarray:
        """Distinct log10(age/yr) values of the grid, sorted."""
        return np.unique(self.log_age)


@dataclass(frozen=True)
class Isochrone:
    """One isochrone: ``teff`` (K) and ``logg`` (dex) along increasing initial mass."""

    log_age: float
    mh: float
    teff: np.ndarray
    logg: np.ndarray
    phase: np.ndarray | None = None

    @property
    def age_gyr(self) -> float:
        return 10.0 ** (self.log_age - 9.0)

    @property
    def label(self) -> str:
        """Legend text, e.g. ``"4.0 Gyr, [M/H] = -0.45"``."""
        age = self.age_gyr
        age_s = f"{age:.1f} Gyr" if age >= 0.1 else f"{age * 1e3:.0f} Myr"
        return f"{age_s}, [M/H] = {self.mh:+.2f}"


def load_isochrones(path: str | Path | None = None) -> IsochroneGrid:
    """Read an isochrone grid (cached per file and modification time).

    ``path`` defaults to :func:`default_isochrone_path`. Raises :class:`InputFileError` for a
    missing or unreadable file or one without the MH, LOGAGE, LOGTE and LOGG columns.
    """
    p = Path(path) if path is not None else default_isochrone_path()
    if not p.is_file():
        raise InputFileError(p, "isochrone file does not exist")
    return _load_cached(str(p.resolve()), p.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _load_cached(path: str, mtime_ns: int) -> IsochroneGrid:
    table = read_parsec_table(path)
    by_upper = {c.upper(): c for c in table.colnames}
    missing = [c for c in _REQUIRED if c not in by_upper]
    if missing:
        raise InputFileError(path, f"isochrone table lacks columns {missing}; has {table.colnames}")

    def col(name: str) -> np.ndarray | None:
        if name not in by_upper:
            return None
        return np.asarray(np.ma.filled(np.ma.asarray(table[by_upper[name]]).astype(float), np.nan))

    return IsochroneGrid(
        mh=col("MH"), log_age=col("LOGAGE"), log_teff=col("LOGTE"), logg=col("LOGG"),
        phase=col("LABEL"), mass_init=col("MINI"), path=path,
    )


def _nearest(available: np.ndarray, wanted: float, tol: float, what: str) -> float:
    k = int(np.argmin(np.abs(available - wanted)))
    if abs(available[k] - wanted) > tol:
        raise InputDataError(
            f"no isochrone with {what} within {tol} of {wanted}; grid has "
            f"{np.array2string(available, precision=3, separator=', ')}"
        )
    return float(available[k])


def select_isochrones(
    log_age: float | Iterable[float],
    mh: float | Iterable[float],
    *,
    grid: IsochroneGrid | str | Path | None = None,
    phases: Sequence[int] | None = tuple(range(0, 8)),
    tol_age: float = 0.1,
    tol_mh: float = 0.15,
) -> list[Isochrone]:
    """Isochrones for every combination of ``log_age`` (log10 yr) and ``mh`` ([M/H], dex).

    Each requested value is matched to the nearest one in the grid (within ``tol_age`` /
    ``tol_mh``, else :class:`InputDataError` lists what the grid has). ``phases`` keeps only
    those PARSEC evolutionary phases (default 0–7: pre-main sequence to early AGB, leaving out
    the thermally pulsing AGB loops and post-AGB); ``None`` keeps all. Teff = 10**LOGTE.
    """
    g = grid if isinstance(grid, IsochroneGrid) else load_isochrones(grid)
    ages = np.atleast_1d(np.asarray(log_age, dtype=float))
    mhs = np.atleast_1d(np.asarray(mh, dtype=float))
    avail_age, avail_mh = g.ages, g.metallicities
    out = []
    for a in ages:
        a_g = _nearest(avail_age, float(a), tol_age, "log age")
        for z in mhs:
            z_g = _nearest(avail_mh, float(z), tol_mh, "[M/H]")
            sel = np.isclose(g.log_age, a_g) & np.isclose(g.mh, z_g)
            sel &= np.isfinite(g.log_teff) & np.isfinite(g.logg)
            if phases is not None and g.phase is not None:
                sel &= np.isin(g.phase, np.asarray(phases, dtype=float))
            idx = np.flatnonzero(sel)
            if g.mass_init is not None:
                idx = idx[np.argsort(g.mass_init[idx], kind="stable")]
            out.append(Isochrone(
                log_age=a_g, mh=z_g, teff=10.0 ** g.log_teff[idx], logg=g.logg[idx],
                phase=None if g.phase is None else g.phase[idx].astype(int),
            ))
    return out
