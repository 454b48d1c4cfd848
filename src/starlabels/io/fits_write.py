"""Writing FITS HDUs as bytes: header cards, padding and the CHECKSUM / DATASUM convention.

:mod:`starlabels.io.mwm_writer` assembles its files from these pieces because building them
through astropy's ``BinTableHDU.from_columns`` (a Column object for each of the ~50 columns of
each of the four extensions, then header verification) dominated the cost of writing an mwm file.
Card images still come from :class:`astropy.io.fits.Card` (cached), so their formatting is
astropy's.

The checksum is the FITS checksum convention (Seaman, Pence & Rots 2012; FITS standard 4.0
appendix J): DATASUM is the 32-bit ones'-complement sum of the data unit as big-endian words;
CHECKSUM is the 16-character ASCII encoding of the complement of the ones'-complement sum of the
header (with CHECKSUM = '0000000000000000') and the data. ``astropy.io.fits.open(…, checksum=True)``
verifies both (tests do).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = ["BLOCK", "card_image", "checksum32", "encode_checksum", "hdu_bytes", "header_scalar"]

BLOCK = 2880
_EXCLUDE = frozenset((0x3A, 0x3B, 0x3C, 0x3D, 0x3E, 0x3F, 0x40, 0x5B, 0x5C, 0x5D, 0x5E, 0x5F, 0x60))


def header_scalar(value: Any) -> Any:
    """A FITS-header-safe scalar (bool, int, finite float or str; numpy scalars and bytes
    converted), or None for NaN/inf and anything that is not a scalar (the card is then left out)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bool | int | float | str):
        return value
    return None


@lru_cache(maxsize=8192)
def _cached_image(key: str, value: Any, comment: str) -> str:
    from astropy.io import fits

    return fits.Card(key, value, comment).image


def card_image(key: str, value: Any, comment: str = "") -> str:
    """The 80-character image(s) of one card (long commentary spans several cards)."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        return _cached_image(key, value, comment)
    except TypeError:  # unhashable value
        from astropy.io import fits

        return fits.Card(key, value, comment).image


def checksum32(data: bytes | np.ndarray, sum32: int = 0) -> int:
    """32-bit ones'-complement sum of ``data`` read as big-endian uint32 words (zero-padded)."""
    buf = np.frombuffer(bytes(data) if not isinstance(data, np.ndarray) else data.tobytes(), np.uint8)
    s = int(sum32) & 0xFFFFFFFF
    extra = buf.size % 4
    if extra:
        buf = np.concatenate([buf, np.zeros(4 - extra, np.uint8)])
    s += int(buf.view(">u4").sum(dtype=np.uint64))
    while s >> 32:
        s = (s & 0xFFFFFFFF) + (s >> 32)
    return s


def _encode_byte(byte: int) -> list[int]:
    quotient = byte // 4 + ord("0")
    remainder = byte % 4
    ch = [quotient + remainder, quotient, quotient, quotient]
    changed = True
    while changed:
        changed = False
        for j in (0, 2):
            while ch[j] in _EXCLUDE or ch[j + 1] in _EXCLUDE:
                ch[j] += 1
                ch[j + 1] -= 1
                changed = True
    return ch


def encode_checksum(value: int) -> str:
    """The 16-character ASCII encoding of a 32-bit checksum (FITS checksum convention)."""
    value &= 0xFFFFFFFF
    asc = [0] * 16
    for i in range(4):
        byte = (value >> ((3 - i) * 8)) & 0xFF
        for j, c in enumerate(_encode_byte(byte)):
            asc[4 * j + i] = c
    return "".join(chr(asc[(i + 15) % 16]) for i in range(16))


def _pad(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b" " * (-len(raw) % BLOCK)


def hdu_bytes(cards: Sequence[tuple[str, Any, str]], data: bytes) -> bytes:
    """One HDU: header ``cards`` (key, value, comment; structural cards included, END added),
    CHECKSUM and DATASUM appended, then ``data`` zero-padded to whole 2880-byte blocks."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    datasum = checksum32(data)
    body = "".join(card_image(k, v, c) for k, v, c in cards)
    tail = card_image("DATASUM", str(datasum), f"data unit checksum updated {stamp}") + "END".ljust(80)
    zero = card_image("CHECKSUM", "0" * 16, f"HDU checksum updated {stamp}")
    header = _pad(body + zero + tail)
    checksum = encode_checksum(~checksum32(header, datasum) & 0xFFFFFFFF)
    header = _pad(body + card_image("CHECKSUM", checksum, f"HDU checksum updated {stamp}") + tail)
    return header + data + b"\0" * (-len(data) % BLOCK)
