"""APOGEE_PIXMASK helpers by bit name (the bits themselves are data in :mod:`starlabels.core.apogee`).

Other instruments' bitmasks are :class:`starlabels.core.bitmask.PixelBitmask` objects with the same
methods (``value``, ``rejected``, ``names``); these functions are the APOGEE ones.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from starlabels.core.apogee import DEFAULT_REJECT_BITS, PIXMASK, PIXMASK_BITS

__all__ = [
    "DEFAULT_REJECT_BITS", "DEFAULT_REJECT_VALUE", "PIXMASK_BITS", "bad_pixels", "bits_to_value", "decode",
]


def bits_to_value(bits: Iterable[str | int]) -> int:
    """OR together bits given by name or number: ``bits_to_value(["BADPIX", 12]) == 4097``."""
    return PIXMASK.value(list(bits))


#: Bits rejected by default (as astroNN): bits 0–7 and SIG_SKYLINE (12).
DEFAULT_REJECT_VALUE: int = PIXMASK.value()


def bad_pixels(bitmask, bits: Iterable[str | int] | None = None) -> np.ndarray:
    """Boolean array, True where ``bitmask`` has any of ``bits`` set (default: DEFAULT_REJECT_BITS)."""
    return PIXMASK.rejected(bitmask, None if bits is None else list(bits))


def decode(value: int) -> list[str]:
    """Names of the bits set in one bitmask value."""
    return PIXMASK.names(value)
