"""Instruments as data, and the registry ``get(name)``.

An :class:`Instrument` is a native :class:`~starlabels.core.grid.Grid` plus what is known about the
spectrograph: resolving power, its pixel bitmasks, named sub-grids (e.g. APOGEE's gap-deleted ASPCAP
grid) and optional reference files (continuum-pixel masks, element windows). APOGEE and BOSS are
registered on first use (:mod:`starlabels.core.apogee`, :mod:`starlabels.core.boss`); anything else
is made from a wavelength array with :func:`from_wavelength` and may be :func:`register`-ed.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from starlabels.core.bitmask import PixelBitmask
from starlabels.core.grid import Grid
from starlabels.core.grid import from_wavelength as grid_from_wavelength
from starlabels.core.reference import ReferenceFile

__all__ = ["GENERIC_BITMASK", "Instrument", "available", "from_wavelength", "get", "register"]

#: Bitmask of instruments made from a bare wavelength array: one bit, set on unusable pixels.
GENERIC_BITMASK = PixelBitmask("GENERIC", {"BAD": 0}, ("BAD",))


@dataclass(frozen=True, eq=False)
class Instrument:
    """A spectrograph: native ``grid``, ``resolving_power`` (λ/Δλ, None when unknown), ``bitmasks``
    (name → :class:`PixelBitmask`; the first is the default), ``subgrids`` (name → Grid, each a subset
    of ``grid``), ``continuum_masks`` and ``element_windows`` (name → :class:`ReferenceFile`)."""

    name: str
    grid: Grid
    resolving_power: float | None = None
    bitmasks: Mapping[str, PixelBitmask] = field(default_factory=lambda: {"generic": GENERIC_BITMASK})
    subgrids: Mapping[str, Grid] = field(default_factory=dict)
    continuum_masks: Mapping[str, ReferenceFile] = field(default_factory=dict)
    element_windows: Mapping[str, ReferenceFile] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        if not self.bitmasks:
            raise ValueError(f"instrument {self.name!r} needs at least one bitmask")
        for key, sub in self.subgrids.items():
            if sub.positions_in(self.grid) is None:
                raise ValueError(f"instrument {self.name!r}: subgrid {key!r} is not a subset of its grid")

    @property
    def wavelength(self) -> np.ndarray:
        """(P,) vacuum Å of the native grid."""
        return self.grid.wavelength

    @property
    def segments(self) -> dict[str, tuple[float, float]]:
        """Segment name → (λ_min, λ_max) Å of the native grid."""
        return dict(self.grid.segments)

    @property
    def n_pixels(self) -> int:
        return self.grid.n_pixels

    def bitmask(self, name: str | None = None) -> PixelBitmask:
        """A bitmask by name (default: the first)."""
        if name is None:
            return next(iter(self.bitmasks.values()))
        try:
            return self.bitmasks[name]
        except KeyError:
            raise ValueError(
                f"instrument {self.name!r} has no bitmask {name!r}; has {list(self.bitmasks)}"
            ) from None

    def get_grid(self, name: str | None = None) -> Grid:
        """The native grid (``None``, ``"native"`` or the grid's own name) or a named sub-grid."""
        if name in (None, "native", self.grid.name):
            return self.grid
        try:
            return self.subgrids[str(name)]
        except KeyError:
            raise ValueError(
                f"instrument {self.name!r} has no grid {name!r}; has {[self.grid.name, *self.subgrids]}"
            ) from None

    def grids(self) -> list[Grid]:
        """The native grid and every sub-grid."""
        return [self.grid, *self.subgrids.values()]

    def __repr__(self) -> str:
        return f"Instrument({self.name!r}, grid={self.grid.describe()}, R={self.resolving_power})"


_BUILTIN = {"apogee": "starlabels.core.apogee", "boss": "starlabels.core.boss"}
_REGISTRY: dict[str, Instrument] = {}


def register(instrument: Instrument, *, replace: bool = False) -> Instrument:
    """Add ``instrument`` to the registry under its name (``replace=True`` to overwrite)."""
    key = instrument.name.lower()
    if key in _REGISTRY and not replace and _REGISTRY[key] is not instrument:
        raise ValueError(f"an instrument named {key!r} is already registered")
    _REGISTRY[key] = instrument
    return instrument


def get(name: str | Instrument) -> Instrument:
    """The instrument called ``name`` (``"apogee"``, ``"boss"``, or one registered)."""
    if isinstance(name, Instrument):
        return name
    key = str(name).lower()
    if key not in _REGISTRY and key in _BUILTIN:
        register(importlib.import_module(_BUILTIN[key]).INSTRUMENT)
    try:
        return _REGISTRY[key]
    except KeyError:
        raise ValueError(f"unknown instrument {name!r}; known: {available()}") from None


def available() -> list[str]:
    """Names of the built-in and registered instruments."""
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def from_wavelength(
    wavelength: Any, segments: Mapping[str, tuple[float, float]] | None = None, name: str = "custom",
    resolving_power: float | None = None, bitmask: PixelBitmask | None = None,
) -> Instrument:
    """An instrument for any spectrograph from its wavelength array (vacuum Å, strictly increasing),
    e.g. LAMOST or GALAH: ``from_wavelength(wave, segments={"blue": (4700, 4920), ...})``."""
    grid = grid_from_wavelength(wavelength, segments, name=name)
    bm = bitmask or GENERIC_BITMASK
    return Instrument(name, grid, resolving_power, {bm.name.lower(): bm})


def find_grid(grid: Grid) -> tuple[Instrument, str] | None:
    """``(instrument, grid name)`` of a built-in or registered grid equal to ``grid``, else None."""
    for key in available():
        inst = get(key)
        for g in inst.grids():
            if g.same_as(grid):
                return inst, g.name
    return None
