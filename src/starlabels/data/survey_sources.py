"""Spectrum sources of the survey simulator (:mod:`starlabels.data.survey`): labels → noise-free
spectra on an instrument's native grid, from a Payne-format emulator on any grid
(:class:`EmulatorSource`) or the built-in generator (:class:`GeneratorSource`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from starlabels.core import Grid, Instrument
from starlabels.core import get as get_instrument
from starlabels.errors import InputDataError, InputFileError

__all__ = ["DWARF_LABELS", "KURUCZ_LABELS", "EmulatorSource", "GeneratorSource", "SpectrumSource",
           "resolve_instrument"]

#: Default label box names of the two emulators shipped in ../shared/data/emulators.
KURUCZ_LABELS = ("TEFF", "LOGG", "FE_H", "ALPHA_M")
DWARF_LABELS = ("TEFF", "LOGG", "FE_H", "ALPHA_M", "VMACRO")


# --------------------------------------------------------------------------------------------
# spectrum sources
# --------------------------------------------------------------------------------------------
class SpectrumSource(Protocol):
    """Anything that turns labels into noise-free spectra on an instrument's native grid."""

    label_names: tuple[str, ...]
    #: True when the source's flux is continuum-normalised (the simulator then applies a continuum).
    normalised: bool

    @property
    def instrument(self) -> Instrument: ...

    @property
    def label_box(self) -> tuple[np.ndarray, np.ndarray]: ...

    def noiseless(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, P) flux and (N, P) bool ``covered`` (False where the source has no pixel), P the
        native grid's pixels."""
        ...


def resolve_instrument(instrument: str | Instrument) -> Instrument:
    try:
        return get_instrument(instrument)
    except ValueError as exc:
        raise InputDataError(str(exc)) from None


def _emulator_grid(path: str | Path, emu: object, inst: Instrument, grid: str | Grid | None) -> Grid:
    """The emulator's pixel grid: ``grid`` (a Grid or a name of ``inst``'s grids), else the file's
    ``wavelength`` array, else the one grid of ``inst`` (native, sub-grids, gap-deleted segment
    grid) with the emulator's pixel count."""
    from starlabels.core.grid import from_wavelength

    n = emu.n_pixels
    if isinstance(grid, Grid):
        out = grid
    elif grid is not None:
        try:
            out = inst.get_grid(grid)
        except ValueError as exc:
            raise InputFileError(path, str(exc)) from None
    elif getattr(emu, "wavelength", None) is not None:
        return from_wavelength(emu.wavelength, name=f"emulator:{Path(path).name}")
    else:
        candidates = [*inst.grids(), inst.grid.segment_grid()]
        matches = [g for g in candidates if g.n_pixels == n]
        if not matches:
            known = ", ".join(f"{g.name} ({g.n_pixels})" for g in candidates)
            raise InputFileError(
                path, f"emulator has {n} pixels, which matches no grid of instrument {inst.name!r} "
                f"({known}); pass grid= or store a 'wavelength' array in the .npz"
            )
        out = matches[0]
    if out.n_pixels != n:
        raise InputFileError(path, f"emulator has {n} pixels but grid {out.describe()} has {out.n_pixels}")
    return out


@dataclass
class EmulatorSource:
    """A Payne-format emulator as a spectrum source (see :mod:`starlabels.data.emulator`), on any
    grid: its flux is placed on ``instrument``'s native grid at its own pixels when ``grid`` is a
    subset of the native grid, else interpolated linearly onto the native pixels inside its
    wavelength range; native pixels it does not cover are masked."""

    emulator: object
    normalised: bool
    instrument: Instrument = field(default_factory=lambda: get_instrument("apogee"))
    #: the emulator's pixel grid (default: APOGEE's 7214-pixel Payne grid)
    grid: Grid | None = None

    def __post_init__(self) -> None:
        if self.grid is None:
            self.grid = self.instrument.get_grid("payne")
        native = self.instrument.grid
        self._positions = self.grid.positions_in(native)
        covered = np.zeros(native.n_pixels, dtype=bool)
        if self._positions is not None:
            covered[self._positions] = True
        else:
            w = native.wavelength
            covered[(w >= self.grid.wavelength[0]) & (w <= self.grid.wavelength[-1])] = True
            if not covered.any():
                raise InputDataError(
                    f"emulator grid {self.grid.describe()} does not overlap {self.instrument.name}'s "
                    f"grid {native.describe()}"
                )
        self._covered = covered

    @classmethod
    def from_path(
        cls, path: str | Path, label_names: Sequence[str] | None = None, normalised: bool | None = None,
        *, instrument: str | Instrument = "apogee", grid: str | Grid | None = None,
    ) -> EmulatorSource:
        """Load an emulator; label names default to the shipped emulators' (4 or 5 labels).

        ``normalised`` defaults to False for a 4-label (Kurucz, un-normalised) emulator and True
        otherwise (the APOGEE-dwarf emulator is continuum normalised); say it for your own files.
        The emulator's grid is ``grid`` (a Grid or a name of ``instrument``'s grids, e.g.
        ``"payne"``), else the file's ``wavelength`` array, else the grid of ``instrument`` with
        the emulator's pixel count (APOGEE: 7214 → Payne, 7514 → ASPCAP, 8575 → apStar; BOSS: 4648).
        """
        from starlabels.data.emulator import PayneEmulator

        inst = resolve_instrument(instrument)
        emu = PayneEmulator.load(path)
        if label_names is None:
            label_names = {4: KURUCZ_LABELS, 5: DWARF_LABELS}.get(emu.n_labels)
            if label_names is None:
                raise InputFileError(path, f"{emu.n_labels}-label emulator: pass label_names")
        emu = PayneEmulator.load(path, label_names=tuple(label_names))
        emu_grid = _emulator_grid(path, emu, inst, grid)
        if normalised is None:
            normalised = emu.n_labels != 4
        return cls(emu, normalised, inst, emu_grid)

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.emulator.label_names

    @property
    def label_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.emulator.label_range

    def noiseless(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flux = self.emulator(labels).numpy().astype(np.float64)
        native = self.instrument.grid
        full = np.zeros((len(flux), native.n_pixels))
        if self._positions is not None:
            full[:, self._positions] = flux
        else:  # another grid: linear interpolation in wavelength onto the covered native pixels
            w = native.wavelength[self._covered]
            src = self.grid.wavelength
            j = np.clip(np.searchsorted(src, w) - 1, 0, src.size - 2)
            t = (w - src[j]) / (src[j + 1] - src[j])
            full[:, self._covered] = flux[:, j] * (1 - t) + flux[:, j + 1] * t
        return full, np.broadcast_to(self._covered, full.shape)


@dataclass
class GeneratorSource:
    """The built-in synthetic generator (:mod:`starlabels.data.synthetic`) as a spectrum source,
    on the generator's instrument."""

    generator: object
    normalised: bool = True

    @classmethod
    def default(cls, seed: int = 0, instrument: str | Instrument = "apogee") -> GeneratorSource:
        from starlabels.data.synthetic import SyntheticGenerator

        return cls(SyntheticGenerator(seed=seed, instrument=instrument))

    @property
    def instrument(self) -> Instrument:
        return self.generator.instrument

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(self.generator.label_names)

    @property
    def label_box(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.generator.label_box
        return np.asarray(lo, float), np.asarray(hi, float)

    def noiseless(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flux = np.asarray(self.generator.line_spectrum(labels), dtype=np.float64)
        covered = self.generator.covered
        return np.where(covered, flux, 0.0), np.broadcast_to(covered, flux.shape)
