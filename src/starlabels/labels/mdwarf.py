"""Photometric labels (Teff, log g, [Fe/H]) for low-mass main-sequence stars (APOGEE Net §2.3.1).

The Payne's labels are unreliable for dwarfs cooler than ~4000 K, so APOGEE Net replaces them with
empirical photometric relations:

- [Fe/H] from SDSS g and 2MASS J, K (Hejazi et al. 2015, paper eq. 1)::

      [Fe/H] = A1 + A2 (g-K) + A3 (J-K) + A4 (g-K)^2 + A5 (J-K)^2 + A6 (g-K)(J-K)

- Teff from SDSS r and 2MASS J, H (Mann et al. 2015, paper eq. 2); the polynomial gives Teff/3500::

      Teff / 3500 K = B0 + B1 X + B2 X^2 + B3 X^3 + B4 X^4 + B5 (J-H) + B6 (J-H)^2,   X = r - J

- log g from Teff and [Fe/H] (Veyette et al. 2017, paper eq. 3)::

      log g = 7.912 - 0.1880 [Fe/H] - 1.334e-3 Teff + 1.313e-7 Teff^2

Stars are selected as in the paper: 0.7 < J-K < 1.05, 3.37 < g-K < 8.46, 5 < M_K < 10 with
M_K = K + 5 log10(parallax / 100 mas), parallax / parallax_error > 3, and not in an APOGEE field
covering a known star-forming region or young cluster (Orion Complex, Perseus clusters, NGC 2264,
Pleiades; those get YSO labels instead, see :mod:`starlabels.labels.yso`).

:func:`mdwarf_labels` evaluates everything vectorised over a catalog and returns an astropy Table
with ``teff``, ``logg``, ``fe_h`` (NaN where no label) and a ``flag`` bitmask (:class:`MDwarfFlag`).
Labels are given to every selected star with valid input; a relation used outside its calibrated
range still gives a label but sets that relation's flag bit (the paper itself extrapolates g-K).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from starlabels.constants import MISSING
from starlabels.errors import InputDataError

logger = logging.getLogger(__name__)

#: Hejazi et al. (2015) coefficients A1..A6 of eq. (1) ([Fe/H] in dex from g-K and J-K in mag).
HEJAZI_COEFFS: tuple[float, ...] = (-14.259, 0.0519, 29.5926, -0.0529, -17.6762, 0.7032)
#: Mann et al. (2015) coefficients B0..B6 of eq. (2); the polynomial gives Teff / MANN_TEFF_SCALE.
MANN_COEFFS: tuple[float, ...] = (2.151, -1.092, 0.3767, -0.06292, 0.003950, 0.1697, -0.03106)
#: Teff scale (K) of the Mann et al. (2015) polynomial.
MANN_TEFF_SCALE = 3500.0
#: Veyette et al. (2017): log g = c0 + c1 [Fe/H] + c2 Teff + c3 Teff^2 (Teff in K, log g in dex cgs).
VEYETTE_COEFFS: tuple[float, float, float, float] = (7.912, -0.1880, -1.334e-3, 1.313e-7)

#: Selection cuts (open intervals), paper §2.3.1. Colours and M_K in mag.
J_K_RANGE = (0.7, 1.05)
G_K_RANGE = (3.37, 8.46)
ABS_K_RANGE = (5.0, 10.0)
#: Minimum parallax signal-to-noise ratio (parallax / parallax_error > this).
MIN_PARALLAX_SNR = 3.0

#: Calibrated ranges (open intervals) of each relation as quoted in the paper. The g-K range of
#: Hejazi et al. is garbled in the paper's text ("33 < g-K < 846"); it is read here as 3.3-8.46.
HEJAZI_VALIDITY: dict[str, tuple[float, float]] = {
    "g_k": (3.3, 8.46), "j_k": (0.71, 1.01), "fe_h": (-0.73, 0.3),
}
MANN_VALIDITY: dict[str, tuple[float, float]] = {
    "abs_k": (4.6, 9.8), "teff": (2700.0, 4100.0), "fe_h": (-0.6, 0.5),
}
VEYETTE_VALIDITY: dict[str, tuple[float, float]] = {"teff": (3200.0, 4100.0), "fe_h": (-0.7, 0.3)}

#: APOGEE fields covering star-forming regions and young clusters named in the paper (Orion
#: Complex incl. lambda Ori, Perseus clusters IC 348 and NGC 1333, NGC 2264, Pleiades). A field is
#: excluded when its name, upper-cased with everything but letters and digits removed, *starts with*
#: one of these (so ``"ORIONB-A"`` and ``"PLEIADES-E"`` match).
DEFAULT_EXCLUDED_FIELDS: tuple[str, ...] = (
    "ORION", "LAMBDAORI", "IC348", "NGC1333", "NGC2264", "PLEIADES",
)

#: Input column names (override with ``columns=``): SDSS g, r; 2MASS J, H, K (mag); Gaia parallax
#: and its error (mas); optional APOGEE field name.
REQUIRED_COLUMNS: tuple[str, ...] = ("g", "r", "J", "H", "K", "parallax", "parallax_error")
FIELD_COLUMN = "field"

#: A magnitude with |m| above this is a placeholder (e.g. 99.99), treated as missing.
_MAX_ABS_MAG = 50.0


class MDwarfFlag(enum.IntFlag):
    """Bits of the ``flag`` column of :func:`mdwarf_labels` (0 = selected, all relations in range).

    Bits 0-1: bad input (no label). Bits 2-6: not selected (no label); a cut bit is set only where
    its quantity could be computed. Bits 7-9: a relation used outside its calibrated range (label
    given).
    """

    BAD_PHOTOMETRY = 1 << 0  #: g, r, J, H or K missing, masked, non-finite or a placeholder
    BAD_PARALLAX = 1 << 1  #: parallax or its error missing/non-finite, or <= 0
    CUT_J_K = 1 << 2  #: J-K outside (0.7, 1.05)
    CUT_G_K = 1 << 3  #: g-K outside (3.37, 8.46)
    CUT_ABS_K = 1 << 4  #: M_K outside (5, 10)
    CUT_PARALLAX_SNR = 1 << 5  #: parallax / parallax_error <= 3
    STAR_FORMING_FIELD = 1 << 6  #: in an excluded star-forming-region field
    HEJAZI_RANGE = 1 << 7  #: [Fe/H] relation outside its g-K, J-K or [Fe/H] range
    MANN_RANGE = 1 << 8  #: Teff relation outside its M_K, Teff or [Fe/H] range
    VEYETTE_RANGE = 1 << 9  #: log g relation outside its Teff or [Fe/H] range


#: Bits that mean "no label".
NO_LABEL_BITS = (
    MDwarfFlag.BAD_PHOTOMETRY | MDwarfFlag.BAD_PARALLAX | MDwarfFlag.CUT_J_K | MDwarfFlag.CUT_G_K
    | MDwarfFlag.CUT_ABS_K | MDwarfFlag.CUT_PARALLAX_SNR | MDwarfFlag.STAR_FORMING_FIELD
)


# ----------------------------------------------------------------------------- relations


def hejazi_feh(g_k: np.ndarray, j_k: np.ndarray) -> np.ndarray:
    """[Fe/H] (dex) from g-K and J-K (mag), Hejazi et al. (2015); any matching shapes."""
    a = HEJAZI_COEFFS
    x, y = np.asarray(g_k, dtype=float), np.asarray(j_k, dtype=float)
    return a[0] + a[1] * x + a[2] * y + a[3] * x**2 + a[4] * y**2 + a[5] * x * y


def mann_teff(r_j: np.ndarray, j_h: np.ndarray) -> np.ndarray:
    """Teff (K) from r-J and J-H (mag), Mann et al. (2015); the polynomial is Teff / 3500 K."""
    b = MANN_COEFFS
    x, y = np.asarray(r_j, dtype=float), np.asarray(j_h, dtype=float)
    poly = b[0] + b[1] * x + b[2] * x**2 + b[3] * x**3 + b[4] * x**4 + b[5] * y + b[6] * y**2
    return MANN_TEFF_SCALE * poly


def veyette_logg(teff: np.ndarray, fe_h: np.ndarray) -> np.ndarray:
    """log g (dex, cgs) from Teff (K) and [Fe/H] (dex), Veyette et al. (2017)."""
    c = VEYETTE_COEFFS
    t, z = np.asarray(teff, dtype=float), np.asarray(fe_h, dtype=float)
    return c[0] + c[1] * z + c[2] * t + c[3] * t**2


def absolute_k(k: np.ndarray, parallax_mas: np.ndarray) -> np.ndarray:
    """Absolute K magnitude M_K = K + 5 log10(parallax / 100) for parallax in mas (NaN if <= 0)."""
    plx = np.asarray(parallax_mas, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(k, dtype=float) + 5.0 * np.log10(np.where(plx > 0, plx, np.nan) / 100.0)


# ----------------------------------------------------------------------------- column helpers


def table_columns(table: Any) -> list[str]:
    """Column names of a dict of arrays, astropy Table or pandas DataFrame."""
    if hasattr(table, "colnames"):
        return list(table.colnames)
    if hasattr(table, "columns") and not isinstance(table, Mapping):
        return [str(c) for c in table.columns]
    if hasattr(table, "keys"):
        return [str(c) for c in table]
    raise InputDataError(
        f"expected a mapping of columns (dict, astropy Table, pandas DataFrame), got {type(table).__name__}"
    )


def find_column(table: Any, name: str, *, case_sensitive: bool = False) -> str | None:
    """The table's column called ``name`` (exact match first, then case-insensitive unless asked)."""
    names = table_columns(table)
    if name in names:
        return name
    if not case_sensitive:
        lower = {c.lower(): c for c in names}
        return lower.get(name.lower())
    return None


