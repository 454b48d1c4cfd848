"""Units of stellar label names (allStar-style upper-case names), shared by every module."""

from __future__ import annotations

import re

#: Labels whose unit is not "dex".
UNITS = {"TEFF": "K", "LOGG": "dex", "VMICRO": "km/s", "VMACRO": "km/s", "VSINI": "km/s",
         "VHELIO": "km/s", "SNR": ""}


def base_name(name: str) -> str:
    """``TEFF_ERR_NOISE`` → ``TEFF``: strip the uncertainty suffixes of catalog columns."""
    return re.sub(r"_ERR(_[A-Z]+)?$", "", name.upper())


def label_unit(name: str) -> str:
    """Unit of a label (or of its ``_ERR`` columns): ``TEFF`` → ``"K"``, abundances → ``"dex"``;
    ``""`` for names it does not know."""
    base = base_name(name)
    if base in UNITS:
        return UNITS[base]
    if base == "FE_H" or re.fullmatch(r"[A-Z]+_(FE|H|M)", base):
        return "dex"
    return ""
