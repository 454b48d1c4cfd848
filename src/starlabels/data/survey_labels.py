"""True labels of simulated surveys (step 1 of :mod:`starlabels.data.survey`).

Red giants resampled from the real DR17 ASPCAP sample (its two sub-samples are not row-aligned,
so each giant's [Fe/H] is taken from a near neighbour of its (Teff, [α/M]) in the second sample,
which keeps the [α/M]–[Fe/H] sequences; an analytic red-clump/RGB distribution when no sample is
given), main-sequence dwarfs, cool dwarfs and (when asked for) hot A/F dwarfs from simple
analytic relations; all restricted to the spectrum source's label box. Teff in K, log g and
abundances in dex.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from starlabels.core import Instrument
from starlabels.data.survey_sources import SpectrumSource
from starlabels.errors import InputDataError

__all__ = ["DEFAULT_POPULATIONS", "GIANT_LOGG_RANGE", "HOT_DWARFS", "POPULATIONS", "default_population",
           "sample_labels"]

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