def column_as_float(table: Any, name: str) -> np.ndarray:
    """Column ``name`` as a 1-D float64 array; masked, null, NaN and MISSING (-9999) become NaN."""
    col = table[name]
    if hasattr(col, "to_numpy") and hasattr(col, "dtype") and not isinstance(col, np.ndarray) and (
        type(col).__module__.startswith("pandas")
    ):
        import pandas as pd

        arr = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    else:
        try:
            masked = np.ma.asarray(col)
            arr = np.ma.filled(masked.astype(float), np.nan)
        except (TypeError, ValueError) as exc:
            raise InputDataError(f"column {name!r} is not numeric ({exc})") from exc
    arr = np.array(arr, dtype=float).reshape(-1)
    arr[arr == MISSING] = np.nan
    return arr


def column_as_str(table: Any, name: str) -> np.ndarray:
    """Column ``name`` as a 1-D array of stripped Python strings; masked/null entries become ``""``."""
    col = table[name]
    if type(col).__module__.startswith("pandas"):
        values = col.fillna("").astype(str).to_numpy()
    else:
        masked = np.ma.asarray(col)
        values = np.ma.filled(masked.astype(str), "") if np.ma.is_masked(masked) else masked.astype(str)
        values = np.asarray(values)
    values = np.char.strip(np.asarray(values, dtype=str).reshape(-1))
    return np.asarray(values, dtype=object)


