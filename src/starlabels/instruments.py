"""Public access to instruments: ``starlabels.instruments.get("apogee")``, ``get("boss")``, or
``from_wavelength(wave, segments={...})`` for any other spectrograph (see :mod:`starlabels.core`)."""

from starlabels.core.instrument import Instrument, available, from_wavelength, get, register

__all__ = ["Instrument", "available", "from_wavelength", "get", "register"]
