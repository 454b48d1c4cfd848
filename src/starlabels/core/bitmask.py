"""Pixel bitmasks as data: named bits and the bits rejected by default."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["PixelBitmask", "testable"]


@dataclass(frozen=True)
class PixelBitmask:
    """A pixel bitmask: ``bits`` (name → bit number 0–31) and ``default_reject`` (bit names).

    ``value(["BADPIX", 12])`` ORs bits given by name or number; ``names(value)`` decodes one value;
    ``rejected(bitmask, bits)`` is the (…) bool array of pixels with any of ``bits`` set.
    """

    name: str
    bits: Mapping[str, int]
    default_reject: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", {str(k).upper(): int(v) for k, v in dict(self.bits).items()})
        for k, v in self.bits.items():
            if not 0 <= v < 32:
                raise ValueError(f"{self.name}: bit {k} = {v} is outside 0–31")
        unknown = [b for b in self.default_reject if b.upper() not in self.bits]
        if unknown:
            raise ValueError(f"{self.name}: default_reject names unknown bits {unknown}")

    def number(self, bit: str | int) -> int:
        """The bit number of a name or number (range-checked)."""
        if isinstance(bit, str):
            try:
                return self.bits[bit.upper()]
            except KeyError:
                raise ValueError(f"unknown {self.name} bit {bit!r}; known: {sorted(self.bits)}") from None
        if isinstance(bit, bool) or not 0 <= int(bit) < 32:
            raise ValueError(f"bit number {bit!r} out of range 0–31")
        return int(bit)

    def value(self, bits: Iterable[str | int] | None = None) -> int:
        """OR of ``bits`` (names or numbers); ``None`` → the default reject set."""
        out = 0
        for b in self.default_reject if bits is None else bits:
            out |= 1 << self.number(b)
        return out

    def names(self, value: int) -> list[str]:
        """Names of the named bits set in one value."""
        return [name for name, bit in self.bits.items() if int(value) >> bit & 1]

    def rejected(self, bitmask, bits: Iterable[str | int] | None = None) -> np.ndarray:
        """Bool array, True where ``bitmask`` has any of ``bits`` (default: ``default_reject``) set."""
        value = self.value(bits)
        array = testable(bitmask, value)
        return np.bitwise_and(array, value, dtype=array.dtype) != 0


def testable(bitmask: np.ndarray, value: int) -> np.ndarray:
    """``bitmask`` in a dtype in which ``bitmask & value`` is allowed and exact: itself (no copy) when
    it is an integer array whose positive range holds ``value`` — the value then has no bit at or
    above the dtype's sign bit, so sign extension to int64 could not change the AND — else an int64
    copy (a bool array, or e.g. int32 flags tested for bit 31, which NumPy refuses as out of bounds)."""
    array = np.asarray(bitmask)
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind in "iu" and value < 1 << (8 * size - (kind == "i")):
        return array
    return array.astype(np.int64)