def _normalise_field(names: np.ndarray) -> np.ndarray:
    return np.array([re.sub(r"[^A-Z0-9]", "", str(s).upper()) for s in names], dtype=object)


def in_excluded_field(fields: Sequence[str] | np.ndarray, excluded: Iterable[str]) -> np.ndarray:
    """Boolean mask: field name (normalised) starts with any excluded name (normalised).

    Normalisation upper-cases and drops everything but letters and digits, so ``"Orion B-A"``,
    ``"ORIONB-A"`` and ``"orionba"`` all match the pattern ``"ORION"``. Empty names never match.
    The loop is over the (few) distinct field names, not over stars.
    """
    fields = np.asarray(fields, dtype=object)
    patterns = [p for p in _normalise_field(np.asarray(list(excluded), dtype=object)) if p]
    uniq, inverse = np.unique(fields.astype(str), return_inverse=True)
    norm = _normalise_field(uniq)
    hit = np.array([bool(n) and any(n.startswith(p) for p in patterns) for n in norm], dtype=bool)
    return hit[inverse.reshape(-1)] if len(uniq) else np.zeros(len(fields), dtype=bool)


def flag_counts(flag: np.ndarray, flags: type[enum.IntFlag] = MDwarfFlag) -> dict[str, int]:
    """Number of rows with each bit of ``flags`` set (one entry per bit name, zeros included)."""
    flag = np.asarray(flag, dtype=np.int64)
    return {bit.name: int(np.count_nonzero(flag & int(bit))) for bit in flags}  # type: ignore[misc]


