"""Header cards of a FITS file read as astropy reads them, for :mod:`starlabels.io.fits_source`.

:func:`card_value` parses the value of one 80-character card the way ``astropy.io.fits`` gives it
(strings with ``''`` unescaped and trailing blanks removed, ``T``/``F`` as bool, integers as int, other
numbers, ``D`` exponents included, as float, no value as None). Anything else — complex numbers, long
strings continued by CONTINUE cards, non-standard numbers, cards without a value indicator — raises
:class:`NeedsAstropyError`, so that the caller reads the file with astropy instead.
:class:`DirectHeader` is a header's keyword → value mapping over its cards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["DirectHeader", "NeedsAstropyError", "card_value", "mandatory", "mandatory_int"]

_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[EeDd][+-]?[0-9]+)?")
_COMMENTARY = frozenset({"", "COMMENT", "HISTORY"})


class NeedsAstropyError(Exception):
    """The file (or the part a reader asked for) needs astropy;
    :func:`~starlabels.io.fits_source.read_fits` falls back to it."""


def card_value(card: str) -> Any:
    """The value of an 80-character card (from column 9 on: the ``"= "`` indicator and value field),
    as astropy gives it; :class:`NeedsAstropyError` for anything this parser does not read exactly so."""
    if card[:2] != "= ":
        raise NeedsAstropyError  # a keyword without a value indicator (astropy: its text)
    field = card[2:].lstrip(" ")
    if field[:1] == "'":
        parts = []
        i = 1
        while True:
            j = field.find("'", i)
            if j < 0:
                raise NeedsAstropyError  # no closing quote
            parts.append(field[i:j])
            if field[j + 1:j + 2] == "'":  # '' is a quote inside the string
                parts.append("'")
                i = j + 2
                continue
            rest = field[j + 1:].lstrip(" ")
            if rest and rest[0] != "/":
                raise NeedsAstropyError
            value = "".join(parts).rstrip(" ")
            if value.endswith("&"):
                raise NeedsAstropyError  # possibly a long string continued by CONTINUE cards
            if not value.isascii() or not value.isprintable():
                raise NeedsAstropyError
            return value
    token = field.split("/", 1)[0].strip(" ")
    if not token:
        return None
    if token in ("T", "F"):
        return token == "T"
    if _INT.fullmatch(token):
        return int(token)
    if _FLOAT.fullmatch(token):
        return float(token.replace("D", "E").replace("d", "e"))
    raise NeedsAstropyError  # complex numbers, non-standard numbers, …


class DirectHeader(Mapping[str, Any]):
    """Header values of one HDU read by :class:`DirectSource`; each value is parsed when asked for.

    Keys are upper-case keywords; a keyword that occurs more than once gives its first card (as
    astropy's ``header[key]``). COMMENT, HISTORY and blank cards are left out. Values are immutable
    Python scalars, kept once parsed.
    """

    __slots__ = ("_index", "_text", "_values")

    def __init__(self, text: str):
        keys = [text[i:i + 8].rstrip(" ") for i in range(0, len(text), 80)]
        index = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))  # first occurrence
        for key in _COMMENTARY:
            index.pop(key, None)
        self._text = text
        self._index = index
        self._values: dict[int, Any] = {}  # parsed values (extension headers are shared across files)

    def _value(self, i: int) -> Any:
        try:
            return self._values[i]
        except KeyError:
            value = self._values[i] = card_value(self._text[80 * i + 8:80 * i + 80])
            return value

    def __getitem__(self, key: str) -> Any:
        return self._value(self._index[key.upper()])

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.upper() in self._index

    def get(self, key: str, default: Any = None) -> Any:
        i = self._index.get(key.upper())
        return default if i is None else self._value(i)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._index, key=self._index.__getitem__))

    def __len__(self) -> int:
        return len(self._index)


def mandatory(text: str, index: int, key: str) -> Any:
    """The value of card ``index`` of a header, which the FITS standard requires to be ``key``."""
    card = text[80 * index:80 * index + 80]
    if card[:8].rstrip(" ") != key:
        raise NeedsAstropyError  # not in the standard's order: astropy reads (and warns about) it
    if key != "XTENSION" and key != "SIMPLE" and card[8:10] == "= " and "_" not in card[10:30] \
            and card[30:].lstrip(" ")[:1] in ("", "/"):
        try:
            return int(card[10:30])  # fixed format: an integer right-justified in columns 11–30
        except ValueError:
            pass
    return card_value(card[8:])


def mandatory_int(text: str, index: int, key: str) -> int:
    value = mandatory(text, index, key)
    if type(value) is not int or value < 0:
        raise NeedsAstropyError
    return value
