"""Display names of stellar labels for tables and figures: ``TEFF`` → Teff, ``MG_FE`` → [Mg/Fe].

Units come from :mod:`starlabels.units` (:func:`~starlabels.units.label_unit`); this module only
turns catalog column names into text (plain or matplotlib TeX).
"""

from __future__ import annotations

import re

from starlabels.units import base_name, label_unit

__all__ = ["axis_label", "element_name", "label_display"]

_ELEMENT_SPELLING = {"TIII": "TiII", "CI": "CI", "ALPHA": "α", "M": "M"}


def element_name(symbol: str) -> str:
    """Element spelling from an upper-case label part: ``"MG"`` → ``"Mg"``, ``"TIII"`` → ``"TiII"``."""
    s = symbol.upper()
    return _ELEMENT_SPELLING.get(s, s.capitalize())


def label_display(name: str, tex: bool = True) -> str:
    """Human-readable label: ``TEFF`` → ``$T_\\mathrm{eff}$``, ``MG_FE`` → ``[Mg/Fe]``.

    ``tex=False`` gives plain text (``Teff``, ``log g``) for Markdown tables.
    """
    base = base_name(name)
    if base == "TEFF":
        return r"$T_\mathrm{eff}$" if tex else "Teff"
    if base == "LOGG":
        return r"$\log g$" if tex else "log g"
    m = re.fullmatch(r"([A-Z]+)_(FE|H|M)", base)
    if m:
        return f"[{element_name(m.group(1))}/{element_name(m.group(2))}]"
    return name


def axis_label(name: str, unit: str | None = None, tex: bool = True) -> str:
    """Axis label with unit, e.g. ``"$T_\\mathrm{eff}$ (K)"``, ``"[Fe/H] (dex)"``."""
    unit = label_unit(name) if unit is None else unit
    text = label_display(name, tex=tex)
    return f"{text} ({unit})" if unit else text