def describe_flag(value: int, flags: type[enum.IntFlag] = MDwarfFlag) -> list[str]:
    """Names of the bits set in one flag value."""
    return [bit.name for bit in flags if int(value) & int(bit)]  # type: ignore[misc]


def _outside(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """True where finite ``x`` lies outside the open interval ``bounds``."""
    lo, hi = bounds
    with np.errstate(invalid="ignore"):
        return np.isfinite(x) & ~((x > lo) & (x < hi))


# ----------------------------------------------------------------------------- main entry


def mdwarf_labels(
    table: Any,
    *,
    exclude_fields: Iterable[str] | None = None,
    columns: Mapping[str, str] | None = None,
    keep: Sequence[str] = (),
):
    """Photometric Teff, log g and [Fe/H] for the low-mass main-sequence stars of a catalog.

    Parameters
    ----------
    table
        Any mapping of columns with N rows — dict of arrays, astropy Table or pandas DataFrame —
        holding ``g, r`` (SDSS, mag), ``J, H, K`` (2MASS, mag), ``parallax`` and ``parallax_error``
        (Gaia, mas) and optionally ``field`` (APOGEE field name). Names other than g and r are also
        found case-insensitively. Missing values may be NaN, masked, null or -9999; magnitudes with
        ``|m| > 50`` (e.g. 99.99) count as missing.
    exclude_fields
        Field names whose stars are not labelled here (prefix match after normalisation, see
        :func:`in_excluded_field`). ``None`` uses :data:`DEFAULT_EXCLUDED_FIELDS`; ``()`` excludes
        none. Ignored when there is no ``field`` column.
    columns
        Maps the canonical names (``"g"``, ``"K"``, ``"parallax"``, ``"field"``, ...) to the table's
        column names, e.g. ``{"K": "ks_m", "parallax": "plx"}``.
    keep
        Columns of ``table`` copied unchanged into the result (e.g. ``["APOGEE_ID"]``).

    Returns
    -------
    astropy.table.Table
        Always an astropy Table (whatever the input type), N rows in input order: the ``keep``
        columns, then ``teff`` (K), ``logg`` (dex), ``fe_h`` (dex) — NaN where no label (any bit of
        :data:`NO_LABEL_BITS`) — ``abs_k`` (M_K, mag; NaN where not computable) and ``flag``
        (int32, bits of :class:`MDwarfFlag`). ``meta["flag_counts"]`` maps each bit name to its
        number of rows, ``meta["n_input"]`` and ``meta["n_labelled"]`` count rows. Counts are also
        logged at INFO level; bad rows never stop the run.
    """
    from astropy import units
    from astropy.table import Table

    columns = dict(columns or {})
    resolved: dict[str, str] = {}
    for name in REQUIRED_COLUMNS:
        wanted = columns.get(name, name)
        found = find_column(table, wanted, case_sensitive=name in ("g", "r") and name not in columns)
        if found is None:
            raise InputDataError(
                f"catalog has no column {wanted!r} (needs {', '.join(REQUIRED_COLUMNS)}; "
                f"has {', '.join(table_columns(table)[:20])}); map names with columns={{...}}"
            )
        resolved[name] = found
    field_col = find_column(table, columns.get(FIELD_COLUMN, FIELD_COLUMN))
    missing_keep = [k for k in keep if k not in table_columns(table)]
    if missing_keep:
        raise InputDataError(f"columns to keep not in catalog: {missing_keep}")

    v = {name: column_as_float(table, col) for name, col in resolved.items()}
    n = len(v["g"])
    for name, arr in v.items():
        if len(arr) != n:
            raise InputDataError(f"column {resolved[name]!r} has {len(arr)} rows, expected {n}")
    mags = np.stack([v[b] for b in ("g", "r", "J", "H", "K")])
    with np.errstate(invalid="ignore"):
        bad_mag = ~np.isfinite(mags) | (np.abs(mags) > _MAX_ABS_MAG)
    mags[bad_mag] = np.nan
    g, r, J, H, K = mags
    plx, plx_err = v["parallax"], v["parallax_error"]
    with np.errstate(invalid="ignore"):
        bad_plx = ~(np.isfinite(plx) & np.isfinite(plx_err) & (plx > 0) & (plx_err > 0))

    flag = np.zeros(n, dtype=np.int64)
    flag[bad_mag.any(axis=0)] |= MDwarfFlag.BAD_PHOTOMETRY
    flag[bad_plx] |= MDwarfFlag.BAD_PARALLAX

    j_k, g_k, r_j, j_h = J - K, g - K, r - J, J - H
    m_k = absolute_k(K, np.where(bad_plx, np.nan, plx))
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(bad_plx, np.nan, plx / plx_err)
    flag[_outside(j_k, J_K_RANGE)] |= MDwarfFlag.CUT_J_K
    flag[_outside(g_k, G_K_RANGE)] |= MDwarfFlag.CUT_G_K
    flag[_outside(m_k, ABS_K_RANGE)] |= MDwarfFlag.CUT_ABS_K
    with np.errstate(invalid="ignore"):
        flag[np.isfinite(snr) & ~(snr > MIN_PARALLAX_SNR)] |= MDwarfFlag.CUT_PARALLAX_SNR
    if field_col is not None:
        excluded = DEFAULT_EXCLUDED_FIELDS if exclude_fields is None else tuple(exclude_fields)
        if excluded:
            flag[in_excluded_field(column_as_str(table, field_col), excluded)] |= (
                MDwarfFlag.STAR_FORMING_FIELD
            )

    fe_h = hejazi_feh(g_k, j_k)
    teff = mann_teff(r_j, j_h)
    logg = veyette_logg(teff, fe_h)

    hejazi_out = _outside(g_k, HEJAZI_VALIDITY["g_k"]) | _outside(j_k, HEJAZI_VALIDITY["j_k"])
    hejazi_out |= _outside(fe_h, HEJAZI_VALIDITY["fe_h"])
    mann_out = _outside(m_k, MANN_VALIDITY["abs_k"]) | _outside(teff, MANN_VALIDITY["teff"])
    mann_out |= _outside(fe_h, MANN_VALIDITY["fe_h"])
    veyette_out = _outside(teff, VEYETTE_VALIDITY["teff"]) | _outside(fe_h, VEYETTE_VALIDITY["fe_h"])
    no_label = (flag & int(NO_LABEL_BITS)) != 0
    flag[~no_label & hejazi_out] |= MDwarfFlag.HEJAZI_RANGE
    flag[~no_label & mann_out] |= MDwarfFlag.MANN_RANGE
    flag[~no_label & veyette_out] |= MDwarfFlag.VEYETTE_RANGE
    for arr in (teff, logg, fe_h):
        arr[no_label] = np.nan

    out = Table()
    for k in keep:
        out[k] = np.asarray(table[k])
    # dex is not a FITS unit: log quantities carry it in the description
    out["teff"] = teff * units.K
    out["logg"] = logg
    out["logg"].description = "log g (dex, cgs), Veyette et al. 2017"
    out["fe_h"] = fe_h
    out["fe_h"].description = "[Fe/H] (dex), Hejazi et al. 2015"
    out["teff"].description = "Teff (K), Mann et al. 2015"
    out["abs_k"] = m_k * units.mag
    out["flag"] = flag.astype(np.int32)
    out["flag"].description = "MDwarfFlag bitmask (starlabels.labels.mdwarf)"
    counts = flag_counts(flag)
    out.meta["flag_counts"] = counts
    out.meta["n_input"] = int(n)
    out.meta["n_labelled"] = int(np.count_nonzero(~no_label))
    nonzero = ", ".join(f"{k}={c}" for k, c in counts.items() if c)
    logger.info("mdwarf_labels: %d of %d stars labelled; flags: %s", out.meta["n_labelled"], n,
                nonzero or "none")
    return out
