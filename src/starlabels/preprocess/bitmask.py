"""APOGEE_PIXMASK bits by name, and the pixel-rejection rule used before training/inference."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

#: APOGEE_PIXMASK bit numbers (SDSS DR14–DR17 apStar/apVisit HDU3).
PIXMASK_BITS: dict[str, int] = {
    "BADPIX": 0,
    "CRPIX": 1,
    "SATPIX": 2,
    "UNFIXABLE": 3,
    "BADDARK": 4,
    "BADFLAT": 5,
    "BADERR": 6,
    "NOSKY": 7,
    "LITTROW_GHOST": 8,
    "PERSIST_HIGH": 9,
    "PERSIST_MED": 10,
    "PERSIST_LOW": 11,
    "SIG_SKYLINE": 12,
    "SIG_TELLURIC": 13,
    "NOT_ENOUGH_PSF": 14,
}

#: Bits rejected by default (as astroNN): bits 0–7 and SIG_SKYLINE (12).
DEFAULT_REJECT_BITS: tuple[str, ...] = (
    "BADPIX", "CRPIX", "SATPIX", "UNFIXABLE", "BADDARK", "BADFLAT", "BADERR", "NOSKY",
    "SIG_SKYLINE",
)


def bits_to_value(bits: Iterable[str | int]) -> int:
    """OR together bits given by name or number: ``bits_to_value(["BADPIX", 12]) == 4097``."""
    value = 0
    for b in bits:
        if isinstance(b, str):
            try:
                b = PIXMASK_BITS[b.upper()]
            except KeyError:
                raise ValueError(f"unknown APOGEE_PIXMASK bit {b!r}") from None
        if not 0 <= int(b) < 32:
            raise ValueError(f"bit number {b} out of range 0–31")
        value |= 1 << int(b)
    return value


DEFAULT_REJECT_VALUE: int = bits_to_value(DEFAULT_REJECT_BITS)


def bad_pixels(bitmask, bits: Iterable[str | int] | None = None) -> np.ndarray:
    """Boolean array, True where ``bitmask`` has any of ``bits`` set (default: DEFAULT_REJECT_BITS)."""
    value = DEFAULT_REJECT_VALUE if bits is None else bits_to_value(bits)
    return (np.asarray(bitmask).astype(np.int64) & value) != 0


def decode(value: int) -> list[str]:
    """Names of the bits set in one bitmask value."""
    return [name for name, bit in PIXMASK_BITS.items() if int(value) >> bit & 1]
