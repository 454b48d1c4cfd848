"""What every simulated set of spectra shares (:class:`NativeGridSpectra`, a base of
:class:`~starlabels.data.simulated_survey.SimulatedSurvey` and
:class:`~starlabels.data.synthetic_spectra.SyntheticSpectra`): (N, P) flux on the native grid of an
instrument, APOGEE when none is given."""

from __future__ import annotations

import numpy as np

from starlabels.core import Grid, Instrument
from starlabels.core import get as get_instrument

__all__ = ["NativeGridSpectra"]


class NativeGridSpectra:
    """Base of dataclasses holding ``flux`` (N, P) on the native grid of ``instrument`` (a field;
    None is replaced by APOGEE after ``__init__``)."""

    flux: np.ndarray
    instrument: Instrument | None

    def __post_init__(self) -> None:
        if self.instrument is None:
            self.instrument = get_instrument("apogee")

    def __len__(self) -> int:
        return int(self.flux.shape[0])

    @property
    def grid(self) -> Grid:
        """The native grid of :attr:`instrument` (the spectra's pixels)."""
        return self.instrument.grid

    @property
    def wavelength(self) -> np.ndarray:
        """(P,) vacuum Å of the instrument's native grid."""
        return self.instrument.wavelength
